"""Linear probing: start the output layer from a regularised linear model on the frozen features.

A randomly initialised output layer needs many steps before the gradient reaching the
backbone means anything; on a few hundred texts the default epochs end first, and
fine-tuning then scores below a logistic regression on the same frozen features. Fitting
that logistic regression first and copying it into the output layer (linear probing, then
fine-tuning: Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution") starts training where the frozen baseline ends.

Most methods start as the frozen backbone itself (LoRA's and the adapters' updates start
at zero; full and partial fine-tuning start from its weights): the output layer then
receives the backbone's pooled features, which :class:`~skllm.TransformerEmbedder` keeps
in its embedding cache. :func:`cached_layer_inputs` reads them from there, so that the
folds and candidates of a cross-validation or grid search probe the texts embedded before
without a forward pass over them (but the check's, on 8 texts), and a single fit stores them
for the next one. Past
:data:`PROBE_MAX_ROWS` training texts the probe reads a sample (:func:`probe_rows`).
"""

import warnings

import numpy as np

#: regularisation strengths tried by the probe's internal cross-validation
PROBE_CS = (0.1, 1.0, 10.0, 100.0)
PROBE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)

#: the most training texts (or pairs) the probe reads: a probe of 512 of 1,000 texts started training
#: as well, and its forward pass then costs half (benchmarks/bench_probe_sample.py, docs/finetuning.md)
PROBE_MAX_ROWS = 512


def probe_rows(rows, seed, stratify=None, class_weights=None):
    """``(rows, class_weights)`` the probe is fitted with: every row up to :data:`PROBE_MAX_ROWS`, else a sample.

    The sample is stratified by the class indices ``stratify`` (aligned with ``rows``)
    where every class can be, and keeps at least three rows of each class (all of a
    class with fewer), so that no class is left out of the probe; drawn with ``seed``, in
    the order of ``rows``. ``class_weights`` (None or one weight per class index) comes
    back multiplied by each class's share of ``rows`` over its share of the sample, so
    that a class the sample over-represents weighs in the probe (its intercept, the prior)
    as in all the rows.
    """
    from ._splits import split_rows

    rows = np.asarray(rows)
    if len(rows) <= PROBE_MAX_ROWS:
        return rows, class_weights
    _, sample = split_rows(np.arange(len(rows)), PROBE_MAX_ROWS, seed, stratify)
    keep = np.zeros(len(rows), dtype=bool)
    keep[sample] = True
    if stratify is None:
        return rows[keep], class_weights
    stratify = np.asarray(stratify, dtype=np.int64)
    for label in np.unique(stratify):
        members = np.flatnonzero(stratify == label)
        short = min(len(members), 3) - int(keep[members].sum())
        if short > 0:
            keep[members[~keep[members]][:short]] = True
    n_classes = len(class_weights) if class_weights is not None else int(stratify.max()) + 1
    everywhere = np.bincount(stratify, minlength=n_classes) / len(stratify)
    sampled = np.bincount(stratify[keep], minlength=n_classes) / keep.sum()
    share = np.divide(everywhere, sampled, out=np.ones(n_classes), where=sampled > 0)
    return rows[keep], share * (1.0 if class_weights is None else np.asarray(class_weights, dtype=float))


def fit_probe(model, features, targets):
    """Fit a probe's scikit-learn model in this thread, whatever joblib backend is active.

    LogisticRegressionCV runs its folds through joblib. Inside a task of joblib's Dask
    backend (a grid search with ``parallel_backend("dask")``), joblib hands nested calls
    to the same cluster, and a worker whose only thread waits for them never gets them
    run: the fit hangs. A probe is a few hundred milliseconds of work, so it never
    needs a pool.
    """
    import joblib

    with warnings.catch_warnings(), joblib.parallel_config(backend="sequential"):
        # scikit-learn 1.8 announces changes of LogisticRegressionCV's defaults and
        # attributes; neither matters to the coefficients used here.
        warnings.simplefilter("ignore", FutureWarning)
        return model.fit(features, targets)


def output_layer(network, n_outputs):
    """The layer the probe starts: a module's ``probe_layer``, else the network's last ``nn.Linear``.

    None when that layer does not produce the outputs.
    """
    from torch import nn

    for module in network.modules():
        layer = getattr(module, "probe_layer", None)
        if isinstance(layer, nn.Linear):
            return layer if layer.out_features == n_outputs else None
    linear = [m for m in network.modules() if isinstance(m, nn.Linear)]
    if linear and linear[-1].out_features == n_outputs:
        return linear[-1]
    return None


def layer_inputs(network, layer, inputs, rows, device, dtype, batch_size):
    """What ``layer`` receives for ``rows`` of ``inputs`` (eval mode: dropout off), in row order."""
    import torch

    from ._device import autocast

    captured = []
    handle = layer.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float().cpu()))
    order = rows[np.argsort(-inputs.lengths()[rows], kind="stable")]
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode(), autocast(device, dtype):
            for start in range(0, len(order), batch_size):
                network(*inputs.tensors(order[start : start + batch_size], device))
    finally:
        handle.remove()
        network.train(was_training)
    features = np.empty((len(order), layer.in_features), dtype=np.float64)
    position = np.empty(len(inputs), dtype=np.int64)
    position[rows] = np.arange(len(rows))
    features[position[order]] = torch.cat(captured).numpy()
    return features


