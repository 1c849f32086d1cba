"""Zero-shot SMS spam: templates and wordings of the two classes, on a stratified tuning sample.

The tuning sample is 400 messages drawn stratified (ham 0.87) from the messages that are
neither in the test sample of ``bench_icl.py --sms`` nor in its pool of 2,000; the
classifier is fitted (batch calibration) on that pool. For each (template, wording of
ham / spam): the ROC AUC of the calibrated score difference (how well the scores rank
spam above ham, whatever the threshold), accuracy and macro-F1 of ``predict`` (every
other parameter at its default), and the macro-F1 at the best threshold on these same
scores (an optimistic ceiling for any recalibration of them).

    python benchmarks/bench_icl_sms_wordings.py [--configs T1:normal:spam T1:real:spam ...]
    python benchmarks/bench_icl_sms_wordings.py --configs T1:normal:spam --sample test
    python benchmarks/bench_icl_sms_wordings.py --configs T1:normal:spam T1:real:spam --few-shot
    python benchmarks/bench_icl_sms_wordings.py --configs T1:normal:spam T1:real:spam --few-shot --n-examples 8

``--sample test`` scores the test sample of ``bench_icl.py --sms`` (200 messages) instead;
``--few-shot`` uses FewShotClassifier with balanced demonstrations from the pool,
``--n-examples`` of them (4 unless given; the classifier's default is now 8). Each row also
gives the macro-F1 after adding the log class frequencies of the pool's labels (a Bayes
prior), scaled by 0, 0.25, 0.5 and 1.

Templates are those of ``bench_icl_choose_defaults.py`` (T1 is the default).
"""

import argparse
import time
import warnings

import numpy as np
from bench_icl_choose_defaults import TEMPLATES, cpu_model
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

from skllm import FewShotClassifier, ZeroShotClassifier
from skllm.datasets import load_sms_spam

CONFIGS = [
    "T0:normal:spam",
    "T1:normal:spam",
    "T4:normal:spam",
    "T5:normal:spam",
    "T7:normal:spam",
    "T1:safe:spam",
    "T1:legitimate:spam",
    "T1:message:spam",
    "T1:real:spam",
    "T1:genuine:spam",
    "T1:fine:spam",
    "T1:normal:advertisement",
    "T1:normal:scam",
    "T1:real:advertisement",
    "T1:real:scam",
    "T4:real:spam",
    "T6:real:spam",
]


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=CONFIGS, help="TEMPLATE:HAM_WORDING:SPAM_WORDING")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--sample", choices=["tune", "test"], default="tune")
    parser.add_argument("--few-shot", action="store_true")
    parser.add_argument("--n-examples", type=int, default=4, help="demonstrations with --few-shot")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    data = load_sms_spam(drop_duplicates=True)
    X_rest, X_test, y_rest, y_test = train_test_split(
        data.data, data.target, test_size=200, stratify=data.target, random_state=0
    )
    X_rest, y_rest = X_rest.tolist(), y_rest.tolist()
    X_pool, y_pool = X_rest[:2000], y_rest[:2000]
    X_tune, _, y_tune, _ = train_test_split(
        X_rest[2000:], y_rest[2000:], train_size=args.n, stratify=y_rest[2000:], random_state=1
    )
    if args.sample == "test":
        X_tune, y_tune = X_test.tolist(), y_test
    y_tune = np.asarray(y_tune)
    prior = np.log([np.mean(np.asarray(y_pool) == c) for c in ("ham", "spam")])
    kind = f"few-shot ({args.n_examples} balanced demonstrations)" if args.few_shot else "zero-shot"
    print(f"{kind}, {args.sample} sample: {len(X_tune)} messages, ham {np.mean(y_tune == 'ham'):.3f}")
    print(
        "| template | ham / spam wording | ROC AUC | accuracy | macro-F1 | macro-F1, best threshold | "
        "macro-F1 with the class prior x 0 / 0.25 / 0.5 / 1 | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for config in args.configs:
        template, ham, spam = config.split(":")
        start = time.perf_counter()
        params = dict(template=TEMPLATES[template], label_words={"ham": ham, "spam": spam})
        if args.few_shot:
            clf = FewShotClassifier(n_examples=args.n_examples, random_state=0, **params)
        else:
            clf = ZeroShotClassifier(**params)
        scores = clf.fit(X_pool, y_pool)._class_scores(X_tune)
        assert list(clf.classes_) == ["ham", "spam"]
        diff = scores[:, 1] - scores[:, 0]
        pred = clf.classes_[scores.argmax(1)]
        best = max(
            f1_score(y_tune, np.where(diff > t, "spam", "ham"), average="macro")
            for t in np.quantile(diff, np.linspace(0.01, 0.99, 99))
        )
        print(
            f"| {template} | {ham} / {spam} | {roc_auc_score(y_tune == 'spam', diff):.3f} | "
            f"{np.mean(pred == y_tune):.3f} | {f1_score(y_tune, pred, average='macro'):.3f} | {best:.3f} | "
            + " / ".join(
                f"{f1_score(y_tune, clf.classes_[(scores + w * prior).argmax(1)], average='macro'):.3f}"
                for w in (0, 0.25, 0.5, 1)
            )
            + f" | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
