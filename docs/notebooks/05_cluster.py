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
# # Running on a Dask cluster
#
# skllm runs on [Dask](https://docs.dask.org) without changing the models: `dask_embed`
# embeds a Dask column partition by partition on the workers, a `GridSearchCV` runs its
# fits on the cluster inside `joblib.parallel_backend("dask")`, and `compare_methods`
# sends each (method, fold) pair to the cluster as one task. This notebook does all three
# on a `LocalCluster` of two worker processes, checks that the cluster gives the numbers
# a local run gives, and shows where the time went. The guide "Running on a cluster"
# explains the setup on several machines, the cache and the threads.
#
# **Sample:** Rotten Tomatoes snippets from `load_rotten_tomatoes()`, stratified: 300 for
# `dask_embed` (3 partitions), 150 for the grid search (3 values of `C` x 3 folds, on the
# cluster and locally) and 150 for `compare_methods` (`logreg` and `head`, 3 folds, at
# most 32 tokens per snippet); the packaged all-MiniLM-L6-v2 encoder; 2 workers x 1
# thread. About a minute on 2 CPU cores, most of it the first pass of `dask_embed`
# (loading the model in each worker and embedding 300 snippets on one core each).

# %%
import logging
import tempfile
import time
import warnings

import dask.dataframe as dd
import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster, get_task_stream
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from skllm import TransformerEmbedder, compare_methods, dask_embed
from skllm._dask import backbone_loads
from skllm.datasets import load_rotten_tomatoes
from skllm.exceptions import TruncationWarning

# max_length=32 in the comparison cuts some snippets, on purpose here (speed).
warnings.filterwarnings("ignore", category=TruncationWarning)

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
# 300 snippets, stratified; the index is the row number in the full dataset.
sample = pd.concat([group.sample(150, random_state=0) for _, group in y_all.groupby(y_all)]).index.sort_values()
texts, labels = X_all[sample], y_all[sample]
print(len(texts), "snippets;", labels.value_counts().to_dict())

# %% [markdown]
# ## Start a cluster
#
# Two worker processes with one thread each: each task gets one core and torch uses one
# thread in it, so the two workers do not fight over the 2 cores. `silence_logs` keeps
# the workers' log lines out of the notebook, and `client.run` installs the warning filter
# of the first cell in each worker too: warning filters belong to a process. In a script,
# start the cluster under `if __name__ == "__main__":`, since its workers are new Python
# processes.

