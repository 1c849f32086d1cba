"""Do the fine-tuning defaults beat a logistic regression on frozen features?

For each dataset and training-set size, one stratified split (test: 500 texts), and on it:
frozen MiniLM embeddings + LogisticRegression (C=1, C=10, and C cross-validated), then
FineTuneClassifier with ``method`` = head, full and lora under each configuration asked
for (every other parameter at its default, ``random_state=0``). Reported: test accuracy and macro-F1, fit seconds.

Datasets: Rotten Tomatoes (binary sentiment), SMS spam (binary, duplicates dropped so that
no message is in both sets), and the 2016 debate statements (three classes: Democratic,
Republican, moderator; at most 622 training texts).

Configurations (``--configs``):
  before      head_init="random", epochs=3 (the defaults before linear probing)
  probe       head_init="linear_probe", epochs=3
  defaults    every parameter at today's default

    python benchmarks/bench_finetune_defaults.py --datasets rt sms debates --sizes 200 500 2000
"""

import argparse
import json
import platform
import tempfile
import time
import warnings

import numpy as np

CONFIGS = {
    "before": {"head_init": "random", "epochs": 3},
    "probe": {"head_init": "linear_probe", "epochs": 3},
    "defaults": {},
}
TEST = 500


def cpu():
    import torch

    model = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model} | torch cpu capability {capability} | threads {torch.get_num_threads()}"


def start(threads):
    """Set torch's thread count, quieten warnings and transformers' logging, and print the CPU line."""
    import warnings

    import torch
    import transformers

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    print(cpu(), flush=True)


def load(name):
    from skllm import datasets

    if name == "rt":
        X, y = datasets.load_rotten_tomatoes(return_X_y=True)
    elif name == "sms":
        X, y = datasets.load_sms_spam(drop_duplicates=True, return_X_y=True)
    elif name == "debates":
        X, y = datasets.load_debate_statements(return_X_y=True)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    return np.asarray(X, dtype=object), np.asarray(y, dtype=object)


def split(X, y, size, seed=0):
    from sklearn.model_selection import train_test_split

    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=TEST, stratify=y, random_state=seed)
    if size < len(X_rest):
        X_train, _, y_train, _ = train_test_split(X_rest, y_rest, train_size=size, stratify=y_rest, random_state=seed)
    else:
        X_train, y_train = X_rest, y_rest
    return list(X_train), list(y_train), list(X_test), list(y_test)


def scores(y_true, y_pred):
    from sklearn.metrics import accuracy_score, f1_score

    return round(accuracy_score(y_true, y_pred), 4), round(f1_score(y_true, y_pred, average="macro"), 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["rt", "sms", "debates"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 500, 2000])
    parser.add_argument("--methods", nargs="+", default=["head", "full", "lora"])
    parser.add_argument("--configs", nargs="+", default=["before", "defaults"])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", default=None, help="append one JSON line per result to this file")
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline

    from skllm import FineTuneClassifier, TransformerEmbedder
    from skllm._probe import PROBE_CS

    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    cache = tempfile.mkdtemp()
    rows = []
    # Load the backbone before timing anything: every fit below reuses the loaded model.
    TransformerEmbedder(max_length=args.max_length, cache_dir=None).fit().transform(["warm up"])

    def record(**row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    for name in args.datasets:
        X, y = load(name)
        for size in args.sizes:
            X_train, y_train, X_test, y_test = split(X, y, size)
            n = len(X_train)
            if n < size:
                print(f"{name}: {size} requested, {n} available", flush=True)
            for C in (1.0, 10.0, "cv"):
                # C="cv": chosen by 3-fold cross-validation on log-loss, over the probe's grid.
                model = (
                    LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000)
                    if C == "cv"
                    else LogisticRegression(C=C, max_iter=2000)
                )
                start = time.perf_counter()
                pipe = make_pipeline(TransformerEmbedder(max_length=args.max_length, cache_dir=cache), model)
                pipe.fit(X_train, y_train)
                seconds = time.perf_counter() - start
                acc, f1 = scores(y_test, pipe.predict(X_test))
                record(
                    dataset=name,
                    n_train=n,
                    method=f"frozen+LR(C={C if C == 'cv' else format(C, 'g')})",
                    config="-",
                    accuracy=acc,
                    macro_f1=f1,
                    fit_s=round(seconds, 1),
                )
            for method in args.methods:
                for config in args.configs:
                    params = {"max_length": args.max_length, "random_state": 0, "cache_dir": cache, **CONFIGS[config]}
                    start = time.perf_counter()
                    clf = FineTuneClassifier(method=method, **params).fit(X_train, y_train)
                    seconds = time.perf_counter() - start
                    acc, f1 = scores(y_test, clf.predict(X_test))
                    record(
                        dataset=name,
                        n_train=n,
                        method=method,
                        config=config,
                        accuracy=acc,
                        macro_f1=f1,
                        fit_s=round(seconds, 1),
                        epochs=clf.n_iter_,
                    )


if __name__ == "__main__":
    main()
