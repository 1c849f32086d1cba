"""A grid search over LoRA fine-tuning: FineTuneClassifier against the same search over a Trainer + peft script.

GridSearchCV, 5 stratified folds (shuffled, seed 0), ``learning_rate`` in (5e-4, 1e-3):
10 fits and the refit on all texts. Rotten Tomatoes, ``--n`` training texts (stratified)
and 500 test texts, MiniLM, LoRA r=8 (alpha 16) on the attention query and value, 3
epochs, batch size 16, ``max_length=64``, warm-up 6% of the steps, weight decay 0.01, on
both sides. Dropout: skllm's LoRA trains without any by default; the Trainer script keeps
MiniLM's (0.1 on the hidden states and attention) and sets ``lora_dropout=0.1``.
"skllm-dropout" is skllm with every dropout on (``LoRA(dropout=0.1,
backbone_dropout=True)``), "trainer-nodrop" the Trainer script without any (see
``bench_finetune.py``), so that both recipes are timed on both sides. A name with ``-bf16``
trains under bfloat16 autocast (skllm's ``dtype="bfloat16"``, the Trainer's ``bf16=True``),
one with ``-eager`` loads the Trainer script's model with ``attn_implementation="eager"``
(what skllm's training runs under bfloat16 on the CPU).

"skllm" is ``GridSearchCV(FineTuneClassifier(method="lora", ...))`` with a fresh (empty)
embedding cache. "trainer" is what a user writes to search over a Trainer script: a
scikit-learn estimator whose ``fit`` loads the model, wraps it with peft, tokenises and
trains with ``Trainer`` (``train_sampling_strategy="group_by_length"``), and whose
``predict`` runs length-sorted batches. Each side runs in its own process; the clock
covers the whole search (model loading, tokenising, training, scoring the folds and the
refit); imports happen before it. Reported: search seconds, the best learning rate and
its mean cross-validated accuracy, the test accuracy of ``best_estimator_``, peak RSS and
the models loaded from disk (skllm's registry; the Trainer script loads once per fit).
``--n-jobs`` is GridSearchCV's ``n_jobs`` on both sides: with 2, joblib runs the folds in
two worker processes of one torch thread each, and the refit in the main process; the
peak RSS and the loads are then the main process's only.

    python benchmarks/bench_finetune_search.py --n 300
    python benchmarks/bench_finetune_search.py --n 300 --only skllm trainer skllm-dropout trainer-nodrop
    python benchmarks/bench_finetune_search.py --n 300 --only skllm-bf16 trainer-bf16 trainer-nodrop-bf16-eager
    python benchmarks/bench_finetune_search.py --n 300 --n-jobs 2 --only skllm-bf16 trainer-bf16-eager
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_finetune_defaults import cpu  # CPU model, torch capability, threads
from sklearn.base import BaseEstimator, ClassifierMixin

EPOCHS, BATCH, MAX_LENGTH, TEST = 3, 16, 64, 500
GRID = {"learning_rate": [5e-4, 1e-3]}
LOADS = []  # one entry per from_pretrained of the Trainer script


def data(n):
    from sklearn.model_selection import train_test_split

    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    X, X_rest, y, y_rest = train_test_split(X, y, train_size=n, stratify=y, random_state=0)
    X_test, _, y_test, _ = train_test_split(X_rest, y_rest, train_size=TEST, stratify=y_rest, random_state=0)
    return X.tolist(), np.asarray(y), X_test.tolist(), np.asarray(y_test)


class TrainerLoRA(ClassifierMixin, BaseEstimator):
    """The Trainer + peft script behind fit/predict, so that GridSearchCV can search it."""

    def __init__(self, learning_rate=1e-3, dropout=True, bf16=False, eager=False):
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.bf16 = bf16
        self.eager = eager

    def fit(self, X, y):
        from bench_finetune import trainer_script

        from skllm._models import DEFAULT_ENCODER, resolve_model

        self.classes_ = np.unique(y)
        self.tokenizer_, trainer = trainer_script(
            X,
            np.searchsorted(self.classes_, y),
            len(self.classes_),
            learning_rate=self.learning_rate,
            epochs=EPOCHS,
            batch=BATCH,
            max_length=MAX_LENGTH,
            dropout=self.dropout,
            bf16=self.bf16,
            eager=self.eager,
        )
        LOADS.append(resolve_model(DEFAULT_ENCODER).location)
        trainer.train()
        self.model_ = trainer.model.eval()
        return self

    def predict(self, X):
        import torch

        ids = self.tokenizer_(list(X), truncation=True, max_length=MAX_LENGTH)["input_ids"]
        order = np.argsort([-len(row) for row in ids], kind="stable")
        out = np.empty(len(ids), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, len(order), 32):
                rows = order[start : start + 32]
                batch = self.tokenizer_.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                out[rows] = self.model_(**batch).logits.argmax(-1).numpy()
        return self.classes_[out]


def one(name, n, n_jobs):
    import warnings

    import peft  # noqa: F401  (imports before the clock on both sides)
    import transformers
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skllm import FineTuneClassifier, _models

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    X, y, X_test, y_test = data(n)
    if name.startswith("skllm"):
        from skllm import LoRA

        estimator = FineTuneClassifier(
            method=LoRA(dropout=0.1, backbone_dropout=True) if name.startswith("skllm-dropout") else LoRA(),
            max_length=MAX_LENGTH,
            epochs=EPOCHS,
            batch_size=BATCH,
            random_state=0,
            cache_dir=tempfile.mkdtemp(),
            device="cpu",
            dtype="bfloat16" if "-bf16" in name else "float32",
        )
    else:
        estimator = TrainerLoRA(dropout="-nodrop" not in name, bf16="-bf16" in name, eager="-eager" in name)
    search = GridSearchCV(estimator, GRID, cv=StratifiedKFold(5, shuffle=True, random_state=0), n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    result = {
        "search_s": seconds,
        "best_learning_rate": search.best_params_["learning_rate"],
        "cv_accuracy": float(search.best_score_),
        "mean_test_scores": [float(s) for s in search.cv_results_["mean_test_score"]],
        "test_accuracy": float(search.best_estimator_.score(X_test, y_test)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loads": sum(_models._load_counts.values()) if name.startswith("skllm") else len(LOADS),
    }
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="training texts of the search")
    parser.add_argument("--only", nargs="*", default=["skllm", "trainer"])
    parser.add_argument("--n-jobs", type=int, default=1, help="GridSearchCV's n_jobs, on both sides")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.n, args.n_jobs)
    print(cpu(), f"| load average {os.getloadavg()[0]:.2f} | n={args.n} | n_jobs={args.n_jobs}", flush=True)
    results = {}
    for name in args.only:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--n", str(args.n), "--n-jobs", str(args.n_jobs)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(f"{name} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, results[name], file=sys.stderr, flush=True)
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")
    print("| search | seconds | best learning rate | CV accuracy | test accuracy | peak RSS MB | model loads |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['search_s']:.1f} | {r['best_learning_rate']:g} | {r['cv_accuracy']:.3f} | "
            f"{r['test_accuracy']:.3f} | {r['peak_rss_mb']:.0f} | {r['loads']} |"
        )
    pairs = [("skllm", "trainer"), ("skllm", "trainer-nodrop"), ("skllm-dropout", "trainer")]
    pairs += [("skllm-bf16", name) for name in ("trainer-bf16", "trainer-bf16-eager", "trainer-nodrop-bf16-eager")]
    for ours, theirs in pairs:
        if ours in results and theirs in results:
            print(f"{ours}'s search is {results[theirs]['search_s'] / results[ours]['search_s']:.2f}x {theirs}'s")


if __name__ == "__main__":
    main()
