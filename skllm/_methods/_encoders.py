"""torch modules shared by the methods (imported only when training starts)."""

import threading
import warnings

import torch
from torch import nn

from .._tokens import pool


class PlainEncoder(nn.Module):
    """Last hidden states of a (possibly peft-wrapped) backbone."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class VirtualTokenEncoder(PlainEncoder):
    """For prompt tuning: drop the hidden states of the ``n`` virtual tokens put in front."""

    def __init__(self, model, n):
        super().__init__(model)
        self.n = n

    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids, attention_mask)[:, self.n :]


class MLP(nn.Module):
    """Dropout, optional hidden layers with ReLU, then a linear output layer."""

    def __init__(self, n_in, n_out, hidden_layer_sizes=(), dropout=0.1):
        super().__init__()
        layers = []
        for size in hidden_layer_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        layers += [nn.Dropout(dropout), nn.Linear(n_in, n_out)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class Head(MLP):
    """The head method's output layers: an MLP, optionally beside a linear layer, on optionally normalised features.

    With ``residual`` (and hidden layers), a linear layer maps the features straight
    to the outputs and the MLP's last layer starts at zero, so the head starts as
    that linear model; the linear probe is fitted into it (``probe_layer``).
    Without ``residual`` and ``normalize`` the parameters are named as in a plain
    :class:`MLP`, so heads pickled before these options load unchanged.
    """

    def __init__(self, n_in, n_out, hidden_layer_sizes=(), dropout=0.1, *, residual=False, normalize=False):
        super().__init__(n_in, n_out, hidden_layer_sizes, dropout)
        self.normalize = normalize
        self.skip = None
        if residual and hidden_layer_sizes:
            nn.init.zeros_(self.layers[-1].weight)
            nn.init.zeros_(self.layers[-1].bias)
            self.skip = nn.Linear(n_in, n_out)

    @property
    def probe_layer(self):
        """The linear layer that ``head_init="linear_probe"`` starts from a regularised linear model."""
        return self.layers[-1] if self.skip is None else self.skip

    def forward(self, x):
        if self.normalize:
            x = nn.functional.normalize(x, p=2, dim=1)
        out = self.layers(x)
        return out if self.skip is None else out + self.skip(x)


class Network(nn.Module):
    """Encoder, pooling and output layers: what a fine-tuned estimator trains."""

    def __init__(self, encoder, head, pooling):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.pooling = pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids, attention_mask)
        return self.head(pool(hidden.float(), attention_mask, self.pooling))


class Adapted(nn.Module):
    """A frozen layer (linear, or the dropout after one) followed by a residual bottleneck adapter."""

    def __init__(self, base, features, bottleneck, activation="relu"):
        super().__init__()
        self.base = base
        self.down = nn.Linear(features, bottleneck)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.up = nn.Linear(bottleneck, features)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        h = self.base(x)
        return h + self.up(self.act(self.down(h)))


class PrefixValues(nn.Module):
    """The prefix keys and values of every layer, optionally produced by an MLP.

    Row ``i`` of ``weight`` is prefix position ``i`` of every layer's keys and values,
    laid out ``(layers, 2, kv_heads, head_dim)``, as peft's prefix tuning reads it. The
    module takes the place of peft's prefix embedding (an ``nn.Embedding``, which peft
    reads through ``weight`` and calls with positions): peft feeds these values to the
    model, and their parameters keep skllm's names, ``embedding`` and ``mlp``.
    """

    def __init__(self, n_prefix, width, hidden_size, reparametrize, projection_size):
        super().__init__()
        if reparametrize:
            self.embedding = nn.Parameter(torch.randn(n_prefix, hidden_size) * 0.02)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, projection_size), nn.Tanh(), nn.Linear(projection_size, width)
            )
        else:
            self.embedding = nn.Parameter(torch.randn(n_prefix, width) * 0.02)
            self.mlp = None

    @property
    def weight(self):
        return self.mlp(self.embedding) if self.mlp is not None else self.embedding

    def forward(self, positions):
        return self.weight[positions]

    def drop_projection(self):
        """Replace the MLP by the prefixes it gives: the layout of ``reparametrize=False``."""
        if self.mlp is not None:
            with torch.no_grad():
                flat = self.mlp(self.embedding)
            self.embedding = nn.Parameter(flat)
            self.mlp = None


class PrefixTunedEncoder(nn.Module):
    """Last hidden states of a backbone that peft's prefix tuning feeds ``prefixes``.

    peft passes the prefixes to the model as cached keys and values, so the model
    places the text after them, at positions ``n_prefix`` on, and peft shifts the
    position ids it is given by ``n_prefix`` too. The ids given here undo that shift:
    the text keeps the positions it has without a prefix (0 on; ``padding_idx + 1`` on
    in RoBERTa-like models, :func:`~skllm._architecture.first_position`), as in every model
    skllm's prefix tuning trained before it used peft, and no position is spent on
    the prefix (``max_length`` keeps all of the model's positions).

    The children are the backbone and the prefixes, ``model`` and ``extra``; peft's
    wrapper holds both, and is kept out of the module tree so that each parameter has
    one name, the one stored with models saved before.
    """

    def __init__(self, prefix_tuned, prefixes, n_prefix, first):
        super().__init__()
        self.model = prefix_tuned.get_base_model()
        self.extra = prefixes
        self.n_prefix = n_prefix
        self.first = first  # the position id of the text's first token
        self.__dict__["prefix_tuned"] = prefix_tuned  # a plain attribute, not a child module

    def forward(self, input_ids, attention_mask):
        start = self.first - self.n_prefix
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        with warnings.catch_warnings():
            # peft hands the prefixes over as past_key_values, which transformers 5.25 deprecates
            # (for removal in 5.40) on every forward pass: a message about peft's internals that a
            # user can do nothing about, printed for each batch. tests/test_prefix.py catches the break.
            warnings.filterwarnings("ignore", message=".*past_key_values.* is deprecated", category=FutureWarning)
            out = self.prefix_tuned(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=positions.expand_as(input_ids)
            )
        return out.last_hidden_state


def is_norm(module):
    """Whether ``module`` is a layer normalisation (LayerNorm, RMSNorm and their variants)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def transformer_blocks(model):
    """Dotted name of ``model``'s list of transformer blocks (``encoder.layer``, ``layers``), or None."""
    n = getattr(model.config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if n and isinstance(module, nn.ModuleList) and len(module) == n:
            return name
    return None


class _Entering(Exception):
    """Carries the hidden states entering a block out of the forward pass that stops there."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = hidden


def _stop(module, args, kwargs):
    raise _Entering(args[0] if args else kwargs["hidden_states"])


class FrozenLayers:
    """The hidden states entering block ``index`` of ``backbone`` (frozen, shared).

    A private copy of the module structure over the backbone's own tensors:
    nothing is duplicated and the shared model is not touched. The forward pass
    stops where block ``index`` starts. Not a torch module, so that a network
    holding it neither owns, moves nor trains these weights.
    """

    def __init__(self, backbone, blocks, index):
        import copy
        import itertools

        shared = {id(t): t for t in itertools.chain(backbone.parameters(), backbone.buffers())}
        self.model = copy.deepcopy(backbone, shared)
        self.model.get_submodule(blocks)[index].register_forward_pre_hook(_stop, with_kwargs=True)

    def __call__(self, input_ids, attention_mask):
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask)
        except _Entering as entering:
            return entering.hidden
        raise RuntimeError(f"{type(self.model).__name__}'s forward pass never reached the first trained block.")


class PartialEncoder(nn.Module):
    """The blocks from ``index`` on of ``backbone`` (a copy), fed the hidden states that enter them.

    Those states are the encoder's input (computed once and cached) or, given
    ``frozen`` (a :class:`FrozenLayers`), computed from token ids in each pass.
    The copy leaves out the blocks before ``index`` and the input embeddings:
    the model's own forward pass still runs (so masks and positions are its
    own), but the first kept block is handed the given states.
    """

    def __init__(self, backbone, blocks, index, frozen=None, as_whole=True):
        import copy

        super().__init__()
        listed = backbone.get_submodule(blocks)
        left_out = {id(block): None for block in listed[:index]}
        embeddings = backbone.get_input_embeddings()
        if embeddings is not None:
            left_out[id(embeddings)] = None
        model = copy.deepcopy(backbone, left_out)
        parent, _, child = blocks.rpartition(".")
        kept = nn.ModuleList([block for block in model.get_submodule(blocks) if block is not None])
        setattr(model.get_submodule(parent), child, kept)
        # The kept blocks run numbered from 0, and some models pick each block's attention (full or
        # sliding window, and its rotary base: Gemma-2/3, Qwen with sliding windows) by that number in
        # config.layer_types, or apply a layer after block 0 only (DeBERTa-v2's convolution): the
        # copy's config lists the kept blocks' types, and a convolution after a left-out block goes.
        # (``as_whole=False``: as models saved before this was done were built, and predict.)
        types = getattr(model.config, "layer_types", None)
        if as_whole and isinstance(types, (list, tuple)) and len(types) == len(listed):
            model.config.layer_types = list(types[index:])
        model.config.use_cache = False  # a cache laid out by those types would miss the kept blocks' numbers
        if as_whole and index > 0 and isinstance(getattr(model.get_submodule(parent), "conv", None), nn.Module):
            model.get_submodule(parent).conv = None
        for p in model.parameters():
            p.requires_grad_(False)
        # The kept blocks, and the final normalisation after them (Llama's norm).
        for module in [kept, *(m for _, m in model.named_children() if is_norm(m))]:
            for p in module.parameters():
                p.requires_grad_(True)
        kept[0].register_forward_pre_hook(self._enter, with_kwargs=True)
        # What the model's own embedding layers are given (the hook replaces what they make): the
        # states themselves, or zeros where the input embeddings are narrower (ELECTRA-small, ALBERT).
        self.input_width = None if embeddings is None else embeddings.embedding_dim
        self.model = model
        self.frozen = frozen
        # The states handed to the first kept block, per thread: one fitted model may predict in several
        # threads at once, and each pass must read its own batch's states.
        self._entering = {}

    def _enter(self, module, args, kwargs):
        hidden = self._entering[threading.get_ident()]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    def forward(self, hidden, attention_mask):
        if self.frozen is not None:  # token ids: run the frozen blocks first
            with torch.no_grad():
                hidden = self.frozen(hidden, attention_mask)
        thread = threading.get_ident()
        self._entering[thread] = hidden
        given = hidden
        if self.input_width is not None and hidden.shape[-1] != self.input_width:
            given = hidden.new_zeros((*hidden.shape[:-1], self.input_width))
        try:
            return self.model(inputs_embeds=given, attention_mask=attention_mask).last_hidden_state
        finally:
            del self._entering[thread]