#: training rows on which the network's own features are compared with the backbone's
CHECK_ROWS = 8
#: largest difference between them, relative to the features' scale, that counts as the same
#: function (a method that changes the features from the start, such as prefix or prompt
#: tuning, differs far more)
SAME_FEATURES_TOLERANCE = 1e-3


def cached_layer_inputs(network, layer, inputs, rows, device, dtype, batch_size, embedder, texts):
    """What ``layer`` receives for ``rows``, read from ``embedder`` (and its cache); None if it differs.

    ``embedder`` is a fitted, unnormalised :class:`~skllm.TransformerEmbedder` with the
    network's backbone, pooling, ``max_length`` and dtype; ``texts`` are the texts of
    ``rows``, in that order. The network and the backbone run on the first
    :data:`CHECK_ROWS` rows only, each in one batch, to check that the network's
    untrained features are the backbone's; when they are not (the layer does not receive
    the pooled backbone features), None, and nothing more is embedded.

    The backbone's side of the check is embedded afresh, not read from the cache: a text
    cached in another batch was padded to another width, which changes its bfloat16
    features by up to 4.7e-3 of their scale (MiniLM, texts of Rotten Tomatoes), more than
    the tolerance, where float32's change by 1e-6: 6 of the 11 fits of a bfloat16 grid search
    over 300 texts then ran the network over all their training texts. Check texts the
    cache lacks are first embedded and stored by ``transform``, as before, so that the probe
    reads what it read before (in float32 bit for bit).
    """
    from .exceptions import TruncationWarning, UnknownTokensWarning

    check = rows[:CHECK_ROWS]
    own = layer_inputs(network, layer, inputs, check, device, dtype, max(batch_size, len(check)))
    with warnings.catch_warnings():
        for said in (TruncationWarning, UnknownTokensWarning):  # the estimator warned about these texts
            warnings.simplefilter("ignore", said)
        embedder.transform(texts[: len(check)])  # caches those it lacks as it always did, in batches of their own
        backbone = embedder._embed_uncached(texts[: len(check)]).astype(np.float64)
        scale = max(1.0, float(np.abs(own).max()))
        if own.shape != backbone.shape or not np.allclose(own, backbone, rtol=0, atol=SAME_FEATURES_TOLERANCE * scale):
            return None
        return embedder.transform(texts).astype(np.float64)


def probe_classifier(features, y, n_classes, class_weight):
    """Weights (n_classes, d) and biases of logits equal to a logistic regression's decision.

    The strength is chosen by stratified 3-fold cross-validation (log-loss) when every
    class has three texts, else ``C=1``.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    counts = np.bincount(y, minlength=n_classes)
    if counts.min() >= 3:
        model = LogisticRegressionCV(
            Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000, class_weight=class_weight
        )
    else:
        model = LogisticRegression(C=1.0, max_iter=2000, class_weight=class_weight)
    fit_probe(model, features, y)
    coef, intercept = model.coef_, model.intercept_
    if n_classes == 2:
        # One decision w.x + b as two logits: softmax of (-d/2, d/2) is sigmoid(d).
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


def probe_labels(features, targets, class_weights):
    """Weights (n_labels, d) and biases whose sigmoids are one logistic regression per label.

    The multi-label counterpart of :func:`probe_classifier`. A label on, or off, for every
    training text has no regression to fit (its intercept would grow without bound): its
    weights are 0 and its bias the log-odds of its frequency smoothed by half a text each
    way (Jeffreys), so that it starts predicted as it was seen, and the other labels keep
    their probes. ``class_weights`` is None or an array (2, n_labels): the weights of
    "off" and "on".
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    labels = targets.astype(np.int64)
    positives = labels.sum(axis=0)
    coef, intercept = [], []
    for j in range(labels.shape[1]):
        if positives[j] in (0, len(labels)):
            coef.append(np.zeros(features.shape[1]))
            intercept.append(np.log((positives[j] + 0.5) / (len(labels) - positives[j] + 0.5)))
            continue
        weight = None if class_weights is None else {0: float(class_weights[0, j]), 1: float(class_weights[1, j])}
        if min(positives[j], len(labels) - positives[j]) >= 3:
            model = LogisticRegressionCV(
                Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000, class_weight=weight
            )
        else:
            model = LogisticRegression(C=1.0, max_iter=2000, class_weight=weight)
        fit_probe(model, features, labels[:, j])
        coef.append(model.coef_[0])
        intercept.append(model.intercept_[0])
    return np.vstack(coef), np.asarray(intercept)


def probe_regressor(features, targets):
    """Weights (1, d) and bias of a ridge regression on the (standardised) targets."""
    from sklearn.linear_model import RidgeCV

    model = fit_probe(RidgeCV(alphas=list(PROBE_ALPHAS)), features, targets)
    return model.coef_.reshape(1, -1), np.atleast_1d(model.intercept_)


def set_layer(layer, coef, intercept):
    import torch

    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(coef, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(intercept, dtype=layer.bias.dtype))
