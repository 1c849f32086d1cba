"""Bottleneck adapters: Houlsby et al.'s placement (layer norms trained) against adapters on the projections.

For each dataset one stratified split (500 training, 500 test texts by default; SMS spam
with duplicates dropped, so no message is in both sets), MiniLM, every parameter at its
default but ``BottleneckAdapter(variant=...)`` and ``random_state``. The variants run
alternately for each seed. Reported per variant: test accuracy and macro-F1 (mean and
standard deviation over the seeds), fit seconds, trained parameters.

    python benchmarks/bench_adapter_variants.py --datasets rt sms --seeds 0 1 2
    python benchmarks/bench_adapter_variants.py --head-init random   # the output layer's earlier start
"""

import argparse
import json
import statistics
import tempfile
import time
import warnings

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads


def split(name, n_train, n_test):
    from sklearn.model_selection import train_test_split

    from skllm import datasets

    if name == "rt":
        X, y = datasets.load_rotten_tomatoes(return_X_y=True)
    else:
        X, y = datasets.load_sms_spam(drop_duplicates=True, return_X_y=True)
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=n_test, stratify=y, random_state=0)
    X_train, _, y_train, _ = train_test_split(X_rest, y_rest, train_size=n_train, stratify=y_rest, random_state=0)
    return list(X_train), list(y_train), list(X_test), list(y_test)


def mean_std(values):
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["rt", "sms"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["houlsby", "projection"])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--head-init", default="linear_probe", choices=["linear_probe", "random"])
    parser.add_argument("--out", default=None, help="append one JSON line per fit to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, fewer threads than cores wait less

    from sklearn.metrics import accuracy_score, f1_score

    from skllm import BottleneckAdapter, FineTuneClassifier

    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    results = {}
    for dataset in args.datasets:
        X, y, X_test, y_test = split(dataset, args.train, args.test)
        for seed in args.seeds:
            for variant in args.variants:
                clf = FineTuneClassifier(
                    method=BottleneckAdapter(variant=variant),
                    head_init=args.head_init,
                    random_state=seed,
                    device="cpu",
                    cache_dir=tempfile.mkdtemp(),
                )
                start = time.perf_counter()
                clf.fit(X, y)
                seconds = time.perf_counter() - start
                pred = clf.predict(X_test)
                row = {
                    "dataset": dataset,
                    "variant": variant,
                    "seed": seed,
                    "accuracy": accuracy_score(y_test, pred),
                    "f1_macro": f1_score(y_test, pred, average="macro"),
                    "fit_s": seconds,
                    "trainable": clf.n_trainable_params_,
                }
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                results.setdefault((dataset, variant), []).append(row)
    print(f"\n{args.train} training / {args.test} test texts, seeds {args.seeds}, head_init={args.head_init!r}")
    print("| dataset | variant | test accuracy | macro-F1 | fit s (median) | trained parameters |")
    print("|---|---|---|---|---|---|")
    for (dataset, variant), rows in results.items():
        accuracy = mean_std([r["accuracy"] for r in rows])
        f1 = mean_std([r["f1_macro"] for r in rows])
        seconds = statistics.median(r["fit_s"] for r in rows)
        print(f"| {dataset} | {variant} | {accuracy} | {f1} | {seconds:.1f} | {rows[0]['trainable']:,} |")


if __name__ == "__main__":
    main()
