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
# # In-context learning: zero-shot, few-shot, hard prompt tuning
#
# No weight changes: the task is shown in the prompt of a local causal LM
# (SmolLM2-135M-Instruct, packaged), and every class's wording is scored as the answer,
# so the prediction is always a class. The template is a hyperparameter, so hard prompt
# tuning is a grid search, and the demonstrations a few-shot prompt shows can be chosen
# per text.
#
# **Sample:** 40 labelled snippets as the pool of demonstrations, 60 for the template
# search, 60 held out, all stratified from `load_rotten_tomatoes()`. About two minutes on
# 2 CPU cores, plus half a minute the very first time, when the packaged model is
# de-quantised into the skllm cache.

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skllm import FewShotClassifier, ZeroShotClassifier
from skllm.datasets import load_rotten_tomatoes

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
X_rest, X_test, y_rest, y_test = train_test_split(
    X_all, y_all, train_size=100, test_size=60, stratify=y_all, random_state=0
)
X_pool, X_tune, y_pool, y_tune = train_test_split(X_rest, y_rest, train_size=40, stratify=y_rest, random_state=0)
X_pool, y_pool = X_pool.reset_index(drop=True), y_pool.reset_index(drop=True)
words = {"fresh": "positive", "rotten": "negative"}  # what the model is asked to answer
accuracy = {}

# %% [markdown]
# ## Zero-shot
#
# `fit` only records the classes; `predict_proba` is a softmax over the scores of the
# class wordings.

# %%
start = time.perf_counter()
zero = ZeroShotClassifier(label_words=words).fit(X_pool, y_pool)
accuracy["zero-shot, default template"] = zero.score(X_test, y_test)
print(f"zero-shot accuracy {accuracy['zero-shot, default template']:.3f} in {time.perf_counter() - start:.0f} s")
pd.DataFrame(zero.predict_proba(X_test[:3]), columns=zero.classes_, index=X_test[:3].str[:70]).round(3)

# %% [markdown]
# ## Hard prompt tuning is a grid search over templates
#
# `None` is the default template. `{text}` is the snippet, `{labels}` the wordings.

# %%
templates = [
    None,
    "Is the sentiment of this movie review {labels}?\n\nReview: {text}",
    "Review: {text}\nWas the critic's opinion {labels}? Answer with one word.",
]
search = GridSearchCV(
    ZeroShotClassifier(label_words=words),
    {"template": templates},
    cv=StratifiedKFold(2, shuffle=True, random_state=0),
)
start = time.perf_counter()
search.fit(X_tune, y_tune)
print(f"{len(templates)} templates x 2 folds in {time.perf_counter() - start:.0f} s")
accuracy["zero-shot, tuned template"] = search.score(X_test, y_test)
pd.DataFrame(
    {
        "template": [repr(p["template"]) for p in search.cv_results_["params"]],
        "cv accuracy": search.cv_results_["mean_test_score"].round(3),
    }
)

# %% [markdown]
# ## Few-shot
#
# Four demonstrations from the pool are rendered into the prompt: the same ones for
# every text (`"balanced"`, taken from each class in turn), or, with `"nearest"`, the
# pool snippets most similar to each text by embedding similarity.

# %%
for selection in ["balanced", "nearest"]:
    few = FewShotClassifier(n_examples=4, example_selection=selection, label_words=words, random_state=0)
    few.fit(X_pool, y_pool)
    start = time.perf_counter()
    accuracy[f"few-shot, {selection}"] = few.score(X_test, y_test)
    print(f"few-shot ({selection}) accuracy {accuracy[f'few-shot, {selection}']:.3f} in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ### Which demonstrations were chosen
#
# The fitted strategy is `example_selection_`; `select` gives, for each text, the pool
# indices of its demonstrations, the most similar last (next to the text in the prompt).

# %%
chosen = few.example_selection_.select(X_test[:2].tolist())
for text, picks in zip(X_test[:2], chosen):
    print("TEXT:", text)
    for i in picks:
        print(f"   [{y_pool[i]}] {X_pool[i][:110]}")
    print()

# %% [markdown]
# ## Summary

# %%
summary = pd.Series(accuracy, name="held-out accuracy")
fig, ax = plt.subplots(figsize=(7, 3.5))
summary.plot.barh(ax=ax, color="tab:blue")
ax.axvline(y_test.value_counts(normalize=True).max(), color="tab:red", lw=1, label="majority class")
ax.set_xlim(0, 1)
ax.set_xlabel(f"accuracy on {len(X_test)} held-out snippets")
ax.invert_yaxis()
ax.legend(loc="lower right")
plt.show()
summary.round(3).to_frame()

# %% [markdown]
# ## What to try next
#
# - `scoring="neg_log_loss"` in the grid search selects the template by calibration.
# - Tune `n_examples` and `example_selection` together with the template.
# - `NearestSelection(balance=True)` takes the nearest demonstrations of each class in turn.
# - `FewShotGenerator` answers with text instead of a class; the next notebook uses it
#   to answer questions from retrieved documents.
# - Any causal LM from the Hugging Face Hub works as `model_name` where the Hub is reachable.
