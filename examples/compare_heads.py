"""Frozen embeddings + scikit-learn heads, cross-validated on a real dataset.

Embeds the Rotten Tomatoes critic snippets once with the default encoder
(all-MiniLM-L6-v2), then compares logistic regression, a linear SVM and XGBoost
heads with 5-fold cross-validation. Every fold and every head reads the
embeddings from the cache: the texts are embedded once.

    python examples/compare_heads.py [--dataset rotten_tomatoes|sms_spam] [--n-samples N]
"""

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from skllm import LabelEncodedClassifier, TransformerEmbedder, datasets


def heads():
    out = {
        "logistic regression": LogisticRegression(max_iter=2000),
        "linear SVM": LinearSVC(C=1.0),
    }
    try:
        from xgboost import XGBClassifier
    except ImportError:
        print("xgboost is not installed (pip install 'skllm-toolkit[xgboost]'): skipping that head")
    else:
        # XGBoost wants labels 0..n-1: LabelEncodedClassifier encodes and decodes them.
        out["XGBoost"] = LabelEncodedClassifier(XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.1))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["rotten_tomatoes", "sms_spam"], default="rotten_tomatoes")
    parser.add_argument("--n-samples", type=int, default=None, help="stratified sub-sample (default: all)")
    parser.add_argument("--cv", type=int, default=5)
    args = parser.parse_args()

    X, y = getattr(datasets, f"load_{args.dataset}")(return_X_y=True)
    if args.n_samples and args.n_samples < len(X):
        keep = StratifiedKFold(n_splits=len(X) // args.n_samples, shuffle=True, random_state=0).split(X, y)
        idx = next(keep)[1]
        X, y = X.iloc[idx], y.iloc[idx]
    print(f"{args.dataset}: {len(X)} texts, classes {y.value_counts().to_dict()}")

    embedder = TransformerEmbedder(verbose=1)
    start = time.perf_counter()
    embedder.fit(X).transform(X)  # fills the cache; every fold below reads from it
    print(f"embedded (or read from the cache) in {time.perf_counter() - start:.1f} s with {embedder.model_name}")

    cv = StratifiedKFold(n_splits=args.cv, shuffle=True, random_state=0)
    rows = []
    for name, head in heads().items():
        pipe = make_pipeline(TransformerEmbedder(), head)
        scores = cross_validate(pipe, X, y, cv=cv, scoring=["accuracy", "f1_macro"])
        rows.append(
            {
                "head": name,
                "accuracy": f"{scores['test_accuracy'].mean():.3f} ± {scores['test_accuracy'].std():.3f}",
                "macro-F1": f"{scores['test_f1_macro'].mean():.3f} ± {scores['test_f1_macro'].std():.3f}",
                "fit s/fold": round(float(np.mean(scores["fit_time"])), 2),
            }
        )
        print(f"  {name}: done")
    majority = y.value_counts(normalize=True).max()
    print(f"\n{args.cv}-fold cross-validation (majority class: {majority:.3f})")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
