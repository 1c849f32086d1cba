"""Which attention kernel a transformers model runs while it trains: eager or SDPA.

transformers models pick their attention implementation from their config
(``config._attn_implementation``); skllm loads them with PyTorch's SDPA. Two things
change it during training, each for the length of a block, after which every config is
put back:

* :func:`eager_attention`: a model with attention dropout runs eager attention while the
  halves of a split step (:mod:`skllm._split_step`) run on two threads: SDPA on the CPU
  draws its dropout mask from torch's generator, which the halves cannot share;
* :func:`training_attention`: on the CPU, a model that trains with attention dropout runs
  eager attention (SDPA on the CPU computes the attention as eager does then, but draws its
  mask with torch's costlier generator), and under bfloat16 so does a batch of at most
  :data:`EAGER_MAX_WIDTH` positions, as eager attention's backward pass is much faster there
  than SDPA's.

(Neither torch nor transformers chooses the kernel by dtype and width for training:
hence these, by hand.)
"""

import contextlib

from ._dropout import ATTENTION_DROPOUT, transformers_configs

#: Training under bfloat16 on the CPU runs a batch with eager attention when its rows have at
#: most this many positions (keys, with a prompt's virtual tokens or a prefix, and the tokens
#: generated so far), else with SDPA unless the model trains with attention dropout: see
#: :func:`training_attention`.
EAGER_MAX_WIDTH = 256


def _settable(network, every):
    """The SDPA transformers models of ``network`` whose implementation may be set: with attention dropout, or
    ``every`` one."""
    found = []
    for module in network.modules():
        config = getattr(module, "config", None)
        if (
            getattr(config, "_attn_implementation", None) == "sdpa"
            and (every or has_attention_dropout(module))
            and hasattr(module, "set_attn_implementation")
            and getattr(module, "_can_set_attn_implementation", lambda: True)()
        ):
            found.append(module)
    return found


def has_attention_dropout(model):
    """Whether ``model``'s config gives its attention a dropout."""
    return any((getattr(model.config, name, 0) or 0) > 0 for name in ATTENTION_DROPOUT)


@contextlib.contextmanager
def _restored(network):
    """Within the block configs may change; every one of ``network`` is put back as it was when the block ends."""
    saved = [(config, config._attn_implementation_internal) for config in transformers_configs(network)]
    try:
        yield
    finally:
        for config, implementation in saved:
            config._attn_implementation_internal = implementation


@contextlib.contextmanager
def eager_attention(network, every=False):
    """Within the block, transformers models of ``network`` with attention dropout run eager attention, not SDPA.

    ``every``: all of them do, with or without dropout (``benchmarks/bench_attention.py``
    times steps so).
    """
    with _restored(network):
        for module in _settable(network, every):
            module.set_attn_implementation("eager")
        yield


def _width(args, kwargs):
    """The positions a transformers model's forward call attends over, from its attention mask or inputs."""
    mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
    if getattr(mask, "ndim", 0) >= 2:
        return int(mask.shape[-1])
    inputs = kwargs.get("input_ids", args[0] if args else None)
    if inputs is None:
        inputs = kwargs.get("inputs_embeds")
    return int(inputs.shape[1]) if getattr(inputs, "ndim", 0) >= 2 else None


def _implementation(model, width, bf16):
    if model.training and has_attention_dropout(model):
        return "eager"
    return "eager" if bf16 and width is not None and width <= EAGER_MAX_WIDTH else "sdpa"


@contextlib.contextmanager
def training_attention(network, device, dtype):
    """Within the block, ``network`` computes attention as it trains: eager where that is faster on the CPU.

    Each forward call of a transformers model in ``network`` (an SDPA one) chooses, on the CPU:

    * eager attention where the model is in training mode with attention dropout. SDPA on
      the CPU then computes the attention as eager does (its fused kernels take no
      dropout), but draws the mask with torch's ``bernoulli_``: 3.6% of a full
      fine-tuning fit of MiniLM in float32. Eager attention applies it through
      ``torch.nn.functional.dropout``, which the engine's cheaper masks serve
      (:func:`skllm._dropout.fast_cpu_dropout`): such fits ran 1.01-1.10x faster on two
      datasets (``benchmarks/bench_attention_dropout.py``);
    * under bfloat16, eager attention for a call of at most :data:`EAGER_MAX_WIDTH`
      positions, the width of its attention mask (with a prompt's virtual tokens or a
      prefix's keys). PyTorch's SDPA kernels took 56 of a MiniLM LoRA step's 124 ms under
      bfloat16 (7x their float32 time): the step took 69 ms with transformers' eager
      attention; SmolLM2's 953 ms and 729 ms. Eager attention keeps each layer's attention
      matrix, positions squared, for the backward pass, and gained less with longer rows:
      MiniLM's steps of 16 x 256 positions 1.40x, of 8 x 512 0.92x; SmolLM2's of 8 x 256
      1.06x, of 4 x 512 0.60x. In float32 SDPA was as fast or faster
      (``benchmarks/bench_attention.py``). With attention dropout, eager attention was the
      faster at 8 x 512 too: 1.04x in float32, 2.0x under bfloat16 (``--dropout``);
    * SDPA otherwise, evaluation included.

    The choice is made on the model's config, which forward calls on two threads at once
    would race on: the two halves of a split step (float32 only,
    :func:`skllm._split_step.splits`) write the same choice, as they share the model's
    mode and no width enters it. A frozen model that must compute what the trained one
    did before its first step (``PreferenceTuner``'s reference) runs in such a block too.
    """
    if device.type != "cpu":
        yield
        return
    bf16 = dtype == "bfloat16"

    def choose(configs):
        def hook(module, args, kwargs):
            implementation = _implementation(module, _width(args, kwargs) if bf16 else None, bf16)
            for config in configs:
                config._attn_implementation_internal = implementation

        return hook

    with _restored(network), contextlib.ExitStack() as handles:
        for model in _settable(network, every=bf16):
            handle = model.register_forward_pre_hook(choose(transformers_configs(model)), with_kwargs=True)
            handles.callback(handle.remove)
        yield
