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
# # Generation and preferences: fine-tuning to answer, a reward model, DPO, RLOO and PPO
#
# Three estimators take the causal LM beyond classification. `FineTuneGenerator` teaches
# it to produce target texts (supervised fine-tuning); `RewardModel` learns a score for a
# response from pairs in which one response was preferred to the other; `PreferenceTuner`
# tunes a generator towards such preferences: with DPO straight from the pairs, or with
# RLOO or PPO, which sample answers and maximise the reward model (or any reward function).
#
# **Sample:** Rotten Tomatoes snippets, stratified from `load_rotten_tomatoes()`. 12 to
# fine-tune on (2 epochs of 4 per step: 6 steps) and 16 held out; 144 preference pairs
# (a fresh snippet preferred to a rotten one), 96 to train the reward model and 48 held
# out; 12 of the training pairs for DPO (2 passes of 4 pairs per step: 6 steps); 4
# prompts for RLOO and PPO (8 steps each). LoRA on the packaged SmolLM2-135M-Instruct; the
# reward model is a small head on the packaged all-MiniLM-L6-v2. A few minutes on 2 CPU
# cores, plus half a minute the very first
# time, when the packaged LM is de-quantised into the skllm cache. Every training run
# here is a few steps long: the notebook shows what each estimator does and what it
# returns; the benchmarks page has larger runs (e.g. 0.81 exact match after fine-tuning on
# 48 snippets).

# %%
import time
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import train_test_split

from skllm import FewShotGenerator, FineTuneGenerator, PreferenceTuner, RewardModel
from skllm.datasets import load_rotten_tomatoes

# Warnings print their category and message, without the path of the library file that raised them.
warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"

X_all, y_all = load_rotten_tomatoes(return_X_y=True)
words = y_all.map({"fresh": "positive", "rotten": "negative"})
X_train, X_rest, y_train, y_rest = train_test_split(X_all, words, train_size=12, stratify=words, random_state=0)
X_test, X_rest, y_test, y_rest = train_test_split(X_rest, y_rest, train_size=16, stratify=y_rest, random_state=0)

# %% [markdown]
# ## Supervised fine-tuning: answer with the label word
#
# The model is asked for the sentiment of a snippet and trained to answer `positive` or
# `negative`, one word. The loss covers the answer's tokens only, never the prompt's.
# For comparison, `FewShotGenerator` with no demonstrations asks the model as packaged the
# same question (the same chat prompt), with no training.

# %%
template = "Is this movie review positive or negative? Answer with one word.\n\nReview: {text}"
common = dict(template=template, max_new_tokens=3, max_length=128, batch_size=4, random_state=0)
before = FewShotGenerator(n_examples=0, stop_at_newline=False, **common).fit(X_train, y_train)

start = time.perf_counter()
sft = FineTuneGenerator(epochs=2, **common).fit(X_train, y_train)  # LoRA, the default method
print(
    f"fine-tuned in {time.perf_counter() - start:.0f} s: {sft.n_trainable_params_:,} trainable parameters, "
    f"loss per answer token by epoch {[round(v, 3) for v in sft.loss_curve_]}"
)

answers = pd.DataFrame(
    {
        "snippet": X_test.str[:60].values,
        "expected": y_test.values,
        "before": before.predict(X_test),
        "after": sft.predict(X_test),
    }
)
# What `score` returns (the share of exact matches), from the answers above.
print({name: round(float((answers[name] == answers["expected"]).mean()), 3) for name in ["before", "after"]})
answers.head(6)

