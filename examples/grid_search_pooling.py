"""GridSearchCV over the head's parameters and the embedder's pooling.

Rotten Tomatoes, a stratified sample of 2,000 snippets: 2 poolings x 3 values of C
x 5 folds = 30 fits, yet each text is embedded once per pooling (twice in all),
thanks to the embedding cache.

    python examples/grid_search_pooling.py
"""

import time

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from skllm import TransformerEmbedder
from skllm.datasets import load_rotten_tomatoes


def main():
    X, y = load_rotten_tomatoes(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, train_size=2000, stratify=y, random_state=0)

    pipe = make_pipeline(TransformerEmbedder(), LogisticRegression(max_iter=2000))
    grid = {
        "transformerembedder__pooling": ["mean", "cls"],
        "logisticregression__C": [0.3, 1.0, 3.0],
    }
    start = time.perf_counter()
    search = GridSearchCV(pipe, grid, cv=5, scoring="accuracy").fit(X, y)
    print(f"{len(search.cv_results_['params'])} candidates x 5 folds in {time.perf_counter() - start:.1f} s")
    results = pd.DataFrame(search.cv_results_)[
        ["param_transformerembedder__pooling", "param_logisticregression__C", "mean_test_score", "std_test_score"]
    ]
    print(results.sort_values("mean_test_score", ascending=False).to_string(index=False))
    print("best:", search.best_params_)


if __name__ == "__main__":
    main()
