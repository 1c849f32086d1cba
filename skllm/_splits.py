"""The rows held out for early stopping, and the stratified splits behind them.

Every estimator that stops early holds out ``validation_fraction`` of its rows the same
way: stratified where it can be, never leaving a class (or a multi-label label) out of
training, and never holding out rows on which the validation score is constant whatever
the model predicts (R² of equal targets, F1 of texts without a label).
"""

import collections
import math

import numpy as np


def validation_split(rows, fraction, seed, stratify=None, what="texts", min_valid=1, varied=None):
    """``(training rows, validation rows)`` for early stopping: ``fraction`` of ``rows`` held out.

    Stratified by ``stratify`` where every class can be. A class of one row is
    trained on, never held out alone, where the others leave enough rows to split: a plain
    split would drop its only row from training (1 time in 4 at ``fraction=0.25``), and
    the model would never see the class. Where the split cannot be stratified (fewer rows
    held out than classes), every class still keeps a row to train on
    (:func:`_train_on_every_class`). A split that leaves no row to train on, or fewer
    than ``min_valid`` to score (R² needs 2), is a ``ValueError`` naming
    ``validation_fraction``. ``varied``: targets (aligned with ``rows``) of which the held-out
    rows must hold two values where the rows do (R² of equal targets is 0 whatever the
    predictions: early stopping would stop on nothing); a held-out row is swapped for a
    training row of another value where they do not.
    """
    n_valid = math.ceil(fraction * len(rows))  # as train_test_split counts them
    if len(rows) - n_valid < 1:
        raise ValueError(
            f"validation_fraction={fraction} of {len(rows)} {what} holds out {n_valid} and leaves none to train on; "
            f"give more {what}, a smaller validation_fraction, or early_stopping=False."
        )
    if n_valid < min_valid:
        raise ValueError(
            f"validation_fraction={fraction} of {len(rows)} {what} holds out {n_valid}, and the validation score "
            f"needs {min_valid}: early stopping would compare undefined scores. Give more {what}, a larger "
            f"validation_fraction, or early_stopping=False."
        )
    if stratify is None:
        train, valid = split_rows(rows, fraction, seed)
        if varied is None:
            return train, valid
        if np.ndim(varied) == 2:  # multi-label: F1 of held-out texts without a label is 0 whatever is predicted
            return _held_out_has_labels(train, valid, dict(zip(rows, np.asarray(varied))), seed)
        return _held_out_varies(train, valid, dict(zip(rows, varied)), seed)
    rows, stratify = np.asarray(rows), np.asarray(stratify)
    values, counts = np.unique(stratify, return_counts=True)
    lone = np.isin(stratify, values[counts < 2])
    if lone.any() and (~lone).sum() > n_valid:
        train, valid = split_rows(rows[~lone], n_valid, seed, stratify[~lone])
        train = np.concatenate([rows[lone], train])
    else:
        train, valid = split_rows(rows, fraction, seed, stratify)
    class_of = dict(zip(rows.tolist(), stratify.tolist()))
    return _train_on_every_class(train, valid, class_of, seed, min_valid, fraction, what)


def _train_on_every_class(train, valid, class_of, seed, min_valid, fraction, what):
    """``train`` and ``valid`` with a row of every class in ``train``, swapped in from ``valid``.

    A split that cannot be stratified (fewer rows held out than there are classes) is a
    plain one, which can hold out every row of a class: the model would never see it. Each
    such class gets one of its held-out rows back, in exchange for a training row of a
    class that keeps another, so that as many rows are held out (fewer where no class has
    one to spare).
    """
    rng = np.random.RandomState(seed)
    train, valid = list(train), list(valid)
    for label in sorted(set(map(class_of.get, valid)) - set(map(class_of.get, train)), key=repr):
        back = [r for r in valid if class_of[r] == label][rng.randint(sum(class_of[r] == label for r in valid))]
        valid.remove(back)
        in_train = collections.Counter(map(class_of.get, train))
        spare = [r for r in train if in_train[class_of[r]] > 1]
        if spare:
            out = spare[rng.randint(len(spare))]
            train.remove(out)
            valid.append(out)
        train.append(back)
    if len(valid) < max(min_valid, 1):
        raise ValueError(
            f"early_stopping with validation_fraction={fraction}: the {what} it would hold out are each the only one "
            f"of their class, so none can be held out without leaving that class untrained. Give more {what} per "
            f"class, or early_stopping=False."
        )
    return np.asarray(train), np.asarray(valid)


def _held_out_varies(train, valid, value_of, seed):
    """``train`` and ``valid``, a held-out row swapped for a training row of another value if all held out are equal."""
    first = value_of[valid[0]]
    if any(value_of[r] != first for r in valid):
        return train, valid
    others = [i for i, r in enumerate(train) if value_of[r] != first]  # none: every target the same
    return _swapped(train, valid, others, seed)


def _held_out_has_labels(train, valid, labels_of, seed):
    """``train`` and ``valid``, a held-out row swapped for a training row with labels if none held out has one.

    The training row is one whose every label another training row holds too, so that no label leaves training.
    """
    if any(labels_of[r].any() for r in valid):
        return train, valid
    counts = sum((labels_of[r] > 0).astype(np.int64) for r in train)
    movable = [i for i, r in enumerate(train) if labels_of[r].any() and (counts[labels_of[r] > 0] > 1).all()]
    return _swapped(train, valid, movable, seed)


def _swapped(train, valid, candidates, seed):
    """``train`` and ``valid`` with one of the training positions ``candidates`` swapped for a held-out row.

    Both drawn with ``seed``; as they are where there is no candidate.
    """
    if not candidates:
        return train, valid
    rng = np.random.RandomState(seed)
    train, valid = np.array(train), np.array(valid)
    i, j = candidates[rng.randint(len(candidates))], rng.randint(len(valid))
    train[i], valid[j] = valid[j], train[i]
    return train, valid


def split_rows(rows, test_size, seed, stratify=None):
    """``train_test_split`` of ``rows``, stratified by ``stratify`` (aligned with ``rows``) where every class can be."""
    from sklearn.model_selection import train_test_split

    if stratify is not None:
        try:
            return train_test_split(rows, test_size=test_size, random_state=seed, stratify=stratify)
        except ValueError:  # a class too small to stratify
            pass
    return train_test_split(rows, test_size=test_size, random_state=seed)


def group_split(groups, fraction, seed):
    """``(training rows, validation rows)`` holding out whole groups, about ``fraction`` of the rows.

    Groups are drawn in a seeded order and held out while their rows fit within
    ``ceil(fraction * n)``: groups of very different sizes (a ranked list of 10 responses is
    45 pairs, one of 2 is 1) would make a share of the *groups* hold out almost every row,
    or a single one. Where none fits, the smallest group, if it holds at most twice that
    (whole groups are worth a larger share); None where none does (split the rows instead).
    """
    groups = np.asarray(groups)
    limit = math.ceil(fraction * len(groups))
    names, sizes = np.unique(groups, return_counts=True)
    held, total = [], 0
    order = np.random.RandomState(seed).permutation(len(names))
    for i in order:
        if total + sizes[i] <= limit:
            held.append(names[i])
            total += sizes[i]
    smallest = order[np.argmin(sizes[order])]  # the first drawn of the smallest
    if not held and sizes[smallest] <= 2 * limit:
        held.append(names[smallest])
    valid = np.isin(groups, held)
    if not held or valid.all():
        return None
    return np.flatnonzero(~valid), np.flatnonzero(valid)
