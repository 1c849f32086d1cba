"""Timing on this machine, before a comparison plans: a few texts through the estimators it will run."""

import logging
import time

import numpy as np

from .._methods import FullFineTuning
from .catalogue import make_estimator, trains_the_encoder, uses_encoder, uses_llm
from .folds import plain

logger = logging.getLogger(__name__)

# Texts of the two timed fits of full fine-tuning: their difference gives the seconds per
# text, the rest what a fold costs besides its texts. Whole batches of the classifier's 16.
_FIT_SIZES = (16, 32)
# Prompts timed per prompting method: one batch of the classifiers' 8, whose padding (prompts
# of unequal length) is part of the cost.
_TIMED_PROMPTS = 8
# Pool of the timed few-shot classifier: enough texts for its demonstrations (each text,
# in the calibration of fit, is shown the others).
_FEW_SHOT_POOL = 8


def measure_costs(texts, y, methods, *, encoder, llm, max_length, random_state, cache_dir=None, label_words=None):
    """Seconds of the work each method does, timed on a few texts on this machine.

    The estimators are those the comparison runs (``make_estimator``), with the same
    settings. Returns a dict: ``embed`` (seconds per text of the encoder's embedding pass),
    ``train`` (per text and epoch of full fine-tuning, the other methods being the
    ``relative_cost`` of their class), ``fold`` (what a fine-tuning fold costs besides its
    texts), ``predict`` (per text, a fine-tuned classifier's prediction), ``prompt`` and
    ``few-shot`` (per prompt, zero- and few-shot) and ``loading`` (seconds spent loading
    models, which the methods need anyway).
    """
    rng = np.random.RandomState(random_state)
    sample = [texts[i] for i in rng.choice(len(texts), min(max(_FIT_SIZES), len(texts)), replace=False)]
    costs = {"embed": 0.0, "train": 0.0, "fold": 0.0, "predict": 0.0, "prompt": 0.0, "few-shot": 0.0, "loading": 0.0}
    settings = dict(
        encoder=encoder,
        llm=llm,
        epochs=1,
        max_length=max_length,
        cache_dir=cache_dir,
        random_state=random_state,
        label_words=label_words,
    )
    try:
        if any(uses_encoder(m) for m in methods):
            _time_encoder(costs, sample, encoder, max_length)
        if any(trains_the_encoder(m) for m in methods):
            _time_fine_tuning(costs, sample, settings)
    except Exception as exc:  # a model that cannot load fails in its methods' rows, quickly
        logger.warning("could not time the encoder %r: %s", encoder, exc)
        logger.debug("could not time the encoder %r", encoder, exc_info=True)
    try:
        if any(uses_llm(m) for m in methods):
            _time_prompting(costs, texts, y, sample, methods, settings, rng)
    except Exception as exc:
        logger.warning("could not time the language model %r: %s", llm, exc)
        logger.debug("could not time the language model %r", llm, exc_info=True)
    return costs


def load_backbones(methods, *, encoder, llm, cache_dir):
    """Load the backbones that ``methods`` share, so that no one method's measured memory counts them."""
    from .._device import resolve_device
    from .._models import load_backbone, resolve_model

    device = resolve_device("auto")
    wanted = []
    if any(uses_encoder(m) for m in methods):
        wanted.append((encoder, "base"))
    if any(uses_llm(m) for m in methods) and isinstance(llm, str):  # not an endpoint (OpenAIChat)
        wanted.append((llm, "causal-lm"))
    for name, kind in wanted:
        try:
            load_backbone(resolve_model(name, cache_dir=cache_dir), device, kind=kind)
        except Exception as exc:  # a model that cannot load fails in its methods' rows
            logger.warning("could not load %r before the comparison: %s", name, exc)
            logger.debug("could not load %r before the comparison", name, exc_info=True)


def _time_encoder(costs, sample, encoder, max_length):
    from .._embed import TransformerEmbedder

    start = time.perf_counter()
    # No cache: the embedding pass itself is timed, as the first method will run it.
    embedder = TransformerEmbedder(encoder, max_length=max_length, cache_dir=None).fit()
    costs["loading"] += time.perf_counter() - start
    # A first pass pays one-off costs (measured: the first batches run several times slower
    # than the next ones), which a comparison pays once: the second pass is timed.
    embedder.transform(sample)
    start = time.perf_counter()
    embedder.transform(sample)
    costs["embed"] = (time.perf_counter() - start) / len(sample)


def _time_fine_tuning(costs, sample, settings):
    """Fit full fine-tuning, as the comparison builds it, on two numbers of texts, and predict."""
    from sklearn.base import clone

    template = make_estimator(FullFineTuning.name, **settings)
    # Two classes, whatever the data's labels: they do not change what a step costs.
    labels = np.arange(len(sample)) % 2
    # The first fit pays the one-off costs (see _time_encoder) on the texts timed next.
    clone(template).fit(sample[: _FIT_SIZES[0]], labels[: _FIT_SIZES[0]])
    seconds = []
    for size in _FIT_SIZES:
        size = min(size, len(sample))
        start = time.perf_counter()
        fitted = clone(template).fit(sample[:size], labels[:size])
        seconds.append((size, time.perf_counter() - start))
    start = time.perf_counter()
    fitted.predict(sample)
    costs["predict"] = (time.perf_counter() - start) / len(sample)
    (small, small_s), (large, large_s) = seconds
    per_text = (large_s - small_s) / (large - small) if large > small else 0.0
    if per_text <= 0:  # the fits' noise exceeds their difference (a tiny model): the larger fit's mean
        per_text = large_s / large
    # A fit's text costs a forward pass (the linear probe that starts the output layer)
    # and, per epoch, a training step; the floor guards against a noisy difference.
    costs["train"] = max(per_text - costs["predict"], per_text / 2)
    costs["fold"] = max(small_s - small * per_text, 0.0)


def _time_prompting(costs, texts, y, sample, methods, settings, rng):
    """Fit each prompting method, as the comparison builds it, on a few texts, and time its prompts."""
    # One text of each class (prompting learns nothing but the classes).
    first = {}
    for i, label in enumerate(y):
        first.setdefault(plain(label), i)
    fit_rows = sorted(first.values())
    timed = sample[:_TIMED_PROMPTS]
    loaded = False
    for name, key, rows in (
        ("zero-shot", "prompt", fit_rows),
        ("few-shot", "few-shot", _pool(fit_rows, len(texts), rng)),
    ):
        if name not in methods:
            continue
        start = time.perf_counter()
        # The first fit loads the LM; every fit calibrates on its rows, which pays the prompts' one-off costs.
        prompting = make_estimator(name, **settings).fit([texts[i] for i in rows], y[rows])
        if not loaded:
            costs["loading"] += time.perf_counter() - start
            loaded = True
        start = time.perf_counter()
        prompting.predict(timed)
        costs[key] = (time.perf_counter() - start) / len(timed)


def _pool(fit_rows, n_texts, rng):
    """The few-shot pool: a text of each class, and others drawn at random up to ``_FEW_SHOT_POOL``."""
    others = [i for i in rng.permutation(n_texts) if i not in set(fit_rows)]
    return sorted(fit_rows + others[: max(0, _FEW_SHOT_POOL - len(fit_rows))])
