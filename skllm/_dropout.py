"""Dropout on the CPU with cheaper random masks, for the duration of training.

torch draws a CPU dropout mask with ``bernoulli_``: a call of its Mersenne Twister and
a float32 per element. A LoRA step of MiniLM has four dropouts over the hidden states of
every block (two of the backbone's, one before each of LoRA's two adapted projections).
:func:`fast_cpu_dropout` draws those masks from 64-bit words of the same generator, cut
into four 16-bit numbers each, compared with ``p`` rounded to a multiple of 1/65536 (0.1
becomes 0.1000061), and the kept values are scaled by ``1 / (1 - p)`` of that rounded
``p``, so that the expected output is still the input. The cost per element and the
training steps with either mask: ``benchmarks/bench_probe_sample.py --steps``
(docs/benchmarks.md).

Only the ``nn.Dropout`` modules of a network, on the CPU and in training, are
affected, and only inside the ``with`` block: the modules get their own class back
when it ends, so that a fitted network (and its pickle) holds torch's modules.
Dropout that a model applies through ``torch.nn.functional`` (the attention
probabilities given to ``scaled_dot_product_attention``) and dropout on a GPU,
whose generator is fast already, keep torch's own. Neither torch nor transformers
offers another mask generator: it is internal to ``torch.nn.functional.dropout``, hence
this module.
"""

import contextlib

#: the resolution of the dropout probability: the masks compare 16-bit random numbers
_LEVELS = 1 << 16


def keep_mask(shape, p, device):
    """A boolean mask keeping each element with probability ``1 - p'`` and the scale ``1 / (1 - p')``.

    ``p'`` is ``p`` rounded to the nearest multiple of 1/65536. Drawn from torch's
    generator for ``device``, so that a seeded fit draws the same masks again.
    """
    import torch

    n = 1
    for size in shape:
        n *= size
    dropped = round(p * _LEVELS)
    # the full int64 range: every bit of every word is random (``random_()`` leaves the sign bit 0)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
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


def _torch_dropout():
    """An empty ``torch.nn.Dropout``, which pickle and ``copy`` then give its state."""
    import torch

    return torch.nn.Dropout.__new__(torch.nn.Dropout)


def _fast_class(torch):
    """The ``nn.Dropout`` subclass swapped in (built once, on first use, as torch is imported lazily)."""
    if "dropout" not in _CLASSES:
        scale_by_mask = _masked_scale()

        class FastCPUDropout(torch.nn.Dropout):
            def forward(self, input):
                # torch's own in evaluation, in place, off the CPU, and where p rounds to 0 or 1
                cut = round(self.p * _LEVELS)
                if not self.training or self.inplace or input.device.type != "cpu" or not 0 < cut < _LEVELS:
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
    """Within the block, ``network``'s ``nn.Dropout`` modules draw their CPU masks as :func:`keep_mask` does."""
    import torch

    fast = _fast_class(torch)
    swapped = [m for m in network.modules() if type(m) is torch.nn.Dropout]
    for module in swapped:
        module.__class__ = fast
    try:
        yield
    finally:
        for module in swapped:
            module.__class__ = torch.nn.Dropout
