"""Prefix tuning before and after it moved to peft: fit time, prediction time, accuracy.

FineTuneClassifier(method="prefix") with its defaults on the packaged MiniLM, trained on
Rotten Tomatoes texts and scored on held-out ones. Run it once on each version of the
package (the implementation in use is printed); with ``--save``/``--compare`` the test
probabilities of the two runs are compared.

    python benchmarks/bench_prefix_peft.py --train 200 --test 200 --save /tmp/prefix-before.npy
    python benchmarks/bench_prefix_peft.py --train 200 --test 200 --compare /tmp/prefix-before.npy
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
    parser.add_argument("--train", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--save", help="write the test probabilities to this .npy file")
    parser.add_argument("--compare", help="compare the test probabilities with this .npy file")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a shared machine, fewer threads than cores wait less

    import peft
    import transformers
    from sklearn.model_selection import train_test_split

    from skllm import FineTuneClassifier
    from skllm._methods import _prefix
    from skllm.datasets import load_rotten_tomatoes

    warnings.simplefilter("ignore")
    implementation = "attention hook" if hasattr(_prefix, "ATTENTION_NAME") else "peft"
    print(cpu(), flush=True)
    print(f"prefix tuning through: {implementation}; transformers {transformers.__version__}, peft {peft.__version__}")
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=args.test, stratify=y, random_state=0)
    X_train, _, y_train, _ = train_test_split(X_rest, y_rest, train_size=args.train, stratify=y_rest, random_state=0)
    X_train, y_train, X_test = list(X_train), list(y_train), list(X_test)

    clf = FineTuneClassifier(method="prefix", random_state=0, device="cpu", cache_dir=tempfile.mkdtemp())
    # Wall-clock and CPU seconds (all threads): on a shared machine the CPU time varies less.
    start, cpu_start = time.perf_counter(), time.process_time()
    clf.fit(X_train, y_train)
    fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    clf.predict_proba(X_test[:8])  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    proba = clf.predict_proba(X_test)
    predict_s, predict_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    accuracy = float((clf.classes_[proba.argmax(1)] == np.asarray(y_test)).mean())
    print(f"Rotten Tomatoes, {len(X_train)} training / {len(X_test)} test texts, default epochs, random_state=0")
    print("| implementation | fit s (CPU s) | predict s (CPU s) | test accuracy | trained parameters | pickle |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {implementation} | {fit_s:.1f} ({fit_cpu:.1f}) | {predict_s:.2f} ({predict_cpu:.2f}) | {accuracy:.3f} "
        f"| {clf.n_trainable_params_:,} | {len(pickle.dumps(clf)):,} bytes |"
    )
    if args.save:
        np.save(args.save, proba)
    if args.compare:
        other = np.load(args.compare)
        print(f"max |difference| of the test probabilities from {args.compare}: {np.abs(proba - other).max():.2e}")
        print(f"same predicted class: {float((proba.argmax(1) == other.argmax(1)).mean()):.3f}")


if __name__ == "__main__":
    main()
