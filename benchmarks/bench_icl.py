"""In-context learning on Rotten Tomatoes with the packaged SmolLM2-135M-Instruct.

- Accuracy, macro-F1 and prompts per second on a balanced sample (default 500):
  zero-shot with the defaults (with and without calibration), few-shot with
  balanced demonstrations (the default) and with the nearest ones (MiniLM
  similarity), and zero-shot with the best template of a small grid, chosen by
  GridSearchCV on a separate sample (hard prompt tuning).
- Label scoring against the naive loop of one full forward pass per (text, label),
  with 5 labels on 100 texts, in the same run.

    python benchmarks/bench_icl.py [--n 500] [--defaults-only] [--sms [--ham-word real]] [--n-examples 4 8]

--n takes the first n texts of the balanced 500 (the pool and tuning texts stay the same).
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from bench_icl_choose_defaults import cpu_model
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skllm import FewShotClassifier, ZeroShotClassifier
from skllm.datasets import load_rotten_tomatoes, load_sms_spam

WORDS = load_rotten_tomatoes().label_words
TEMPLATES = [
    None,  # the default
    "Is the sentiment of this movie review {labels}?\n\nReview: {text}",
    "Review: {text}\nWas the critic's opinion {labels}? Answer with one word.",
]


def balanced(X, y, n, seed):
    frame = pd.DataFrame({"text": X, "label": y})
    per_class = n // frame["label"].nunique()
    part = frame.groupby("label").sample(per_class, random_state=seed)
    part = part.sample(frac=1, random_state=seed)
    return part["text"].tolist(), part["label"].to_numpy()


def timed_accuracy(clf, X, y):
    start = time.perf_counter()
    pred = clf.predict(X)
    seconds = time.perf_counter() - start
    return float((pred == y).mean()), f1_score(y, pred, average="macro"), len(X) / seconds


def naive_scores(clf, texts):
    rows = []
    for ids in clf._prompts(texts):
        row = []
        for label in clf.label_ids_:
            with torch.inference_mode():
                logp = torch.log_softmax(clf.model_(input_ids=torch.tensor([ids + label])).logits[0].float(), -1)
            row.append(sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(label)))
        rows.append(row)
    return np.array(rows)


def defaults_rows(X_pool, y_pool, X_test, y_test, words, selections=("balanced", "nearest"), counts=(8,)):
    """Zero-shot (with and without calibration) and few-shot with the defaults; only the wordings are given."""
    rows = []
    zero = ZeroShotClassifier(label_words=words).fit(X_pool, y_pool)
    start = time.perf_counter()
    scores = zero._class_scores(X_test)
    rate = len(X_test) / (time.perf_counter() - start)
    # The same scores before the prior is divided out.
    for name, s in [
        ("zero-shot, defaults", scores),
        ("zero-shot, defaults without calibration", scores + zero.label_prior_),
    ]:
        pred = zero.classes_[s.argmax(1)]
        rows.append((name, float((pred == y_test).mean()), f1_score(y_test, pred, average="macro"), rate))
        print(f"| {name} | {rows[-1][1]:.3f} | {rows[-1][2]:.3f} | {rate:.2f} |", flush=True)
    for selection, k in [(selection, k) for selection in selections for k in counts]:
        few = FewShotClassifier(n_examples=k, example_selection=selection, label_words=words, random_state=0)
        few.fit(X_pool, y_pool)
        start = time.perf_counter()
        scores = few._class_scores(X_test)
        rate = len(X_test) / (time.perf_counter() - start)
        for name, s in [
            (f"few-shot, {k} {selection} demonstrations", scores),
            (f"few-shot, {k} {selection} demonstrations, without calibration", scores + few.label_prior_),
        ]:
            pred = few.classes_[s.argmax(1)]
            rows.append((name, float((pred == y_test).mean()), f1_score(y_test, pred, average="macro"), rate))
            print("| {} | {:.3f} | {:.3f} | {:.2f} |".format(*rows[-1]), flush=True)
    print("\n| method | accuracy | macro-F1 | prompts/s |\n|---|---|---|---|")
    for name, acc, f1, rate in rows:
        print(f"| {name} | {acc:.3f} | {f1:.3f} | {rate:.2f} |", flush=True)


def sms(n, selections, counts, ham_word=None):
    data = load_sms_spam(drop_duplicates=True)
    words = dict(data.label_words, **({"ham": ham_word} if ham_word else {}))
    X_rest, X_test, y_rest, y_test = train_test_split(
        data.data, data.target, test_size=n, stratify=data.target, random_state=0
    )
    print(f"SMS spam: test sample {n} stratified (ham {np.mean(y_test == 'ham'):.3f}); pool 2000; wordings {words}")
    defaults_rows(
        X_rest.tolist()[:2000],
        y_rest.tolist()[:2000],
        X_test.tolist(),
        y_test.to_numpy(),
        words,
        selections,
        counts,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--defaults-only", action="store_true", help="only the zero- and few-shot rows")
    parser.add_argument(
        "--sms", action="store_true", help="SMS spam instead (stratified sample, class names as wordings)"
    )
    parser.add_argument("--selections", nargs="*", default=["balanced", "nearest"], help="few-shot rows")
    parser.add_argument("--n-examples", nargs="+", type=int, default=[8], help="demonstrations per few-shot row")
    parser.add_argument("--ham-word", default=None, help="with --sms: the wording of ham (default: the dataset's)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    if args.sms:
        return sms(args.n, args.selections, args.n_examples, args.ham_word)
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_test, y_test = balanced(X, y, 500, seed=0)
    X_test, y_test = X_test[: args.n], y_test[: args.n]
    rest = ~X.isin(balanced(X, y, 500, seed=0)[0])
    X_pool, y_pool = X[rest].tolist()[:2000], y[rest].tolist()[:2000]
    X_tune, y_tune = balanced(X[rest].iloc[2000:], y[rest].iloc[2000:], 90, seed=1)
    print(f"torch threads {torch.get_num_threads()}; test sample {len(X_test)} balanced; pool {len(X_pool)}")

    defaults_rows(X_pool, y_pool, X_test, y_test, WORDS, args.selections, args.n_examples)
    if args.defaults_only:
        return
    rows = []
    search = GridSearchCV(
        ZeroShotClassifier(label_words=WORDS), {"template": TEMPLATES}, cv=StratifiedKFold(3), scoring="accuracy"
    ).fit(X_tune, y_tune)
    tuned = ZeroShotClassifier(classes=["fresh", "rotten"], label_words=WORDS, **search.best_params_).fit()
    rows = [("zero-shot, best template of the grid", *timed_accuracy(tuned, X_test, y_test))]
    print("\ngrid (3-fold accuracy on 90 separate texts):")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  {score:.3f}  {params['template']!r}")

    for name, acc, f1, rate in rows:
        print(f"| {name} | {acc:.3f} | {f1:.3f} | {rate:.2f} |")

    five = ZeroShotClassifier(classes=["awful", "bad", "mixed", "good", "great"]).fit()
    texts = X_test[:100]
    start = time.perf_counter()
    fast = five._class_scores(texts)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive_scores(five, texts)
    naive = time.perf_counter() - start
    print(
        f"\nlabel scoring, 100 texts x 5 labels: {ours:.1f} s against {naive:.1f} s naively "
        f"({naive / ours:.1f}x); max |difference| {np.abs(fast - slow).max():.2e}"
    )


if __name__ == "__main__":
    main()
