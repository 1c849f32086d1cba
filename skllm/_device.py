"""Device and precision resolution, shared by all torch-backed estimators."""

import contextlib
import warnings

from .exceptions import PrecisionWarning

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(device, *, param="device"):
    """Map the ``device`` hyperparameter to a concrete ``torch.device``.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{param}={device!r} is not a valid device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from exc
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{param}={device!r} is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    if resolved.type == "cpu" and resolved.index not in (None, 0):
        raise ValueError(f"{param}={device!r}: torch has one CPU device, which uses every core; use 'cpu'.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{param}={device!r} but CUDA is not available on this machine.")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(
            f"{param}={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0."
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{param}={device!r} but MPS is not available on this machine.")
    return resolved


def device_for_loading(saved_device):
    """Device to use after unpickling: the saved one if present, else the first GPU (a saved ``cuda:N`` this
    machine lacks), else the CPU."""
    import torch

    if saved_device is None:
        return resolve_device("auto")
    saved = torch.device(saved_device)
    if saved.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    if saved.type == "cuda" and saved.index is not None and saved.index >= torch.cuda.device_count():
        return torch.device("cuda")  # fitted on a GPU this machine lacks: its first one
    if saved.type == "mps" and not torch.backends.mps.is_available():
        return torch.device("cpu")
    return saved


def restore_placement(estimator):
    """After unpickling: move ``estimator.device_`` to where it can run now, and its ``dtype_`` to what runs there.

    The saved device when present, else the CPU (:func:`device_for_loading`). The precision is resolved
    again on the device found, as ``fit`` would: a model fitted in float16 on a GPU computes in float32 on
    a CPU, and one fitted in bfloat16 on a CPU or GPU that has it computes in float32 on one that has
    not (an AVX2 CPU, an older GPU), each with a ``PrecisionWarning``. Resolved from the precision of
    the fit, kept through such a fallback (a copy saved again there computes in bfloat16 back where
    bfloat16 runs). Returns the device.
    """
    device = device_for_loading(estimator.device_)
    fitted = vars(estimator).setdefault("_fitted_dtype", estimator.dtype_)  # (fit drops it: _record_load_params)
    estimator.dtype_ = resolve_dtype(fitted, device)
    estimator.device_ = str(device)
    return device


def _bf16_supported(device):
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # oneDNN runs bf16 matrix products natively on AVX512-BF16/AMX CPUs and
        # emulates them on other AVX512 CPUs; without AVX512 there is no gain.
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return device.type == "mps"


def resolve_dtype(dtype, device, *, param="dtype"):
    """Return the compute precision that will really be used on ``device``.

    Weights stay in float32; reduced precision runs under ``torch.autocast``,
    which keeps normalisation and softmax in float32 for accuracy.
    """
    if dtype not in DTYPES:
        raise ValueError(f"{param}={dtype!r} is not supported; use one of {DTYPES}.")
    if dtype == "bfloat16" and not _bf16_supported(device):
        warnings.warn(
            f"{param}='bfloat16' is not supported on {device}; computing in float32.",
            PrecisionWarning,
            stacklevel=3,
        )
        return "float32"
    if dtype == "float16" and device.type == "cpu":
        warnings.warn(
            f"{param}='float16' is slow and inaccurate on the CPU; computing in float32 (use 'bfloat16' on the CPU).",
            PrecisionWarning,
            stacklevel=3,
        )
        return "float32"
    return dtype


def autocast(device, dtype):
    """Context manager computing in ``dtype`` on ``device`` (no-op for float32)."""
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def autocast_state(device_type):
    """``(enabled, dtype)`` of the calling thread's autocast on ``device_type``: torch keeps it per thread."""
    import torch

    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (AttributeError, TypeError):  # torch before 2.4
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


@contextlib.contextmanager
def frozen_weights_in(network, device, dtype):
    """Within the block, ``network``'s frozen ``nn.Linear`` layers compute with copies of their weights in ``dtype``.

    Under autocast, a linear layer casts its float32 weight and bias to the compute
    dtype at every call, and keeps the cast only for trained weights (``requires_grad``):
    a frozen backbone's weights were cast again in every forward pass (LoRA fits of
    MiniLM under bfloat16 ran 1.04-1.10x faster with the casts done once, on two datasets:
    ``benchmarks/bench_frozen_cast.py``). Here they are cast
    once, and a layer called under autocast in ``dtype`` swaps the copies in for the
    call: the same results bit for bit, as autocast's cast is this one. Outside such a
    call (a model that turns autocast off for a part, code that reads a weight) the
    layer holds its float32 weights, as without this. Layers whose weights another module
    holds too (an output layer tied to the embedding) stay as they are, and so do those of
    the models of the registry, shared by every estimator of the process: the network must
    be the fit's own (one thread calls it), and its frozen weights must not change within
    the block (the copies are taken on entry). The copies take 2 bytes per frozen weight
    for the whole fit; a step's backward pass kept autocast's casts of them anyway.
    """
    if dtype == "float32":
        yield
        return
    import torch

    from ._models import shared_tensors

    owners = {}
    for module in network.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    shared, compute = shared_tensors(), getattr(torch, dtype)

    def held(p):
        return p is not None and not p.requires_grad and p.dtype == torch.float32 and owners[id(p)] == 1

    layers = [
        m for m in network.modules() if type(m) is torch.nn.Linear and held(m.weight) and id(m.weight) not in shared
    ]
    swaps = {}
    for m in layers:
        own = {n: p for n, p in m._parameters.items() if held(p)}
        swaps[m] = (own, {n: torch.nn.Parameter(p.detach().to(compute), requires_grad=False) for n, p in own.items()})

    # A copy of a layer (deepcopy keeps its hooks) is not swapped: it is not in swaps.
    def swap_in(module, args):
        if module in swaps and autocast_state(device.type) == (True, compute):
            module._parameters.update(swaps[module][1])

    def swap_out(module, args, output):
        if module in swaps:
            module._parameters.update(swaps[module][0])

    handles = [m.register_forward_pre_hook(swap_in) for m in layers]
    handles += [m.register_forward_hook(swap_out, always_call=True) for m in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for m, (own, _) in swaps.items():  # torch skips swap_out for a KeyboardInterrupt inside a call
            m._parameters.update(own)
