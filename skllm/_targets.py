"""Validation of the targets ``y`` of the fine-tuned estimators: class labels, indicator matrices, numbers."""

import numbers
import warnings
from collections.abc import Hashable

import numpy as np
import scipy.sparse as sp
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from ._validation import (
    check_labels,
    check_no_missing,
    check_one_label_type,
    check_ordered,
    is_collection,
    is_one_pass,
    label_kind,
)
from .exceptions import SkllmWarning


def _refuse_complex(values, who, allowed):
    """A ValueError when ``values`` holds complex numbers: their imaginary part is never dropped silently."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):  # ragged rows: the caller's checks say what is wrong
        return
    flat = array.ravel()
    if array.dtype.kind == "c":
        imaginary = np.flatnonzero(flat.imag != 0)
        i = int(imaginary[0]) if imaginary.size else 0
    elif array.dtype == object:
        found = np.flatnonzero([isinstance(v, (complex, np.complexfloating)) for v in flat])
        if not found.size:
            return
        i = int(found[0])
    else:
        return
    raise ValueError(
        f"y holds complex numbers, e.g. {complex(flat[i])!r} at position {i}; {who} takes {allowed}, and does not "
        f"drop an imaginary part silently. Pass y.real (or abs(y)) if that is what you mean."
    )


def fits_int64(value):
    """Whether the number ``value`` lies in int64's range, where numpy keeps whole numbers apart as labels."""
    return -(2**63) <= value < 2**63


def _refuse_huge_labels(values):
    """Refuse whole numbers past the int64 range as labels: numpy reads them as floats, where
    2**63 + 1 and 2**63 + 3 are one number (two classes merged)."""
    huge = [i for i, v in enumerate(values) if isinstance(v, numbers.Number) and not fits_int64(v)]
    if huge:
        raise ValueError(
            f"y holds numbers past the int64 range as labels (e.g. {values[huge[0]]!r} at position {huge[0]}), "
            f"which numpy cannot keep apart; pass the labels as strings."
        )


def _encode_labels(y, n_texts, who):
    """``(classes, index of each label in classes)``, or a ValueError saying what is wrong with ``y``."""
    check_ordered(y, "y", f"{who} ")
    if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__iter__") or is_one_pass(y):
        raise ValueError(f"y must be a sequence of labels, one per text, got {y!r:.60}.")
    values = y if hasattr(y, "__array__") else list(y)
    labels = np.asarray(values, dtype=object)
    if labels.ndim == 0:
        raise ValueError(f"y must be a sequence of labels, one per text, got {y!r:.60}.")
    if labels.ndim != 1:  # 2-D: _multilabel_indicator says what is allowed
        raise ValueError(f"{who} takes one label per text (1-D y), but y has shape {labels.shape}.")
    if len(labels) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(labels)} labels; they must match row for row.")
    check_no_missing(labels, "y")
    _refuse_complex(labels, who, "labels of one type: str, bool or real numbers")
    # A frozenset is hashable, but sets are only partly ordered ("<" is "subset of"), so
    # sorting them leaves equal labels apart: one class per row. Refused like other sets.
    unhashable = [i for i, v in enumerate(labels) if not isinstance(v, Hashable) or is_collection(v)]
    if unhashable:
        i = unhashable[0]
        raise ValueError(
            f"y must hold one hashable label per text, not a collection; {len(unhashable)} are not, e.g. at "
            f"position {i}: {type(labels[i]).__name__} {labels[i]!r:.40}. For several labels per text, pass a 0/1 "
            f"indicator matrix: sklearn.preprocessing.MultiLabelBinarizer().fit_transform(y)."
        )
    check_one_label_type(labels)
    kind = label_kind(labels[0])
    if kind in ("number", "bool"):
        plain = np.asarray(labels.tolist())
        if plain.dtype.kind == "f" and not np.isfinite(plain).all():
            bad = np.flatnonzero(~np.isfinite(plain))
            raise ValueError(f"y holds infinite labels, at positions {bad[:10].tolist()}; classes must be finite.")
        with warnings.catch_warnings():  # its cast of numbers past int64 warns
            warnings.simplefilter("ignore", RuntimeWarning)
            target_type = type_of_target(plain)
        if target_type == "continuous":
            fractional = plain[plain != np.round(plain)]
            if fractional.size:
                raise ValueError(
                    f"y holds continuous values (e.g. {fractional[0].item()!r}) but {who} needs discrete classes. "
                    f"For a numeric target use FineTuneRegressor; to classify, bin y first (e.g. numpy.digitize)."
                )
        _refuse_huge_labels(labels.tolist())
        if target_type != "continuous":
            check_classification_targets(plain)
    elif kind == "str":
        check_classification_targets(labels)
    try:
        classes, encoded = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"The labels in y cannot be ordered: {exc}") from exc
    if len(classes) != len(set(classes.tolist())):  # an order that is not total keeps equal labels apart
        raise ValueError(
            f"The labels in y cannot be sorted into classes: {type(classes[0]).__name__} values are not totally "
            f"ordered; use str or int labels."
        )
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2.")
    if kind in ("str", "number", "bool"):
        plain = np.asarray(classes.tolist())  # a plain dtype (str, int, float, bool)
        if len(np.unique(plain)) != len(classes):
            # ints and floats together become float64, where ints past 2**53 lose their last digits.
            merged = next(
                (a, b)
                for a, b in zip(classes.tolist(), classes.tolist()[1:])
                if plain.dtype.type(a) == plain.dtype.type(b)
            )
            raise ValueError(
                f"The labels {merged[0]!r} and {merged[1]!r} in y are one number once ints and floats are held as "
                f"{plain.dtype}; give y labels of one type (e.g. all int)."
            )
        classes = plain
    return classes, encoded.ravel()


