"""The head method against a logistic regression on the same frozen features.

For each dataset and training-set size, the split of ``bench_finetune_defaults.py`` (500
test texts), frozen MiniLM embeddings + LogisticRegression (C=1 and C=10), and
``FineTuneClassifier(method=HeadTuning(...))`` with the output layer started from the
linear probe (the default): the default MLP head (one hidden layer of 256) and a linear
head (``hidden_layer_sizes=()``), each for 3 epochs (the default) and 10. Reported: test
accuracy and fit seconds, one JSON line per split. Head fits reuse cached embeddings,
hence their seconds.

    python benchmarks/bench_head_vs_lr.py
"""

import json
import tempfile
import time
import warnings

from bench_finetune_defaults import cpu, load, scores, split

SPLITS = [("debates", [200, 500]), ("rt", [200, 500, 1000]), ("sms", [200, 500, 1000])]


def main():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skllm import FineTuneClassifier, HeadTuning, TransformerEmbedder

    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    cache = tempfile.mkdtemp()
    variants = {
        "mlp256-e3": dict(method=HeadTuning()),
        "mlp256-e10": dict(method=HeadTuning(), epochs=10),
        "linear-e3": dict(method=HeadTuning(hidden_layer_sizes=())),
        "linear-e10": dict(method=HeadTuning(hidden_layer_sizes=()), epochs=10),
    }
    for name, sizes in SPLITS:
        X, y = load(name)
        for size in sizes:
            X_train, y_train, X_test, y_test = split(X, y, size)
            row = {"dataset": name, "n": len(X_train)}
            for C in (1.0, 10.0):
                pipe = make_pipeline(
                    TransformerEmbedder(max_length=128, cache_dir=cache), LogisticRegression(C=C, max_iter=2000)
                ).fit(X_train, y_train)
                row[f"LR{C:g}"] = scores(y_test, pipe.predict(X_test))[0]
            for variant, params in variants.items():
                start = time.perf_counter()
                clf = FineTuneClassifier(max_length=128, random_state=0, cache_dir=cache, **params)
                clf.fit(X_train, y_train)
                row[variant] = scores(y_test, clf.predict(X_test))[0]
                row[variant + "_s"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
