"""The folds of a comparison: checking and sampling the targets, cutting the folds, scoring one fold."""

import pickle
import time

import numpy as np

from .._validation import check_labels, check_no_missing, check_one_label_type, label_kind


def check_targets(y, n_texts):
    """``(y, multilabel)``: ``y`` as an array of one label per text, or as a dense 0/1 indicator matrix.

    A multi-label ``y`` is a 0/1 indicator matrix with one column per label (e.g. from
    ``sklearn.preprocessing.MultiLabelBinarizer``), dense or sparse; any other 2-D ``y``
    is a ``ValueError`` saying what is allowed.
    """
    from .._finetune import _multilabel_indicator
    from .._targets import _refuse_huge_labels

    if y is None:
        raise ValueError("y must be a list of labels, one per text, or a 0/1 indicator matrix, got None.")

    indicator = _multilabel_indicator(y, n_texts, "compare_methods", multioutput_hint=False)
    if indicator is not None:
        return indicator[0].astype(np.int64), True
    y = np.asarray(y if hasattr(y, "__array__") else check_labels(y, "y"), dtype=object)
    if y.ndim != 1:
        raise ValueError(f"y must hold one label per text or be a 0/1 indicator matrix, got shape {y.shape}.")
    if len(y) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(y)} labels.")
    # As the estimators read labels: no missing one taken for a class, no 1 and "1" merged into one.
    values = [plain(v) for v in y]
    check_no_missing(values, "y")
    check_one_label_type(values, "y")
    if label_kind(values[0]) == "number":
        _refuse_huge_labels(values)
        fractional = [i for i, v in enumerate(values) if isinstance(v, float) and not v.is_integer()]
        if fractional:
            raise ValueError(
                f"y holds numbers that are not whole, e.g. {values[fractional[0]]!r} at position {fractional[0]}: "
                f"a continuous target. skllm compare compares classifiers; to use these values as classes, pass "
                f"them as strings."
            )
    return np.asarray(values), False


def check_folds(y, cv, *, max_samples=None, random_state=0, names=None, texts=None):
    """Raise a ``ValueError`` unless every class can be split into ``cv`` folds (after sampling).

    For a multi-label ``y`` (an indicator matrix) the folds are not stratified: there must
    be ``cv`` texts. With ``texts``, copies of a text count once, as :func:`cut_folds` puts
    them in one fold: checked here, before any model runs, not after the time budget's
    measurement.
    """
    _check_fold_counts(y, cv, max_samples, random_state, names or {})
    if texts is not None:
        y = np.asarray(y)
        n = len(y) if max_samples is None else min(max_samples, len(y))
        index = subsample(y, n, random_state, texts, cv)[0]  # as the run samples them
        texts = np.asarray(texts, dtype=object)[index]
        cut_folds(
            y[index],
            cv,
            multilabel=y.ndim == 2,
            random_state=random_state,
            texts=texts,
            cv_name=(names or {}).get("cv"),
        )


def _check_fold_counts(y, cv, max_samples, random_state, names):
    y = np.asarray(y)
    if y.ndim == 2:
        n = len(y) if max_samples is None else min(max_samples, len(y))
        if n < cv:
            sampled = f" ({names.get('max_samples', 'max_samples')}={max_samples})" if n < len(y) else ""
            raise ValueError(
                f"{names.get('cv', 'cv')}={cv} needs at least {cv} texts, but there are {n}{sampled}; use "
                f"{names.get('cv', 'cv')} <= {max(n, 2)}."
            )
        return
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2:
        raise ValueError(f"y holds a single class ({plain(labels[0])!r}); a comparison needs two or more.")
    if max_samples is not None and max_samples < len(y):
        if max_samples < cv * len(labels):
            raise ValueError(
                f"{names.get('max_samples', 'max_samples')}={max_samples} is too small for "
                f"{names.get('cv', 'cv')}={cv} with {len(labels)} classes: every class needs {cv} texts, "
                f"so use at least {cv * len(labels)}."
            )
        sampled = subsample(np.asarray(y), max_samples, random_state)[1]
        counts = np.bincount(np.searchsorted(labels, sampled), minlength=len(labels))  # a class left out counts 0
    smallest = int(np.argmin(counts))
    if counts[smallest] < cv:
        sampled = f" of the {max_samples} sampled" if max_samples is not None and max_samples < len(y) else ""
        # Two folds is the least a comparison can run: below that, only more texts of the class help.
        remedy = (
            f"use {names.get('cv', 'cv')} <= {int(counts[smallest])}"
            if counts[smallest] >= 2
            else "add texts of that class or leave it out"
        )
        whole = int(np.sum(y == labels[smallest]))
        if sampled and whole >= cv:  # the data has enough: the sample took too few
            remedy = (
                f"raise {names.get('max_samples', 'max_samples')} (the data holds {whole} of that class), or {remedy}"
            )
        raise ValueError(
            f"{names.get('cv', 'cv')}={cv} needs at least {cv} texts of every class, but class "
            f"{plain(labels[smallest])!r} has {counts[smallest]}{sampled}; {remedy}."
        )


