"""Prediction throughput of LoRA with the low-rank branch and merged into the weights.

One LoRA classifier is fitted on Rotten Tomatoes (MiniLM, ``merge_for_inference=False``);
an unpickled copy of it predicts with the update merged (``merge_for_inference=True``).
Both predict the same test texts in interleaved rounds (the median is reported), after a
warm-up, so that the machine's load affects both alike. Also reported: the largest
difference between their probabilities, and the pickle sizes.

    python benchmarks/bench_lora_merge.py --train 500 --test 1000 --rounds 5
"""

import argparse
import pickle
import statistics
import tempfile
import time
import warnings

import numpy as np
from bench_finetune_defaults import cpu  # CPU model, torch capability, threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()

    import torch
    from sklearn.model_selection import train_test_split

    from skllm import FineTuneClassifier, LoRA, _models
    from skllm.datasets import load_rotten_tomatoes

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine, fewer threads than cores wait less
    warnings.simplefilter("ignore")
    print(cpu(), flush=True)
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_train, X_rest, y_train, _ = train_test_split(X, y, train_size=args.train, stratify=y, random_state=0)
    X_test = list(X_rest[: args.test])
    branch = FineTuneClassifier(
        method=LoRA(merge_for_inference=False),
        epochs=args.epochs,
        dtype=args.dtype,
        random_state=0,
        device="cpu",
        cache_dir=tempfile.mkdtemp(),
    ).fit(list(X_train), list(y_train))
    merged = pickle.loads(pickle.dumps(branch))
    merged.method_.set_params(merge_for_inference=True)  # applied when the network is rebuilt
    contenders = {"low-rank branch": branch, "merged": merged}
    probas = {name: clf.predict_proba(X_test[:64]) for name, clf in contenders.items()}  # warm-up
    times = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, clf in contenders.items():
            start = time.perf_counter()
            probas[name] = clf.predict_proba(X_test)
            times[name].append(time.perf_counter() - start)
    lora_layers = sum("lora_" in n for n, _ in merged.network_.named_parameters())
    print(f"merged network: {lora_layers} LoRA tensors left; trained tensors stored: {len(merged.trainable_state_)}")
    diff = float(np.abs(probas["merged"] - probas["low-rank branch"]).max())
    base = statistics.median(times["low-rank branch"])
    print(f"{len(X_test)} test texts, {args.rounds} interleaved rounds, dtype {args.dtype}, batch 32")
    print("| prediction | median s | texts/s | speed-up | all rounds (s) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {median:.2f} | {len(X_test) / median:.0f} | {base / median:.2f}x | {rounds} |")
    print(f"max |difference| of the probabilities: {diff:.2e}")
    print(f"pickle: {len(pickle.dumps(branch)):,} bytes (branch), {len(pickle.dumps(merged)):,} bytes (merged)")
    backbone = _models.load_backbone(_models.resolve_model(_models.DEFAULT_ENCODER), torch.device("cpu"))[0]
    seconds = []
    for _ in range(5):
        network = LoRA().build_network(backbone, 2, "mean").eval()
        start = time.perf_counter()
        LoRA().for_inference(network)
        seconds.append(time.perf_counter() - start)
    print(f"merging (merge_and_unload) on MiniLM: median {statistics.median(seconds) * 1000:.0f} ms of 5")


if __name__ == "__main__":
    main()
