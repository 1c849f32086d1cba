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
import contextlib
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
    from bench_probe_sample import alternating_fits

    from skllm import _seen_rows, _training

    warnings.simplefilter("ignore")
    compactable, token_embedding = _seen_rows._compactable, _training.token_embedding

    @contextlib.contextmanager
    def patched(way):
        _seen_rows._compactable = compactable if way == "seen" else (lambda embedding: False)
        _training.token_embedding = (lambda network: None) if way == "decayed" else token_embedding
        try:
            yield
        finally:
            _seen_rows._compactable, _training.token_embedding = compactable, token_embedding

    times, accuracy, proba = alternating_fits(
        args.data, WAYS, patched, method="full", dtype=args.dtype, seeds=args.seeds, epochs=args.epochs,
        order=lambda i: WAYS[i % 3 :] + WAYS[: i % 3],
    )  # fmt: skip
    gaps = [float(np.abs(s - w).max()) for s, w in zip(proba["seen"], proba["whole"])]
    ratios = [w / s for w, s in zip(times["whole"], times["seen"])]
    print("means: " + ", ".join(f"{w} {np.mean(times[w]):.1f} s, accuracy {np.mean(accuracy[w]):.4f}" for w in WAYS))
    print(f"whole / seen per seed: {', '.join(f'{r:.2f}' for r in ratios)}; largest |seen - whole| probability: "
          f"{', '.join(f'{g:.1e}' for g in gaps)}")  # fmt: skip


if __name__ == "__main__":
    main()
