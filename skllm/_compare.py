"""compare_methods: every way of using a pretrained transformer, on the same folds."""

import hashlib
import json
import logging
import math
import pickle
import re
import time
from pathlib import Path

import numpy as np

from . import _models
from ._methods import METHODS
from ._validation import check_choice, check_int, check_number
from ._version import __version__

logger = logging.getLogger(__name__)

EMBEDDING_METHODS = ("logreg", "linear-svm", "xgboost")
# Every registered fine-tuning method, so that a new one is compared with no edit here.
FINETUNE_METHODS = tuple(METHODS)
PROMPT_METHODS = ("zero-shot", "few-shot")
ALL_METHODS = EMBEDDING_METHODS + FINETUNE_METHODS + PROMPT_METHODS

FEW_SHOT_EXAMPLES = 4
COLUMNS = [
    "method",
    "accuracy_mean",
    "accuracy_std",
    "f1_macro_mean",
    "f1_macro_std",
    "f1_micro_mean",
    "f1_micro_std",
    "fit_seconds",
    "predict_seconds_per_1000",
    "fit_memory_bytes",
    "fit_gpu_memory_bytes",
    "trainable_params",
    "trained_state_bytes",
    "model_bytes",
    "status",
    "error",
]
# Why a method is skipped on a multi-label y (the ``error`` of its row).
MULTILABEL_UNSUPPORTED = {
    name: "prompting picks one label per text; it cannot predict several (multi-label y)" for name in PROMPT_METHODS
}
# Training time per text relative to full fine-tuning, measured with the default
# encoder on CPU; a method missing here is planned as costly as full fine-tuning.
# "partial" (two of six blocks trained, the rest run once per fit): 54 s against 164 s for
# full fine-tuning on 1,000 Rotten Tomatoes texts (benchmarks/bench_finetune.py).
_RELATIVE_TRAINING_COST = {"full": 1.0, "lora": 1.0, "prefix": 0.5, "prompt": 0.6, "adapter": 0.5, "partial": 0.33}
# What a fold costs besides the texts (building the network, copying the backbone), in seconds.
_FOLD_OVERHEAD = 1.0
# The plan aims below the budget: the measurements are short and machines are noisy.
_SAFETY = 0.85
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text, name="time_budget"):
    """Seconds in ``"90s"``, ``"10m"``, ``"1h"`` or ``"600"``; ``None`` for ``"none"``."""
    if text is None or str(text).strip().lower() in ("none", "off", "inf"):
        return None
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{name} must be a duration such as 90s, 10m, 1h, 600 (seconds) or none, got {text!r}.")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def format_seconds(seconds):
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def make_estimator(
    name, *, encoder, llm, epochs, max_length, cache_dir, random_state, label_words=None, multilabel=False
):
    """The estimator that ``name`` stands for in a comparison.

    With ``multilabel``, the heads on frozen embeddings are one binary classifier per label
    (``OneVsRestClassifier``) and the fine-tuned classifiers learn from the indicator matrix;
    the prompting methods have no multi-label form (``MULTILABEL_UNSUPPORTED``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    import skllm

    if multilabel and name in MULTILABEL_UNSUPPORTED:
        raise ValueError(f"{name}: {MULTILABEL_UNSUPPORTED[name]}.")

    def per_label(head):
        return OneVsRestClassifier(head) if multilabel else head

    embedder = skllm.TransformerEmbedder(encoder, max_length=max_length, cache_dir=cache_dir)
    if name == "logreg":
        return make_pipeline(embedder, per_label(LogisticRegression(max_iter=2000)))
    if name == "linear-svm":
        return make_pipeline(embedder, per_label(LinearSVC()))
    if name == "xgboost":
        from xgboost import XGBClassifier

        booster = XGBClassifier(n_estimators=200, max_depth=4, random_state=0)
        # Per label, the targets are already 0/1: no label encoding needed.
        return make_pipeline(embedder, per_label(booster) if multilabel else skllm.LabelEncodedClassifier(booster))
    if name in FINETUNE_METHODS:
        return skllm.FineTuneClassifier(
            encoder,
            method=name,
            epochs=None if name == "head" else epochs,  # the head's own default: its epochs cost milliseconds
            max_length=max_length,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    if name == "zero-shot":
        return skllm.ZeroShotClassifier(llm, label_words=label_words)
    if name == "few-shot":
        selection = getattr(skllm, "NearestSelection", None)
        if selection is not None:
            # The pipelines' embedder (same max_length): the texts are embedded once for both.
            selection = selection(embedder)
        return skllm.FewShotClassifier(
            llm,
            n_examples=FEW_SHOT_EXAMPLES,
            example_selection=selection or "nearest",
            label_words=label_words,
            embedder_model=encoder,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    raise ValueError(f"Unknown method {name!r}; use some of {ALL_METHODS}.")


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

    from ._memory import PeakMemory

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
    result = {
        "accuracy": float(accuracy_score(truth, pred)),
        "f1_macro": float(f1_score(truth, pred, average="macro", zero_division=0)),
        "fit_seconds": fit_s,
        "predict_seconds_per_1000": pred_s,
        "fit_memory_bytes": memory.rss_bytes,
        "fit_gpu_memory_bytes": memory.cuda_bytes,
    }
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
    return row


# -- validation ---------------------------------------------------------------------------------
def check_settings(*, cv, epochs, max_length, max_samples, time_budget, random_state, names=None):
    """Validate the numeric settings of a comparison.

    ``names`` maps each setting to the name shown in errors (the command line's
    options); without it, the messages also say that ``None`` is allowed where it is.
    """
    api = names is None
    names = names or {}
    check_int(cv, names.get("cv", "cv"), 2)
    check_int(epochs, names.get("epochs", "epochs"), 1)
    check_int(max_length, names.get("max_length", "max_length"), 2)
    if max_samples is not None:
        check_int(max_samples, names.get("max_samples", "max_samples"), 2, allow_none=api)
    if time_budget is not None:
        check_number(time_budget, names.get("time_budget", "time_budget"), 0, low_inclusive=False, allow_none=api)
    check_int(random_state, names.get("random_state", "random_state"), 0)


def check_targets(y, n_texts):
    """``(y, multilabel)``: ``y`` as an array of one label per text, or as a dense 0/1 indicator matrix.

    A multi-label ``y`` is a 0/1 indicator matrix with one column per label (e.g. from
    ``sklearn.preprocessing.MultiLabelBinarizer``), dense or sparse; any other 2-D ``y``
    is a ``ValueError`` saying what is allowed.
    """
    from ._finetune import _multilabel_indicator

    indicator = _multilabel_indicator(y, n_texts, "compare_methods", multioutput_hint=False)
    if indicator is not None:
        return indicator[0].astype(np.int64), True
    y = np.asarray(y if hasattr(y, "__array__") else list(y))
    if y.ndim != 1:
        raise ValueError(f"y must hold one label per text or be a 0/1 indicator matrix, got shape {y.shape}.")
    if len(y) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(y)} labels.")
    return y, False


def check_folds(y, cv, *, max_samples=None, random_state=0, names=None):
    """Raise a ``ValueError`` unless every class can be split into ``cv`` folds (after sampling).

    For a multi-label ``y`` (an indicator matrix) the folds are not stratified: there must
    be ``cv`` texts.
    """
    names = names or {}
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
        raise ValueError(f"y holds a single class ({_plain(labels[0])!r}); a comparison needs two or more.")
    if max_samples is not None and max_samples < len(y):
        if max_samples < cv * len(labels):
            raise ValueError(
                f"{names.get('max_samples', 'max_samples')}={max_samples} is too small for "
                f"{names.get('cv', 'cv')}={cv} with {len(labels)} classes: every class needs {cv} texts, "
                f"so use at least {cv * len(labels)}."
            )
        counts = np.bincount(np.searchsorted(labels, _subsample(np.asarray(y), max_samples, random_state)[1]))
    smallest = int(np.argmin(counts))
    if counts[smallest] < cv:
        sampled = f" of the {max_samples} sampled" if max_samples is not None and max_samples < len(y) else ""
        raise ValueError(
            f"{names.get('cv', 'cv')}={cv} needs at least {cv} texts of every class, but class "
            f"{_plain(labels[smallest])!r} has {counts[smallest]}{sampled}; use {names.get('cv', 'cv')} <= "
            f"{max(int(counts[smallest]), 2)}."
        )


def _subsample(y, n, random_state):
    """A sample of ``n`` rows, stratified unless ``y`` is multi-label (indices sorted: the data's order is kept)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if n < len(y):
        stratify = y if y.ndim == 1 else None
        index = np.sort(train_test_split(index, train_size=n, stratify=stratify, random_state=random_state)[0])
    return index, y[index]


# -- fingerprints of rows and plans -------------------------------------------------------------
def _digest(value):
    blob = json.dumps(value, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _data_digest(texts, y):
    return _digest([list(texts), [repr(_plain(v)) for v in y]])


def _model_identity(name):
    try:
        return _models.model_identity(_models.resolve_model(name))
    except Exception:  # a missing model fails in its method's row, not here
        return name


def _setting(value):
    """A hyperparameter as JSON can hold it: plain values as they are, others as their repr."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _estimator_settings(estimator):
    """Every leaf hyperparameter of ``estimator`` that can change its scores."""
    settings = {}
    for key, value in estimator.get_params(deep=True).items():
        if key.endswith(("cache_dir", "verbose")) or hasattr(value, "get_params") or key == "steps":
            continue
        settings[key] = _setting(value)
        if key.endswith("method") and isinstance(value, str):
            # A method named by a string stands for that method's defaults, which can
            # change between versions of the code: they are part of the fingerprint.
            settings[key + "_defaults"] = _method_defaults(value)
    return settings


def _method_defaults(name):
    from ._methods import resolve_method

    try:
        method = resolve_method(name)
    except Exception:  # not a fine-tuning method: its own row reports the error
        return None
    return {
        "class": type(method).__qualname__,
        "params": {key: _setting(value) for key, value in method.get_params().items()},
        "learning_rate": method.default_learning_rate,
        "epochs": method.default_epochs,
    }


# -- the time plan ------------------------------------------------------------------------------
def _training_step_seconds(model, tokenizer, texts, max_length):
    """Seconds per text of one full fine-tuning step (forward, backward, update) on a copy of ``model``."""
    import copy

    import torch

    from ._tokens import pad_batch, pad_token_id, tokenize

    ids, _ = tokenize(tokenizer, texts, max_length)
    copy_ = copy.deepcopy(model).train()
    device = next(copy_.parameters()).device
    optimizer = torch.optim.AdamW(copy_.parameters(), lr=1e-5)

    def step(rows):
        input_ids, mask = pad_batch(ids, rows, pad_token_id(tokenizer), device)
        copy_(input_ids=input_ids, attention_mask=mask).last_hidden_state.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step([0, 1])  # the first step allocates gradients and optimizer state
    start = time.perf_counter()
    step(list(range(len(ids))))
    return (time.perf_counter() - start) / len(ids)


def measure_costs(texts, y, methods, *, encoder, llm, max_length, random_state):
    """Seconds per text of the work each method does, timed on a few texts on this machine."""

    rng = np.random.RandomState(random_state)
    sample = [texts[i] for i in rng.choice(len(texts), min(16, len(texts)), replace=False)]
    costs = {"embed": 0.0, "train": 0.0, "prompt": 0.0, "few-shot": 0.0, "loading": 0.0}
    try:
        _measure_encoder(costs, sample, methods, encoder, max_length)
    except Exception:  # a model that cannot load fails in its methods' rows, quickly
        logger.warning("could not time the encoder %r", encoder, exc_info=True)
    try:
        _measure_llm(costs, texts, y, sample, methods, llm, rng, random_state)
    except Exception:
        logger.warning("could not time the language model %r", llm, exc_info=True)
    return costs


def load_backbones(methods, *, encoder, llm, cache_dir):
    """Load the backbones that ``methods`` share, so that no one method's measured memory counts them."""
    from ._device import resolve_device

    device = resolve_device("auto")
    wanted = []
    if any(m not in PROMPT_METHODS for m in methods):
        wanted.append((encoder, "base"))
    if any(m in PROMPT_METHODS for m in methods):
        wanted.append((llm, "causal-lm"))
    for name, kind in wanted:
        try:
            _models.load_backbone(_models.resolve_model(name, cache_dir=cache_dir), device, kind=kind)
        except Exception:  # a model that cannot load fails in its methods' rows
            logger.warning("could not load %r before the comparison", name, exc_info=True)


def _measure_encoder(costs, sample, methods, encoder, max_length):
    import skllm

    if any(m != "zero-shot" for m in methods):
        start = time.perf_counter()
        embedder = skllm.TransformerEmbedder(encoder, max_length=max_length, cache_dir=None).fit()
        costs["loading"] += time.perf_counter() - start
        embedder.transform(sample[:2])  # the first call pays one-off costs
        start = time.perf_counter()
        embedder.transform(sample)
        costs["embed"] = (time.perf_counter() - start) / len(sample)
        if any(m in FINETUNE_METHODS and m != "head" for m in methods):
            costs["train"] = _training_step_seconds(embedder.model_, embedder.tokenizer_, sample[:8], max_length)


def _measure_llm(costs, texts, y, sample, methods, llm, rng, random_state):
    import skllm

    if any(m in PROMPT_METHODS for m in methods):
        # One text of each class to fit on (prompting learns nothing but the classes).
        first = {}
        for i, label in enumerate(y):
            first.setdefault(_plain(label), i)
        fit_rows = sorted(first.values())
        start = time.perf_counter()
        prompt = skllm.ZeroShotClassifier(llm).fit([texts[i] for i in fit_rows], y[fit_rows])
        costs["loading"] += time.perf_counter() - start
        prompt.predict(sample[:1])
        start = time.perf_counter()
        prompt.predict(sample[:4])
        costs["prompt"] = (time.perf_counter() - start) / len(sample[:4])
        if "few-shot" in methods:
            pool = [i for i in rng.permutation(len(texts))[:16]] + fit_rows
            few = skllm.FewShotClassifier(
                llm, n_examples=FEW_SHOT_EXAMPLES, example_selection="random", random_state=random_state
            ).fit([texts[i] for i in pool], y[pool])
            start = time.perf_counter()
            few.predict(sample[:2])  # one batch: the padding of prompts of unequal length is part of the cost
            costs["few-shot"] = (time.perf_counter() - start) / len(sample[:2])


def estimate_seconds(name, costs, *, n, cv, epochs, n_classes):
    """Estimated seconds of one method's cross-validation on ``n`` texts, and of one refit on all.

    The embeddings are shared through the cache: they are counted once, by ``_plan``.
    """
    train_rows = n * (cv - 1)  # over all folds
    if name in ("logreg", "linear-svm"):
        return 0.1 * cv, 0.1
    if name == "xgboost":
        # Measured: about 0.5 s and 2 ms per training text per fold, per class beyond the first.
        per_class = max(1, n_classes - 1)
        return per_class * (0.5 * cv + 0.002 * train_rows), per_class * (0.5 + 0.002 * n)
    if name == "head":
        return (_FOLD_OVERHEAD + 0.5) * cv, _FOLD_OVERHEAD + 0.5
    if name in FINETUNE_METHODS:
        step = costs["train"] * _RELATIVE_TRAINING_COST.get(name, 1.0)
        predict = 2 * costs["embed"]  # its own forward passes, uncached
        return (
            cv * _FOLD_OVERHEAD + epochs * train_rows * step + n * predict,
            _FOLD_OVERHEAD + epochs * n * step,
        )
    if name == "zero-shot":
        return n * costs["prompt"], 0.0
    if name == "few-shot":
        return n * costs["few-shot"], 0.0
    return 0.0, 0.0


def _family(name):
    """Methods whose estimates err alike: the same kind of work on the same model."""
    if name in PROMPT_METHODS:
        return "prompt"
    if name in FINETUNE_METHODS and name != "head":
        return "finetune"
    return "embedding"


def _plan_cost(methods, costs, *, n, cv, epochs, n_classes, refit):
    per_method = {m: estimate_seconds(m, costs, n=n, cv=cv, epochs=epochs, n_classes=n_classes) for m in methods}
    total = sum(cv_s for cv_s, _ in per_method.values())
    if any(m != "zero-shot" for m in methods):
        total += n * costs.get("embed", 0.0)
    if refit and per_method:
        total += max(refit_s for _, refit_s in per_method.values())
    return total, {m: s[0] for m, s in per_method.items()}


def plan_comparison(methods, costs, *, n, min_n, cv, epochs, n_classes, seconds, refit=False):
    """Folds, epochs, sample size and methods that fit in ``seconds``, by shrinking in a fixed order.

    The order: folds down to 3, epochs down to 2, texts down to 200, folds down to 2,
    epochs down to 1, texts down to ``min_n`` (at least 100 where there are more).
    If that is not enough, the costliest method is skipped and the others are
    planned again from the settings asked, until they fit.
    """
    methods = list(methods)
    plan = {"n": n, "cv": cv, "epochs": epochs, "skipped": []}

    def cost(p=plan, ms=None):
        return _plan_cost(
            [m for m in (ms or methods) if m not in p["skipped"]],
            costs,
            n=p["n"],
            cv=p["cv"],
            epochs=p["epochs"],
            n_classes=n_classes,
            refit=refit,
        )[0]

    def fewer_texts(floor):
        floor = max(min_n, min(floor, plan["n"]))
        if cost() <= seconds or plan["n"] <= floor:
            return
        at_floor = cost({**plan, "n": floor})
        # The cost grows linearly with the number of texts.
        slope = (cost() - at_floor) / (plan["n"] - floor)
        fitting = floor + (seconds - at_floor) / slope if slope > 0 else floor
        plan["n"] = int(max(floor, min(plan["n"], 10 * math.floor(fitting / 10))))

    def shrink():
        plan.update(n=n, cv=cv, epochs=epochs)
        steps = [
            lambda: plan.update(cv=min(plan["cv"], 3)),
            lambda: plan.update(epochs=min(plan["epochs"], 2)),
            lambda: fewer_texts(200),
            lambda: plan.update(cv=min(plan["cv"], 2)),
            lambda: plan.update(epochs=1),
            lambda: fewer_texts(100),
        ]
        for step in steps:
            if cost() <= seconds:
                break
            step()

    shrink()
    while cost() > seconds and len(plan["skipped"]) < len(methods) - 1:
        running = [m for m in methods if m not in plan["skipped"]]
        alone = {m: cost({**plan, "skipped": [o for o in methods if o != m]}) for m in running}
        plan["skipped"].append(max(running, key=lambda m: (alone[m], -running.index(m))))
        shrink()  # the others may now fit with more texts, folds or epochs
    plan["seconds"] = cost()
    running = [m for m in methods if m not in plan["skipped"]]
    shape = dict(n=plan["n"], cv=plan["cv"], epochs=plan["epochs"], n_classes=n_classes)
    refits = [estimate_seconds(m, costs, **shape)[1] for m in running]
    plan["refit_seconds"] = max(refits) if refit and refits else 0.0
    # Estimates of the skipped methods too, at the settings of the others; the shared
    # embeddings are counted with the first method that embeds, which computes them.
    plan["per_method"] = _plan_cost(methods, costs, **shape, refit=False)[1]
    first = next((m for m in running if m != "zero-shot"), None)
    if first is not None:
        plan["per_method"][first] += plan["n"] * costs.get("embed", 0.0)
    return plan


def format_plan(plan):
    """The plan as a few lines for people."""
    asked = plan["asked"]
    lines = []
    if plan["time_budget"] is None:
        lines.append("plan: no time budget, everything as asked")
    else:
        lines.append(
            f"plan for a time budget of {format_seconds(plan['time_budget'])} "
            f"(timed on this machine in {plan['measure_seconds']:.1f} s, "
            f"{plan.get('costs', {}).get('loading', 0.0):.1f} s of which loading the models):"
        )
    shrunk = []
    for key, what in (("n", "texts"), ("cv", "folds"), ("epochs", "epochs")):
        if plan[key] != asked[key]:
            shrunk.append(f"{what} {asked[key]} -> {plan[key]}")
    lines.append(
        f"  {plan['n']} texts, {plan['cv']}-fold cross-validation, {plan['epochs']} fine-tuning epoch(s)"
        + (f" (shrunk to fit: {', '.join(shrunk)})" if shrunk else "")
    )
    for name in plan["methods"]:
        if name in plan.get("unsupported", {}):
            what = f"skipped: {plan['unsupported'][name]}"
        elif name in plan["skipped"]:
            what = "skipped: does not fit in the time budget"
        elif name in plan.get("reused", ()):
            what = "reused from an earlier run"
        else:
            what = "run"
        estimate = plan["per_method"].get(name)
        shown = f"~{format_seconds(estimate)}" if estimate is not None else ""
        lines.append(f"  {name:<12} {shown:>10}  {what}")
    if plan.get("seconds") is not None:
        lines.append(
            f"  estimated total {format_seconds(plan['seconds'])}, shared embeddings"
            + (" and the refit of the best method" if plan.get("refit") else "")
            + " included"
        )
    return "\n".join(lines)


# -- the comparison -----------------------------------------------------------------------------
def compare_methods(
    X,
    y,
    methods=None,
    *,
    cv=5,
    encoder=_models.DEFAULT_ENCODER,
    llm=_models.DEFAULT_CAUSAL_LM,
    label_words=None,
    epochs=3,
    max_length=64,
    max_samples=None,
    time_budget=None,
    cache_dir="auto",
    random_state=0,
    out_dir=None,
    client=None,
    verbose=1,
):
    """Cross-validate several methods on the same folds and return one row per method.

    Parameters
    ----------
    X : sequence of str
    y : sequence of labels, or indicator matrix of shape (n_texts, n_labels)
        One label per text, or several: a 0/1 indicator matrix (dense or sparse,
        e.g. from ``sklearn.preprocessing.MultiLabelBinarizer``). Multi-label
        folds are plain (not stratified), the heads on frozen embeddings are one
        classifier per label (``OneVsRestClassifier``), the fine-tuned
        classifiers learn all labels at once, and the prompting methods are
        skipped (they pick one label per text; their row says so).
    methods : sequence of str, default=None
        Names from ``ALL_METHODS``: ``"logreg"``, ``"linear-svm"``, ``"xgboost"``
        (frozen embeddings and a classifier), every fine-tuning method of
        :class:`~skllm.FineTuneClassifier` (``"head"``, ``"full"``, ``"lora"``, ...)
        and ``"zero-shot"``, ``"few-shot"`` (prompting). ``None`` runs them all.
    cv : int, default=5
        Stratified folds, shared by every method; at least 2, and no more than
        the texts of the smallest class (multi-label: no more than the texts).
    encoder, llm : str
        The encoder (embeddings, fine-tuning, few-shot example selection) and
        the causal LM (prompting).
    label_words : dict, default=None
        What the prompting methods ask the LM to answer for each label, e.g.
        ``{"ham": "normal", "spam": "spam"}`` (the packaged datasets' ``label_words``);
        a label without a wording is shown as itself.
    epochs, max_length : int
        Fine-tuning epochs (the ``"head"`` method trains 10) and tokens per text.
    max_samples : int, default=None
        Use a stratified sample of at most this many texts.
    time_budget : float, default=None
        Seconds the comparison may take. Before starting, the cost of each method
        is measured on a few texts and the folds, epochs and number of texts are
        shrunk (and, as a last resort, the costliest methods skipped) so that the
        estimate fits; ``None`` runs everything as asked.
    cache_dir : str, "auto" or None
        Embedding cache. The embedding methods, ``"head"`` and the few-shot
        example selection share its entries: each text is embedded once.
    random_state : int, default=0
        Seeds the sample, the folds and the methods.
    out_dir : str or Path, default=None
        Where each finished method's row is stored (``rows/<method>.json``) with a
        fingerprint of everything that produced it: the texts and labels, the
        folds, the settings and the method's hyperparameters. A later run reuses
        a row only when its fingerprint matches, and recomputes the others.
    client : distributed.Client or str, default=None
        Run the (method, fold) tasks on this Dask cluster (a client, or the
        scheduler's address such as ``"tcp://host:8786"``) instead of one after
        the other here: same folds, same estimators, same scores. Each method's
        row is saved to ``out_dir`` as soon as its last fold finishes, and the
        best method's refit runs on the cluster too. With a ``time_budget``, the
        plan is timed here and made as for one process, and the tasks not
        finished at the budget's end are cancelled (their methods skipped).
        Needs ``pip install 'skllm-toolkit[dask]'``; see "Running on a cluster"
        in the documentation.
    verbose : int, default=1
        Progress over methods and folds, and the time plan.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``accuracy_mean``, ``accuracy_std`` (subset accuracy
        for a multi-label ``y``: every label of a text right), ``f1_macro_mean``,
        ``f1_macro_std``, ``f1_micro_mean``, ``f1_micro_std`` (multi-label only),
        ``fit_seconds`` (mean per fold), ``predict_seconds_per_1000``,
        ``fit_memory_bytes`` (the peak resident memory a fit added on the CPU,
        largest over the folds), ``fit_gpu_memory_bytes`` (the same for the
        memory torch allocated on CUDA GPUs; empty when none was used),
        ``trainable_params``, ``trained_state_bytes`` (bytes of those trained
        parameters as the model stores them), ``model_bytes`` (pickle size),
        ``status`` (``"computed"``, ``"reused"``, ``"skipped"`` or ``"failed"``)
        and ``error`` (why a method failed, the others going on, or why it was
        skipped as unable to do the task; empty otherwise).
        ``attrs["reused_rows"]`` counts the rows read back from ``out_dir``;
        ``attrs["plan"]`` holds the texts, folds and epochs really used, the
        skipped methods and the estimates; ``attrs["score"]`` names the column
        that ranks the methods (``accuracy_mean``, or ``f1_micro_mean`` for a
        multi-label ``y``).

    Examples
    --------
    >>> from skllm import compare_methods
    >>> X = ["a great film", "loved it", "wonderful acting", "a joy to watch", "brilliant", "so much fun",
    ...      "dull and long", "awful", "a waste of time", "boring plot", "terrible acting", "I hated it"]
    >>> y = ["pos"] * 6 + ["neg"] * 6
    >>> table = compare_methods(X, y, methods=["logreg"], cv=2, verbose=0)
    >>> table[["method", "status"]]
       method    status
    0  logreg  computed
    >>> table.attrs["reused_rows"], bool(table.loc[0, "accuracy_mean"] >= 0.5)
    (0, True)
    >>> int(table.loc[0, "trained_state_bytes"])  # 384 weights and a bias, float32
    1540
    """
    table, _ = run_comparison(
        X,
        y,
        methods,
        cv=cv,
        encoder=encoder,
        llm=llm,
        label_words=label_words,
        epochs=epochs,
        max_length=max_length,
        max_samples=max_samples,
        time_budget=time_budget,
        cache_dir=cache_dir,
        random_state=random_state,
        out_dir=out_dir,
        verbose=verbose,
        client=client,
    )
    return table


def run_comparison(
    X,
    y,
    methods,
    *,
    cv,
    encoder,
    llm,
    label_words=None,
    epochs,
    max_length,
    max_samples,
    time_budget,
    cache_dir,
    random_state,
    out_dir,
    verbose,
    refit=False,
    report=None,
    client=None,
):
    """``compare_methods``, and with ``refit`` also the best method refitted on all the texts used.

    Returns ``(table, best)``; ``best`` is ``None`` without ``refit`` or when every method failed.
    ``report`` receives the lines meant for people (default: printed when ``verbose``).
    ``client``: a ``distributed.Client`` or a scheduler address (the tasks run on that cluster).
    """
    owned = False
    if client is not None:
        from ._dask import connect

        # First: an address that does not answer fails in seconds, before any model is timed.
        client, owned = connect(client)
    try:
        return _run_comparison(
            X,
            y,
            methods,
            cv=cv,
            encoder=encoder,
            llm=llm,
            label_words=label_words,
            epochs=epochs,
            max_length=max_length,
            max_samples=max_samples,
            time_budget=time_budget,
            cache_dir=cache_dir,
            random_state=random_state,
            out_dir=out_dir,
            verbose=verbose,
            refit=refit,
            report=report,
            client=client,
        )
    finally:
        if owned:
            client.close()


def _run_comparison(
    X,
    y,
    methods,
    *,
    cv,
    encoder,
    llm,
    label_words=None,
    epochs,
    max_length,
    max_samples,
    time_budget,
    cache_dir,
    random_state,
    out_dir,
    verbose,
    refit,
    report,
    client,
):
    import pandas as pd
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold
    from tqdm.auto import tqdm

    from ._validation import check_texts

    started = time.perf_counter()
    if report is None:
        report = print if verbose else logger.info
    texts = np.asarray(check_texts(X), dtype=object)
    y, multilabel = check_targets(y, len(texts))
    methods = list(ALL_METHODS if methods is None else methods)
    for name in methods:
        check_choice(name, "methods", ALL_METHODS)
    check_settings(
        cv=cv,
        epochs=epochs,
        max_length=max_length,
        max_samples=max_samples,
        time_budget=time_budget,
        random_state=random_state,
    )
    check_int(verbose, "verbose", 0)
    check_folds(y, cv, max_samples=max_samples, random_state=random_state)
    n_asked = len(y) if max_samples is None else min(max_samples, len(y))
    if multilabel:
        # Per label, its texts (at least one, for the planning's arithmetic).
        n_classes, counts = y.shape[1], np.maximum(y.sum(axis=0), 1)
    else:
        classes, counts = np.unique(y, return_counts=True)
        n_classes = len(classes)
    unsupported = {m: MULTILABEL_UNSUPPORTED[m] for m in methods if multilabel and m in MULTILABEL_UNSUPPORTED}
    planned = [m for m in methods if m not in unsupported]
    if label_words is not None and multilabel:
        raise ValueError("label_words is for the prompting methods, which do not take a multi-label y; leave it out.")
    if label_words is not None:
        if not isinstance(label_words, dict):
            raise ValueError(f"label_words must be a dict mapping labels to their wording, got {label_words!r}.")
        unknown = sorted(repr(k) for k in label_words if k not in set(y.tolist()))
        if unknown:
            raise ValueError(f"label_words names labels that are not in y: {', '.join(unknown)}.")
    settings = {"encoder": encoder, "llm": llm, "max_length": max_length, "cache_dir": cache_dir}
    if label_words is not None:
        settings["label_words"] = dict(label_words)
    identities = {
        "encoder": _model_identity(encoder) if any(m != "zero-shot" for m in planned) else None,
        "llm": _model_identity(llm) if any(m in PROMPT_METHODS for m in planned) else None,
    }
    rows_dir = Path(out_dir) / "rows" if out_dir is not None else None
    if rows_dir is not None:
        rows_dir.mkdir(parents=True, exist_ok=True)

    # The plan depends on timings: a resumed run reuses the plan it made, so that its rows match.
    request = _digest(
        {
            "data": _data_digest(texts, y),
            "methods": methods,
            "cv": cv,
            "epochs": epochs,
            "max_samples": max_samples,
            "time_budget": time_budget,
            "refit": refit,
            "random_state": random_state,
            "settings": {k: v for k, v in settings.items() if k != "cache_dir"},
            "identities": identities,
        }
    )
    plan_file = Path(out_dir) / "plan.json" if out_dir is not None else None
    plan = None
    if plan_file is not None and plan_file.is_file():
        try:
            saved = json.loads(plan_file.read_text())
            plan = saved["plan"] if saved.get("request") == request else None
        except (ValueError, KeyError):
            plan = None
        if plan is not None:
            report(f"resuming with the plan saved in {plan_file}")
    if plan is None:
        plan = {"n": n_asked, "cv": cv, "epochs": epochs, "skipped": [], "per_method": {}, "seconds": None}
        measure_seconds = 0.0
        if time_budget is not None:
            costs = measure_costs(
                list(texts), y, planned, encoder=encoder, llm=llm, max_length=max_length, random_state=random_state
            )
            measure_seconds = time.perf_counter() - started
            # Enough texts that every class keeps a text per fold.
            min_n = min(n_asked, max(100, math.ceil(3 * len(y) / counts.min())))
            plan = plan_comparison(
                planned,
                costs,
                n=n_asked,
                min_n=min_n,
                cv=cv,
                epochs=epochs,
                n_classes=n_classes,
                seconds=_SAFETY * max(time_budget - measure_seconds, 0.0),
                refit=refit,
            )
            plan["costs"] = costs
        plan.update(
            time_budget=time_budget,
            measure_seconds=measure_seconds,
            asked={"n": n_asked, "cv": cv, "epochs": epochs},
            methods=methods,
            refit=refit,
            unsupported=unsupported,
        )
        if plan_file is not None:
            plan_file.write_text(json.dumps({"request": request, "plan": plan}, indent=1))

    index, y_used = _subsample(y, plan["n"], random_state)
    texts_used = texts[index]
    n_cv = plan["cv"]
    if plan["n"] < len(y):
        check_folds(y_used, n_cv, random_state=random_state)
    # Multi-label folds are plain: stratifying on label sets leaves most sets with one text.
    splitter = KFold if multilabel else StratifiedKFold
    folds = list(splitter(n_cv, shuffle=True, random_state=random_state).split(texts_used, y_used))
    settings["epochs"] = plan["epochs"]
    # What every row depends on; each method adds its hyperparameters (encoder, llm,
    # epochs and max_length among them) and the identity of the weights it uses.
    # The version stands for the defaults that a method named by a string (e.g. "lora") brings.
    common = {
        "version": __version__,
        "data": _data_digest(texts_used, y_used),
        "folds": _digest([test.tolist() for _, test in folds]),
        "random_state": random_state,
        "cv": n_cv,
    }

    rows, fingerprints = {}, {}
    for name in methods:
        if name in unsupported:
            rows[name] = {"method": name, "status": "skipped", "error": unsupported[name]}
            continue
        if name in plan["skipped"]:
            rows[name] = {"method": name, "status": "skipped", "error": ""}
            continue
        try:
            template = make_estimator(name, random_state=random_state, multilabel=multilabel, **settings)
        except Exception as exc:  # e.g. a missing optional dependency: that row fails, the others go on
            rows[name] = {"method": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        uses = {
            "encoder": identities["encoder"] if name != "zero-shot" else None,
            "llm": identities["llm"] if name in PROMPT_METHODS else None,
        }
        key = {**common, "method": name, "params": _estimator_settings(template), "weights": uses}
        fingerprints[name] = (template, _digest(key))
        saved = rows_dir / f"{name}.json" if rows_dir is not None else None
        if saved is not None and saved.is_file():
            try:
                stored = json.loads(saved.read_text())
            except ValueError:
                stored = {}
            if stored.get("fingerprint") == fingerprints[name][1]:
                rows[name] = {**stored["row"], "status": "reused"}
    reused = sum(row.get("status") == "reused" for row in rows.values())
    plan["reused"] = [name for name, row in rows.items() if row.get("status") == "reused"]
    report(format_plan(plan))
    if rows_dir is not None:
        report(f"reused {reused} of {len(methods)} row(s) saved in {rows_dir} (same data, folds and settings)")

    # The estimates come from a few seconds of timing: while running, the time each kind of
    # method really takes corrects them, and a method that would end after the budget is
    # skipped (before it starts, or between its folds).
    deadline = started + time_budget - plan.get("refit_seconds", 0.0) if time_budget is not None else None
    spent, estimated = {}, {}

    def drift(name):
        family = _family(name)
        if estimated.get(family):
            return spent[family] / estimated[family]
        total = sum(estimated.values())
        return sum(spent.values()) / total if total else 1.0

    def save_row(name, row):
        if rows_dir is not None and row["status"] == "computed":
            stored = {k: v for k, v in row.items() if k != "status"}
            (rows_dir / f"{name}.json").write_text(json.dumps({"fingerprint": fingerprints[name][1], "row": stored}))

    todo = [name for name in methods if name not in rows]
    if todo and client is None:
        load_backbones(todo, encoder=encoder, llm=llm, cache_dir=cache_dir)
    if client is not None:
        from ._dask import run_folds

        rows.update(
            run_folds(
                client,
                todo,
                {name: fingerprints[name][0] for name in todo},
                folds,
                texts_used,
                y_used,
                deadline=deadline,
                verbose=verbose,
                on_row=save_row,
                report=report,
                multilabel=multilabel,
            )
        )
        todo = []
    for name in tqdm(todo, desc="methods", disable=not verbose):
        template = fingerprints[name][0]
        row = {"method": name, "status": "computed", "error": ""}
        expected = plan["per_method"].get(name, 0.0) * drift(name)
        if deadline is not None and time.perf_counter() + expected > deadline:
            report(f"{name}: skipped, its ~{format_seconds(expected)} would end after the time budget")
            rows[name] = {"method": name, "status": "skipped", "error": ""}
            continue
        method_start = time.perf_counter()
        try:
            results = []
            for i, (train, test) in enumerate(tqdm(folds, desc=name, leave=False, disable=not verbose)):
                if deadline is not None and i:
                    per_fold = (time.perf_counter() - method_start) / i
                    if time.perf_counter() + per_fold * (len(folds) - i) > deadline:
                        row["status"] = "skipped"
                        report(f"{name}: stopped after {i} of {len(folds)} folds, it would end after the time budget")
                        break
                results.append(
                    evaluate_fold(
                        template,
                        texts_used,
                        y_used,
                        train,
                        test,
                        multilabel=multilabel,
                        measure_model=i == len(folds) - 1,
                    )
                )
            if row["status"] == "skipped":
                rows[name] = row
                continue
            row.update(fold_row(name, results))
        except Exception as exc:  # one method failing must not stop the others
            logger.exception("method %s failed", name)
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:300])
        family = _family(name)
        spent[family] = spent.get(family, 0.0) + time.perf_counter() - method_start
        estimated[family] = estimated.get(family, 0.0) + plan["per_method"].get(name, 0.0)
        save_row(name, row)
        rows[name] = row

    table = pd.DataFrame([rows[name] for name in methods]).reindex(columns=COLUMNS)
    table["error"] = table["error"].fillna("")
    table.attrs["reused_rows"] = reused
    table.attrs["plan"] = {k: v for k, v in plan.items() if k != "methods"}
    table.attrs["multilabel"] = multilabel
    # What "best" means: subset accuracy is too strict a ranking for several labels per text.
    table.attrs["score"] = "f1_micro_mean" if multilabel else "accuracy_mean"

    best = None
    ok = table[table["status"].isin(["computed", "reused"])]
    if refit and len(ok):
        name = ok.loc[ok[table.attrs["score"]].idxmax(), "method"]
        if client is not None:
            from ._dask import refit as refit_on_cluster

            best = refit_on_cluster(client, fingerprints[name][0], texts_used, y_used)
        else:
            best = clone(fingerprints[name][0]).fit(list(texts_used), y_used)
    logger.info("comparison took %.1f s", time.perf_counter() - started)
    return table, best
