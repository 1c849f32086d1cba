"""Scores of generated texts against reference texts, for the estimators that generate.

``FewShotGenerator``, ``FineTuneGenerator`` and ``RetrievalQA`` score with
these, so that an answer counts as right the same way everywhere and a
mismatch between the numbers of answers and references is an error, never a
silently shorter comparison. ``RewardModel`` and DPO score preference pairs with
:func:`pairwise_accuracy`.
"""

import re
import string
import unicodedata
from collections import Counter

import numpy as np


def check_lengths(predicted, expected):
    """Raise a ``ValueError`` unless there is one reference per answer (one row of ``y`` per text of ``X``)."""
    if len(predicted) != len(expected):
        raise ValueError(f"X has {len(predicted)} texts but y has {len(expected)}; they must match row for row.")


def normalize_answer(text):
    """Lower case, without punctuation, articles (a, an, the) or repeated spaces: the usual QA exact match.

    In Unicode's compatibility form (NFKC) first, and any Unicode punctuation goes too (curly quotes, "。"),
    not only ASCII's: "“Paris”", "Ｐａｒｉｓ" and "Paris." all match "Paris".
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def exact_match(predicted, expected, *, normalize=str.strip):
    """Share of answers equal to their reference after ``normalize`` (by default both stripped of whitespace)."""
    check_lengths(predicted, expected)
    return float(np.mean([normalize(p) == normalize(e) for p, e in zip(predicted, expected)]))


def chrf(predicted, expected, *, n=6, beta=2.0):
    """Mean sentence-level chrF (character n-gram F-score, Popović 2015), in [0, 1].

    Character n-grams of orders 1 to ``n``, spaces removed, precision and
    recall averaged over the orders, combined with recall weighted ``beta``
    times as much as precision.
    """
    check_lengths(predicted, expected)
    scores = []
    for p, e in zip(predicted, expected):
        p, e = "".join(p.split()), "".join(e.split())
        if not p and not e:
            scores.append(1.0)
            continue
        precisions, recalls = [], []
        for k in range(1, n + 1):
            hyp = Counter(p[i : i + k] for i in range(len(p) - k + 1))
            ref = Counter(e[i : i + k] for i in range(len(e) - k + 1))
            if not hyp or not ref:
                continue
            common = sum((hyp & ref).values())
            precisions.append(common / sum(hyp.values()))
            recalls.append(common / sum(ref.values()))
        if not precisions:
            scores.append(0.0)
            continue
        prec, rec = float(np.mean(precisions)), float(np.mean(recalls))
        b2 = beta * beta
        scores.append(0.0 if prec + rec == 0 else (1 + b2) * prec * rec / (b2 * prec + rec))
    return float(np.mean(scores))


def pairwise_accuracy(diff):
    """Share of pairs whose chosen response gets the higher reward (``diff`` = chosen - rejected); a tie is half."""
    diff = np.asarray(diff)
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


# The metrics FineTuneGenerator.score offers, by name.
SCORERS = {"exact_match": exact_match, "chrf": chrf}
