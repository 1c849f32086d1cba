"""What a chat endpoint's answer means for a classifier: the class its text names, or its log-probabilities.

:class:`~skllm.OpenAIChat`'s classifiers read each answer with these: the
log-probabilities of its first token where the endpoint returns them, else
its text, mapped to a class only when that is unambiguous.
"""

import functools
import math
import re
import unicodedata

import numpy as np


def normalize(text):
    """Lower case, punctuation and repeated spaces gone: how answers and class wordings are compared.

    In Unicode's compatibility form first (NFKC): "Négatif" written with a combining accent, or in
    full-width letters, is the same word as its composed form.
    """
    return " ".join(re.sub(r"[^\w]+", " ", unicodedata.normalize("NFKC", str(text)).lower()).split())


# The least probability left to the classes no listed token names (log 1e-12 = -27.6).
MIN_LEFT = 1e-12

# Words that rule out the wording they precede ("not positive", "not really positive", "non-toxic"):
# such an answer names no class.
NEGATIONS = ("not", "no", "non", "isn t", "isnt", "never", "neither", "nor", "hardly", "without")
# Words that may stand between a negation and the wording it rules out ("not really positive", "not a spam").
_FILLERS = (
    "a",
    "an",
    "the",
    "really",
    "very",
    "so",
    "too",
    "quite",
    "that",
    "exactly",
    "entirely",
    "completely",
    "totally",
    "particularly",
    "especially",
    "necessarily",
    "overly",
    "at all",
)
_NEGATED = r"\b(?:{})(?: (?:" + "|".join(_FILLERS) + r"))? {}\b"
_NEGATIONS = "|".join(NEGATIONS)


@functools.lru_cache(maxsize=64)
def _negating(norms):
    """The wordings that hold a negation of another ("not spam" of "spam"), longest first: once per set of classes."""
    found = [
        v
        for v in norms
        if v and any(w and w != v and re.search(_NEGATED.format(_NEGATIONS, re.escape(w)), v) for w in norms)
    ]
    return tuple(sorted(found, key=len, reverse=True))


def parse_label(answer, words):
    """Index of the class wording ``answer`` names, or None when it names none or several.

    Compared after :func:`normalize`: the wording itself; else the one wording
    the answer starts with, or that starts with the answer (a cut answer such
    as ``"neg"``), unless it names another class too; else the one wording it
    contains as whole words ("The review is positive."), a wording contained
    in a longer one that also matches counting as that one. None where a
    negation rules a wording out ("Not positive.", "not really positive",
    "non-toxic", "It isn't spam." with classes ``spam`` and ``not spam``),
    unless the negated phrase is itself a wording that the answer says.
    """
    text = normalize(answer)
    norms = [normalize(w) for w in words]
    if not text:
        return None
    exact = [i for i, w in enumerate(norms) if w == text]
    if len(exact) == 1:
        return exact[0]
    padded = f" {text} "
    # A wording that holds a negation ("not spam") is no negation of another ("spam") where the answer says
    # it; elsewhere ("it isn't spam") the negation counts.
    masked = padded
    for v in _negating(tuple(norms)):
        if re.search(_NEGATED.format(_NEGATIONS, re.escape(v)), padded):
            return None  # "not non-toxic" rules that wording out in turn
        masked = re.sub(rf"\b{re.escape(v)}\b", "|", masked)
    if any(w and re.search(_NEGATED.format(_NEGATIONS, re.escape(w)), masked) for w in norms):
        return None  # "Not positive." names a class it rules out
    inside = [i for i, w in enumerate(norms) if w and f" {w} " in padded]
    # "very positive" contains "positive": the longer wording is the answer.
    inside = [i for i in inside if not any(j != i and f" {norms[i]} " in f" {norms[j]} " for j in inside)]
    starts = [i for i, w in enumerate(norms) if w and (text.startswith(w + " ") or w.startswith(text))]
    # An answer that names a second class anywhere ("positive or negative") names none.
    if len(starts) == 1 and set(inside) <= set(starts):
        return starts[0]
    return inside[0] if len(inside) == 1 else None


def class_logprobs(top, words):
    """Log-probability of each class from the first answer token's alternatives, or None if none starts a class.

    ``top`` holds ``(token, logprob)`` pairs. A token counts for a class when
    its normalised text starts the class's normalised wording and no other
    class's; a class's score is the log of the summed probabilities of its
    tokens. A class without such a token gets half the probability of the
    least likely listed token (it is less likely than every listed one), and
    at most its share of the probability the listed tokens leave (an endpoint
    that lists only the answered token at -0.01 leaves the others 1%).
    None also when the most likely token (the one answered) counts for no class
    (``"The"``, or ``"very"`` starting two wordings): the classes' scores would
    then come from unlikely alternatives, not from the answer.
    """
    norms = [normalize(w) for w in words]
    scores = [[] for _ in words]
    # -inf (or NaN) says nothing a missing token does not: left out, with the floor below.
    top = [(token, logprob) for token, logprob in top if math.isfinite(logprob)]
    if not top:
        return None
    best = max(top, key=lambda pair: pair[1])
    for token, logprob in top:
        t = normalize(token)
        if not t:
            continue
        matching = [i for i, w in enumerate(norms) if w.startswith(t)]
        if len(matching) == 1:
            scores[matching[0]].append(logprob)
        elif (token, logprob) == best:
            return None
    if not normalize(best[0]) or not any(scores):
        return None
    floor = min(lp for _, lp in top) + math.log(0.5)
    missing = sum(not s for s in scores)
    if missing:
        listed = np.logaddexp.reduce([lp for _, lp in {token: lp for token, lp in top}.items()])
        left = -math.expm1(min(float(listed), 0.0))  # 1 - the listed probability, without cancellation
        floor = min(floor, math.log(max(left, MIN_LEFT) / missing))
    return np.array([np.logaddexp.reduce(s) if s else floor for s in scores], dtype=np.float64)


def starts_like(answer, word):
    """Whether ``answer``'s first word starts ``word``'s first word, or the other way round.

    An answer that names no class ("Neutral") counts by its first token's
    alternatives only where that token could begin the class it favours
    ("pos" of "positive", "positively"): "ne" starts "negative" and "neutral" alike.
    """
    first, wanted = normalize(answer).split()[:1], normalize(word).split()[:1]
    return bool(first and wanted) and (wanted[0].startswith(first[0]) or first[0].startswith(wanted[0]))
