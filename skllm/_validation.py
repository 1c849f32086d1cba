"""Validation of text inputs shared by every estimator that reads raw strings."""

import numbers

import numpy as np

_MAX_LISTED = 10


def check_int(value, name, low=1):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")


def _describe_positions(bad, index=None):
    shown = bad[:_MAX_LISTED]
    more = f" and {len(bad) - len(shown)} more" if len(bad) > len(shown) else ""
    text = f"positions {shown}{more}"
    if index is not None:
        labels = [index[i] for i in shown]
        text += f" (index labels {labels}{more})"
    return text


def check_texts(X, *, name="X", estimator=None):
    """Return ``X`` as a list of ``str`` in input order, or raise a clear error.

    Accepts a list or tuple of strings, a 1-D numpy array, a pandas Series (its
    index is ignored: output follows the row order) or a single-column
    DataFrame. ``None``, NaN and non-string values raise a ``ValueError`` that
    names their positions; empty strings are valid texts.
    """
    who = f"{type(estimator).__name__} " if estimator is not None else ""
    index = None
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{who}expected {name} to be a sequence of texts, got a single "
            f"{type(X).__name__}; wrap it in a list: [{name}]."
        )
    if isinstance(X, (set, frozenset, dict)):
        raise TypeError(
            f"{who}expected {name} to be an ordered sequence of texts, got a "
            f"{type(X).__name__}, whose order is not defined."
        )
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
        index = list(X.index)
        values = X.to_list()
    elif isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{who}expected {name} to be 1-D (one text per row), got an array of shape {X.shape}.")
        values = X.tolist()
    elif isinstance(X, (list, tuple)) or (hasattr(X, "__iter__") and not hasattr(X, "shape")):
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
            elif isinstance(v, numbers.Real) and v != v:
                kinds.append("NaN")
            else:
                kinds.append(f"{type(v).__name__} {v!r:.40}")
        raise ValueError(
            f"{who}{name} has {len(bad)} value(s) that are not strings, at "
            f"{_describe_positions(bad, index)}: {', '.join(kinds)}. Every row must "
            f"be a text; fill or drop missing values first (e.g. X.fillna('')), "
            f"nothing is dropped silently."
        )
    return [str(v) for v in values]
