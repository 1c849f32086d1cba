"""The main job: compare every method on a real dataset, on the same folds.

Writes the dataset to a CSV file and runs `skllm compare` on it: frozen embeddings with
three heads, six fine-tuning methods and two prompting methods, on a stratified
sub-sample of 600 texts with 3-fold cross-validation (about 10 minutes on 2 CPU cores).

    python examples/compare_methods.py [--dataset rotten_tomatoes|sms_spam] [--budget 600]
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
    parser.add_argument("--budget", type=int, default=600)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--out", default="results/compare")
    args = parser.parse_args()
    loader = getattr(datasets, f"load_{args.dataset}")
    frame = loader(drop_duplicates=True).frame if args.dataset == "sms_spam" else loader().frame
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
            "--budget",
            str(args.budget),
            "--out",
            args.out,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
