"""LoRA under bfloat16 with the frozen weights held cast for the fit, and cast at every call.

Fits of ``FineTuneClassifier(method="lora", dtype="bfloat16")`` (batch size 16, 3 epochs,
model loading inside the clock, the probe's features already in the run's embedding
cache) on Rotten Tomatoes (1,000 / 1,000 snippets, ``max_length=64``) or the 2016 debates
(785 / 337 statements, ``max_length=128``), as ``bench_probe_sample.py`` takes them, two
ways per seed in one process, the order alternating from one seed to the next:

- ``held``: what skllm ships (``skllm._device.frozen_weights_in``): the frozen linear
  weights are cast to bfloat16 once, when training starts;
- ``per-call``: autocast casts them at every call, as before (the context forced off).

Two more ways, measured and not shipped (``--ways``):

- ``bf16-backbone``: every frozen floating-point weight of the network (embeddings and
  layer norms too) held in bfloat16 for the training steps, so that the hidden states
  stay in bfloat16 from layer to layer (autocast otherwise adds them up in float32, and
  casts them again before each linear layer); what the method trains stays float32.
  Not the same computation: the scores move.
- ``compiled``: the network's encoder (the backbone with the method's layers) through
  ``torch.compile(dynamic=True)`` (inductor) for the training steps, the head as it is,
  autocast casting per call (the held copies swap weights in hooks, which the compiled
  graph does not see). The compilation happens in the first
  fit of the process and is reused by the next (inductor's on-disk cache, under
  ``TORCHINDUCTOR_CACHE_DIR``, shortens it in a later process); the first fit of this way
  is timed like the others.

It prints test accuracy, fit seconds and the largest difference between each way's test
probabilities and the first way's (0 where they are the same model), with the CPU model.

    python benchmarks/bench_frozen_cast.py --data rt --seeds 0 1 2 3
    python benchmarks/bench_frozen_cast.py --data debates --seeds 0 1 2 3
    python benchmarks/bench_frozen_cast.py --data rt --seeds 0 1 2 --ways held bf16-backbone compiled
"""

import argparse
import contextlib
import warnings

import numpy as np

WAYS = ("held", "per-call", "bf16-backbone", "compiled")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["rt", "debates"], default="rt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--method", default="lora")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=["held", "per-call"])
    args = parser.parse_args()

    import peft  # noqa: F401  (imported before any clock)
    from bench_probe_sample import alternating_fits

    from skllm import _training

    warnings.simplefilter("ignore")
    held = _training.frozen_weights_in

    def bf16_backbone(network, device, dtype):
        import torch

        frozen = [p for p in network.parameters() if not p.requires_grad and p.dtype == torch.float32]
        kept = [p.data for p in frozen]
        for p in frozen:
            p.data = p.data.to(torch.bfloat16)  # the network's own parameter objects: the registry's stay float32
        try:
            yield
        finally:
            for p, data in zip(frozen, kept):
                p.data = data

    def compiled(network, device, dtype):
        import torch

        encoder = network.encoder  # the head's dropout draws skllm's masks, which dynamic shapes cannot trace
        encoder.forward = torch.compile(encoder.forward, dynamic=True)
        try:
            yield
        finally:
            del encoder.forward

    contexts = {
        "held": held,
        "per-call": lambda *a: contextlib.nullcontext(),
        "bf16-backbone": contextlib.contextmanager(bf16_backbone),
        "compiled": contextlib.contextmanager(compiled),
    }

    @contextlib.contextmanager
    def patched(way):
        _training.frozen_weights_in = contexts[way]
        try:
            yield
        finally:
            _training.frozen_weights_in = held

    ways = args.ways
    times, _, proba = alternating_fits(args.data, ways, patched, method=args.method, dtype="bfloat16", seeds=args.seeds)
    first = ways[0]
    for way in ways[1:]:
        gaps = [float(np.abs(a - b).max()) for a, b in zip(proba[first], proba[way])]
        ratios = [w / f for w, f in zip(times[way], times[first])]
        print(f"means: {first} {np.mean(times[first]):.1f} s, {way} {np.mean(times[way]):.1f} s; {way} / {first} "
              f"per seed: {', '.join(f'{r:.2f}' for r in ratios)}; largest probability difference: "
              f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
