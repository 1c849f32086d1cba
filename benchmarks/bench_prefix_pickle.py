"""Pickle size of prefix tuning with the reparametrisation MLP stored, and with the prefixes only.

Two prefix-tuning classifiers on Rotten Tomatoes (MiniLM, 16 prefix tokens,
``reparametrize=True``, same seed, so the same training): one keeps the MLP
(``keep_projection=True``, what every model stored before), one stores the prefixes it
produced. Reported: trained parameters, pickle size, the largest difference between
their test probabilities, and test accuracy.

    python benchmarks/bench_prefix_pickle.py --train 500 --test 500 --epochs 3
"""

import argparse
import pickle
import tempfile
import time
import warnings

import numpy as np
from bench_finetune_defaults import cpu  # CPU model, torch capability, threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, fewer threads than cores wait less

    from sklearn.model_selection import train_test_split

    from skllm import FineTuneClassifier, PrefixTuning
    from skllm.datasets import load_rotten_tomatoes

    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=args.test, stratify=y, random_state=0)
    X_train, _, y_train, _ = train_test_split(X_rest, y_rest, train_size=args.train, stratify=y_rest, random_state=0)
    X_train, y_train, X_test = list(X_train), list(y_train), list(X_test)
    rows, probas = [], {}
    for keep in (True, False):
        clf = FineTuneClassifier(
            method=PrefixTuning(keep_projection=keep),
            epochs=args.epochs,
            random_state=0,
            device="cpu",
            cache_dir=tempfile.mkdtemp(),
        )
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        probas[keep] = clf.predict_proba(X_test)
        accuracy = float((clf.classes_[probas[keep].argmax(1)] == np.asarray(y_test)).mean())
        name = "MLP kept (keep_projection=True)" if keep else "prefixes only (default)"
        rows.append((name, clf.n_trainable_params_, len(pickle.dumps(clf)), accuracy, seconds))
    print(f"Rotten Tomatoes, {len(X_train)} training / {len(X_test)} test texts, {args.epochs} epochs, random_state=0")
    print("| stored | trained parameters | pickle | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    for name, n, size, accuracy, seconds in rows:
        print(f"| {name} | {n:,} | {size / 1024:.0f} KB ({size:,} bytes) | {accuracy:.3f} | {seconds:.1f} |")
    print(f"max |difference| of the test probabilities: {float(np.abs(probas[True] - probas[False]).max()):.2e}")


if __name__ == "__main__":
    main()
