"""Choose the zero-shot defaults (template x wordings x length normalisation x calibration) on two datasets.

Tuning samples only (disjoint from the test samples of bench_icl.py and from the
demonstration pools): 120 balanced Rotten Tomatoes snippets and 120 balanced SMS
messages. One scoring pass per (template, wordings) gives the raw summed
log-likelihoods; length normalisation and every calibration are applied to the same
scores afterwards, exactly as the estimator does. Scores are kept in --cache so that
a rerun only computes what is missing.

    python benchmarks/bench_icl_choose_defaults.py [--cache /tmp/icl_scores.pkl] [--no-chat]
"""

import argparse
import os
import pickle
import platform
import time
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.utils.extmath import softmax

from skllm import ZeroShotClassifier
from skllm._prompt_classifier import CONTENT_FREE_TEXTS, LEGACY_TEMPLATE
from skllm._selection import balanced_order
from skllm.datasets import load_rotten_tomatoes, load_sms_spam

TEMPLATES = {
    "T0": LEGACY_TEMPLATE,
    "T1": "{examples}Text: {text}\n\nWhich category fits the text: {labels}? Answer with one word.",
    "T4": "{examples}Text: {text}\n\nClassify the text as one of: {labels}.\nAnswer:",
    "T5": (
        "Categories: {labels}.\n\n{examples}Text: {text}\n\n"
        "Which category fits the text best? Answer with the category only."
    ),
    "T6": "{examples}{text}\n\nIs the text above {labels}? Answer with one word.",
    "T7": "{examples}Text: {text}\nCategory ({labels}):",
}
WORDINGS = {
    "rt": {"posneg": {"fresh": "positive", "rotten": "negative"}},
    "sms": {
        "notspam": {"ham": "not spam"},
        "raw": None,
        "normal": {"ham": "normal"},
        "personal": {"ham": "personal"},
        "real": {"ham": "real"},
    },
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def balanced(X, y, n, seed):
    frame = pd.DataFrame({"text": list(X), "label": list(y)})
    part = frame.groupby("label").sample(n // frame["label"].nunique(), random_state=seed)
    part = part.sample(frac=1, random_state=seed)
    return part["text"].tolist(), part["label"].to_numpy()


def datasets():
    X, y = load_rotten_tomatoes(return_X_y=True)
    test = set(balanced(X, y, 500, seed=0)[0])
    rest = ~X.isin(test)
    X_rest, y_rest = X[rest], y[rest]
    pool = (X_rest.tolist()[:2000], y_rest.tolist()[:2000])
    tune = balanced(X_rest.iloc[2000:], y_rest.iloc[2000:], 120, seed=2)
    out = {"rt": (tune, pool)}
    X, y = load_sms_spam(drop_duplicates=True, return_X_y=True)
    X_rest, _, y_rest, _ = train_test_split(X, y, test_size=200, stratify=y, random_state=0)
    pool = (X_rest.tolist()[:2000], y_rest.tolist()[:2000])
    tune = balanced(X_rest.iloc[2000:], y_rest.iloc[2000:], 120, seed=2)
    out["sms"] = (tune, pool)
    return out


def calibration_sample(pool):
    texts, y = pool
    chosen = balanced_order(np.arange(len(texts)), [repr(v) for v in y], 32, np.random.RandomState(0))
    return [texts[i] for i in sorted(chosen)]


def raw_scores(template, words, classes, texts, chat):
    clf = ZeroShotClassifier(
        classes=classes,
        template=template,
        label_words=words,
        calibration=None,
        length_normalize=False,
        use_chat_template=chat,
    ).fit()
    lengths = np.array([len(ids) for ids in clf.label_ids_], dtype=float)
    return clf._class_scores(texts), lengths, list(clf.classes_)


def evaluate(entry, y):
    """Accuracy, balanced accuracy and macro-F1 for every (normalisation, calibration)."""
    n_test, n_cal = entry["n_test"], entry["n_cal"]
    rows = {}
    for norm in (False, True):
        s = entry["scores"] / (entry["lengths"] if norm else 1.0)
        test, cal, free = s[:n_test], s[n_test : n_test + n_cal], s[n_test + n_cal :]
        priors = {
            "none": 0.0,
            "contextual": np.log(softmax(free.copy()).mean(0)),
            "domain": free[CONTENT_FREE_TEXTS.index("")],
            "batch": np.log(softmax(cal.copy()).mean(0)),
        }
        classes = np.asarray(entry["classes"])
        for name, prior in priors.items():
            pred = classes[(test - prior).argmax(1)]
            rows[(norm, name)] = (
                float(np.mean(pred == y)),
                balanced_accuracy_score(y, pred),
                f1_score(y, pred, average="macro"),
            )
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default="/tmp/icl_scores.pkl")
    parser.add_argument("--no-chat", action="store_true", help="also score without the chat template")
    parser.add_argument("--templates", nargs="*", default=list(TEMPLATES))
    parser.add_argument("--wordings", nargs="*", default=None, help="only these wordings (default: all)")
    parser.add_argument("--datasets", nargs="*", default=["rt", "sms"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"threads {torch.get_num_threads()}"
    )
    cache = pickle.load(open(args.cache, "rb")) if os.path.exists(args.cache) else {}
    data = datasets()
    chats = (True, False) if args.no_chat else (True,)
    for chat in chats:
        for ds, ((X_tune, y_tune), pool) in data.items():
            if ds not in args.datasets:
                continue
            classes = sorted(set(y_tune))
            texts = X_tune + calibration_sample(pool) + list(CONTENT_FREE_TEXTS)
            for t in args.templates:
                for w, words in WORDINGS[ds].items():
                    if args.wordings is not None and w not in args.wordings:
                        continue
                    key = (ds, t, w, chat)
                    if key not in cache:
                        start = time.perf_counter()
                        scores, lengths, cls = raw_scores(TEMPLATES[t], words, classes, texts, chat)
                        cache[key] = {
                            "scores": scores,
                            "lengths": lengths,
                            "classes": cls,
                            "n_test": len(X_tune),
                            "n_cal": 32,
                            "seconds": time.perf_counter() - start,
                        }
                        pickle.dump(cache, open(args.cache, "wb"))
                    rows = evaluate(cache[key], y_tune)
                    cells = " ".join(
                        f"{rows[(n, c)][1]:.3f}"
                        for n in (False, True)
                        for c in ("none", "contextual", "domain", "batch")
                    )
                    print(
                        f"{ds:4s} {t} {w:8s} chat={int(chat)} bal.acc [raw: none ctx dom batch | norm: same] {cells}"
                        f"  ({cache[key]['seconds']:.0f} s)",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
