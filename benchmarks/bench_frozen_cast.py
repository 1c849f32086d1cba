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
import tempfile
import time
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
    from bench_finetune_defaults import cpu
    from bench_probe_sample import data

    from skllm import FineTuneClassifier, _training

    warnings.simplefilter("ignore")
    X, y, X_test, y_test, max_length = data(args.data)
    cache, held = tempfile.mkdtemp(), _training.frozen_weights_in

    def fit(way, seed, epochs):
        _training.frozen_weights_in = held if way == "held" else (lambda *a: contextlib.nullcontext())
        clf = FineTuneClassifier(
            method=args.method, max_length=max_length, epochs=epochs, batch_size=16, random_state=seed,
            cache_dir=cache, device="cpu", dtype="bfloat16",
        )  # fmt: skip
        try:
            start = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - start
        finally:
            _training.frozen_weights_in = held

    print(cpu())
    fit("held", 0, 1)  # untimed: the probe's features into the cache, so that no timed fit computes them
    print(f"| {args.data}, {args.method}, bfloat16, 3 epochs | seed | way | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    times, gaps = {w: [] for w in WAYS}, []
    for i, seed in enumerate(args.seeds):
        proba = {}
        for way in WAYS if i % 2 == 0 else WAYS[::-1]:
            clf, seconds = fit(way, seed, 3)
            proba[way] = clf.predict_proba(X_test)
            times[way].append(seconds)
            print(f"| {args.data} | {seed} | {way} | {clf.score(X_test, y_test):.4f} | {seconds:.1f} |", flush=True)
        gaps.append(float(np.abs(proba["held"] - proba["per-call"]).max()))
    ratios = [c / h for c, h in zip(times["per-call"], times["held"])]
    print(f"means: held {np.mean(times['held']):.1f} s, per-call {np.mean(times['per-call']):.1f} s; per-call / held "
          f"per seed: {', '.join(f'{r:.2f}' for r in ratios)}; largest probability difference: "
          f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
