"""SmolLM2 through an OpenAI-compatible API (text answers) against local label scoring.

Starts `transformers serve` on the packaged SmolLM2-135M-Instruct (127.0.0.1, a
free port, CPU) behind a counting proxy (tests/chat_servers.py), then:

- on Rotten Tomatoes (the first --n texts of bench_icl.py's balanced test sample)
  and SMS spam (a stratified sample of --n): accuracy, macro-F1, the share of
  unparsed answers and prompts per second of ZeroShotClassifier with the
  defaults, locally (label scoring) and through the API at max_concurrency 1,
  4 and 8 (each on an empty response cache);
- a 3-fold cross-validation, then a 2-candidate grid search (two templates,
  3 folds) on --n-cv Rotten Tomatoes texts through the API, on one cache:
  requests the server received against prompts the estimators scored and the
  distinct prompts among them.

    python benchmarks/bench_api.py [--n 40] [--n-cv 24] [--concurrency 1 4 8]
    python benchmarks/bench_api.py --datasets rt --no-cv --rounds 3   # throughput only, in turn
"""

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_icl import balanced
from bench_icl_choose_defaults import cpu_model
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split

from skllm import DEFAULT_CAUSAL_LM, OpenAIChat, ZeroShotClassifier, _api, _models
from skllm._cache import request_key
from skllm.datasets import load_rotten_tomatoes, load_sms_spam

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from chat_servers import FaultProxy, TransformersServe

SCORED = []  # the key of every prompt an estimator asked the endpoint, cached or not


def _count_prompts():
    ask = _api.Endpoint.ask

    def counting(self, conversations, **kwargs):
        SCORED.extend(request_key(self._request(c, kwargs["max_tokens"], self.chat.logprobs)) for c in conversations)
        return ask(self, conversations, **kwargs)

    _api.Endpoint.ask = counting


def rotten_tomatoes(n):
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_test, y_test = balanced(X, y, 500, seed=0)
    rest = ~X.isin(X_test)
    return X[rest].tolist()[:2000], y[rest].tolist()[:2000], X_test[:n], np.asarray(y_test[:n])


def sms_spam(n):
    data = load_sms_spam(drop_duplicates=True)
    X_rest, X_test, y_rest, y_test = train_test_split(
        data.data, data.target, test_size=n, stratify=data.target, random_state=0
    )
    return X_rest.tolist()[:2000], y_rest.tolist()[:2000], X_test.tolist(), y_test.to_numpy()


def row(name, clf, X, y, unparsed=None):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = clf.predict(X)
    rate = len(X) / (time.perf_counter() - start)
    acc, f1 = float((pred == y).mean()), f1_score(y, pred, average="macro")
    share = "" if unparsed is None else f"{getattr(clf, 'n_unparsed_', 0) / len(X):.3f}"
    print(f"| {name} | {acc:.3f} | {f1:.3f} | {share or '-'} | {rate:.2f} |", flush=True)
    return pred


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--n-cv", type=int, default=24)
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=1, help="measure every row this many times, in turn")
    parser.add_argument("--datasets", nargs="+", default=["rt", "sms"], choices=["rt", "sms"])
    parser.add_argument("--no-cv", action="store_true", help="leave out the cross-validation and grid search")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    folder = _models.resolve_model(DEFAULT_CAUSAL_LM).location
    server = TransformersServe(folder)
    proxy = FaultProxy(server.url)
    _count_prompts()
    try:
        datasets = {
            "rt": ("Rotten Tomatoes", rotten_tomatoes, load_rotten_tomatoes().label_words),
            "sms": ("SMS spam", sms_spam, load_sms_spam().label_words),
        }
        for name, load, words in [datasets[d] for d in args.datasets]:
            X_pool, y_pool, X_test, y_test = load(args.n)
            print(f"\n{name}: {len(X_test)} test texts; wordings {words}")
            print("| run | accuracy | macro-F1 | unparsed | prompts/s |\n|---|---|---|---|---|")
            local = ZeroShotClassifier(label_words=words).fit(X_pool, y_pool)
            answers = None
            for r, c in [(r, c) for r in range(args.rounds) for c in [0, *args.concurrency]]:
                again = f", round {r + 1}" if args.rounds > 1 else ""
                if c == 0:
                    row(f"local label scoring (defaults){again}", local, X_test, y_test)
                    continue
                with tempfile.TemporaryDirectory() as cache:
                    chat = OpenAIChat(server.model, base_url=proxy.url, max_concurrency=c, timeout=600.0)
                    clf = ZeroShotClassifier(chat, label_words=words, cache_dir=cache).fit(X_pool, y_pool)
                    pred = row(f"API, text answers, max_concurrency={c}{again}", clf, X_test, y_test, unparsed=True)
                    same = "" if answers is None else f" (same predictions as at 1: {np.mean(pred == answers):.3f})"
                    answers = pred if answers is None else answers
                    print(f"  usage {clf.usage_}{same}", flush=True)

        if args.no_cv:
            return
        X_pool, y_pool, X_cv, y_cv = rotten_tomatoes(args.n_cv)
        words = load_rotten_tomatoes().label_words
        print(f"\nRotten Tomatoes, {len(X_cv)} texts, through the API on one response cache:")
        SCORED.clear()
        with tempfile.TemporaryDirectory() as cache:
            chat = OpenAIChat(server.model, base_url=proxy.url, max_concurrency=4, timeout=600.0)
            clf = ZeroShotClassifier(chat, label_words=words, cache_dir=cache)
            for what, run in [
                ("3-fold cross-validation", lambda: cross_val_score(clf, X_cv, y_cv, cv=StratifiedKFold(3))),
                (
                    "then a 2-candidate grid search (3 folds)",
                    lambda: GridSearchCV(
                        clf, {"template": [None, "Review: {text}\nIs it {labels}?"]}, cv=StratifiedKFold(3)
                    ).fit(X_cv, y_cv),
                ),
            ]:
                sent, scored = proxy.answered, len(SCORED)
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
                print(
                    f"| {what} | {proxy.answered - sent} requests | {len(SCORED) - scored} prompts scored | "
                    f"{len(set(SCORED))} distinct prompts in all | {seconds:.0f} s |",
                    flush=True,
                )
        print(f"\nrequests in all {proxy.answered}; load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        proxy.close()
        server.close()


if __name__ == "__main__":
    main()