def _is_zero_or_one(value):
    return isinstance(value, (bool, np.bool_, numbers.Real)) and (value == 0 or value == 1)


def _multilabel_indicator(y, n_texts, who, *, multioutput_hint=True):
    """``(indicator, sparse)`` for a 2-D ``y``: float32 0/1 matrix (n_texts, n_labels), and whether ``y`` was sparse.

    ``None`` for anything that is not 2-D (one label per text: ``_encode_labels`` checks it).
    A 2-D ``y`` that is not a 0/1 indicator with two or more columns is a ValueError saying
    what is allowed (and, with ``multioutput_hint``, how to predict several other outputs).
    """
    allowed = (
        f"{who} takes one label per text (a 1-D y) or, for several labels per text, a 0/1 indicator matrix "
        f"of shape (n_texts, n_labels) with 2 or more columns, dense or sparse"
    )
    check_ordered(y, "y", f"{who} ")
    sparse = sp.issparse(y)
    if sparse:
        shape = y.shape
    else:
        if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__iter__") or is_one_pass(y):
            return None  # _encode_labels names what is wrong
        values = y if hasattr(y, "__array__") else list(y)
        try:
            shape = np.shape(values)
        except ValueError:  # rows of unequal length: not a matrix
            return None
        if len(shape) < 2:
            return None
    if len(shape) != 2:
        raise ValueError(f"{allowed}; y has shape {shape}.")
    if shape[1] < 2:
        single = ", a single column. For one label per text, pass it as 1-D (e.g. y.ravel() or frame['label'])"
        raise ValueError(f"{allowed}; y has shape {shape}{single if shape[1] == 1 else ''}.")
    if shape[0] != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {shape[0]} rows; they must match row for row.")
    if sparse:
        coo = y.tocoo(copy=True)  # a COO y would be returned as it is, and must not be changed
        coo.sum_duplicates()  # entries given twice for one cell add up, as toarray() would
        rows, columns, cells = coo.row, coo.col, coo.data
    else:
        cells = np.asarray(values)
        if cells.dtype.kind not in "biuf":  # keep each value's own type (str, None...) for the message
            cells = np.asarray(values, dtype=object)
        rows, columns = np.indices(shape).reshape(2, -1)
        cells = cells.ravel()
    if cells.dtype.kind in "biuf":
        bad = np.flatnonzero((cells != 0) & (cells != 1))
    else:
        bad = np.flatnonzero([not _is_zero_or_one(v) for v in cells])
    if bad.size:
        i, j, v = rows[bad[0]], columns[bad[0]], cells[bad[0]]
        v = v.item() if isinstance(v, np.generic) else v
        try:
            kind = type_of_target(y)
        except (ValueError, TypeError):  # a COO matrix cannot be indexed
            kind = None
        # scikit-learn calls any two integers an indicator ("multilabel-indicator" for 0 and 2).
        kind = f" ({kind})" if kind not in (None, "multilabel-indicator") else ""
        hint = (
            "; for several outputs of other values per text, wrap the classifier in "
            "sklearn.multioutput.MultiOutputClassifier"
            if multioutput_hint
            else ""
        )
        raise ValueError(
            f"{allowed}; y has shape {shape}{kind} with {v!r} at row {i}, column {j}. To turn lists of labels "
            f"into an indicator matrix, use sklearn.preprocessing.MultiLabelBinarizer{hint}."
        )
    indicator = (coo.toarray() if sparse else np.asarray(values)).astype(np.float32)
    _check_label_columns(indicator, who)
    return indicator, sparse