# %% [markdown]
# Before, the model starts a sentence ("This review is"), which an exact match never
# credits. After 6 steps it answers with one of the two words, though not always the right
# one: the format is learned first, the word takes more steps and snippets (0.81 exact
# match after 12 steps on 48 snippets, on the benchmarks page). On 16 held-out snippets,
# each one is 6 points of accuracy.
#
# ## A reward model from preference pairs
#
# Each pair is a prompt, a chosen response and a rejected one. Here a fresh snippet is
# preferred to a rotten one as a review: the preference of a sentiment-control
# experiment. `RewardModel` is trained with the Bradley-Terry loss, `-log sigmoid(r(chosen)
# - r(rejected))`; `score` is the pairwise accuracy, the share of pairs whose chosen
# response gets the higher reward. Any fine-tuning method works; `"head"` keeps the
# encoder frozen and computes its features once, so ten epochs cost little more than one.

# %%
rest = pd.DataFrame({"text": X_rest.values, "answer": y_rest.values})
fresh = rest.loc[rest["answer"] == "positive", "text"].tolist()
rotten = rest.loc[rest["answer"] == "negative", "text"].tolist()
prompt = "Write a one-sentence movie review."
pairs = pd.DataFrame({"prompt": prompt, "chosen": fresh[:144], "rejected": rotten[:144]})
train_pairs, test_pairs = pairs[:96], pairs[96:]

start = time.perf_counter()
reward = RewardModel(method="head", epochs=10, random_state=0).fit(train_pairs)
print(
    f"reward model fitted in {time.perf_counter() - start:.0f} s on {reward.n_pairs_} pairs; pairwise accuracy "
    f"{reward.score(test_pairs):.3f} on {len(test_pairs)} held-out pairs, {reward.score(train_pairs):.3f} on the "
    f"training pairs"
)
examples = ["A moving, beautifully acted film.", "Fine, if forgettable.", "A tedious, clumsy mess."]
pd.Series(reward.predict([(prompt, e) for e in examples]), index=examples, name="reward").round(3).to_frame()

