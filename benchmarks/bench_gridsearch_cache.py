"""GridSearchCV with the embedding cache against the same search without it.

5 folds x 3 candidates of C for LogisticRegression on TransformerEmbedder features,
on a stratified sample of Rotten Tomatoes snippets; refit=True, as users run it.
Three timings, in one run:

- one embedding pass: embed every text once, no cache (the floor);
- search with the cache (starting from an empty cache folder);
- search with cache_dir=None: what a plain Pipeline costs, re-embedding every
  fold's texts for every candidate.

    python benchmarks/bench_gridsearch_cache.py [--n 2000]
"""

import argparse
import tempfile
import time

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from skllm import TransformerEmbedder
from skllm.datasets import load_rotten_tomatoes


def search(cache_dir, X, y):
    pipe = make_pipeline(TransformerEmbedder(cache_dir=cache_dir), LogisticRegression(max_iter=2000))
    start = time.perf_counter()
    GridSearchCV(pipe, {"logisticregression__C": [0.3, 1.0, 3.0]}, cv=5).fit(X, y)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    X, y = load_rotten_tomatoes(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, train_size=args.n, stratify=y, random_state=0)
    TransformerEmbedder(cache_dir=None).fit().transform(X[:64])  # load the model, warm up

    start = time.perf_counter()
    TransformerEmbedder(cache_dir=None).fit().transform(X)
    one_pass = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        cached = search(folder, X, y)
    uncached = search(None, X, y)

    print(f"| {args.n} texts, 5 folds x 3 candidates, refit | seconds | x one embedding pass |")
    print("|---|---|---|")
    print(f"| one embedding pass (no cache) | {one_pass:.1f} | 1.00 |")
    print(f"| GridSearchCV with the cache (cold) | {cached:.1f} | {cached / one_pass:.2f} |")
    print(f"| GridSearchCV without the cache | {uncached:.1f} | {uncached / one_pass:.2f} |")
    print(f"\nspeed-up of the cache: {uncached / cached:.1f}x")


if __name__ == "__main__":
    main()
