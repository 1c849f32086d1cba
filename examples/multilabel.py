"""Several labels per text: frozen embeddings + one logistic regression per label, against fine-tuning.

The task is built from the two packaged datasets, and it is a constructed one: each
text is one or two real pieces put side by side (in random order, joined by a space),
each piece drawn from one of four pools, and its labels are the human labels of its
pieces:

- ``fresh`` / ``rotten``: a Rotten Tomatoes critic snippet labelled positive / negative,
- ``spam`` / ``ham``: an SMS from the SMS Spam Collection labelled spam / not spam.

Half the texts have one piece, half have two pieces of two different kinds (a fresh and
a rotten snippet, a review and a spam message...), the kinds drawn uniformly. So a
text has 1 or 2 of the 4 labels, each label is on for about 3 texts in 8, and the
labels are not exclusive: the model must say which kinds of content a text holds,
as in tagging a post that quotes a review and carries an advert. Every piece is used
once (duplicates removed first), so no piece is in both the training and the test
texts. What the task does not have is a natural distribution: real multi-label data
has skewed, correlated labels, and its pieces are not glued from two corpora.

Compared on the same split. The default sample is small, 200 training and 300 test
texts (seed 0), to keep the run short: it took 5 to 9 minutes on 2 CPU cores shared with
other work, nearly all of it fine-tuning (3 epochs of LoRA on MiniLM); the frozen model
reads its embeddings from the cache on a second run. Texts are cut at 96 tokens (about 1
in 100 is longer).

- ``TransformerEmbedder()`` (all-MiniLM-L6-v2, mean pooling, frozen) +
  ``OneVsRestClassifier(LogisticRegression())``: one linear model per label;
- ``FineTuneClassifier(method="lora")`` on the indicator matrix: one network, one
  sigmoid output per label, binary cross-entropy, LoRA on the same encoder.

Scores: micro-F1 (every text x label decision pooled), macro-F1 (the mean of the
labels' F1), subset accuracy (all of a text's labels right), and the F1 of each label.

    python examples/multilabel.py [--n-train 200] [--n-test 300] [--method lora] [--epochs 3]
"""

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from skllm import FineTuneClassifier, TransformerEmbedder
from skllm.datasets import load_rotten_tomatoes, load_sms_spam


def pools():
    """The four kinds of pieces, each a shuffled list of distinct texts."""
    reviews = load_rotten_tomatoes().frame.drop_duplicates("text")
    messages = load_sms_spam(drop_duplicates=True).frame.drop_duplicates("text")
    return {
        "fresh": reviews.loc[reviews["label"] == "fresh", "text"].tolist(),
        "rotten": reviews.loc[reviews["label"] == "rotten", "text"].tolist(),
        "spam": messages.loc[messages["label"] == "spam", "text"].tolist(),
        "ham": messages.loc[messages["label"] == "ham", "text"].tolist(),
    }


def build_task(n, seed=0):
    """``n`` texts of one or two pieces, and their label sets."""
    rng = np.random.RandomState(seed)
    remaining = {kind: [texts[i] for i in rng.permutation(len(texts))] for kind, texts in pools().items()}
    kinds = sorted(remaining)
    texts, labels = [], []
    for _ in range(n):
        chosen = rng.choice(kinds, size=rng.randint(1, 3), replace=False)
        pieces = [remaining[kind].pop() for kind in chosen]  # each piece used once
        texts.append(" ".join(pieces[i] for i in rng.permutation(len(pieces))))
        labels.append(set(chosen.tolist()))
    return texts, labels


def scores(Y_true, Y_pred, names):
    row = {
        "micro-F1": f1_score(Y_true, Y_pred, average="micro", zero_division=0),
        "macro-F1": f1_score(Y_true, Y_pred, average="macro", zero_division=0),
        "subset accuracy": accuracy_score(Y_true, Y_pred),
    }
    for name, f1 in zip(names, f1_score(Y_true, Y_pred, average=None, zero_division=0)):
        row[f"F1 {name}"] = f1
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--method", default="lora", help="FineTuneClassifier method (default lora)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=96)
    args = parser.parse_args()

    texts, labels = build_task(args.n_train + args.n_test)
    binarizer = MultiLabelBinarizer()
    Y = binarizer.fit_transform(labels)
    names = binarizer.classes_.tolist()
    X_train, X_test = texts[: args.n_train], texts[args.n_train :]
    Y_train, Y_test = Y[: args.n_train], Y[args.n_train :]
    sizes = np.bincount(Y.sum(axis=1))
    print(
        f"{len(texts)} texts ({args.n_train} training, {args.n_test} test); labels {names}, on for "
        f"{Y_train.mean(axis=0).round(2).tolist()} of the training texts; texts with 1 / 2 labels: "
        f"{sizes[1]} / {sizes[2]}"
    )

    models = {
        "frozen MiniLM + OneVsRest(LogisticRegression)": make_pipeline(
            TransformerEmbedder(max_length=args.max_length), OneVsRestClassifier(LogisticRegression(max_iter=2000))
        ),
        f"FineTuneClassifier(method={args.method!r}), multi-label": FineTuneClassifier(
            method=args.method, epochs=args.epochs, max_length=args.max_length, random_state=0
        ),
    }
    rows = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_train, Y_train)
        fit_s = time.perf_counter() - start
        rows.append({"model": name, **scores(Y_test, model.predict(X_test), names), "fit s": fit_s})
        print(f"  {name}: fitted in {fit_s:.0f} s")
    table = pd.DataFrame(rows).set_index("model").T
    print(f"\nTest scores on {args.n_test} texts (threshold 0.5 for the fine-tuned model):")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
