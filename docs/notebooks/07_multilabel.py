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
# # Several labels per text: frozen embeddings against multi-label fine-tuning
#
# A multi-label task gives each text a set of labels, possibly empty, possibly several.
# scikit-learn writes it as a 0/1 indicator matrix, one column per label
# (`MultiLabelBinarizer`). Two ways to learn it from a pretrained encoder: one logistic
# regression per label on frozen embeddings (`OneVsRestClassifier`), or one network
# fine-tuned on all labels at once (`FineTuneClassifier` given the indicator matrix: one
# sigmoid output per label, binary cross-entropy). Both predict an indicator matrix, so
# the same metrics, grid searches and joblib files work for either.
#
# **The task** is built from the two packaged datasets, as in `examples/multilabel.py`:
# each text is one or two real pieces side by side, each piece a Rotten Tomatoes snippet
# (`fresh` or `rotten`) or an SMS (`spam` or `ham`), and its labels are the human labels
# of its pieces. About half the texts have one piece, the others two of different kinds;
# every piece is used once, so no piece is in both training and test texts. It is a
# constructed task: real multi-label data has skewed, correlated labels.
#
# **Sample:** 120 training and 200 test texts (seed 0); at most 64 tokens per text, on the
# packaged all-MiniLM-L6-v2; LoRA for 2 epochs of 16 texts per step (16 steps); a grid
# search of 3 thresholds on 2 folds (7 fits with the refit) with the cheap `"head"`
# method. About two minutes on 2 CPU cores with an empty embedding cache. With so few
# texts the scores are noisy: the point is the workflow (the example script runs 200 /
# 300 texts, 3 epochs, 96 tokens).

# %%
import io
import time
import warnings

import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from skllm import FineTuneClassifier, TransformerEmbedder
from skllm.datasets import load_rotten_tomatoes, load_sms_spam
from skllm.exceptions import TruncationWarning

N_TRAIN, N_TEST, MAX_LENGTH = 120, 200, 64


def pools():
    """The four kinds of pieces, each a list of distinct texts."""
    reviews = load_rotten_tomatoes().frame.drop_duplicates("text")
    messages = load_sms_spam(drop_duplicates=True).frame.drop_duplicates("text")
    return {
        "fresh": reviews.loc[reviews["label"] == "fresh", "text"].tolist(),
        "rotten": reviews.loc[reviews["label"] == "rotten", "text"].tolist(),
        "spam": messages.loc[messages["label"] == "spam", "text"].tolist(),
        "ham": messages.loc[messages["label"] == "ham", "text"].tolist(),
    }


def build_task(n, seed=0):
    """``n`` texts of one or two pieces, and their label sets (as examples/multilabel.py)."""
    rng = np.random.RandomState(seed)
    remaining = {kind: [texts[i] for i in rng.permutation(len(texts))] for kind, texts in pools().items()}
    kinds = sorted(remaining)
    texts, labels = [], []
    for _ in range(n):
        chosen = rng.choice(kinds, size=rng.randint(1, 3), replace=False)
        pieces = [remaining[kind].pop() for kind in chosen]  # each piece used once
        texts.append(" ".join(pieces[i] for i in rng.permutation(len(pieces))))
        labels.append(set(chosen.tolist()))
    return texts, labels


texts, labels = build_task(N_TRAIN + N_TEST)
binarizer = MultiLabelBinarizer()
Y = binarizer.fit_transform(labels)
names = binarizer.classes_.tolist()
X_train, X_test = texts[:N_TRAIN], texts[N_TRAIN:]
Y_train, Y_test = Y[:N_TRAIN], Y[N_TRAIN:]

pd.DataFrame({"text": [t[:90] for t in texts[:6]], "labels": [sorted(s) for s in labels[:6]]})

# %% [markdown]
# The indicator matrix has one column per label, in the binarizer's order; here are the
# texts that carry each label, and how many labels the texts have:

# %%
print("columns:", names)
counts = pd.DataFrame(
    {"training texts": Y_train.sum(axis=0), "test texts": Y_test.sum(axis=0)}, index=pd.Index(names, name="label")
)
print(counts.to_string())
print("texts with 0 / 1 / 2 labels:", np.bincount(Y.sum(axis=1), minlength=3).tolist())


def scores(Y_true, Y_pred):
    """Micro-F1 pools every (text, label) decision; macro-F1 is the mean of the labels' F1;
    subset accuracy counts a text as right only when all its labels are."""
    return {
        "micro-F1": f1_score(Y_true, Y_pred, average="micro", zero_division=0),
        "macro-F1": f1_score(Y_true, Y_pred, average="macro", zero_division=0),
        "subset accuracy": accuracy_score(Y_true, Y_pred),
    }


# %% [markdown]
# ## Frozen embeddings, one logistic regression per label
#
# `TransformerEmbedder` embeds each text once (mean pooling, frozen MiniLM) and
# `OneVsRestClassifier` fits one `LogisticRegression` per column of the indicator matrix.

# %%
frozen = make_pipeline(
    TransformerEmbedder(max_length=MAX_LENGTH), OneVsRestClassifier(LogisticRegression(max_iter=2000))
)
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", TruncationWarning)
    frozen.fit(X_train, Y_train)
print(f"fitted in {time.perf_counter() - start:.1f} s")
for warning in caught:
    if issubclass(warning.category, TruncationWarning):
        print("note:", warning.message)  # two long pieces side by side may not fit in 64 tokens
# Cutting at 64 tokens is for speed here; the rest of the notebook does not repeat the warning.
warnings.filterwarnings("ignore", category=TruncationWarning)

Y_frozen = frozen.predict(X_test)
print("prediction shape:", Y_frozen.shape)
results = {"frozen + one-vs-rest LR": scores(Y_test, Y_frozen)}
pd.DataFrame(results).round(3)

