"""RewardModel on Rotten Tomatoes preferences: pairwise accuracy on held-out movies.

The preferences of ``bench_preferences.py``: for each movie, a fresh snippet is
preferred to a rotten one as the answer to "Write a one-sentence review of the movie
<title>."; the movies are split as there (A: training pairs, B: 300 test pairs of other
movies). Each configuration is fitted on the first ``n`` pairs of A (every parameter at
its default but those named, ``random_state=0`` unless ``--seed``) and scored on B. Reported: pairwise
accuracy (the share of test pairs whose fresh snippet gets the higher reward), fit
seconds.

    python benchmarks/bench_reward.py --pairs 240 1000 --configs head head-e10 lora
    python benchmarks/bench_reward.py --pairs 1936 --configs lora
    python benchmarks/bench_reward.py --pairs 240 1000 --configs lora lora-dropout
    python benchmarks/bench_reward.py --pairs 1000 --configs lora lora-dropout --seed 1   # and --seed 2

``lora-dropout`` is LoRA with every dropout on (``LoRA(dropout=0.1, backbone_dropout=True)``),
as it trained before its defaults turned dropout off.
"""

import argparse
import json
import time
import warnings

import numpy as np
from bench_generation import cpu_model
from bench_preferences import movies, pairs_of

CONFIGS = {
    "head": dict(method="head"),
    "head-e10": dict(method="head", epochs=10),
    "lora": dict(method="lora", max_length=64, batch_size=16),
    # every dropout on: LoRA's defaults before they turned dropout off (built in main, as skllm loads lazily)
    "lora-dropout": dict(method=("lora", dict(dropout=0.1, backbone_dropout=True)), max_length=64, batch_size=16),
    "full": dict(method="full", max_length=64, batch_size=16),
    "lora-random-start": dict(method="lora", max_length=64, batch_size=16, head_init="random"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", type=int, default=[240, 1000])
    parser.add_argument("--configs", nargs="+", default=["head", "head-e10", "lora"])
    parser.add_argument("--seed", type=int, default=0, help="random_state of the reward models")
    args = parser.parse_args()

    import torch

    from skllm import LoRA, RewardModel

    warnings.simplefilter("ignore")
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"CPU: {cpu_model()}, capability {capability}, {torch.get_num_threads()} threads")
    frame = movies()
    titles = np.random.default_rng(0).permutation(sorted(frame["title"].unique()))
    n = len(titles)
    a, b = set(titles[: int(0.6 * n)]), set(titles[int(0.6 * n) : int(0.8 * n)])
    train = pairs_of(frame[frame["title"].isin(a)]).sample(frac=1, random_state=0)
    test = pairs_of(frame[frame["title"].isin(b)]).sample(frac=1, random_state=0).head(300)
    print(f"{len(train)} training pairs available, {len(test)} test pairs")
    for size in args.pairs:
        for name in args.configs:
            start = time.perf_counter()
            params = dict(CONFIGS[name])
            if isinstance(params["method"], tuple):
                params["method"] = LoRA(**params["method"][1])
            model = RewardModel(random_state=args.seed, **params).fit(train.head(size))
            seconds = time.perf_counter() - start
            row = {"config": name, "pairs": min(size, len(train)), "test_accuracy": round(model.score(test), 3)}
            row["train_accuracy"] = round(model.score(train.head(min(size, 300))), 3)
            row["fit_s"] = round(seconds, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
