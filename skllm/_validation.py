"""Validation of text inputs shared by every estimator that reads raw strings."""

import datetime
import numbers
import warnings

import numpy as np

from .exceptions import SkllmWarning

_MAX_LISTED = 10


def check_int(value, name, low=1, *, high=None, allow_none=False):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``low`` (and <= ``high``)."""
    if value is None and allow_none:
        return
    bad = isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low
    if bad or (high is not None and value > high):
        extra = " or None" if allow_none else ""
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}{extra}, got {value!r}.")


def check_number(value, name, low=None, high=None, *, allow_none=False, low_inclusive=True, high_inclusive=False):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite real number in range.

    ``low`` and ``high`` bound the range (``None``: unbounded); ``low`` is
    inclusive and ``high`` exclusive unless told otherwise.
    """
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>=' if low_inclusive else '>'} {low}")
        if high is not None:
            bounds.append(f"{'<=' if high_inclusive else '<'} {high}")
        bound = (" " + " and ".join(bounds)) if bounds else ""
        raise ValueError(f"{name} must be a number{bound}{' or None' if allow_none else ''}, got {value!r}.")


def check_bool(value, name):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")


def check_choice(value, name, allowed):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is one of ``allowed``."""
    if isinstance(value, str) and value in allowed:
        return
    if not isinstance(value, str) and any(value is a for a in allowed):
        return
    raise ValueError(f"{name}={value!r} is not supported; use one of {list(allowed)}.")


def check_random_state_param(value, name="random_state"):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` can seed the estimator.

    Allowed: ``None``, an integer in ``[0, 2**32 - 1]`` or a ``numpy.random.RandomState``.
    """
    if value is None or isinstance(value, np.random.RandomState):
        return
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value <= 2**32 - 1:
        return
    raise ValueError(f"{name} must be None, an integer in [0, 2**32 - 1] or a numpy.random.RandomState, got {value!r}.")


def check_ordered(values, name, who=""):
    """Raise a ``TypeError`` naming ``name`` when ``values`` is a dict or a set.

    Iterating a dict gives its keys and a set has no order: neither lines up
    row for row with the texts.
    """
    if isinstance(values, (set, frozenset, dict)):
        raise TypeError(
            f"{who}expected {name} to be an ordered sequence (a list, tuple, 1-D array or pandas Series), got a "
            f"{type(values).__name__}, whose order is not defined"
            + (" and which iterates over its keys only." if isinstance(values, dict) else ".")
        )


def is_one_pass(values):
    """Whether ``values`` is an iterator (a generator...): read once, it is empty the next time."""
    return hasattr(values, "__next__") and iter(values) is values


def is_missing(value):
    """Whether one value is a missing one: None, NaN, or pandas' NaT and NA (from nullable columns)."""
    if value is None:
        return True
    if isinstance(value, str):
        return False
    if isinstance(value, numbers.Real):
        return value != value
    import pandas as pd

    try:
        return bool(pd.api.types.is_scalar(value) and pd.isna(value))
    except (TypeError, ValueError):
        return False


def is_collection(value):
    """Whether one label is several (a list, array, set or dict): one label per text is expected."""
    return isinstance(value, (list, np.ndarray, set, frozenset, dict))


def check_no_missing(values, name="y"):
    """Raise a ``ValueError`` naming ``name`` and the positions of missing labels in ``values`` (see ``is_missing``)."""
    missing = [i for i, v in enumerate(values) if is_missing(v)]
    if missing:
        raise ValueError(
            f"{name} has {len(missing)} missing label(s) (None, NaN, NaT or NA) at {_describe_positions(missing)}; "
            f"drop those rows or fill them first: a missing value is not a class."
        )


def label_kind(value):
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, (datetime.date, np.datetime64)):  # datetime and pandas' Timestamp are dates too
        return "date"
    if isinstance(value, (datetime.timedelta, np.timedelta64)):
        return "duration"
    return type(value).__name__


