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
# # Fine-tuning methods in one grid search
#
# `FineTuneClassifier` adapts the model itself. The method is a hyperparameter: a head on
# the frozen encoder (`"head"`, fine-tuning I), every weight (`"full"`, fine-tuning II),
# low-rank updates (`"lora"`), trained key/value prefixes (`"prefix"`), soft prompt tokens
# (`"prompt"`) or bottleneck adapters (`"adapter"`). So one `GridSearchCV` compares them on
# the same folds, and a plot shows what each costs for the accuracy it gets.
#
# **Sample:** 80 training and 80 held-out Rotten Tomatoes snippets, stratified; 2-fold
# cross-validation; 2 epochs of at most 32 tokens per snippet on the packaged
# all-MiniLM-L6-v2; 18 fits in all. A few minutes on 2 CPU cores. With so few examples
# the numbers are noisy: the point is the workflow, not the ranking (the results page
# has 600 snippets and 3 folds).

# %%
import io
import time
import warnings

import joblib
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skllm import FineTuneClassifier
from skllm.datasets import load_rotten_tomatoes
from skllm.exceptions import TruncationWarning

# max_length=32 cuts about a third of the snippets, on purpose here (speed); a real run
# would keep the default and heed this warning.
warnings.filterwarnings("ignore", category=TruncationWarning)

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
X, X_test, y, y_test = train_test_split(
    X_all, y_all, train_size=80, test_size=80, stratify=y_all, random_state=0
)
methods = ["head", "full", "lora", "prefix", "prompt", "adapter"]
clf = FineTuneClassifier(epochs=2, max_length=32, batch_size=16, random_state=0)
clf

# %% [markdown]
# ## One grid search over the methods
#
# Each method has its own default learning rate (`learning_rate=None`); its own
# hyperparameters are nested parameters (`method__r` for LoRA) and can join the grid.

# %%
search = GridSearchCV(
    clf,
    {"method": methods},
    cv=StratifiedKFold(2, shuffle=True, random_state=0),
    refit=False,  # each method is fitted once more below, to keep its loss curve
)
start = time.perf_counter()
search.fit(X, y)
print(f"{len(methods)} methods x 2 folds in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# Each method is then fitted on the whole training sample and scored on the held-out
# snippets; its fitted attributes say how many parameters it trained, and the pickle
# holds only those (plus the output layer), not the encoder.

# %%
fitted, rows = {}, []
for i, method in enumerate(search.cv_results_["param_method"]):
    model = clone(clf).set_params(method=method)
    start = time.perf_counter()
    model.fit(X, y)
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    fitted[method] = model
    rows.append(
        {
            "method": method,
            "cv accuracy": search.cv_results_["mean_test_score"][i],
            "held-out accuracy": model.score(X_test, y_test),
            "fit s": seconds,
            "trainable params": model.n_trainable_params_,
            "pickle KB": len(buffer.getvalue()) / 1e3,
        }
    )
table = pd.DataFrame(rows).set_index("method")
table.round({"cv accuracy": 3, "held-out accuracy": 3, "fit s": 1, "pickle KB": 0})

# %% [markdown]
# ## Cost against accuracy
#
# The frontier joins the methods that no cheaper method beats. Fit time is on this
# machine (2 CPU cores); its ratios between methods carry over better than its values.

# %%
ordered = table.sort_values("fit s")
frontier = ordered[ordered["held-out accuracy"] >= ordered["held-out accuracy"].cummax()]
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot(frontier["fit s"], frontier["held-out accuracy"], "--", color="grey", label="frontier")
ax.scatter(table["fit s"], table["held-out accuracy"], s=60, zorder=3)
for method, row in table.iterrows():
    ax.annotate(method, (row["fit s"], row["held-out accuracy"]), textcoords="offset points", xytext=(6, 4))
ax.axhline(y_test.value_counts(normalize=True).max(), color="tab:red", lw=1, label="majority class")
ax.set_xscale("log")
ax.set_xlabel("fit time on 80 snippets, seconds (log scale)")
ax.set_ylabel("held-out accuracy (80 snippets)")
ax.set_title("Fine-tuning methods: accuracy against cost")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## Loss curves
#
# `loss_curve_` holds the mean training loss of each epoch.

# %%
fig, ax = plt.subplots(figsize=(7, 4.5))
for method, model in fitted.items():
    ax.plot(range(1, len(model.loss_curve_) + 1), model.loss_curve_, marker="o", label=method)
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (cross-entropy)")
ax.set_xticks(range(1, clf.epochs + 1))
ax.set_title("Training loss per epoch")
ax.legend()
plt.show()

# %% [markdown]
# ## What to try next
#
# - More data and epochs: `examples/compare_methods.py` runs every method on 600 snippets.
# - Tune a method's own parameters: `{"method": [LoRA()], "method__r": [4, 8, 16]}`.
# - `early_stopping=True` keeps the best epoch on a validation split (`validation_scores_`).
# - `FineTuneRegressor` for numeric targets, with the same methods.
# - No training at all: prompt a local LM in the next notebook.