# %% [markdown]
# ## Fine-tuning on the indicator matrix
#
# Given a 0/1 matrix, `FineTuneClassifier` switches to multi-label (`multilabel_` is
# True): one output per label, and `predict` returns the labels whose probability is
# above `threshold` (0.5 by default). LoRA adapts the same encoder; the output layer
# starts from one logistic regression per label on the untrained network's features
# (`head_init="linear_probe"`, the default), so training starts from a linear model on
# the same frozen features as above.

# %%
tuned = FineTuneClassifier(method="lora", epochs=2, max_length=MAX_LENGTH, batch_size=16, random_state=0)
start = time.perf_counter()
tuned.fit(X_train, Y_train)
print(
    f"fitted in {time.perf_counter() - start:.1f} s; multilabel_={tuned.multilabel_}, "
    f"classes_={tuned.classes_.tolist()} (the columns of {names})"
)
Y_tuned = tuned.predict(X_test)
results["LoRA fine-tuned"] = scores(Y_test, Y_tuned)
pd.DataFrame(results).round(3)

# %% [markdown]
# `predict_proba` gives each label's own probability, so a row need not sum to one; the
# binarizer turns predicted rows back into label sets:

# %%
proba = pd.DataFrame(tuned.predict_proba(X_test[:5]), columns=names)
proba.insert(0, "text", [t[:60] for t in X_test[:5]])
proba["predicted"] = [sorted(s) for s in binarizer.inverse_transform(Y_tuned[:5])]
proba["true"] = [sorted(s) for s in labels[N_TRAIN : N_TRAIN + 5]]
proba.round(3)

# %% [markdown]
# `loss_curve_` holds the mean training loss of each epoch (binary cross-entropy,
# averaged over texts and labels):

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(range(1, len(tuned.loss_curve_) + 1), tuned.loss_curve_, marker="o")
ax.set_xticks(range(1, tuned.epochs + 1))
ax.set_xlabel("epoch")
ax.set_ylabel("binary cross-entropy")
ax.set_title(f"LoRA, multi-label, {N_TRAIN} training texts")
plt.show()

# %% [markdown]
# ## Tuning the threshold in a grid search
#
# `threshold` is an ordinary parameter, read at prediction, so `GridSearchCV` can tune
# it with a multi-label scoring such as `"f1_micro"` (the default `score`, subset
# accuracy, is strict). Each candidate is still a fit per fold; to keep this cheap the
# search uses the `"head"` method, which trains a small network on the frozen encoder's
# features (computed once per text and cached). The folds are plain `KFold`: scikit-learn does not stratify multi-label
# targets.

# %%
search = GridSearchCV(
    FineTuneClassifier(method="head", epochs=3, max_length=MAX_LENGTH, random_state=0),
    {"threshold": [0.3, 0.5, 0.7]},
    scoring="f1_micro",
    cv=KFold(2, shuffle=True, random_state=0),
)
start = time.perf_counter()
search.fit(X_train, Y_train)
print(f"{len(search.cv_results_['params'])} candidates x 2 folds + refit in {time.perf_counter() - start:.1f} s")
print("best:", search.best_params_)
results[f"head, threshold {search.best_params_['threshold']}"] = scores(Y_test, search.predict(X_test))
pd.DataFrame(search.cv_results_)[["param_threshold", "mean_test_score", "std_test_score"]].round(3)

# %% [markdown]
# All three models on the same test texts:

# %%
table = pd.DataFrame(results).T
table.round(3)

# %% [markdown]
# ## Per label
#
# The averages hide which labels are hard. The F1 of each label, for the frozen and the
# fine-tuned model:

# %%
per_label = pd.DataFrame(
    {
        "frozen + one-vs-rest LR": f1_score(Y_test, Y_frozen, average=None, zero_division=0),
        "LoRA fine-tuned": f1_score(Y_test, Y_tuned, average=None, zero_division=0),
    },
    index=pd.Index(names, name="label"),
)
print(per_label.round(3).to_string())
print("labels where fine-tuning scores higher:", per_label.index[per_label.iloc[:, 1] > per_label.iloc[:, 0]].tolist())

ax = per_label.plot.bar(figsize=(6, 3.5), rot=0)
ax.set_ylabel(f"F1 on {N_TEST} test texts")
ax.set_ylim(0, 1.05)
ax.set_title("F1 per label")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## Save and load with joblib
#
# The file holds the LoRA weights, the output layer and the parameters (the threshold
# among them), not the encoder, which is reloaded by name. Keep the binarizer with it to
# name the columns.

# %%
buffer = io.BytesIO()
joblib.dump({"model": tuned, "binarizer": binarizer}, buffer)
size_kb = buffer.tell() / 1e3
buffer.seek(0)
loaded = joblib.load(buffer)
same = np.array_equal(loaded["model"].predict(X_test), Y_tuned)
print(f"{size_kb:.0f} KB; same predictions after loading: {same}")
loaded["binarizer"].inverse_transform(
    loaded["model"].predict(["Free entry! Text WIN to 80082 now.", "A gorgeous, moving film. See you at 8?"])
)

# %% [markdown]
# ## What to try next
#
# - More data, epochs and tokens: `python examples/multilabel.py --n-train 500 --epochs 3`.
# - Every method that can do multi-label, with their cost: `skllm compare data.csv --label
#   tags --multilabel "|"`, or `compare_methods` with the indicator matrix as `y`.
# - `class_weight="balanced"` for rare labels, `early_stopping=True` (it scores the
#   validation split by micro-F1 at `threshold`).
# - A threshold tuned on the LoRA model itself, or one per label from `predict_proba` on a
#   validation split.
# - A sparse indicator matrix (SciPy CSR) for many labels: `predict` then returns CSR too.
