"""Results of every training estimator at small settings, to compare two versions of the package.

Each estimator trains on a small real-data task (Rotten Tomatoes with the packaged
MiniLM; SmolLM2 for generation and preferences) and the script prints, per
estimator, its loss curve and a digest of its predictions. Run it on two commits
(e.g. in a git worktree, with PYTHONPATH pointing at it) and compare the lines:
a line that differs is a changed result. ``--arrays`` also saves the outputs
themselves, and ``--compare`` prints the largest difference to another run's.

    PYTHONPATH=. python benchmarks/bench_engine_parity.py --out after.json --arrays after.npz --compare before.npz
"""

import argparse
import hashlib
import json
import platform
import time
import warnings

import numpy as np


def cpu():
    import torch

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


ARRAYS = {}  # the outputs behind each digest, for --arrays


def digest(values, name=None):
    array = np.asarray(values)
    if name is not None and array.dtype.kind == "f":
        ARRAYS[name] = array
    if array.dtype.kind == "f":
        array = np.round(array.astype(np.float64), 5)
    return hashlib.sha256(repr(array.tolist()).encode()).hexdigest()[:12]


def curve(values):
    return [round(float(v), 5) for v in values]


def classifiers(X, y, X_test, y_test, methods):
    from skllm import FineTuneClassifier, FineTuneRegressor

    rows = {}
    for method in methods:
        start = time.perf_counter()
        clf = FineTuneClassifier(method=method, epochs=None if method == "head" else 1, max_length=48, random_state=0)
        clf.fit(X, y)
        proba = clf.predict_proba(X_test)
        rows[f"classifier/{method}"] = {
            "loss_curve": curve(clf.loss_curve_),
            "accuracy": float((clf.classes_[proba.argmax(1)] == y_test).mean()),
            "proba": digest(proba, f"classifier/{method}"),
            "seconds": round(time.perf_counter() - start, 1),
        }
    start = time.perf_counter()
    reg = FineTuneRegressor(method="lora", epochs=1, max_length=48, random_state=0)
    reg.fit(X, (y == y[0]).astype(float))
    rows["regressor/lora"] = {
        "loss_curve": curve(reg.loss_curve_),
        "predictions": digest(reg.predict(X_test), "regressor/lora"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    early = FineTuneClassifier(method="lora", epochs=3, early_stopping=True, max_length=48, random_state=0)
    early.fit(X, y)
    rows["classifier/lora-early-stopping"] = {
        "loss_curve": curve(early.loss_curve_),
        "validation": curve(early.validation_scores_),
        "proba": digest(early.predict_proba(X_test), "classifier/lora-early-stopping"),
    }
    return rows


def reward_model(X, y):
    import pandas as pd

    from skllm import RewardModel

    good = [t for t, label in zip(X, y) if label == y[0]]
    bad = [t for t, label in zip(X, y) if label != y[0]]
    n = min(len(good), len(bad), 32)
    pairs = pd.DataFrame({"prompt": ["Review the film."] * n, "chosen": good[:n], "rejected": bad[:n]})
    start = time.perf_counter()
    model = RewardModel(method="lora", epochs=1, max_length=48, random_state=0).fit(pairs)
    scores = model.predict([("Review the film.", t) for t in X[:16]])
    return {
        "reward/lora": {
            "loss_curve": curve(model.loss_curve_),
            "scores": digest(scores, "reward/lora"),
            "seconds": round(time.perf_counter() - start, 1),
        }
    }


def generation(X, y):
    import pandas as pd

    from skllm import FineTuneGenerator, PreferenceTuner

    rows = {}
    words = {label: label for label in set(y)}
    texts, targets = list(X[:16]), [words[label] for label in y[:16]]
    start = time.perf_counter()
    kwargs = {"epochs": 1, "max_new_tokens": 4, "max_length": 96, "random_state": 0}
    gen = FineTuneGenerator(**kwargs).fit(texts, targets)
    answers = gen.predict(list(X[16:24]))
    rows["generator/lora"] = {
        "loss_curve": curve(gen.loss_curve_),
        "answers": digest(answers),
        "seconds": round(time.perf_counter() - start, 1),
    }
    zero_decay = FineTuneGenerator(weight_decay=0.0, **kwargs).fit(texts, targets)
    rows["generator/lora-weight_decay=0"] = {
        "loss_curve": curve(zero_decay.loss_curve_),
        "answers": digest(zero_decay.predict(list(X[16:24]))),
    }

    def brevity(prompts, completions):
        return [-len(c) / 10 for c in completions]

    start = time.perf_counter()
    policy = FineTuneGenerator(max_new_tokens=8, max_length=96, random_state=0)
    rloo = PreferenceTuner(brevity, policy, algorithm="rloo", batch_size=2, n_generations=2, random_state=0)
    rloo.fit(list(X[:4]))
    rows["preference/rloo"] = {
        "history": {c: curve(rloo.history_[c]) for c in ("reward", "kl", "loss")},
        "answers": digest(rloo.predict(list(X[16:20]))),
        "seconds": round(time.perf_counter() - start, 1),
    }
    pairs = pd.DataFrame({"prompt": list(X[:4]), "chosen": ["Yes."] * 4, "rejected": ["No, not at all."] * 4})
    start = time.perf_counter()
    dpo = PreferenceTuner(generator=policy, algorithm="dpo", batch_size=2, random_state=0).fit(pairs)
    rows["preference/dpo"] = {
        "history": {c: curve(dpo.history_[c]) for c in ("reward", "kl", "loss")},
        "answers": digest(dpo.predict(list(X[16:20]))),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="write the results to this JSON file")
    parser.add_argument(
        "--methods", nargs="*", default=["head", "full", "lora", "prefix", "prompt", "adapter", "partial"]
    )
    parser.add_argument("--skip-lm", action="store_true", help="leave out generation and preferences")
    parser.add_argument("--arrays", default=None, help="save the numeric outputs to this .npz file")
    parser.add_argument("--compare", default=None, help="print the largest difference to this .npz file's outputs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"CPU: {cpu()}; Python {platform.python_version()}", flush=True)
    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    rng = np.random.RandomState(0)
    rows_ = rng.permutation(len(X))
    X, y = np.asarray(X, dtype=object)[rows_], np.asarray(y)[rows_]
    train, test = slice(0, 96), slice(96, 160)
    results = classifiers(list(X[train]), y[train], list(X[test]), y[test], args.methods)
    results.update(reward_model(list(X[train]), y[train]))
    if not args.skip_lm:
        results.update(generation(list(X[train]), list(y[train])))
    for name, row in results.items():
        print(name, json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if args.arrays:
        np.savez(args.arrays, **{name.replace("/", "__"): array for name, array in ARRAYS.items()})
    if args.compare:
        other = np.load(args.compare)
        for name, array in ARRAYS.items():
            key = name.replace("/", "__")
            if key in other:
                print(f"{name}: largest absolute difference {np.abs(array - other[key]).max():.2e}")


if __name__ == "__main__":
    main()
