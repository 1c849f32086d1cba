"""What a comparison can run: the methods' names, their kinds, and the estimator each name stands for."""

from .._methods import METHODS
from .._validation import check_choice, check_labels, check_unique

EMBEDDING_METHODS = ("logreg", "linear-svm", "xgboost")
# Every registered fine-tuning method, so that a new one is compared with no edit here.
FINETUNE_METHODS = tuple(METHODS)
PROMPT_METHODS = ("zero-shot", "few-shot")
ALL_METHODS = EMBEDDING_METHODS + FINETUNE_METHODS + PROMPT_METHODS

# The few-shot row: the 4 nearest training texts as demonstrations, not the classifier's
# default of 8 balanced ones. On the demo's folds (Rotten Tomatoes, 200 texts, 2 folds) they
# scored 0.630 accuracy against 0.550 (docs/compare.md).
FEW_SHOT_EXAMPLES = 4
# Why a method is skipped on a multi-label y (the ``error`` of its row).
MULTILABEL_UNSUPPORTED = {
    name: "prompting picks one label per text; it cannot predict several (multi-label y)" for name in PROMPT_METHODS
}


def method_names():
    """Every method a comparison can run: ``ALL_METHODS``, with the fine-tuning methods registered now."""
    return EMBEDDING_METHODS + tuple(METHODS) + PROMPT_METHODS


def check_methods(methods):
    """``methods`` as a list of known, distinct method names (``None``: all of them), or a ``ValueError``."""
    if methods is None:
        return list(method_names())
    methods = check_labels(methods, "methods")
    if not methods:
        raise ValueError(
            f"methods is empty: name at least one of {list(method_names())}, or pass None for all of them."
        )
    for name in methods:
        check_choice(name, "methods", method_names())
    check_unique(methods, "methods")  # a method named twice would be run, and shown, twice
    return methods


def uses_encoder(name):
    """True when the method runs the encoder (embeddings, fine-tuning, few-shot example selection)."""
    return name != "zero-shot"


def uses_llm(name):
    """True when the method prompts the causal LM."""
    return name in PROMPT_METHODS


def trains_the_encoder(name):
    """True for the fine-tuning methods that run the encoder in every fold (not on cached features)."""
    return name in METHODS and not METHODS[name].caches_features


def family(name):
    """Methods whose time estimates err alike: the same kind of work on the same model."""
    if uses_llm(name):
        return "prompting"
    if trains_the_encoder(name):
        return "fine-tuning"
    return "embeddings"


def make_estimator(
    name, *, encoder, llm, epochs, max_length, cache_dir, random_state, label_words=None, multilabel=False
):
    """The estimator that ``name`` stands for in a comparison (and in the timing that plans it).

    With ``multilabel``, the heads on frozen embeddings are one binary classifier per label
    (``OneVsRestClassifier``) and the fine-tuned classifiers learn from the indicator matrix;
    the prompting methods have no multi-label form (``MULTILABEL_UNSUPPORTED``).
    """
    from .._embed import TransformerEmbedder

    if multilabel and name in MULTILABEL_UNSUPPORTED:
        raise ValueError(f"{name}: {MULTILABEL_UNSUPPORTED[name]}.")
    embedder = TransformerEmbedder(encoder, max_length=max_length, cache_dir=cache_dir)
    if name in EMBEDDING_METHODS:
        return _embedding_pipeline(name, embedder, multilabel)
    if name in METHODS:
        from .._finetune import FineTuneClassifier

        return FineTuneClassifier(
            encoder,
            method=name,
            # Trained on cached features, its epochs cost milliseconds: it keeps its own default.
            epochs=None if METHODS[name].caches_features else epochs,
            max_length=max_length,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    if name == "zero-shot":
        from .._zero_shot import ZeroShotClassifier

        return ZeroShotClassifier(llm, label_words=label_words, cache_dir=cache_dir)
    if name == "few-shot":
        from .._few_shot import FewShotClassifier
        from .._selection import NearestSelection

        return FewShotClassifier(
            llm,
            n_examples=FEW_SHOT_EXAMPLES,
            # The pipelines' embedder (same max_length): the texts are embedded once for both.
            example_selection=NearestSelection(embedder),
            label_words=label_words,
            cache_dir=cache_dir,
            random_state=random_state,
        )
    raise ValueError(f"Unknown method {name!r}; use some of {method_names()}.")


def _embedding_pipeline(name, embedder, multilabel):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    def per_label(head):
        return OneVsRestClassifier(head) if multilabel else head

    if name == "logreg":
        return make_pipeline(embedder, per_label(LogisticRegression(max_iter=2000)))
    if name == "linear-svm":
        return make_pipeline(embedder, per_label(LinearSVC()))
    from xgboost import XGBClassifier

    from .._labels import LabelEncodedClassifier

    booster = XGBClassifier(n_estimators=200, max_depth=4, random_state=0)
    # Per label, the targets are already 0/1: no label encoding needed.
    return make_pipeline(embedder, per_label(booster) if multilabel else LabelEncodedClassifier(booster))
