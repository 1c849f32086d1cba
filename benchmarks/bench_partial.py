"""Partial fine-tuning (the last k blocks) against the head and full fine-tuning, and what caching saves.

Rotten Tomatoes (``--dataset sms`` or ``debates``: the datasets of
``bench_finetune_defaults.py``), one stratified split (500 training, 500 test texts by
default), MiniLM,
every parameter at its default but the method, ``random_state`` and the head's 10 epochs
(as in ``compare_methods``). The contenders run one after the other for each seed.
Reported: test accuracy (mean and standard deviation over the seeds), fit seconds, and for
partial fine-tuning the seconds spent computing the frozen blocks' outputs and the
seconds per training epoch (with ``cache_frozen=False`` every epoch runs the frozen
blocks again).

``--tune`` instead fits ``PartialFineTuning(n_last_layers=2)`` with each of ``--lrs`` on
500 training texts and scores it on 500 other texts, disjoint from the test texts: the
learning rate behind ``default_learning_rate``.

    python benchmarks/bench_partial.py --seeds 0 1 2
    python benchmarks/bench_partial.py --tune --lrs 5e-5 1e-4 2e-4 5e-4
    python benchmarks/bench_partial.py --tune --dataset sms --lrs 1e-4 5e-4 1e-3 --seeds 0 1
    python benchmarks/bench_partial.py --tune --dataset debates --train 300 --test 300 --lrs 1e-4 5e-4 1e-3 --seeds 0 1
"""

import argparse
import json
import statistics
import tempfile
import time
import warnings

from bench_finetune_defaults import cpu, load  # CPU model, torch capability, threads; the datasets

CONTENDERS = ["head", "full", "partial-1", "partial-2", "partial-1-nocache", "partial-2-nocache"]


def split(n_train, n_test, dataset="rt"):
    from sklearn.model_selection import train_test_split

    X, y = load(dataset)
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=n_test, stratify=y, random_state=0)
    X_train, X_other, y_train, y_other = train_test_split(
        X_rest, y_rest, train_size=n_train, stratify=y_rest, random_state=0
    )
    X_valid, _, y_valid, _ = train_test_split(X_other, y_other, train_size=n_test, stratify=y_other, random_state=0)
    return [list(a) for a in (X_train, y_train, X_valid, y_valid, X_test, y_test)]


class Timer:
    """Seconds spent in the frozen blocks during fit (partial's inputs) and in the training loop."""

    def __init__(self):
        from skllm import PartialFineTuning, _finetune

        self.frozen_s = self.train_s = 0.0
        inputs, train = PartialFineTuning.inputs, _finetune._FineTuneBase._train
        timer = self

        def timed_inputs(method, *args, **kwargs):
            start = time.perf_counter()
            try:
                return inputs(method, *args, **kwargs)
            finally:
                timer.frozen_s += time.perf_counter() - start

        def timed_train(estimator, *args, **kwargs):
            start = time.perf_counter()
            try:
                return train(estimator, *args, **kwargs)
            finally:
                timer.train_s += time.perf_counter() - start

        PartialFineTuning.inputs = timed_inputs
        _finetune._FineTuneBase._train = timed_train

    def reset(self):
        self.frozen_s = self.train_s = 0.0


def estimator(name, seed, learning_rate=None):
    from skllm import FineTuneClassifier, PartialFineTuning

    epochs = 10 if name == "head" else 3
    method = name
    if name.startswith("partial"):
        k = int(name.split("-")[1])
        method = PartialFineTuning(n_last_layers=k, cache_frozen=not name.endswith("nocache"))
    return FineTuneClassifier(
        method=method,
        epochs=epochs,
        learning_rate=learning_rate,
        random_state=seed,
        device="cpu",
        cache_dir=tempfile.mkdtemp(),  # the head's features are computed in its fit
    )


def mean_std(values):
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", default=CONTENDERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--dataset", choices=["rt", "sms", "debates"], default="rt")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--lrs", nargs="+", type=float, default=[5e-5, 1e-4, 2e-4, 5e-4])
    parser.add_argument("--out", default=None, help="append one JSON line per fit to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, fewer threads than cores wait less

    from skllm import TransformerEmbedder

    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    X, y, X_valid, y_valid, X_test, y_test = split(args.train, args.test, args.dataset)
    TransformerEmbedder(cache_dir=None, device="cpu").fit()  # the backbone is loaded before any clock starts
    timer = Timer()
    runs = [("partial-2", lr) for lr in args.lrs] if args.tune else [(name, None) for name in args.only]
    X_eval, y_eval = (X_valid, y_valid) if args.tune else (X_test, y_test)
    results = {}
    for seed in args.seeds:
        for name, lr in runs:
            clf = estimator(name, seed, lr)
            timer.reset()
            start = time.perf_counter()
            clf.fit(X, y)
            seconds = time.perf_counter() - start
            cached = name.startswith("partial") and "nocache" not in name
            frozen_s, train_s = (timer.frozen_s if cached else None), timer.train_s  # before predicting
            row = {
                "contender": name if lr is None else f"{name} lr={lr:g}",
                "seed": seed,
                "accuracy": clf.score(X_eval, y_eval),
                "fit_s": seconds,
                "frozen_s": frozen_s,
                "epoch_s": train_s / clf.n_iter_,
                "epochs": clf.n_iter_,
                "trainable": clf.n_trainable_params_,
            }
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            results.setdefault(row["contender"], []).append(row)
    scored = "validation" if args.tune else "test"
    print(f"\n{args.dataset}, {len(X)} training / {len(X_eval)} {scored} texts, seeds {args.seeds}")
    print(f"| method | epochs | {scored} accuracy | fit s | frozen blocks s | s per epoch | trained parameters |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        median = {key: statistics.median(r[key] for r in rows) for key in ("fit_s", "epoch_s")}
        frozen = rows[0]["frozen_s"]
        frozen = f"{statistics.median(r['frozen_s'] for r in rows):.1f}" if frozen is not None else "-"
        print(
            f"| {name} | {rows[0]['epochs']} | {mean_std([r['accuracy'] for r in rows])} | {median['fit_s']:.1f} | "
            f"{frozen} | {median['epoch_s']:.2f} | {rows[0]['trainable']:,} |"
        )


if __name__ == "__main__":
    main()