# %%
start = time.perf_counter()
cluster = LocalCluster(
    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
)
client = Client(cluster)
client.run(warnings.filterwarnings, "ignore", category=TruncationWarning)
workers = sorted(client.scheduler_info()["workers"])
print(f"{len(workers)} workers started in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Embed a Dask column
#
# `dask_embed` turns a Dask Series of texts into a lazy Dask DataFrame of embeddings:
# one task per partition, the same partitions, index and row order, one float32 column
# per dimension. Nothing is gathered until `compute()` (a corpus too large for memory
# would be read with `dd.read_parquet` and written with `to_parquet`). A fresh,
# temporary cache folder shows the cache at work: the first pass computes and stores
# every embedding, the second reads them back.

# %%
column = dd.from_pandas(texts, npartitions=3)
with tempfile.TemporaryDirectory() as folder:
    embeddings = dask_embed(column, TransformerEmbedder(cache_dir=folder))
    timings = {}
    for run in ("first pass (empty cache)", "second pass (cache filled)"):
        start = time.perf_counter()
        frame = embeddings.compute()
        timings[run] = time.perf_counter() - start
print(f"{column.npartitions} partitions; {frame.shape[0]} rows x {frame.shape[1]} columns")
pd.Series(timings, name=f"seconds to embed {len(texts)} snippets").round(2).to_frame()

# %% [markdown]
# The first pass also loads the model in each worker; the second reads 300 vectors from
# the cache. Row order and index are those of the texts:

# %%
assert frame.index.equals(texts.index)
pd.concat([texts.rename("text").str.slice(0, 60), frame.iloc[:, :3]], axis=1).head()

# %% [markdown]
# ### The embeddings in 2-D
#
# The result is an ordinary DataFrame once computed: a PCA of the 384 dimensions,
# coloured by label. The classes overlap in the two directions of largest variance; a
# linear head finds the direction that separates them.

# %%
points = PCA(n_components=2, random_state=0).fit_transform(frame.to_numpy())
fig, ax = plt.subplots(figsize=(6, 4.5))
for label, colour in [("fresh", "tab:green"), ("rotten", "tab:red")]:
    mask = (labels == label).to_numpy()
    ax.scatter(points[mask, 0], points[mask, 1], s=10, alpha=0.6, c=colour, label=label)
ax.set_xlabel("first principal component")
ax.set_ylabel("second principal component")
ax.set_title(f"PCA of the embeddings of {len(texts)} snippets (computed by dask_embed)")
ax.legend()
plt.show()

# %% [markdown]
# ## A grid search on the cluster
#
# Any `GridSearchCV` over skllm estimators runs its fits and scorings on the cluster inside
# `joblib.parallel_backend("dask")`, with `n_jobs=-1`. The estimators travel to the workers
# without the encoder's weights; each worker loads the model once, whatever the number of
# tasks. The same search run locally (`n_jobs=1`, no backend) gives the same scores split
# by split, so the same `best_params_`.

# %%
X, y = texts.iloc[::2].tolist(), labels.iloc[::2].to_numpy()  # 150 of the 300 snippets
pipe = Pipeline([("embed", TransformerEmbedder()), ("head", LogisticRegression(max_iter=1000))])
grid = {"head__C": [0.1, 1.0, 10.0]}
folds = StratifiedKFold(3, shuffle=True, random_state=0)

searches, seconds = {}, {}
for where in ("cluster", "local"):
    search = GridSearchCV(pipe, grid, cv=folds, n_jobs=-1 if where == "cluster" else 1)
    start = time.perf_counter()
    if where == "cluster":
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
    else:
        search.fit(X, y)
    seconds[where] = time.perf_counter() - start
    searches[where] = search

split_scores = [f"split{i}_test_score" for i in range(3)]
for key in [*split_scores, "mean_test_score"]:
    np.testing.assert_allclose(searches["cluster"].cv_results_[key], searches["local"].cv_results_[key], rtol=1e-6)
assert searches["cluster"].best_params_ == searches["local"].best_params_
print("same scores split by split; best_params_:", searches["cluster"].best_params_)

pd.DataFrame(
    {
        "C": searches["cluster"].cv_results_["param_head__C"],
        "accuracy (cluster)": searches["cluster"].cv_results_["mean_test_score"].round(3),
        "accuracy (local)": searches["local"].cv_results_["mean_test_score"].round(3),
        "± std": searches["cluster"].cv_results_["std_test_score"].round(3),
    }
).assign(**{"rank": searches["cluster"].cv_results_["rank_test_score"]})

# %%
print(f"9 fits + 9 scorings: {seconds['cluster']:.1f} s on the cluster, {seconds['local']:.1f} s locally")

# %% [markdown]
# The search on the cluster ran first: its workers embedded the 150 snippets into the
# default cache (`~/.cache/skllm`, shared by the processes of a machine), unless an
# earlier run had, and the local search read them back. On cached embeddings a fit takes
# milliseconds, so here the cluster's overhead (sending the tasks, a round trip to another
# process) outweighs the parallelism; the cluster pays off when each task is costly, as in
# fine-tuning (the Benchmarks page measures a LoRA grid search on 2 workers).

# %% [markdown]
# ## Comparing methods on the cluster
#
# With `client=`, `compare_methods` makes the folds here, then runs each (method, fold)
# pair as one task on the cluster: 2 methods x 3 folds = 6 tasks. `get_task_stream`
# records when and where each task ran. The comparison gets a fresh, temporary cache
# here, so that what follows shows the embedding work whatever ran before.

# %%
compare_X, compare_y = texts.iloc[1::2].tolist(), labels.iloc[1::2].tolist()  # the other 150
start = time.perf_counter()
with tempfile.TemporaryDirectory() as folder, get_task_stream(client) as stream:
    table = compare_methods(
        compare_X,
        compare_y,
        methods=["logreg", "head"],
        cv=3,
        client=client,
        max_length=32,
        epochs=1,
        cache_dir=folder,
        verbose=0,
    )
print(f"compared in {time.perf_counter() - start:.1f} s")
shown = ["method", "status", "accuracy_mean", "accuracy_std", "f1_macro_mean", "fit_seconds", "trainable_params"]
table[shown].round(3)

# %% [markdown]
# ### Where the time went
#
# One bar per task, on the worker that ran it. Both methods start from the embeddings of
# the texts, and the cache starts empty: the first tasks compute the embeddings and
# store them, the later ones read most of them back (the folds share their texts), so
# they take a fraction of the time. On the embeddings, `logreg` fits a
# logistic regression and `head` trains a classification layer.


# %%
def compute_span(record):
    return next(((s["start"], s["stop"]) for s in record["startstops"] if s["action"] == "compute"), None)


tasks = pd.DataFrame(
    [
        {"worker": record["worker"], "key": str(record["key"]), "span": compute_span(record)}
        for record in stream.data
        if compute_span(record) is not None
    ]
)
# The comparison's task keys read skllm-compare-<method>-fold<i>-<id>.
parts = tasks["key"].str.extract(r"skllm-compare-(?P<method>.+)-fold(?P<fold>\d+)-").dropna()
tasks = tasks.join(parts, how="inner")
t0 = min(start for start, _ in tasks["span"])
tasks["start"] = [start - t0 for start, _ in tasks["span"]]
tasks["seconds"] = [stop - start for start, stop in tasks["span"]]

colours = {"logreg": "tab:blue", "head": "tab:orange"}
lanes = {w: i for i, w in enumerate(sorted(tasks["worker"].unique()))}
tasks_end = (tasks["start"] + tasks["seconds"]).max()
fig, ax = plt.subplots(figsize=(10, 2.8))
for _, task in tasks.iterrows():
    lane = lanes[task["worker"]]
    ax.barh(lane, task["seconds"], left=task["start"], color=colours[task["method"]], edgecolor="white")
    if task["seconds"] > 0.05 * tasks_end:  # the table below gives the short ones
        ax.text(task["start"] + task["seconds"] / 2, lane, f"fold {task['fold']}", ha="center", va="center", fontsize=8)
ax.set_yticks(list(lanes.values()), [f"worker {i + 1}" for i in lanes.values()])
ax.set_xlabel("seconds since the first task started")
ax.set_title("compare_methods on 2 workers: one task per (method, fold)")
patches = [plt.Rectangle((0, 0), 1, 1, color=c, label=m) for m, c in colours.items()]
ax.legend(handles=patches, loc="upper left", bbox_to_anchor=(1.0, 1.0))
fig.tight_layout()
plt.show()
tasks.pivot_table(index="method", columns="fold", values="seconds").round(2).add_prefix("fold ")

# %% [markdown]
# ## Backbone loads per worker
#
# Every task of this notebook on the cluster needed the encoder (the `dask_embed`
# partitions, the grid search's fits and scorings, the comparison's folds), yet each worker
# process read it from disk once: the estimators arrive without weights, and the worker's
# registry keeps the model loaded, keyed by its folder, revision, device and kind. `backbone_loads` (an internal helper,
# run on each worker with `client.run`) counts the reads.

# %%
loads = client.run(backbone_loads)
pd.DataFrame(
    [
        {"worker": f"worker {i + 1}", "model folder": "/".join(location.split("/")[-2:]), "loads": n}
        for i, (address, counts) in enumerate(sorted(loads.items()))
        for location, n in counts.items()
    ]
)

# %% [markdown]
# ## Close the cluster

# %%
client.close()
cluster.close()

# %% [markdown]
# ## What to try next
#
# - More workers: `LocalCluster(n_workers=4, threads_per_worker=1)` on 4 cores, or
#   `dask scheduler` and `dask worker` on several machines (see "Running on a cluster").
# - Fine-tuning methods in the comparison (`"lora"`, `"full"`): each fold is a costly task,
#   and the cluster's speed-up shows.
# - `dask_embed` on a corpus that does not fit in memory: `dd.read_parquet(...)` in,
#   `embeddings.to_parquet(...)` out.
# - A `GridSearchCV` of `FineTuneClassifier` over methods and learning rates under
#   `joblib.parallel_backend("dask")`.