# %% [markdown]
# Only differences between rewards mean something: a difference of `d` is the log-odds
# that the first response is preferred. The training pairs are ranked right more often
# than the held-out ones: 96 pairs are few for what the head can fit.

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(range(1, len(reward.loss_curve_) + 1), reward.loss_curve_, marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("Bradley-Terry loss")
ax.set_title(f"Reward model, {reward.n_pairs_} training pairs")
plt.show()

# %% [markdown]
# ## DPO: learning the preferences without a reward model
#
# `PreferenceTuner(algorithm="dpo")` takes the same pairs and raises the likelihood of the
# chosen response relative to the rejected one, measured against the frozen model it
# starts from (the reference); `kl_coef` is DPO's `beta`. DPO needs no reward model (giving
# it one is an error: it would not be used). `history_` has one row per step: `reward` is
# the mean implicit reward margin of the step's pairs, `kl` the mean log-ratio of the tuned
# model to the reference on their responses, `accuracy` the share of pairs the implicit
# reward ranks right (a tie counting half, as in `RewardModel.score`). Each step is measured
# before its update, so step 0 is the reference itself (loss log 2 = 0.693, margin 0,
# accuracy 0.5). DPO's default learning rate is a tenth of the
# method's; on a handful of pairs the method's own (1e-3 for LoRA) shows the loss move.

# %%
dpo = PreferenceTuner(
    generator=FineTuneGenerator(max_new_tokens=24, random_state=0),
    algorithm="dpo",
    kl_coef=0.1,
    epochs=2,
    batch_size=4,
    learning_rate=1e-3,
    random_state=0,
)
start = time.perf_counter()
dpo.fit(train_pairs[:12])
print(f"{dpo.n_steps_} DPO steps in {time.perf_counter() - start:.0f} s")
dpo.history_.round(3)

# %%
steps_per_pass = dpo.n_steps_ // dpo.epochs
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, column, title in zip(
    axes,
    ["loss", "reward", "accuracy"],
    ["DPO loss", "implicit reward margin", "pairs ranked right"],
):
    ax.plot(dpo.history_["step"], dpo.history_[column], marker="o")
    ax.axvline(steps_per_pass - 0.5, color="grey", lw=0.8, ls="--")  # the second pass starts
    ax.set_title(title)
    ax.set_xlabel("step")
fig.tight_layout()
plt.show()

# %% [markdown]
# The second pass sees the same 12 pairs again, so its margins show the loss at work on
# pairs already trained on, not yet a better reviewer: that takes hundreds of pairs.
#
# ## RLOO and PPO: maximising the reward model
#
# The online algorithms sample answers to prompts, score them with the reward model and
# raise the probability of the better ones. Rewards are standardised by their running mean
# and standard deviation, and the KL coefficient adapts so that the tuned model stays
# about `target_kl` nats (3 by default) from the reference per answer: the same defaults
# hold for any reward's scale. RLOO takes each answer's baseline from the other answers to
# the same prompt; PPO (the default) learns a value head on the policy and takes several
# clipped steps per batch of answers. Both start from the packaged model; this
# short demonstration takes 2 prompts and 4 answers each per step, 8 steps, at one learning
# rate for both (the defaults with LoRA are 5e-3 for RLOO and 1e-3 for PPO, which takes
# `ppo_epochs=4` optimisation steps on each batch of answers).

# %%
prompts = [f"Write a one-sentence review of the movie {t}." for t in ["Heat", "Up", "Cars", "Jaws"]]
histories = {}
for algorithm in ["rloo", "ppo"]:
    tuner = PreferenceTuner(
        reward,
        FineTuneGenerator(max_new_tokens=10, random_state=0),
        algorithm=algorithm,
        batch_size=2,  # 2 prompts x 4 answers per step
        epochs=4,
        learning_rate=3e-3,  # a short run: 8 steps
        random_state=0,
    )
    start = time.perf_counter()
    tuner.fit(prompts)
    histories[algorithm] = tuner.history_
    print(
        f"{algorithm}: {tuner.n_steps_} steps in {time.perf_counter() - start:.0f} s; mean reward of the greedy "
        f"answers after {tuner.score(prompts):.3f}; {tuner.predict(prompts[:1])[0]!r}"
    )
pd.concat(histories, names=["algorithm"]).round(3)

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for algorithm, history in histories.items():
    for ax, column, title in zip(
        axes,
        ["reward", "kl", "kl_coef"],
        ["mean reward of the samples", "KL to the reference (nats)", "KL coefficient"],
    ):
        ax.plot(history["step"], history[column], marker="o", label=algorithm)
        ax.set_title(title)
        ax.set_xlabel("step")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The reward of the samples is noisy (8 answers a step) but leaves 0, where the untuned
# model's answers start, within a few steps; the KL climbs to about its target of 3 nats.
# The coefficient stays at `kl_coef` (0.1) until the KL first reaches the target, then
# rises while the KL is above it and would fall while below. PPO spends `ppo_epochs=4`
# updates on each batch of answers, so a step costs more than RLOO's. A reward model is an
# imperfect proxy, and a policy tuned long enough against it finds its blind spots: the
# [user guide](../preferences.html) shows how to watch for that with validation prompts and a
# second, independent scorer (`eval_reward`, `validation_fraction`), and the
# [benchmarks](../benchmarks.html#generation-and-preferences) measure both algorithms against
# an independent judge.
#
# ## What to try next
#
# - More data and steps: `benchmarks/bench_generation.py` fine-tunes on 48 or more
#   snippets, `benchmarks/bench_preferences.py` runs reward model, RLOO and PPO at a larger
#   size, judged by a classifier trained apart from the reward model.
# - Start preference tuning from the fine-tuned generator (`sft`): it is then its own
#   reference.
# - `RewardModel()` with its default method, LoRA, adapts the encoder too (slower, and
#   often better with more pairs); ranked lists (`prompt`, `response`, `rank`) work as
#   well as pairs.
# - `FineTuneGenerator(metric="chrf")` scores free text (translation, rewriting) by
#   character n-grams instead of exact match; `GridSearchCV` tunes `method__r` or the
#   learning rate.
