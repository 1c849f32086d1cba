"""Train only the rows of a token embedding that the training texts use.

A token embedding's gradient is zero in every row whose token no training text holds.
Such a row has zero AdamW moments, so its update is exactly zero, and the engine gives
token embeddings no weight decay (:func:`token_embedding`, read by
:class:`~skllm._training.Optimisation`): the row ends the fit exactly as it started. Yet
a dense embedding makes every step pay for all of them: torch builds a gradient of the
whole vocabulary, clips it and runs AdamW over it. In full fine-tuning of MiniLM that is
11.7M of 22.7M weights (30,522 rows of 384), where 1,000 Rotten Tomatoes snippets use a
few thousand rows. Training those rows only made such fits 1.10-1.24x faster under
bfloat16, with the same test probabilities (``benchmarks/bench_seen_rows.py``,
docs/benchmarks.md).

:func:`seen_rows` swaps the embedding for :class:`SeenRows` while a fit trains: one
trainable parameter of the rows the training texts use, the rest read from the frozen
table. It writes the trained rows back into the table on the way out, so the model, its
saved state and its predictions are those of the dense embedding (up to the rounding
of the gradient norm, a sum that meets the same values in another order). Hugging
Face's ``Trainer`` and peft train the whole table; PyTorch's ``sparse=True`` embeddings
need an optimiser other than AdamW (``SparseAdam``), whose lazy moments change the result.
"""

import contextlib

import numpy as np

_CLASSES = {}  # the SeenRows class, built on first use (torch is imported lazily)


def token_embedding(network):
    """The trainable token embedding of the transformers model in ``network`` that only reads tokens, or ``None``.

    ``None`` where it is frozen, where it is not an ``nn.Embedding`` (peft's LoRA on
    the embedding: dense low-rank factors, whose decay stays), or where it is tied to
    the output layer (a language model whose output projection is the same matrix trains
    every row as an output).
    """
    from torch import nn
    from transformers import PreTrainedModel

    model = next((m for m in network.modules() if isinstance(m, PreTrainedModel)), None)
    if model is None:
        return None
    try:
        embedding = model.get_input_embeddings()
    except NotImplementedError:  # a model that does not say
        return None
    stand_in = _CLASSES.get("seen_rows")  # SeenRows, while a fit trains (and once one did)
    if not (isinstance(embedding, nn.Embedding) or (stand_in is not None and isinstance(embedding, stand_in))):
        return None
    if not any(p.requires_grad for p in embedding.parameters()):
        return None
    own = {id(p) for p in embedding.parameters()}
    for module in network.modules():
        if module is embedding or any(module is m for m in embedding.modules()):
            continue
        if any(id(p) in own for p in module.parameters(recurse=False)):
            return None
    return embedding


def _compactable(embedding):
    """Whether ``embedding`` is a plain ``nn.Embedding`` :class:`SeenRows` reproduces exactly.

    Subclasses may scale or shift what they look up (Gemma multiplies by the width's
    square root); ``max_norm`` renormalises rows in place, ``scale_grad_by_freq`` and
    ``sparse`` change the gradient.
    """
    from torch import nn

    return (
        type(embedding) is nn.Embedding
        and embedding.max_norm is None
        and not embedding.scale_grad_by_freq
        and not embedding.sparse
    )


def _seen_ids(ids, n_rows):
    """The sorted distinct token ids of ``ids`` (sequences); ``None`` without any, or with one out of range."""
    seen = np.unique(
        np.concatenate([np.asarray(row, dtype=np.int64).ravel() for row in ids] or [np.zeros(0, np.int64)])
    )
    if not seen.size or seen[0] < 0 or seen[-1] >= n_rows:
        return None  # out of range: the model's own lookup raises its error, as without this
    return seen


def _parents(network, module):
    """``(parent, attribute name)`` of every place ``module`` sits in ``network``."""
    return [
        (parent, name) for parent in network.modules() for name, child in parent.named_children() if child is module
    ]


def _seen_rows_class():
    """The :class:`SeenRows` module class (built once, on first use, as torch is imported lazily)."""
    if "seen_rows" in _CLASSES:
        return _CLASSES["seen_rows"]
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SeenRows(nn.Module):
        """A frozen ``nn.Embedding`` (``table``) and a trainable copy (``rows``) of its rows ``seen``.

        A lookup reads the copy; tokens outside it (never in a fit, whose rows hold its
        validation texts' tokens too) are read from the frozen table.
        """

        def __init__(self, embedding, seen):
            super().__init__()
            self.table = embedding
            weight = embedding.weight
            seen = torch.from_numpy(seen).to(weight.device)
            self.rows = nn.Parameter(weight.detach()[seen].clone())
            slot = torch.full((embedding.num_embeddings,), -1, dtype=torch.long, device=weight.device)
            slot[seen] = torch.arange(len(seen), device=weight.device)
            self.register_buffer("slot", slot, persistent=False)
            pad = embedding.padding_idx
            self.padding_slot = None if pad is None or int(slot[pad]) < 0 else int(slot[pad])

        @property
        def weight(self):  # models read their input embedding's dtype and device from it
            return self.table.weight

        def forward(self, input_ids):
            slot = self.slot[input_ids]
            known = slot >= 0
            rows = F.embedding(slot.clamp(min=0), self.rows, padding_idx=self.padding_slot)
            if bool(known.all()):
                return rows
            return torch.where(known.unsqueeze(-1), rows, self.table(input_ids))

    _CLASSES["seen_rows"] = SeenRows
    return SeenRows


def weights_as_trained(network):
    """``(size, trained)`` of each weight tensor of ``network``; a :class:`SeenRows` counts as its table, trained.

    What share of a network a fit trains (:func:`~skllm._split_step.splits`) is the
    share the whole table's fit would train.
    """
    cls = _CLASSES.get("seen_rows")
    stand_ins = [m for m in network.modules() if cls is not None and isinstance(m, cls)]
    inside = {id(p) for m in stand_ins for p in m.parameters()}
    for m in stand_ins:
        yield m.table.weight.numel(), True
    for p in network.parameters():
        if id(p) not in inside:
            yield p.numel(), p.requires_grad


@contextlib.contextmanager
def seen_rows(network, ids):
    """Train only the rows of ``network``'s token embedding that ``ids`` use (see the module's docstring).

    Parameters
    ----------
    network : torch.nn.Module
        Holds a transformers model; nothing changes where :func:`token_embedding`
        finds none or it is not a plain ``nn.Embedding``.
    ids : iterable of sequences of int
        Every token id the fit's batches may hold, the padding's included (a
        superset is exact too, only slower).

    Build the optimiser inside the context: it trains the rows' parameter. On the way
    out, training finished or failed, the rows go back into the table, which is
    trainable again, and the table back into the network.
    """
    embedding = token_embedding(network)
    seen = None
    if embedding is not None and _compactable(embedding):
        seen = _seen_ids(ids, embedding.num_embeddings)
    if seen is None:
        yield
        return
    import torch

    compact = _seen_rows_class()(embedding, seen)
    places = _parents(network, embedding)
    embedding.weight.requires_grad_(False)
    for parent, name in places:
        setattr(parent, name, compact)
    try:
        yield
    finally:
        for parent, name in places:
            setattr(parent, name, embedding)
        with torch.no_grad():
            embedding.weight[torch.from_numpy(seen).to(embedding.weight.device)] = compact.rows.detach()
        embedding.weight.requires_grad_(True)