def class_wordings(classes, label_words, listed=False):
    """What the model is shown for each of ``classes``: its ``label_words`` entry, else the class as text.

    Refused: fewer than 2 classes, repeated ones, ``label_words`` naming a label that is
    not a class, an empty wording, two classes with one wording or wordings that differ
    only by surrounding spaces. Numbers shown as they are (which say nothing about the
    task) are warned about, and so are wordings holding a comma where the prompt lists
    them separated by commas (``listed``). Wordings are returned without surrounding whitespace.
    """
    if len(classes) < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {classes!r}.")
    if len(set(map(repr, classes))) != len(classes):
        raise ValueError(f"The classes must be distinct, got {classes!r}.")
    check_one_label_type(classes, "classes")
    unknown = [k for k in label_words if k not in classes]
    if unknown:
        raise ValueError(
            f"label_words names labels that are not classes: {unknown!r}; classes are {classes!r}."
            + encoded_labels_hint(classes)
        )
    wordings = [str(label_words.get(c, c)) for c in classes]
    empty = [c for c, w in zip(classes, wordings) if not w.strip()]
    if empty:
        raise ValueError(
            f"The classes {empty!r} have an empty wording: the model cannot answer them. Give each a wording "
            f"with label_words, e.g. {{{empty[0]!r}: 'none'}}, or remove the empty labels (often missing values)."
        )
    codes = [c for c in classes if c not in label_words and isinstance(c, numbers.Number)]
    if codes:
        warnings.warn(
            f"The classes {codes!r} are numbers, shown to the model as {[str(c) for c in codes]!r}, which say "
            f"nothing about the task; give label_words, e.g. {{{codes[0]!r}: 'negative'}}."
            + encoded_labels_hint(classes),
            UserWarning,
            stacklevel=4,  # class_wordings, _set_classes, fit: fit's caller
        )
    if len(set(wordings)) != len(wordings):
        raise ValueError(f"Two classes have the same wording: {wordings!r}; set label_words.")
    spaced = differing_by_spaces(wordings)
    if spaced:
        raise ValueError(
            f"The class wordings {spaced[0]!r} differ only by surrounding spaces, which the model would be asked "
            f"to tell apart: strip the labels (a slip in the data, usually) or set label_words."
        )
    commas = [w for w in wordings if "," in w]
    if listed and commas:
        warnings.warn(
            f"The class wordings {commas!r} hold a comma, and the template's {{labels}} lists the wordings separated "
            f"by commas: the model reads more classes than there are. Give label_words without commas.",
            UserWarning,
            stacklevel=4,
        )
    # The prompt puts its own space or line break before a wording: one in the wording (" positive", as GPT-2
    # writes words) would be a second one, scored as part of the answer.
    return [w.strip() for w in wordings]


def encoded_labels_hint(labels):
    """A hint where ``labels`` are 0, 1, ..., n-1: scikit-learn's codes for them, perhaps, not the user's labels.

    ``cross_val_predict(method="predict_proba")`` (and ``"decision_function"``) fits on ``y``
    encoded so; a prompting classifier would then name the codes to the model.
    """
    values = list(labels)
    if values and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        if sorted(values) == list(range(len(values))):
            return (
                " If these are codes scikit-learn made (cross_val_predict with method='predict_proba' or "
                "'decision_function' encodes y as 0, 1, ... before fit), the prompts name the codes, not your "
                "labels: use method='predict', or label_words keyed by the codes."
            )
    return ""


def check_one_label_type(labels, name="y"):
    """Raise a ``ValueError`` naming ``name`` when ``labels`` mix types (str, bool, numbers...).

    Mixed, they would merge without a word (``True == 1``, so a set keeps one of them) or be
    turned into strings by NumPy (``1`` and ``"1"`` as one class).
    """
    kinds = {}
    for v in labels:
        kinds.setdefault(label_kind(v), v)
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} {v!r}" for kind, v in sorted(kinds.items()))
        raise ValueError(
            f"{name} mixes label types ({examples}); use one type for every label, e.g. all str or all int."
        )


def check_labels(labels, name="classes"):
    """Return ``labels`` as a list, rejecting a plain string (which would be split into characters)."""
    check_ordered(labels, name)
    if isinstance(labels, (str, bytes)):
        raise ValueError(
            f"{name} must be a list of labels, got the single string {labels!r}; "
            f"wrap it in a list, e.g. [{labels!r}, ...]."
        )
    try:
        values = list(labels)
    except TypeError:
        raise ValueError(f"{name} must be a list of labels, got {type(labels).__name__} {labels!r:.60}.") from None
    return values


def check_unique(values, name="classes"):
    """Raise a ``ValueError`` naming ``name`` and the first repeated value unless ``values`` are distinct."""
    seen = {}
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{name} lists {v!r} twice (positions {seen[v]} and {i}); each must appear once.")
        seen[v] = i


def _describe_positions(bad, index=None):
    shown = bad[:_MAX_LISTED]
    more = f" and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
    text = f"positions {shown}{more}"
    if index is not None:
        labels = [index[i] for i in shown]
        text += f" (index labels {labels}{more})"
    return text


def check_target_texts(y, n_texts, *, estimator=None, stop_at_newline=False):
    """The target texts ``y`` of a generator as a list of ``str``, one per text, none empty.

    An empty (or blank) target would teach the model to answer nothing, whether it is
    trained on (``FineTuneGenerator``) or shown as a demonstration (``FewShotGenerator``).
    With ``stop_at_newline``, targets of several lines get a warning: every answer is cut
    at its first line break, so none could match them.
    """
    from ._scoring import check_lengths

    targets = check_texts(y, name="y", estimator=estimator)
    check_lengths(range(n_texts), targets)
    empty = [i for i, t in enumerate(targets) if not t.strip()]
    if empty:
        raise ValueError(
            f"y has {len(empty)} empty target(s) at positions {empty[:10]}: the model would learn (or be shown) to "
            f"answer nothing. Drop those rows or give them a target text."
        )
    lines = [i for i, t in enumerate(targets) if "\n" in t.strip()]
    if stop_at_newline and lines:
        warnings.warn(
            f"{len(lines)} of {len(targets)} targets span several lines (positions {lines[:10]}), but "
            f"stop_at_newline=True cuts every answer at its first line break: set stop_at_newline=False to "
            f"generate them whole.",
            SkllmWarning,
            stacklevel=3,
        )
    return targets


