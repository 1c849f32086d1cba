"""Hard prompt tuning: choose the wording of a zero-shot prompt by grid search.

SmolLM2-135M-Instruct (packaged, de-quantised once) on a balanced sample of Rotten
Tomatoes snippets; three templates compared by 3-fold cross-validated accuracy, then
the best is evaluated on held-out texts.

    python examples/prompt_tuning.py [--n 150]
"""

import argparse

import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

from skllm import ZeroShotClassifier
from skllm.datasets import load_rotten_tomatoes

TEMPLATES = [
    None,  # the default: "Classify the text into one of these categories: {labels}. ..."
    "Is the sentiment of this movie review {labels}?\n\nReview: {text}",
    "Review: {text}\nWas the critic's opinion {labels}? Answer with one word.",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=150)
    args = parser.parse_args()
    X, y = load_rotten_tomatoes(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, train_size=2 * args.n, stratify=y, random_state=0)
    X_tune, X_test, y_tune, y_test = train_test_split(X, y, test_size=0.5, stratify=y, random_state=0)

    clf = ZeroShotClassifier(label_words={"fresh": "positive", "rotten": "negative"})
    search = GridSearchCV(clf, {"template": TEMPLATES}, cv=StratifiedKFold(3), scoring="accuracy")
    search.fit(X_tune, y_tune)
    table = pd.DataFrame(
        {
            "template": [repr(p["template"]) for p in search.cv_results_["params"]],
            "cv accuracy": search.cv_results_["mean_test_score"].round(3),
        }
    )
    print(table.to_string(index=False))
    print(
        f"\nbest template, held-out accuracy: {search.score(X_test, y_test):.3f} "
        f"(majority class {y_test.value_counts(normalize=True).max():.3f})"
    )


if __name__ == "__main__":
    main()