def _check_label_columns(indicator, who):
    """Refuse an indicator with no 1 (or no 0) at all; warn of labels that are never, or always, positive.

    A single constant label is learnt as such (never, or always, predicted), as
    ``OneVsRestClassifier`` does, with a warning naming the columns.
    """
    positives = indicator.sum(axis=0)
    for value, where in ((0, positives == 0), (1, positives == len(indicator))):
        if where.all():
            has = "no text has any label" if value == 0 else "every text has every label"
            raise ValueError(
                f"y is a multi-label indicator of shape {indicator.shape} whose every cell is {value}: {has}, so "
                f"{who} has nothing to learn. Each column is one label and a 1 marks a text that has it; check "
                f"that y was built from the labels of these texts (e.g. by MultiLabelBinarizer fitted on them)."
            )
    never, always = np.flatnonzero(positives == 0).tolist(), np.flatnonzero(positives == len(indicator)).tolist()
    parts = [f"columns {never[:10]} are positive for no text, so {who} learns never to predict them"] if never else []
    if always:
        parts.append(f"columns {always[:10]} are positive for every text, so {who} learns always to predict them")
    if parts:
        warnings.warn(
            f"In the multi-label y, {'; '.join(parts)}. If those labels should occur otherwise, check how y was "
            f"built (e.g. the classes of the MultiLabelBinarizer).",
            SkllmWarning,
            stacklevel=3,
        )


def _numeric_targets(y, n_texts, who):
    """``y`` as a 1-D float64 array of finite values, or a ValueError saying what is wrong."""
    check_ordered(y, "y", f"{who} ")
    if y is None or isinstance(y, (str, bytes)) or is_one_pass(y):
        raise ValueError(f"y must be a sequence of numbers, one per text, got {y!r:.60}.")
    if sp.issparse(y):
        y = y.toarray()
    _refuse_complex(y, who, "real numbers")
    try:
        kind = np.asarray(y).dtype.kind
    except ValueError:  # ragged: numpy cannot make one array of a list that holds sequences
        position = next((i for i, v in enumerate(y) if np.ndim(v) > 0), 0)
        raise ValueError(
            f"y must hold one number per text; position {position} holds {list(y)[position]!r:.40}."
        ) from None
    if kind in "mM":  # numpy would turn them into nanosecond counts
        raise ValueError(
            f"y holds {'dates' if kind == 'M' else 'durations'}; {who} needs numbers. Convert them first, e.g. "
            f"durations to seconds (y / numpy.timedelta64(1, 's')) or dates to days since a reference date."
        )
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an int past float's range
        values = np.asarray(y, dtype=object)
        if values.ndim == 1:  # pandas' NA in a list has no float value: name it as a missing value
            check_no_missing(values, "y")
        raise ValueError(f"y must be numeric for a regressor: {exc}") from exc
    if y.ndim == 2 and y.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning

        # As scikit-learn's regressors: read as its one column, and said (predict returns (n_samples,)).
        warnings.warn(
            f"A column-vector y was passed when a 1d array was expected: {who} reads its one column and predicts "
            f"shape (n_samples,). Pass y.ravel() (or the column itself) to say so.",
            DataConversionWarning,
            stacklevel=3,
        )
        y = y[:, 0]
    if y.ndim == 0:
        raise ValueError(f"{who} needs y as one number per text (a list or 1-D array), got the single value {y}.")
    if y.ndim != 1:
        raise ValueError(
            f"{who} predicts one number per text, but y has shape {y.shape}. For several targets per "
            f"text, wrap it in sklearn.multioutput.MultiOutputRegressor."
        )
    if len(y) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(y)} values; they must match row for row.")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"y has {bad.size} missing or infinite value(s) at positions {bad[:10].tolist()}.")
    return y


# -- the prompting classifiers' labels ------------------------------------------------------
def plain_labels(y, name="y"):
    """``y`` as a list of Python values (NumPy scalars converted, so that labels compare and hash alike).

    A plain string is rejected: it would be read as one label per character.
    A single column (a one-column DataFrame, an array of shape ``(n, 1)``) is
    read as its values; any other shape, or rows that are sequences
    (several labels per text), is refused.
    """
    if sp.issparse(y):
        y = y.toarray()
    shape = getattr(y, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] == 1:
        y = y.iloc[:, 0] if hasattr(y, "iloc") else y[:, 0]
    elif shape is not None and len(shape) != 1:
        raise ValueError(
            f"{name} must be 1-D, one label per text; got an array of shape {tuple(shape)}. The prompting "
            f"classifiers predict one class per text (several labels per text are not supported)."
        )
    y = check_labels(y, name)
    nested = [i for i, v in enumerate(y) if is_collection(v)]
    if nested:
        i = nested[0]
        raise ValueError(
            f"{name} must be 1-D, one label per text; {len(nested)} row(s) are sequences, the first at position "
            f"{i}: {y[i]!r:.60}. The prompting classifiers predict one class per text (several labels per text "
            f"are not supported)."
        )
    y = [v.item() if isinstance(v, np.generic) else v for v in y]
    check_no_missing(y, name)
    check_one_label_type(y, name)
    return y


def unique_labels(y, name="y"):
    """The distinct labels of ``y``, sorted."""
    try:
        return sorted(set(plain_labels(y, name)))
    except TypeError as exc:
        raise ValueError(f"The labels in {name} cannot be ordered (mixed types?): {exc}") from exc
