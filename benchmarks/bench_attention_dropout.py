"""Full fine-tuning with MiniLM's attention dropout through eager attention and skllm's masks, or through SDPA.

Fits of ``FineTuneClassifier(method="full")`` (batch size 16, 3 epochs, model loading
inside the clock, the probe's features already in the run's embedding cache) on Rotten
Tomatoes (1,000 / 1,000 snippets, ``max_length=64``) or the 2016 debates (785 / 337
statements, ``max_length=128``), as ``bench_probe_sample.py`` takes them, two ways per
seed in one process, the order alternating from one seed to the next:

- ``eager``: what skllm ships (``skllm._attention.training_attention``): a model that
  trains with attention dropout runs transformers' eager attention, whose dropout
  (``torch.nn.functional.dropout``) draws skllm's cheaper masks (``skllm._dropout``);
- ``sdpa``: as before, PyTorch's SDPA, which on the CPU computes the attention as eager
  does when it has dropout, but draws its mask with torch's ``bernoulli_`` (under
  bfloat16, eager attention for batches of at most 256 positions, with torch's masks).

The two ways draw other masks, so they give other models: the script prints test
accuracy, fit seconds and the mean of each, with the CPU model.

    python benchmarks/bench_attention_dropout.py --data rt --seeds 0 1 2
    python benchmarks/bench_attention_dropout.py --data debates --seeds 0 1 2
"""

import argparse
import contextlib
import tempfile
import time
import warnings

import numpy as np

WAYS = ("eager", "sdpa")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["rt", "debates"], default="rt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    import peft  # noqa: F401  (imported before any clock)
    import torch
    from bench_finetune_defaults import cpu
    from bench_probe_sample import data

    from skllm import FineTuneClassifier, _attention, _dropout

    warnings.simplefilter("ignore")
    X, y, X_test, y_test, max_length = data(args.data)
    cache, shipped = tempfile.mkdtemp(), _attention._implementation
    routed = _dropout.thread_functional_dropout

    def before(model, width, bf16):  # the choice as it was: by width under bfloat16 only
        return "eager" if bf16 and width is not None and width <= _attention.EAGER_MAX_WIDTH else "sdpa"

    def fit(way, seed, epochs):
        _attention._implementation = shipped if way == "eager" else before
        # "sdpa": eager attention's functional dropout (bfloat16, short batches) with torch's masks, as before
        _dropout.thread_functional_dropout = routed if way == "eager" else contextlib.nullcontext
        clf = FineTuneClassifier(
            method="full", max_length=max_length, epochs=epochs, batch_size=16, random_state=seed,
            cache_dir=cache, device="cpu", dtype=args.dtype,
        )  # fmt: skip
        try:
            start = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - start
        finally:
            _attention._implementation, _dropout.thread_functional_dropout = shipped, routed

    print(cpu(), "| torch", torch.__version__)
    fit("eager", 0, 1)  # untimed: the probe's features into the cache, so that no timed fit computes them
    print(f"| {args.data}, full, {args.dtype}, 3 epochs | seed | way | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    times, scores = {w: [] for w in WAYS}, {w: [] for w in WAYS}
    for i, seed in enumerate(args.seeds):
        for way in WAYS if i % 2 == 0 else WAYS[::-1]:
            clf, seconds = fit(way, seed, 3)
            times[way].append(seconds)
            scores[way].append(clf.score(X_test, y_test))
            print(f"| {args.data} | {seed} | {way} | {scores[way][-1]:.4f} | {seconds:.1f} |", flush=True)
    ratios = [s / e for s, e in zip(times["sdpa"], times["eager"])]
    print(f"means: eager {np.mean(times['eager']):.1f} s, {np.mean(scores['eager']):.4f}; sdpa "
          f"{np.mean(times['sdpa']):.1f} s, {np.mean(scores['sdpa']):.4f}; sdpa / eager per seed: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}")  # fmt: skip


if __name__ == "__main__":
    main()