def differing_by_spaces(values):
    """The groups of strings in ``values`` that are one string but for surrounding spaces (``"pos"``, ``"pos "``)."""
    forms = {}
    for v in dict.fromkeys(values):
        if isinstance(v, str):
            forms.setdefault(v.strip(), []).append(v)
    return [sorted(group) for group in forms.values() if len(group) > 1]


def check_texts(X, *, name="X", estimator=None):
    """Return ``X`` as a list of ``str`` in input order, or raise a clear error.

    Accepts a list or tuple of strings, a 1-D numpy array, a pandas Series (its
    index is ignored: output follows the row order), a single-column
    DataFrame, or another 1-D pandas container (Index, Categorical, string
    array). Missing and non-string values raise a ``ValueError`` that names
    their positions; empty strings are valid texts. A generator is refused: it
    can be read only once.
    """
    who = f"{type(estimator).__name__} " if estimator is not None else ""
    index = None
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{who}expected {name} to be a sequence of texts, got a single "
            f"{type(X).__name__}; wrap it in a list: [{name}]."
        )
    check_ordered(X, name, who)
    module = type(X).__module__
    if module.startswith("pandas"):
        if hasattr(X, "columns"):
            if X.shape[1] != 1:
                raise ValueError(
                    f"{who}expected {name} to have one text column, got a DataFrame "
                    f"with {X.shape[1]} columns {list(X.columns)[:10]}. Select the "
                    f"text column first, e.g. df['text'], or use a ColumnTransformer."
                )
            X = X.iloc[:, 0]
        rows = getattr(X, "index", None)  # a Series' labels; an Index, Categorical or array has none
        index = list(rows) if rows is not None and not callable(rows) else None
        values = X.tolist()
    elif isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{who}expected {name} to be 1-D (one text per row), got an array of shape {X.shape}.")
        values = X.tolist()
    elif isinstance(X, (list, tuple)) or (hasattr(X, "__iter__") and not hasattr(X, "shape")):
        if is_one_pass(X):
            # Read once, a generator is empty the next time: fit then transform (a Pipeline's
            # fit_transform) would see no texts, or predict other texts than fit.
            raise TypeError(
                f"{who}expected {name} to be a sequence of texts, got a one-pass {type(X).__name__}; "
                f"pass list({name}) instead."
            )
        values = list(X)
    else:
        raise TypeError(
            f"{who}expected {name} to be a list of str, a 1-D array, a pandas Series "
            f"or a single-column DataFrame; got {type(X).__name__}."
        )

    if len(values) == 0:
        raise ValueError(f"{who}got an empty {name}: at least one text is needed.")

    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        kinds = []
        for i in bad[:_MAX_LISTED]:
            v = values[i]
            if v is None:
                kinds.append("None")
            elif is_missing(v):
                kinds.append("NaN" if isinstance(v, numbers.Real) else str(v))  # NaT, <NA>
            else:
                kinds.append(f"{type(v).__name__} {v!r:.40}")
        if all(isinstance(values[i], (bytes, bytearray, np.bytes_)) for i in bad):
            advice = (
                "decode bytes into str first, in the encoding they were written in (e.g. "
                "[t.decode('utf-8') for t in X]); nothing is decoded by guess."
            )
        else:
            advice = "fill or drop missing values first (e.g. X.fillna('')), nothing is dropped silently."
        raise ValueError(
            f"{who}{name} has {len(bad)} value(s) that are not strings, at "
            f"{_describe_positions(bad, index)}: {', '.join(kinds)}. Every row must be a text; {advice}"
        )
    # A lone surrogate (e.g. from a bad decode with errors="surrogateescape")
    # is not valid Unicode: tokenizers fail on it deep inside, with no row.
    broken = [i for i, v in enumerate(values) if _has_lone_surrogate(v)]
    if broken:
        raise ValueError(
            f"{who}{name} has {len(broken)} text(s) that are not valid Unicode (lone surrogate "
            f"code points, e.g. from decoding bytes with errors='surrogateescape'), at "
            f"{_describe_positions(broken, index)}. Decode the source bytes properly, or clean them, "
            f"e.g. text.encode('utf-8', 'replace').decode('utf-8')."
        )
    return [str(v) for v in values]


def _has_lone_surrogate(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
