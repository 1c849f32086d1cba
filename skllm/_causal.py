"""A causal LM adapted by a fine-tuning method: training examples, token log-probabilities, generation.

Shared by FineTuneGenerator (supervised fine-tuning) and PreferenceTuner (the
RL and DPO steps), so that both train, score and generate with one definition.
"""

import warnings

import numpy as np

from .exceptions import SkllmWarning

IGNORE = -100  # label of a position that is not scored (torch cross_entropy's ignore_index)


def generative_methods():
    """Names of the registered methods that apply to a causal LM (``supports_generation``)."""
    from ._methods import METHODS

    return [name for name, cls in METHODS.items() if cls.supports_generation]


def check_generative_method(method):
    if not method.supports_generation:
        raise ValueError(
            f"method={method.name!r} does not apply to generation; use one of {generative_methods()} "
            f"or their objects (LoRA(...), FullFineTuning(), PromptTuning(...), BottleneckAdapter(...))."
        )


def warn_long_targets(target_ids, max_new_tokens, ends_with_eos):
    """Warn where a target is longer than ``max_new_tokens``: the model learns answers that predict then cuts."""
    lengths = np.array([len(t) - ends_with_eos for t in target_ids])
    long = np.flatnonzero(lengths > max_new_tokens).tolist()
    if long:
        warnings.warn(
            f"{len(long)} of {len(target_ids)} targets (rows {long[:10]}) are longer than max_new_tokens="
            f"{max_new_tokens} tokens (the longest: {lengths.max()}): predict cuts its answers there. "
            f"Raise max_new_tokens (it may be set after fit).",
            SkllmWarning,
            stacklevel=3,  # fit's caller
        )


def build_example(prompt_ids, target_ids):
    """``(input_ids, labels)`` of one training example: labels are ``-100`` over the prompt.

    The model is trained to produce the target after the prompt; the prompt's
    own tokens are context only and never scored.
    """
    ids = list(prompt_ids) + list(target_ids)
    labels = [IGNORE] * len(prompt_ids) + list(target_ids)
    return ids, labels


def pad_examples(ids, labels, rows, pad_id, device, *, side="right"):
    """Padded ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on padding) for ``rows``."""
    import torch

    from ._tokens import pad_batch

    input_ids, mask = pad_batch(ids, rows, pad_id, device, side=side)
    padded = np.full(tuple(input_ids.shape), IGNORE, dtype=np.int64)
    width = padded.shape[1]
    for row, i in enumerate(rows):
        n = len(labels[i])
        if side == "right":
            padded[row, :n] = labels[i]
        else:
            padded[row, width - n :] = labels[i]
    return input_ids, mask, torch.from_numpy(padded).to(device)


class CausalNetwork:
    """Factory of the torch module; kept import-light (torch is imported on first use)."""

    @staticmethod
    def build(method, lm):
        """The adapted LM: ``method`` applied to a frozen private copy of ``lm`` (a causal LM)."""
        return _module()(method, lm)


def _module():
    import torch
    from torch import nn

    class _CausalNetwork(nn.Module):
        """A causal LM adapted by a method; ``forward`` gives the logits of the input positions."""

        def __init__(self, method, lm):
            super().__init__()
            # The methods build an encoder around the model they adapt (a copy: the loaded model is shared by
            # every fit); a causal LM keeps its output layer, so only the adapted model is kept.
            self.model = method.adapted(lm).model
            self.n_virtual = int(method.extra_positions())

        def _embeds(self, input_ids, attention_mask):
            """For prompt tuning: the virtual tokens' embeddings before the input's, and the mask."""
            batch = input_ids.shape[0]
            prompts = self.model.get_prompt(batch_size=batch).to(self.model.get_input_embeddings().weight.dtype)
            words = self.model.get_input_embeddings()(input_ids)
            ones = torch.ones(batch, self.n_virtual, dtype=attention_mask.dtype, device=attention_mask.device)
            return torch.cat([prompts, words], dim=1), torch.cat([ones, attention_mask], dim=1)

        def _base(self):
            return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

        def _keeps_logits(self):
            """Whether the model computes the output layer for chosen positions only (``logits_to_keep``)."""
            import inspect

            return "logits_to_keep" in inspect.signature(self._base().forward).parameters

        def forward(self, input_ids, attention_mask, keep=None):
            """Logits of every input position, or of the positions ``keep`` (a 1-D index tensor) only.

            With ``keep``, the output layer (576 x 49,152 on SmolLM2, a fifth of
            the forward pass) and the loss run on the kept positions alone,
            through the model's own ``logits_to_keep``, so that any logit scaling
            the model applies still applies.
            """
            kwargs = {}
            if keep is not None and self._keeps_logits():
                kwargs["logits_to_keep"] = keep + self.n_virtual
            if self.n_virtual:
                embeds, mask = self._embeds(input_ids, attention_mask)
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                out = self._base()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, **kwargs)
                logits = out.logits if kwargs else out.logits[:, self.n_virtual :]
            else:
                positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
                logits = self.model(
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, **kwargs
                ).logits
            return logits if keep is None or kwargs else logits[:, keep]

        def generate(self, input_ids, attention_mask, **kwargs):
            """Only the new tokens, for left-padded ``input_ids``."""
            if self.n_virtual:
                embeds, mask = self._embeds(input_ids, attention_mask)
                # Given embeddings only, generate returns the new tokens alone.
                return self._base().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            return out[:, input_ids.shape[1] :]

    return _CausalNetwork


def scored_logits(network, input_ids, attention_mask, labels):
    """Logits of the positions that predict a scored token, ``(batch, k, vocab)``, and their targets ``(batch, k)``.

    Only the columns where at least one row has a scored next token are kept:
    the prompt's positions never go through the output layer. Targets are
    ``-100`` where a row's kept position is not scored.
    """
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)
    if keep.numel() == 0:  # nothing scored: every position, as the loss of an empty batch expects
        return network(input_ids, attention_mask)[:, :-1].float(), targets
    return network(input_ids, attention_mask, keep=keep).float(), targets[:, keep]


def token_logprobs(network, input_ids, attention_mask, labels, temperature=1.0):
    """Log-probability of each scored token (0 elsewhere) and the mask of scored tokens, ``(batch, k)``.

    ``k`` counts the columns that hold a scored token in some row (see
    :func:`scored_logits`); sums over a row are its sequence's log-likelihood.
    ``temperature``: that of the sampling, so that the probabilities are those the tokens were drawn with
    (as TRL's online trainers divide the logits).
    """
    import torch

    logits, targets = scored_logits(network, input_ids, attention_mask, labels)
    if temperature != 1.0:
        logits = logits / temperature
    scored = targets != IGNORE
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp * scored, scored


def sequence_loss(network, input_ids, attention_mask, labels):
    """Mean cross-entropy over the scored (target) tokens of the batch."""
    import torch

    logits, targets = scored_logits(network, input_ids, attention_mask, labels)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


def mean_token_loss(network, ids, labels, rows, pad_id, device, dtype, batch_size):
    """Mean loss per target token of the pairs ``rows`` of ``ids`` and ``labels``, without training."""
    import torch

    from ._device import autocast

    total, count = 0.0, 0
    network.eval()
    with torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            input_ids, mask, batch_labels = pad_examples(ids, labels, batch, pad_id, device)
            logp, scored = token_logprobs(network, input_ids, mask, batch_labels)
            total -= float(logp.sum())
            count += int(scored.sum())
    return total / max(count, 1)
