"""LoRA under bfloat16 with the frozen weights held cast for the fit, and cast at every call.

Fits of ``FineTuneClassifier(method="lora", dtype="bfloat16")`` (batch size 16, 3 epochs,
model loading inside the clock, the probe's features already in the run's embedding
cache) on Rotten Tomatoes (1,000 / 1,000 snippets, ``max_length=64``) or the 2016 debates
(785 / 337 statements, ``max_length=128``), as ``bench_probe_sample.py`` takes them, two
ways per seed in one process, the order alternating from one seed to the next:

- ``held``: what skllm ships (``skllm._device.frozen_weights_in``): the frozen linear
  weights are cast to bfloat16 once, when training starts;
- ``per-call``: autocast casts them at every call, as before (the context forced off).

It prints test accuracy, fit seconds and the largest difference between the two ways'
test probabilities (0 where they are the same model), with the CPU model.

    python benchmarks/bench_frozen_cast.py --data rt --seeds 0 1 2 3
    python benchmarks/bench_frozen_cast.py --data debates --seeds 0 1 2 3
"""

import argparse
import contextlib
import warnings

import numpy as np

WAYS = ("held", "per-call")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["rt", "debates"], default="rt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--method", default="lora")
    args = parser.parse_args()

    import peft  # noqa: F401  (imported before any clock)
    from bench_probe_sample import alternating_fits

    from skllm import _training

    warnings.simplefilter("ignore")
    held = _training.frozen_weights_in

    @contextlib.contextmanager
    def patched(way):
        _training.frozen_weights_in = held if way == "held" else (lambda *a: contextlib.nullcontext())
        try:
            yield
        finally:
            _training.frozen_weights_in = held

    times, _, proba = alternating_fits(args.data, WAYS, patched, method=args.method, dtype="bfloat16", seeds=args.seeds)
    gaps = [float(np.abs(h - c).max()) for h, c in zip(proba["held"], proba["per-call"])]
    ratios = [c / h for c, h in zip(times["per-call"], times["held"])]
    print(f"means: held {np.mean(times['held']):.1f} s, per-call {np.mean(times['per-call']):.1f} s; per-call / held "
          f"per seed: {', '.join(f'{r:.2f}' for r in ratios)}; largest probability difference: "
          f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