def subsample(y, n, random_state, texts=None, cv=None):
    """A sample of ``n`` rows, stratified unless ``y`` is multi-label (indices sorted: the data's order is kept).

    With ``texts`` and ``cv``: a class left with fewer than ``cv`` distinct texts (copies go to one
    fold, :func:`cut_folds`) gets rows of other texts of it added, where it has them, so that the
    sample splits into the folds its whole data does.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state

    index = np.arange(len(y))
    if n < len(y):
        stratify = y if y.ndim == 1 else None
        try:
            index = train_test_split(index, train_size=n, stratify=stratify, random_state=random_state)[0]
        except ValueError:  # fewer rows left out than classes, or a class of one text: shares by hand
            index = _stratified_sample(y, n, random_state)
        if texts is not None and cv and y.ndim == 1:
            keys, rng, added = copy_keys(texts), check_random_state(random_state), []
            for label in np.unique(y):
                have = {keys[i] for i in index if y[i] == label}
                for i in rng.permutation(np.flatnonzero(y == label)):
                    if len(have) >= cv:
                        break
                    if keys[i] not in have:
                        have.add(keys[i])
                        added.append(i)
            index = np.concatenate([index, np.asarray(added, dtype=index.dtype)])
        index = np.sort(index)
    return index, y[index]


def copy_keys(texts):
    """What makes texts copies of each other: the same once case, Unicode form and white space are set aside.

    An uncased tokenizer (the default encoder's) reads such texts alike.
    """
    import unicodedata

    return [" ".join(unicodedata.normalize("NFKC", str(t)).casefold().split()) for t in texts]


def _stratified_sample(y, n, random_state):
    """``n`` rows of ``y``, each class's share of them (largest remainders first), drawn at random within it."""
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    share = counts * n / len(y)
    quota = np.floor(share).astype(int)
    quota[np.argsort(quota - share, kind="stable")[: n - quota.sum()]] += 1
    return np.concatenate([rng.choice(np.flatnonzero(inverse == i), q, replace=False) for i, q in enumerate(quota)])


def cut_folds(y, cv, *, multilabel, random_state, texts=None, cv_name=None):
    """``cv`` shuffled folds of ``y``: ``[(train rows, test rows), ...]``, stratified unless multi-label.

    Copies of one text in ``texts`` go to one fold, so that no text is tested on after
    being trained on (which would score memory, not generalisation); without copies
    the folds are the plain ones. Texts that differ only in case, Unicode form or white
    space are copies: an uncased tokenizer (the default encoder's) reads them alike.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    # Multi-label folds are plain: stratifying on label sets leaves most sets with one text.
    groups = None
    if texts is not None:
        # Numbered as the texts themselves number them (the folds of data without near-copies stay as
        # they were), each copy taking its first text's number.
        exact = np.unique(np.asarray(texts, dtype=str), return_inverse=True)[1].ravel()
        keys, first = copy_keys(texts), {}
        for key, number in zip(keys, exact):
            first[key] = min(first.get(key, number), number)
        groups = np.unique([first[key] for key in keys], return_inverse=True)[1].ravel()
    if groups is None or groups.max() + 1 == len(groups):
        splitter = KFold if multilabel else StratifiedKFold
        return list(splitter(cv, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y))
    classes = [None] if multilabel else np.unique(y)
    for label in classes:
        distinct = len(np.unique(groups if label is None else groups[y == label]))
        if distinct < cv:
            which = "" if label is None else f" of class {plain(label)!r}"
            name = cv_name or "cv"  # (the command's --cv)
            remedy = (
                f"use {name} <= {distinct}" if distinct >= 2 else "give more distinct texts, or leave the class out"
            )
            raise ValueError(
                f"{name}={cv} folds need {cv} distinct texts{which}, but there are {distinct}: copies of a text go to "
                f"one fold, so that none is tested on after being trained on; {remedy}."
            )
    splitter = GroupKFold if multilabel else StratifiedGroupKFold
    folds = splitter(cv, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y, groups)
    return [(np.sort(train), np.sort(test)) for train, test in folds]


def plain(value):
    """A numpy scalar as the Python value it holds (labels in messages and fingerprints)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fitted_heads(final):
    """The fitted models inside a final pipeline step: itself, its wrapped model, or one per label."""
    if getattr(final, "estimators_", None) is not None:  # OneVsRestClassifier
        return list(final.estimators_)
    return [getattr(final, "estimator_", final)]


def _trainable(estimator):
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "n_trainable_params_"):
        return int(final.n_trainable_params_)
    total = 0
    for inner in _fitted_heads(final):
        if hasattr(inner, "coef_"):
            total += int(inner.coef_.size + np.size(getattr(inner, "intercept_", 0)))
        elif hasattr(inner, "get_booster"):
            # Split and leaf nodes of all trees: a tree model's counterpart of parameters.
            total += sum(tree.count("\n") for tree in inner.get_booster().get_dump())
    return total


