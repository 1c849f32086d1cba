"""Dropout on the CPU with cheaper random masks, for the duration of training.

torch draws a CPU dropout mask with ``bernoulli_``: a call of its Mersenne Twister and
a float32 per element. A LoRA step of MiniLM has four dropouts over the hidden states of
every block (two of the backbone's, one before each of LoRA's two adapted projections).
:func:`fast_cpu_dropout` draws those masks from 64-bit words of a torch generator (the
thread's, where :func:`thread_generator` sets one; otherwise torch's), cut into four
16-bit numbers each, compared with ``p`` rounded to a multiple of 1/65536 (0.1
becomes 0.1000061), and the kept values are scaled by ``1 / (1 - p)`` of that rounded
``p``, so that the expected output is still the input. The cost per element and the
training steps with either mask: ``benchmarks/bench_probe_sample.py --steps``
(docs/benchmarks.md).

Within the block, the ``nn.Dropout`` modules of a network, on the CPU and in training,
draw these masks, and so does ``torch.nn.functional.dropout`` called by the thread that
opened the block (transformers' eager attention applies its dropout so, and the engine
runs eager attention where a model trains with attention dropout on the CPU:
:func:`skllm._attention.training_attention`). That takes in any other model this thread
runs in training mode within the block (``nn.Dropout`` calls that function too); the
engine runs no other model but in evaluation mode. The modules get their own class back when
the block ends, so that a fitted network (and its pickle) holds torch's modules. Dropout
on a GPU, whose generator is fast already, keeps torch's own. The two halves of a split
step (``_split_step.py``) run on threads of their own: :func:`thread_functional_dropout`
routes their ``torch.nn.functional.dropout`` here too, so that every mask of a half comes
from its thread's generator. Neither torch nor transformers offers another mask
generator: it is internal to ``torch.nn.functional.dropout``, hence this module.
"""

import contextlib
import threading

#: the resolution of the dropout probability: the masks compare 16-bit random numbers
_LEVELS = 1 << 16

# Per thread: ``generator``, the generator its masks are drawn from, where one is set (see
# :func:`thread_generator`); ``functional``, whether its functional dropout draws them too.
_LOCAL = threading.local()


# where transformers configs keep the dropout of the attention probabilities
ATTENTION_DROPOUT = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def transformers_configs(network):
    """The transformers configs of ``network``'s modules and their sub-configs, each once."""
    found, todo = {}, [getattr(m, "config", None) for m in network.modules()]
    while todo:
        config = todo.pop()
        if id(config) in found or not hasattr(config, "_attn_implementation_internal"):
            continue
        found[id(config)] = config
        todo += [getattr(config, key, None) for key in getattr(config, "sub_configs", {})]
    return list(found.values())


