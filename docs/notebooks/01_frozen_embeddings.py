# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Frozen embeddings and scikit-learn heads
#
# A frozen transformer turns each text into a vector once; any scikit-learn model learns
# on the vectors. This notebook trains logistic regression, a linear SVM and XGBoost on
# embeddings of Rotten Tomatoes critic snippets, tunes the head *and* the pooling in one
# `GridSearchCV`, shows the embedding cache at work, and saves the model with joblib.
#
# **Sample:** 400 training and 200 held-out snippets, stratified, drawn from the 12,808 of
# `load_rotten_tomatoes()`; 3-fold cross-validation; the packaged all-MiniLM-L6-v2
# encoder. Under a minute on 2 CPU cores with an empty cache, seconds once the
# embeddings are cached.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from xgboost import XGBClassifier

from skllm import LabelEncodedClassifier, TransformerEmbedder
from skllm.datasets import load_rotten_tomatoes

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
X, X_test, y, y_test = train_test_split(
    X_all, y_all, train_size=400, test_size=200, stratify=y_all, random_state=0
)
X, y = X.reset_index(drop=True), y.reset_index(drop=True)
print(len(X), "training snippets,", len(X_test), "held out;", y.value_counts().to_dict())
X.head(3).tolist()

# %% [markdown]
# ## The cache at work
#
# Each (model, pooling, text) is embedded once and stored on disk. A fresh, temporary
# cache shows the difference between the first run and the second; everywhere else the
# notebook uses the default cache (`~/.cache/skllm`).

# %%
import tempfile

with tempfile.TemporaryDirectory() as folder:
    embedder = TransformerEmbedder(cache_dir=folder).fit()
    timings = {}
    for run in ("first run", "second run"):
        start = time.perf_counter()
        embedder.transform(X[:200])
        timings[run] = time.perf_counter() - start
pd.Series(timings, name="seconds to embed 200 snippets").round(3).to_frame()

# %% [markdown]
# The second run reads 200 vectors from disk instead of running the encoder. This is what
# makes a grid search cheap: whatever the number of folds and candidates, each text is
# embedded once per pooling.

# %% [markdown]
# ## The embedding space
#
# A 2-D projection (PCA) of the 384-dimensional vectors, coloured by label (left). The
# classes overlap in the two directions of largest variance: sentiment is not what varies
# most between snippets. A linear head finds the direction that does separate them
# (right: its cross-validated decision values, which each snippet got from a head that
# did not see it).

# %%
from sklearn.model_selection import cross_val_predict

vectors = TransformerEmbedder().fit_transform(X)
points = PCA(n_components=2, random_state=0).fit_transform(vectors)
scores = cross_val_predict(LinearSVC(), vectors, y, cv=5, method="decision_function")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
for label, colour in [("fresh", "tab:green"), ("rotten", "tab:red")]:
    mask = (y == label).to_numpy()
    left.scatter(points[mask, 0], points[mask, 1], s=8, alpha=0.6, c=colour, label=label)
    right.hist(scores[mask], bins=30, alpha=0.6, color=colour, label=label)
left.set_xlabel("first principal component")
left.set_ylabel("second principal component")
left.set_title("PCA of the embeddings of 400 snippets")
left.legend()
right.axvline(0, color="grey", lw=1)
right.set_xlabel("decision value of a linear SVM (positive: rotten)")
right.set_ylabel("snippets")
right.set_title("The direction a linear head finds")
right.legend()
plt.show()

# %% [markdown]
# ## Heads and pooling in one grid search
#
# The head is a step of the pipeline, so `GridSearchCV` can swap it like any parameter.
# XGBoost wants labels `0..n-1`: `LabelEncodedClassifier` encodes and decodes them.

# %%
pipe = Pipeline([("embed", TransformerEmbedder()), ("head", LogisticRegression(max_iter=1000))])
heads = [
    LogisticRegression(max_iter=1000),
    LinearSVC(),
    LabelEncodedClassifier(XGBClassifier(n_estimators=50, max_depth=3, n_jobs=1)),
]
grid = {"embed__pooling": ["mean", "cls"], "head": heads}
search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0))
start = time.perf_counter()
search.fit(X, y)
print(f"grid search: {len(search.cv_results_['params'])} candidates x 3 folds in {time.perf_counter() - start:.1f} s")

results = pd.DataFrame(
    {
        "pooling": search.cv_results_["param_embed__pooling"],
        "head": [
            "XGBoost" if isinstance(h, LabelEncodedClassifier) else type(h).__name__
            for h in search.cv_results_["param_head"]
        ],
        "accuracy": search.cv_results_["mean_test_score"].round(3),
        "± std": search.cv_results_["std_test_score"].round(3),
        "fit s": search.cv_results_["mean_fit_time"].round(2),
    }
).sort_values("accuracy", ascending=False)
results

# %%
print("best:", search.best_params_["embed__pooling"], "pooling,", search.best_params_["head"])
print(f"held-out accuracy: {search.score(X_test, y_test):.3f}")

# %% [markdown]
# ## Save and load with joblib
#
# The file holds the head and the embedder's parameters, not the encoder's weights: the
# model is reloaded by name (and revision) on first use after loading.

# %%
import os

import joblib

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "sentiment.joblib")
    joblib.dump(search.best_estimator_, path)
    size_kb = os.path.getsize(path) / 1e3
    restored = joblib.load(path)
same = np.array_equal(restored.predict(X_test), search.predict(X_test))
print(f"{size_kb:.0f} KB on disk; same predictions after loading: {same}")
restored.predict(["a gripping, beautifully shot film", "two hours I will never get back"])

# %% [markdown]
# ## What to try next
#
# - Use all 12,808 snippets (`examples/compare_heads.py` does: about 0.77 accuracy).
# - Add `"max"` pooling or another encoder (`TransformerEmbedder("some/model")`) to the grid.
# - `load_sms_spam()` instead: spam is easier, about 0.98 with the same pipeline.
# - Put `GridSearchCV(n_jobs=-1)` to work: the cache is shared between processes.
# - When frozen embeddings are not enough, fine-tune: see the next notebook.