def _trained_bytes(estimator):
    """Bytes of what training set (the parameters ``_trainable`` counts), as the model stores them."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "trainable_state_"):
        return int(sum(np.asarray(v).nbytes for v in final.trainable_state_.values()))
    total = 0
    for inner in _fitted_heads(final):
        if hasattr(inner, "coef_"):
            total += int(np.asarray(inner.coef_).nbytes + np.asarray(getattr(inner, "intercept_", 0)).nbytes)
        elif hasattr(inner, "get_booster"):
            total += len(inner.get_booster().save_raw())
    return total


def evaluate_fold(template, texts, y, train, test, *, multilabel=False, measure_model=True):
    """Fit a clone of ``template`` on rows ``train``, score it on rows ``test``: one fold of a comparison.

    Returns a dict of the fold's scores (``accuracy`` is subset accuracy for a multi-label
    ``y``; ``f1_micro`` is only computed then), its fit and prediction times, the peak
    memory the fit added (``_memory.PeakMemory``), and with ``measure_model`` the size of
    the fitted model.
    """
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score

    from .._memory import PeakMemory

    est = clone(template)
    with PeakMemory() as memory:
        start = time.perf_counter()
        est.fit(list(texts[train]), y[train])
        fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = est.predict(list(texts[test]))
    pred_s = (time.perf_counter() - start) / len(test) * 1000
    if hasattr(pred, "toarray"):  # a sparse indicator matrix
        pred = pred.toarray()
    truth = y[test]
    # Multi-label: over the labels the fold's texts hold or the model predicts; a label with neither
    # would count as F1 = 0 (scikit-learn's zero_division), and a perfect model would score below 1.
    seen = {"labels": np.flatnonzero(truth.sum(axis=0) + pred.sum(axis=0))} if multilabel else {}
    none = multilabel and not len(seen["labels"])  # no label held nor predicted: nothing wrong
    result = {
        "accuracy": float(accuracy_score(truth, pred)),
        "f1_macro": 1.0 if none else float(f1_score(truth, pred, average="macro", zero_division=0, **seen)),
        "fit_seconds": fit_s,
        "predict_seconds_per_1000": pred_s,
        "fit_memory_bytes": memory.rss_bytes,
        "fit_gpu_memory_bytes": memory.cuda_bytes,
    }
    if hasattr(est, "usage_"):  # prompting an OpenAIChat: the tokens the endpoint billed
        result["api_tokens"] = est.usage_.get("prompt_tokens", 0) + est.usage_.get("completion_tokens", 0)
    if multilabel:
        result["f1_micro"] = float(f1_score(truth, pred, average="micro", zero_division=0))
    if measure_model:
        result.update(
            trainable_params=_trainable(est),
            trained_state_bytes=_trained_bytes(est),
            model_bytes=len(pickle.dumps(est)),
        )
    return result


def fold_row(name, folds):
    """The table row of a method from its folds' results (``evaluate_fold``; the last measured the model)."""
    row = {"method": name, "status": "computed", "error": ""}
    for metric in ("accuracy", "f1_macro", "f1_micro"):
        values = [f.get(metric) for f in folds]
        if all(v is not None for v in values):
            row[f"{metric}_mean"], row[f"{metric}_std"] = float(np.mean(values)), float(np.std(values))
    row["fit_seconds"] = float(np.mean([f["fit_seconds"] for f in folds]))
    row["predict_seconds_per_1000"] = float(np.mean([f["predict_seconds_per_1000"] for f in folds]))
    for key in ("fit_memory_bytes", "fit_gpu_memory_bytes"):
        # The largest over the folds: what training one model needs.
        values = [f[key] for f in folds if f.get(key) is not None]
        row[key] = int(max(values)) if values else None
    for key in ("trainable_params", "trained_state_bytes", "model_bytes"):
        row[key] = folds[-1][key]
    if any("api_tokens" in f for f in folds):
        row["api_tokens"] = int(sum(f.get("api_tokens", 0) for f in folds))
    return row
