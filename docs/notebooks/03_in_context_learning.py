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
# **Sample:** 72 Rotten Tomatoes snippets, stratified from `load_rotten_tomatoes()`: 24
# as the pool of demonstrations (and the texts calibration is estimated on), 16 for the
# template search (2 folds of 8), 32 held out. The LM reads every prompt in full, about a
# third of a second each on 2 CPU cores, so the samples are sized for a run of under two
# minutes, plus half a minute the very first time, when the packaged model is
# de-quantised into the skllm cache. On 32 snippets one snippet is 3 points of accuracy:
# the numbers below show how the estimators are used, not which setting is better (the
# benchmarks page measures that on hundreds of snippets).

# %%
import time
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skllm import FewShotClassifier, NearestSelection, ZeroShotClassifier
from skllm.datasets import load_rotten_tomatoes

# Warnings print their category and message, without the path of the library file that raised them.
warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
X_rest, X_test, y_rest, y_test = train_test_split(
    X_all, y_all, train_size=40, test_size=32, stratify=y_all, random_state=0
)
X_pool, X_tune, y_pool, y_tune = train_test_split(X_rest, y_rest, train_size=24, stratify=y_rest, random_state=0)
X_pool, y_pool = X_pool.reset_index(drop=True), y_pool.reset_index(drop=True)
words = {"fresh": "positive", "rotten": "negative"}  # what the model is asked to answer
accuracy = {}

# %% [markdown]
# ## Zero-shot
#
# `fit` records the classes and estimates the model's prior over the two wordings from
# the texts it is given (batch calibration, the default), so that one wording does not win
# for every text; `predict_proba` is a softmax over the calibrated scores of the class
# wordings.

# %%
start = time.perf_counter()
zero = ZeroShotClassifier(label_words=words).fit(X_pool, y_pool)
accuracy["zero-shot, default template"] = zero.score(X_test, y_test)
print(f"zero-shot accuracy {accuracy['zero-shot, default template']:.3f} in {time.perf_counter() - start:.0f} s")
pd.DataFrame(zero.predict_proba(X_test[:3]), columns=zero.classes_, index=X_test[:3].str[:70]).round(3)

# %% [markdown]
# ## Hard prompt tuning is a grid search over templates
#
# `None` is the default template. `{text}` is the snippet, `{labels}` the wordings. Each
# of the 3 templates is fitted and scored on 2 folds, then the best is refitted on the 16
# tuning snippets and scored on the held-out ones. With 8 snippets per fold the
# cross-validated accuracies are coarse (steps of 1/16): a real search wants a few hundred.

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
# Eight demonstrations from the pool (the default `n_examples=8`) are shown before each
# text, as earlier turns of the chat. With `"balanced"` (the default) they are the same for
# every text, taken from each class in turn; every prompt then starts the same way, and
# the LM reads that shared start once for all texts.

# %%
start = time.perf_counter()
few = FewShotClassifier(label_words=words, random_state=0).fit(X_pool, y_pool)
accuracy["few-shot, balanced"] = few.score(X_test, y_test)
print(f"few-shot accuracy {accuracy['few-shot, balanced']:.3f} in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ### Which demonstrations were chosen
#
# The fitted strategy is `example_selection_`; `select` gives, for each text, the pool
# indices of its demonstrations, in the order of the prompt (the last is next to the
# text). Balanced selection gives every text the same ones.


# %%
def show(selection, texts):
    for text, picks in zip(texts, selection.select(texts)):
        print("TEXT:", " ".join(text.split()))
        for i in picks:
            print(f"   [{y_pool[i]}] {' '.join(X_pool[i].split())[:110]}")
        print()


show(few.example_selection_, X_test[:2].tolist())

# %% [markdown]
# `example_selection="nearest"` chooses per text: the pool snippets most similar to it
# (cosine similarity of all-MiniLM-L6-v2 embeddings), the most similar last. The strategy
# is an object of its own, so what it would choose can be looked at without the LM.
# Similar means close in embedding space: a neighbour may share the text's topic and not
# its sentiment. Scoring with such demonstrations costs about twice as much per text as
# with balanced ones, since no two prompts start alike.

# %%
nearest = NearestSelection().fit(X_pool, y_pool, n_examples=4)
show(nearest, X_test[:2].tolist())

# %% [markdown]
# ## Summary
#
# Held-out accuracy of each variant on the same 32 snippets. Differences of one or two
# snippets (3 to 6 points) are noise at this size. Measured on samples of 120 snippets
# and more ("How the defaults were chosen" in the in-context learning guide),
# demonstrations do not help SmolLM2-135M on Rotten Tomatoes (calibrated zero-shot is
# best) but do on SMS spam.

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
# - Larger samples: each prompt costs the same, so 10 times the snippets is about 10
#   times the time; `benchmarks/bench_icl.py` runs the comparison on hundreds.
# - `scoring="neg_log_loss"` in the grid search selects the template by calibration.
# - `FewShotClassifier(example_selection="nearest")` prompts with the neighbours shown
#   above; `NearestSelection(balance=True)` takes the nearest of each class in turn.
# - Tune `n_examples` and `example_selection` together with the template.
# - `FewShotGenerator` answers with text instead of a class; the next notebook uses it
#   to answer questions from retrieved documents.
# - Any causal LM from the Hugging Face Hub works as `model_name` where the Hub is reachable.
