"""Choose the few-shot defaults (selection x number of demonstrations x demonstration format) on two datasets.

The same tuning samples as bench_icl_choose_defaults.py (120 balanced Rotten Tomatoes
snippets, 120 balanced SMS messages; disjoint from the test samples), demonstrations
from the same pools of 2,000 texts, zero-shot defaults otherwise (template, length
normalisation, batch calibration). Scores are kept in --cache.

    python benchmarks/bench_icl_choose_few_shot.py [--cache /tmp/icl_few_scores.pkl]
"""

import argparse
import os
import pickle
import time
import warnings

import torch
from bench_icl_choose_defaults import cpu_model, datasets
from sklearn.metrics import balanced_accuracy_score

from skllm import FewShotClassifier, NearestSelection, ZeroShotClassifier

WORDS = {"rt": {"fresh": "positive", "rotten": "negative"}, "sms": {"ham": "normal"}}
CONFIGS = {
    "zero-shot": None,
    "balanced-4": {"n_examples": 4, "example_selection": "balanced"},
    "balanced-8": {"n_examples": 8, "example_selection": "balanced"},
    "balanced-16": {"n_examples": 16, "example_selection": "balanced"},
    "nearest-4": {"n_examples": 4, "example_selection": "nearest"},
    "nearest-balanced-4": {"n_examples": 4, "example_selection": NearestSelection(balance=True)},
    "nearest-balanced-2": {"n_examples": 2, "example_selection": NearestSelection(balance=True)},
    "balanced-2": {"n_examples": 2, "example_selection": "balanced"},
    "nearest-8": {"n_examples": 8, "example_selection": "nearest"},
    "nearest-balanced-8": {"n_examples": 8, "example_selection": NearestSelection(balance=True)},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default="/tmp/icl_few_scores.pkl")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--datasets", nargs="*", default=["rt", "sms"])
    parser.add_argument("--set", nargs="*", default=[], help="extra parameters name=value (python literals)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    extra = {k: eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    tag = repr(sorted(extra.items()))
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"threads {torch.get_num_threads()}; extra {extra}"
    )
    cache = pickle.load(open(args.cache, "rb")) if os.path.exists(args.cache) else {}
    data = datasets()
    for ds in args.datasets:
        (X_tune, y_tune), (X_pool, y_pool) = data[ds]
        for name in args.configs:
            key = (ds, name, tag)
            if key not in cache:
                start = time.perf_counter()
                params = CONFIGS[name]
                if params is None:
                    clf = ZeroShotClassifier(label_words=WORDS[ds], **extra)
                else:
                    clf = FewShotClassifier(label_words=WORDS[ds], random_state=0, **params, **extra)
                clf.fit(X_pool, y_pool)
                scores = clf._class_scores(X_tune)
                cache[key] = {
                    "scores": scores,
                    "prior": clf.label_prior_,
                    "classes": clf.classes_,
                    "seconds": time.perf_counter() - start,
                }
                pickle.dump(cache, open(args.cache, "wb"))
            entry = cache[key]
            pred = entry["classes"][entry["scores"].argmax(1)]
            raw = entry["classes"][(entry["scores"] + entry["prior"]).argmax(1)]
            print(
                f"{ds:4s} {name:20s} bal.acc calibrated {balanced_accuracy_score(y_tune, pred):.3f} "
                f"uncalibrated {balanced_accuracy_score(y_tune, raw):.3f}  ({entry['seconds']:.0f} s) {tag}",
                flush=True,
            )


if __name__ == "__main__":
    main()
