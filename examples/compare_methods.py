"""The main job: compare every method on a real dataset, on the same folds.

Writes the dataset to a CSV file and runs `skllm compare` on it: frozen embeddings with
three classifiers, every fine-tuning method and two prompting methods, on a stratified
sub-sample of at most 600 texts (--max-samples) with 3-fold cross-validation. The time budget
(--time-budget, 10 minutes by default) shrinks the folds, epochs and texts, or skips the
costliest methods, to fit; the plan is printed before it starts. `--time-budget none`
runs everything as asked (much longer on a CPU).

    python examples/compare_methods.py [--dataset rotten_tomatoes|sms_spam] [--max-samples 600] [--time-budget 10m]
"""

import argparse
import sys
import tempfile
from pathlib import Path

from skllm import datasets
from skllm._cli import main as skllm_main


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["rotten_tomatoes", "sms_spam"], default="rotten_tomatoes")
    parser.add_argument("--max-samples", type=int, default=600)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--out", default="results/compare")
    parser.add_argument("--time-budget", default="10m", help="90s, 10m, 1h, seconds or none")
    args = parser.parse_args()
    loader = getattr(datasets, f"load_{args.dataset}")
    data = loader(drop_duplicates=True) if args.dataset == "sms_spam" else loader()
    frame = data.frame
    # The prompting methods are asked for what the labels mean ("positive"), not their codes ("fresh").
    label_words = ",".join(f"{label}={word}" for label, word in data.label_words.items())
    path = Path(tempfile.mkdtemp()) / f"{args.dataset}.csv"
    frame.to_csv(path, index=False)
    print(f"{args.dataset}: {len(frame)} texts -> {path}")
    return skllm_main(
        [
            "compare",
            str(path),
            "--text",
            "text",
            "--label",
            "label",
            "--cv",
            str(args.cv),
            "--max-samples",
            str(args.max_samples),
            "--time-budget",
            args.time_budget,
            "--out",
            args.out,
            "--label-words",
            label_words,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
