"""compare_methods: every way of using a pretrained transformer, on the same folds.

- ``catalogue``: the methods' names and kinds, and the estimator each name stands for;
- ``folds``: checking the targets, sampling, cutting the folds, scoring one fold;
- ``rows``: the table's columns, the rows' fingerprints and the saved rows a later run reuses;
- ``timing``: a few texts through the estimators, on this machine, before planning;
- ``plan``: the estimates, and the folds, epochs and texts that fit a time budget;
- ``cluster``: one Dask task per (method, fold);
- ``run``: ``compare_methods`` and ``run_comparison``, which put them together.
"""

from .catalogue import (
    ALL_METHODS,
    EMBEDDING_METHODS,
    FEW_SHOT_EXAMPLES,
    FINETUNE_METHODS,
    MULTILABEL_UNSUPPORTED,
    PROMPT_METHODS,
    make_estimator,
)
from .folds import check_folds, check_targets, evaluate_fold, fold_row
from .plan import estimate_seconds, format_plan, format_seconds, format_timing, parse_duration, plan_comparison
from .rows import COLUMNS
from .run import check_settings, compare_methods, run_comparison
from .timing import load_backbones, measure_costs

__all__ = [
    "ALL_METHODS",
    "COLUMNS",
    "EMBEDDING_METHODS",
    "FEW_SHOT_EXAMPLES",
    "FINETUNE_METHODS",
    "MULTILABEL_UNSUPPORTED",
    "PROMPT_METHODS",
    "check_folds",
    "check_settings",
    "check_targets",
    "compare_methods",
    "estimate_seconds",
    "evaluate_fold",
    "fold_row",
    "format_plan",
    "format_seconds",
    "format_timing",
    "load_backbones",
    "make_estimator",
    "measure_costs",
    "parse_duration",
    "plan_comparison",
    "run_comparison",
]
