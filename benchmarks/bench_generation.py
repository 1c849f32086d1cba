"""FineTuneGenerator on a real generation task: answering the sentiment word of Rotten Tomatoes snippets.

The packaged SmolLM2-135M-Instruct is asked "Is this movie review positive or
negative? Answer with one word." about each snippet; the reference answer is
``positive`` (fresh) or ``negative`` (rotten). Before: the same prompt, no
training (FewShotGenerator without demonstrations). After: LoRA (r=8) supervised fine-tuning on a balanced
training sample. Both are scored on the same balanced held-out sample, by the
estimator's own ``score`` (exact match) and by a lenient accuracy (the answer,
lower-cased, starts with the right word). Also reported: training time and
target tokens per second, the size of the fitted model's pickle, and the process's peak
memory (max RSS) before and after the fit (the model is loaded before it).

    python benchmarks/bench_generation.py [--train 160] [--test 60] [--epochs 1]
"""

import argparse
import pickle
import platform
import resource
import time
import warnings

import numpy as np

TEMPLATE = "Is this movie review positive or negative? Answer with one word.\n\nReview: {text}"


def data(n_train, n_test):
    from sklearn.model_selection import train_test_split

    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    words = y.map({"fresh": "positive", "rotten": "negative"})
    X_train, X_rest, y_train, y_rest = train_test_split(X, words, train_size=n_train, stratify=words, random_state=0)
    X_test, _, y_test, _ = train_test_split(X_rest, y_rest, train_size=n_test, stratify=y_rest, random_state=0)
    return X_train.tolist(), y_train.tolist(), X_test.tolist(), y_test.tolist()


def exact(answers, expected):
    """What FineTuneGenerator.score returns with metric="exact_match"."""
    from skllm._scoring import exact_match

    return exact_match(answers, expected)


def lenient(answers, expected):
    return float(np.mean([a.lower().strip().startswith(e) for a, e in zip(answers, expected)]))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main():
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=160)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(
        f"CPU: {cpu_model()}, torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{args.threads} threads"
    )

    from skllm import FewShotGenerator, FineTuneGenerator, LoRA

    X, y, X_test, y_test = data(args.train, args.test)
    common = dict(template=TEMPLATE, max_new_tokens=4, max_length=128, batch_size=8, random_state=0, device="cpu")

    # The packaged model asked the same question (the same chat prompt), untrained.
    before = FewShotGenerator(n_examples=0, stop_at_newline=False, **common).fit(X[:8], y[:8])
    start = time.perf_counter()
    answers = before.predict(X_test)
    predict_s = time.perf_counter() - start
    print(
        f"before: exact match {exact(answers, y_test):.3f}, lenient {lenient(answers, y_test):.3f} "
        f"({args.test} answers in {predict_s:.1f} s); sample answers {answers[:5].tolist()}"
    )

    gen = FineTuneGenerator(method=LoRA(r=8), epochs=args.epochs, **common)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    gen.fit(X, y)
    fit_s = time.perf_counter() - start
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, labels = gen._examples(X, y)
    target_tokens = sum(sum(t != -100 for t in row) for row in labels) * args.epochs
    all_tokens = sum(len(row) for row in labels) * args.epochs
    answers = gen.predict(X_test)
    size = len(pickle.dumps(gen))
    print(
        f"after LoRA r=8, {args.train} pairs x {args.epochs} epoch(s): exact match {exact(answers, y_test):.3f}, "
        f"lenient {lenient(answers, y_test):.3f}; sample answers {answers[:5].tolist()}"
    )
    print(
        f"fit {fit_s:.1f} s ({all_tokens / fit_s:.0f} tokens/s, {target_tokens} target tokens), loss per epoch "
        f"{[round(v, 4) for v in gen.loss_curve_]}, trainable parameters {gen.n_trainable_params_:,}, "
        f"pickle {size / 1e6:.2f} MB, peak RSS {peak_before:.0f} MB before the fit and {peak_after:.0f} MB after"
    )
    restored = pickle.loads(pickle.dumps(gen))
    print("pickle round trip gives the same answers:", restored.predict(X_test[:8]).tolist() == answers[:8].tolist())


if __name__ == "__main__":
    main()
