"""compare_methods: every way of using a pretrained transformer, on the same folds."""

import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np

from . import _models

logger = logging.getLogger(__name__)

EMBEDDING_METHODS = ("logreg", "linear-svm", "xgboost")
FINETUNE_METHODS = ("head", "full", "lora", "prefix", "prompt", "adapter")
PROMPT_METHODS = ("zero-shot", "few-shot")
ALL_METHODS = EMBEDDING_METHODS + FINETUNE_METHODS + PROMPT_METHODS


def make_estimator(name, *, encoder, llm, epochs, max_length, cache_dir, random_state):
    """The estimator that ``name`` stands for in a comparison."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    from ._embed import TransformerEmbedder
    from ._finetune import FineTuneClassifier
    from ._icl import FewShotClassifier, ZeroShotClassifier
    from ._labels import LabelEncodedClassifier

    embedder = TransformerEmbedder(encoder, max_length=max_length, cache_dir=cache_dir)
    if name == "logreg":
        return make_pipeline(embedder, LogisticRegression(max_iter=2000))
    if name == "linear-svm":
        return make_pipeline(embedder, LinearSVC())
    if name == "xgboost":
        from xgboost import XGBClassifier

        return make_pipeline(embedder, LabelEncodedClassifier(XGBClassifier(n_estimators=200, max_depth=4)))
    if name in FINETUNE_METHODS:
        return FineTuneClassifier(
            encoder,
            method=name,
            epochs=10 if name == "head" else epochs,
            max_length=max_length,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    if name == "zero-shot":
        return ZeroShotClassifier(llm)
    if name == "few-shot":
        return FewShotClassifier(
            llm,
            n_examples=4,
            example_selection="nearest",
            embedder_model=encoder,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    raise ValueError(f"Unknown method {name!r}; use some of {ALL_METHODS}.")


def _trainable(estimator):
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "n_trainable_params_"):
        return int(final.n_trainable_params_)
    inner = getattr(final, "estimator_", final)
    if hasattr(inner, "coef_"):
        return int(inner.coef_.size + np.size(getattr(inner, "intercept_", 0)))
    if hasattr(inner, "get_booster"):
        # Split and leaf nodes of all trees: a tree model's counterpart of parameters.
        return sum(tree.count("\n") for tree in inner.get_booster().get_dump())
    return 0


def compare_methods(
    X,
    y,
    methods=None,
    *,
    cv=5,
    encoder=_models.DEFAULT_ENCODER,
    llm=_models.DEFAULT_CAUSAL_LM,
    epochs=3,
    max_length=64,
    cache_dir="auto",
    random_state=0,
    out_dir=None,
    verbose=1,
):
    """Cross-validate several methods on the same folds and return one row per method.

    Parameters
    ----------
    X : sequence of str
    y : sequence of labels
    methods : sequence of str, default=None
        Names from ``ALL_METHODS``; ``None`` runs them all.
    cv : int, default=5
        Stratified folds, shared by every method.
    encoder, llm : str
        The encoder (embeddings and fine-tuning) and the causal LM (prompting).
    epochs, max_length : int
        Fine-tuning epochs (the head trains 10) and tokens per text.
    cache_dir : str, "auto" or None
        Embedding cache: the embeddings are computed once for every method.
    random_state : int
        Seeds the folds and the methods.
    out_dir : str or Path, default=None
        Where each finished method's row is stored (``rows/<method>.json``): a run
        that is interrupted resumes without redoing finished methods.
    verbose : int, default=1
        Progress over methods and folds.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``accuracy_mean``, ``accuracy_std``, ``f1_macro_mean``,
        ``f1_macro_std``, ``fit_seconds`` (mean per fold), ``predict_seconds_per_1000``,
        ``trainable_params``, ``model_bytes`` (pickle size) and ``error`` (empty unless
        the method failed; the others go on).
    """
    import pandas as pd
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold
    from tqdm.auto import tqdm

    from ._validation import check_texts

    texts = np.asarray(check_texts(X), dtype=object)
    y = np.asarray(list(y))
    if len(y) != len(texts):
        raise ValueError(f"X has {len(texts)} texts but y has {len(y)} labels.")
    methods = list(ALL_METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; use some of {list(ALL_METHODS)}.")
    folds = list(StratifiedKFold(cv, shuffle=True, random_state=random_state).split(texts, y))
    rows_dir = Path(out_dir) / "rows" if out_dir is not None else None
    if rows_dir is not None:
        rows_dir.mkdir(parents=True, exist_ok=True)
    params = {"encoder": encoder, "llm": llm, "epochs": epochs, "max_length": max_length, "cache_dir": cache_dir}

    rows = []
    for name in tqdm(methods, desc="methods", disable=not verbose):
        saved = rows_dir / f"{name}.json" if rows_dir is not None else None
        if saved is not None and saved.is_file():
            rows.append(json.loads(saved.read_text()))
            continue
        row = {"method": name, "error": ""}
        try:
            template = make_estimator(name, random_state=random_state, **params)
            acc, f1, fit_s, pred_s = [], [], [], []
            for train, test in tqdm(folds, desc=name, leave=False, disable=not verbose):
                est = clone(template)
                start = time.perf_counter()
                est.fit(list(texts[train]), y[train])
                fit_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                pred = est.predict(list(texts[test]))
                pred_s.append((time.perf_counter() - start) / len(test) * 1000)
                acc.append(accuracy_score(y[test], pred))
                f1.append(f1_score(y[test], pred, average="macro"))
            row.update(
                accuracy_mean=float(np.mean(acc)),
                accuracy_std=float(np.std(acc)),
                f1_macro_mean=float(np.mean(f1)),
                f1_macro_std=float(np.std(f1)),
                fit_seconds=float(np.mean(fit_s)),
                predict_seconds_per_1000=float(np.mean(pred_s)),
                trainable_params=_trainable(est),
                model_bytes=len(pickle.dumps(est)),
            )
        except Exception as exc:  # one method failing must not stop the others
            logger.exception("method %s failed", name)
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        if saved is not None and not row["error"]:
            saved.write_text(json.dumps(row))
        rows.append(row)
    columns = [
        "method",
        "accuracy_mean",
        "accuracy_std",
        "f1_macro_mean",
        "f1_macro_std",
        "fit_seconds",
        "predict_seconds_per_1000",
        "trainable_params",
        "model_bytes",
        "error",
    ]
    return pd.DataFrame(rows).reindex(columns=columns)