def without_dropout(model):
    """Turn off ``model``'s own dropout, in place; for a private copy of a backbone.

    Every ``nn.Dropout`` module gets ``p=0`` (transformers models read the attention's
    dropout from such a module too: BERT's and GPT-2's ``self.dropout.p``), and the
    configs' attention-dropout fields are set to 0, so that training keeps PyTorch's SDPA
    attention (the engine runs eager attention for a model whose config has attention
    dropout: :func:`skllm._attention.training_attention`). Prediction runs without dropout anyway;
    only training changes. Dropout a model applies from a number of its own (an attention
    module's float ``attention_dropout``, 0 in Llama-style models) is left as it is.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for config in transformers_configs(model):
        for name in ATTENTION_DROPOUT:
            if getattr(config, name, None):
                setattr(config, name, 0.0)
    return model


@contextlib.contextmanager
def thread_generator(generator):
    """Within the block, this thread's masks are drawn from ``generator`` (``None``: torch's default).

    Two halves of a training step that run at once on two threads (``_split_step.py``)
    each draw from a generator of their own, so that their masks do not depend on which
    thread draws first.
    """
    previous = getattr(_LOCAL, "generator", None)
    _LOCAL.generator = generator
    try:
        yield
    finally:
        _LOCAL.generator = previous


def keep_mask(shape, p, device):
    """A boolean mask keeping each element with probability ``1 - p'`` and the scale ``1 / (1 - p')``.

    ``p'`` is ``p`` rounded to the nearest multiple of 1/65536. Drawn from the thread's
    generator (:func:`thread_generator`), else torch's for ``device``, so that a seeded fit
    draws the same masks again.
    """
    import torch

    n = 1
    for size in shape:
        n *= size
    dropped = round(p * _LEVELS)
    # the full int64 range: every bit of every word is random (``random_()`` leaves the sign bit 0)
    words = torch.randint(
        -(1 << 63),
        (1 << 63) - 1,
        ((n + 3) // 4,),
        dtype=torch.int64,
        device=device,
        generator=getattr(_LOCAL, "generator", None),
    )
    keep = words.view(torch.int16)[:n] >= dropped - _LEVELS // 2
    return keep.view(shape), _LEVELS / (_LEVELS - dropped)


def _masked_scale():
    import torch

    class MaskedScale(torch.autograd.Function):
        """``x * mask * scale``, keeping the boolean mask (not a float copy) for the backward pass."""

        @staticmethod
        def forward(ctx, x, mask, scale):
            ctx.save_for_backward(mask)
            ctx.scale = scale
            # the product torch's own dropout computes, in both directions
            return torch.ops.aten.native_dropout_backward(x, mask, scale)

        @staticmethod
        def backward(ctx, grad):
            (mask,) = ctx.saved_tensors
            return torch.ops.aten.native_dropout_backward(grad, mask, ctx.scale), None, None

    return MaskedScale


_CLASSES = {}


def _scale_by_mask():
    """The autograd function of :func:`_masked_scale`, built once."""
    if "masked_scale" not in _CLASSES:
        _CLASSES["masked_scale"] = _masked_scale()
    return _CLASSES["masked_scale"]


def _applies(input, p, training, inplace):
    """Whether these masks serve: not in evaluation, in place, off the CPU, or where ``p`` rounds to 0 or 1."""
    return training and not inplace and input.device.type == "cpu" and 0 < round(p * _LEVELS) < _LEVELS


def _torch_dropout():
    """An empty ``torch.nn.Dropout``, which pickle and ``copy`` then give its state."""
    import torch

    return torch.nn.Dropout.__new__(torch.nn.Dropout)


def _fast_class(torch):
    """The ``nn.Dropout`` subclass swapped in (built once, on first use, as torch is imported lazily)."""
    if "dropout" not in _CLASSES:
        scale_by_mask = _scale_by_mask()

        class FastCPUDropout(torch.nn.Dropout):
            def forward(self, input):
                if not _applies(input, self.p, self.training, self.inplace):
                    return super().forward(input)
                mask, scale = keep_mask(input.shape, self.p, input.device)
                return scale_by_mask.apply(input, mask, scale)

            def __reduce_ex__(self, protocol):
                # A copy or a pickle taken while training runs (by another thread) holds torch's class.
                return (_torch_dropout, (), *super().__reduce_ex__(protocol)[2:])

        _CLASSES["dropout"] = FastCPUDropout
    return _CLASSES["dropout"]


@contextlib.contextmanager
def fast_cpu_dropout(network):
    """Within the block, ``network``'s ``nn.Dropout`` modules, and ``torch.nn.functional.dropout`` called by this
    thread, draw their CPU masks as :func:`keep_mask` does."""
    import torch

    fast = _fast_class(torch)
    swapped = [m for m in network.modules() if type(m) is torch.nn.Dropout]
    for module in swapped:
        module.__class__ = fast
    functional = getattr(_LOCAL, "functional", False)
    _LOCAL.functional = True
    try:
        with thread_functional_dropout():
            yield
    finally:
        _LOCAL.functional = functional
        for module in swapped:
            module.__class__ = torch.nn.Dropout


@contextlib.contextmanager
def thread_functional_dropout():
    """Within the block, ``torch.nn.functional.dropout`` draws its masks as :func:`keep_mask` does, in the threads
    that have a generator set or run :func:`fast_cpu_dropout`'s block.

    A model's attention applies its dropout through ``torch.nn.functional`` (transformers'
    eager attention), not through a module :func:`fast_cpu_dropout` can swap; the two
    halves of a split step (``_split_step.py``) need those masks from their own generators
    as well. In any other thread it is torch's function. The module attribute is put back
    when the block ends; training holds a per-process lock (``_training.py``), so blocks
    do not overlap.
    """
    import torch.nn.functional as F

    original = F.dropout
    scale_by_mask = _scale_by_mask()

    def dropout(input, p=0.5, training=True, inplace=False):
        routed = getattr(_LOCAL, "generator", None) is not None or getattr(_LOCAL, "functional", False)
        if not routed or not _applies(input, p, training, inplace):
            return original(input, p, training, inplace)
        mask, scale = keep_mask(input.shape, p, input.device)
        return scale_by_mask.apply(input, mask, scale)

    F.dropout = dropout
    try:
        yield
    finally:
        F.dropout = original
