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
# # Prompting a model behind an OpenAI-compatible API
#
# `OpenAIChat` names a chat model behind any OpenAI-compatible endpoint (OpenAI, Azure,
# vLLM, Ollama, llama.cpp, `transformers serve`) where a local model name would go. Here
# the endpoint is real but local: `transformers serve` on the packaged SmolLM2, started
# on 127.0.0.1 and stopped at the end, so the notebook needs no key and no network.
#
# **Sample:** 6 labelled Rotten Tomatoes snippets to fit on and 4 to predict. Each answer
# takes a few seconds on 2 CPU cores, so the notebook sends about a dozen requests and
# runs in about a minute (plus half a minute the very first time, when the packaged
# model is de-quantised into the skllm cache). The numbers show how the pieces work,
# not how good the model is: a 135M model answers in words, often not the expected ones.

# %%
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

from sklearn.model_selection import cross_val_score

from skllm import DEFAULT_CAUSAL_LM, OpenAIChat, ZeroShotClassifier, _models
from skllm.datasets import load_rotten_tomatoes

# Warnings print their category and message, without the path of the library file that raised them.
warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"

data = load_rotten_tomatoes()
frame = data.frame.groupby("label").sample(5, random_state=0).sample(frac=1, random_state=0)
X_fit, y_fit = frame["text"].tolist()[:6], frame["label"].tolist()[:6]
X_new, y_new = frame["text"].tolist()[6:], frame["label"].tolist()[6:]

# %% [markdown]
# ## Start a server
#
# The same command works in a terminal: `transformers serve FOLDER --host 127.0.0.1
# --port 8000 --device cpu` (it needs `fastapi` and `uvicorn`). `GET /v1/models` names
# the model as the folder.

# %%
folder = _models.resolve_model(DEFAULT_CAUSAL_LM).location
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
command = [str(Path(sys.executable).with_name("transformers")), "serve", str(folder)]
server = subprocess.Popen(
    [*command, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
base_url = f"http://127.0.0.1:{port}/v1"
start = time.perf_counter()
while True:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            model = json.loads(response.read())["data"][0]["id"]
        break
    except OSError:
        if server.poll() is not None or time.perf_counter() - start > 240:
            raise RuntimeError("transformers serve did not start") from None
        time.sleep(1)
print(f"serving {Path(model).name} on {base_url} after {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Zero-shot through the API
#
# The classifier is the usual one; only `model_name` changed. `transformers serve`
# returns no token log-probabilities, so each answer is read as text and mapped to a
# class (normalised, then an unambiguous prefix or containment). `fit` sends one prompt,
# finds no log-probabilities and skips calibration. Answers are cached in `cache_dir`
# (a temporary folder here, so that every run shows real requests).

# %%
cache = tempfile.mkdtemp()
chat = OpenAIChat(model, base_url=base_url, max_tokens=6, max_concurrency=2)
clf = ZeroShotClassifier(chat, label_words=data.label_words, cache_dir=cache)
clf.fit(X_fit, y_fit)
start = time.perf_counter()
predicted = clf.predict(X_new)
print(f"{len(X_new)} answers in {time.perf_counter() - start:.1f} s")
for text, label, truth in zip(X_new, predicted, y_new):
    print(f"{label:>7} (true {truth:>6})  {text[:70]}")
print("unparsed answers:", clf.n_unparsed_, "| usage:", clf.usage_)

# %% [markdown]
# ## Every prompt paid once
#
# Predicting again sends nothing: every answer comes from the cache. A 3-fold
# cross-validation on the fitting texts sends each of their prompts at most once
# (one was already asked in `fit`), however many folds see it.

# %%
before = clf.usage_["requests"]
clf.predict(X_new)
print("new requests for the same texts:", clf.usage_["requests"] - before, "| from the cache:", clf.usage_["cached"])
start = time.perf_counter()
scores = cross_val_score(clf, X_fit, y_fit, cv=3)
print(f"3-fold accuracy {scores.round(2).tolist()} in {time.perf_counter() - start:.0f} s")
print("distinct prompts answered and cached:", len(clf.model_.cache))

# %% [markdown]
# ## The key stays secret
#
# Against a hosted endpoint the key comes from `OPENAI_API_KEY` or `api_key=`. It is
# shown as `'***'`, stays out of pickles and the cache, and an estimator loaded from a
# pickle reads it from the environment again.

# %%
print(OpenAIChat("gpt-4o-mini", api_key="sk-not-a-real-key"))
server.terminate()
returncode = server.wait(timeout=30)

# %% [markdown]
# ## What to try next
#
# - Point `OpenAIChat` at a stronger model: `OpenAIChat("gpt-4o-mini")` with
#   `OPENAI_API_KEY` set, or a vLLM / Ollama server (`docs/api_models.md` lists the
#   `base_url` of each). With log-probabilities, `predict_proba` is calibrated as for a
#   local model.
# - Put the hosted model and the local one in one `GridSearchCV` grid over `model_name`.
# - `FewShotClassifier(chat, example_selection="nearest")` sends the nearest labelled
#   texts as earlier turns of the conversation; `FewShotGenerator(chat)` answers in text.
# - Choose what an unparseable answer predicts: `OpenAIChat(..., unparsed="error")`.
