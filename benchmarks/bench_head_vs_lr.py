"""The head method against a logistic regression on the same frozen features.

For each dataset and training-set size, the splits of ``bench_finetune_defaults.py`` (500
test texts; ``--seeds`` draws other splits), frozen MiniLM embeddings (L2-normalised, the
TransformerEmbedder default) + LogisticRegression with C=1 (scikit-learn's default),
C=10, and C chosen by 3-fold cross-validation on log-loss (``LogisticRegressionCV``, the
probe's grid), then ``FineTuneClassifier(method=HeadTuning(...))`` with every other
parameter at its default:

  default      HeadTuning(): an MLP (one hidden layer of 256) beside a linear layer on
               normalised features, 10 epochs (``epochs=None``)
  default-e3   the same, 3 epochs
  plain-e3     HeadTuning(residual=False, normalize=False), 3 epochs: the head before
               the residual layer and the normalisation (the probe then fits the hidden
               layer's output)
  plain-e10    the same, 10 epochs
  linear       HeadTuning(hidden_layer_sizes=()): the linear layer alone

and, with ``--variants``, other settings of the default head: lr3e-3 (learning rate 3e-3),
e20 (20 epochs), no-dropout, h512 (512 hidden units).

Reported: test accuracy and fit seconds, one JSON line per split, then a summary of the
differences to each logistic regression. Head fits reuse cached embeddings, hence their
seconds.

    python benchmarks/bench_head_vs_lr.py --seeds 0 1 2
    python benchmarks/bench_head_vs_lr.py --seeds 0 1 2 --variants default lr3e-3 e20 no-dropout h512
"""

import argparse
import json
import tempfile
import time
import warnings

import numpy as np
from bench_finetune_defaults import cpu, load, scores, split

SPLITS = [("debates", [200, 500]), ("rt", [200, 500, 1000]), ("sms", [200, 500, 1000])]
BASELINES = ("LR1", "LR10", "LRCV")


def main():
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from skllm import FineTuneClassifier, HeadTuning, TransformerEmbedder
    from skllm._probe import PROBE_CS

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: a new temporary folder)")
    parser.add_argument("--variants", nargs="+", default=["default", "default-e3", "plain-e3", "plain-e10", "linear"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    cache = args.cache_dir or tempfile.mkdtemp()
    every = {
        "default": dict(method=HeadTuning()),
        "default-e3": dict(method=HeadTuning(), epochs=3),
        "plain-e3": dict(method=HeadTuning(residual=False, normalize=False), epochs=3),
        "plain-e10": dict(method=HeadTuning(residual=False, normalize=False), epochs=10),
        "linear": dict(method=HeadTuning(hidden_layer_sizes=())),
        "lr3e-3": dict(method=HeadTuning(), learning_rate=3e-3),
        "e20": dict(method=HeadTuning(), epochs=20),
        "no-dropout": dict(method=HeadTuning(dropout=0.0)),
        "h512": dict(method=HeadTuning(hidden_layer_sizes=(512,))),
    }
    variants = {name: every[name] for name in args.variants}
    baselines = {
        "LR1": lambda: LogisticRegression(C=1.0, max_iter=2000),
        "LR10": lambda: LogisticRegression(C=10.0, max_iter=2000),
        "LRCV": lambda: LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000),
    }
    rows = []
    for seed in args.seeds:
        for name, sizes in SPLITS:
            X, y = load(name)
            for size in sizes:
                X_train, y_train, X_test, y_test = split(X, y, size, seed=seed)
                row = {"seed": seed, "dataset": name, "n": len(X_train)}
                embedder = TransformerEmbedder(max_length=128, cache_dir=cache)
                train, test = embedder.fit_transform(X_train), embedder.transform(X_test)
                for baseline, make in baselines.items():
                    row[baseline] = scores(y_test, make().fit(train, y_train).predict(test))[0]
                for variant, params in variants.items():
                    start = time.perf_counter()
                    clf = FineTuneClassifier(max_length=128, random_state=0, cache_dir=cache, **params)
                    clf.fit(X_train, y_train)
                    row[variant] = scores(y_test, clf.predict(X_test))[0]
                    row[variant + "_s"] = round(time.perf_counter() - start, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{len(rows)} splits: head minus logistic regression, test accuracy")
    print("| head | " + " | ".join(f"vs {b}: mean / worst / ahead-tied-behind" for b in BASELINES) + " |")
    print("|---" * (len(BASELINES) + 1) + "|")
    for variant in variants:
        cells = []
        for baseline in BASELINES:
            diff = np.array([r[variant] - r[baseline] for r in rows])
            ahead, behind = int((diff > 5e-4).sum()), int((diff < -5e-4).sum())
            cells.append(f"{diff.mean():+.4f} / {diff.min():+.3f} / {ahead}-{len(diff) - ahead - behind}-{behind}")
        print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)
    datasets = [name for name, _ in SPLITS]
    print("\nmean per dataset against LRCV\n| head | " + " | ".join(datasets) + " |")
    for variant in variants:
        means = [np.mean([r[variant] - r["LRCV"] for r in rows if r["dataset"] == d]) for d in datasets]
        print(f"| {variant} | " + " | ".join(f"{m:+.4f}" for m in means) + " |", flush=True)


if __name__ == "__main__":
    main()
