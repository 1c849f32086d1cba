"""Few-shot prompting with the template that won the zero-shot grid (see bench_icl.py).

The first 200 texts of bench_icl.py's balanced test sample, 4 demonstrations from the
same pool of 2,000 snippets, random or nearest (MiniLM similarity).

    python benchmarks/bench_icl_tuned_few_shot.py
"""

import time
import warnings

from bench_icl import WORDS, balanced

from skllm import FewShotClassifier
from skllm.datasets import load_rotten_tomatoes

TEMPLATE = "{examples}Review: {text}\nWas the critic's opinion {labels}? Answer with one word."
EXAMPLE = "Review: {text}\nOpinion: {label}\n\n"


def main():
    warnings.simplefilter("ignore")
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_test, y_test = balanced(X, y, 500, seed=0)
    rest = ~X.isin(X_test)
    X_pool, y_pool = X[rest].tolist()[:2000], y[rest].tolist()[:2000]
    X_test, y_test = X_test[:200], y_test[:200]
    print("| few-shot, tuned template | accuracy | prompts/s |\n|---|---|---|")
    for selection in ("random", "nearest"):
        clf = FewShotClassifier(
            n_examples=4,
            example_selection=selection,
            template=TEMPLATE,
            example_template=EXAMPLE,
            label_words=WORDS,
            random_state=0,
            calibration=None,  # as measured before calibration existed (docs/benchmarks.md)
            length_normalize=False,
        ).fit(X_pool, y_pool)
        start = time.perf_counter()
        accuracy = (clf.predict(X_test) == y_test).mean()
        print(f"| 4 {selection} demonstrations | {accuracy:.3f} | {len(X_test) / (time.perf_counter() - start):.2f} |")


if __name__ == "__main__":
    main()
