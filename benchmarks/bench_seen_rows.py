"""Full fine-tuning with the token embedding's seen rows only, the whole table, and the table decayed.

Fits of ``FineTuneClassifier(method="full")`` (batch size 16, 3 epochs, model loading
inside the clock, the probe's features already in the run's embedding cache) on Rotten
Tomatoes (1,000 / 1,000 snippets, ``max_length=64``) or the 2016 debates (785 / 337
statements, ``max_length=128``), as ``bench_probe_sample.py`` takes them, three ways per
seed in one process (the order rotating from one seed to the next):

- ``seen``: what skllm ships (``skllm._seen_rows``): only the embedding rows of tokens the
  texts hold are trained; the token embedding gets no weight decay;
- ``whole``: the same recipe with the whole table trained (``_seen_rows._compactable``
  forced off): the model ``seen`` must reproduce, and what it saves in time;
- ``decayed``: the whole table with weight decay on it too, as before the token embedding
  lost its decay (``_training.token_embedding`` forced to find none): what that costs or
  gains in accuracy.

It prints test accuracy, fit seconds, and the largest difference between ``seen``'s and
``whole``'s test probabilities (0 where the two are the same model), with the CPU model.

    python benchmarks/bench_seen_rows.py --data rt --dtype bfloat16 --seeds 0 1 2
    python benchmarks/bench_seen_rows.py --data debates --dtype bfloat16 --seeds 0 1 2
"""

import argparse
import tempfile
import time
import warnings

import numpy as np

WAYS = ("seen", "whole", "decayed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["rt", "debates"], default="rt")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import peft  # noqa: F401  (imported before any clock)
    from bench_finetune_defaults import cpu
    from bench_probe_sample import data

    from skllm import FineTuneClassifier, _seen_rows, _training

    warnings.simplefilter("ignore")
    X, y, X_test, y_test, max_length = data(args.data)
    cache = tempfile.mkdtemp()
    compactable, token_embedding = _seen_rows._compactable, _training.token_embedding

    def fit(way, seed, epochs):
        _seen_rows._compactable = compactable if way == "seen" else (lambda embedding: False)
        _training.token_embedding = (lambda network: None) if way == "decayed" else token_embedding
        clf = FineTuneClassifier(
            method="full", max_length=max_length, epochs=epochs, batch_size=16, random_state=seed,
            cache_dir=cache, device="cpu", dtype=args.dtype,
        )  # fmt: skip
        try:
            start = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - start
        finally:
            _seen_rows._compactable, _training.token_embedding = compactable, token_embedding

    print(cpu())
    fit("seen", 0, 1)  # untimed: the probe's features into the cache, so that no timed fit computes them
    print(f"| {args.data}, full, {args.dtype}, {args.epochs} epochs | seed | way | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    times, accuracy, gaps = {w: [] for w in WAYS}, {w: [] for w in WAYS}, []
    for i, seed in enumerate(args.seeds):
        proba = {}
        for way in WAYS[i % 3 :] + WAYS[: i % 3]:
            clf, seconds = fit(way, seed, args.epochs)
            proba[way] = clf.predict_proba(X_test)
            times[way].append(seconds)
            accuracy[way].append(clf.score(X_test, y_test))
            print(f"| {args.data} | {seed} | {way} | {accuracy[way][-1]:.4f} | {seconds:.1f} |", flush=True)
        gaps.append(float(np.abs(proba["seen"] - proba["whole"]).max()))
    ratios = [w / s for w, s in zip(times["whole"], times["seen"])]
    print("means: " + ", ".join(f"{w} {np.mean(times[w]):.1f} s, accuracy {np.mean(accuracy[w]):.4f}" for w in WAYS))
    print(f"whole / seen per seed: {', '.join(f'{r:.2f}' for r in ratios)}; largest |seen - whole| probability: "
          f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
