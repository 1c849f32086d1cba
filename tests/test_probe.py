"""Linear probing: the output layer starts as a cross-validated linear model on the initial features."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV, RidgeCV

from skllm import FineTuneClassifier, FineTuneRegressor, HeadTuning
from skllm._probe import PROBE_ALPHAS, PROBE_CS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

# A vanishing learning rate: after fit, the output layer is what the probe set.
FROZEN = {"epochs": 1, "learning_rate": 1e-12, "random_state": 0, "max_length": 16}


def unit_rows(features):
    """What the head sees by default (and TransformerEmbedder(normalize=True) gives), computed as the head does."""
    import torch

    return torch.nn.functional.normalize(torch.as_tensor(features, dtype=torch.float32), p=2, dim=1).double().numpy()


def test_the_head_starts_as_the_logistic_regression_on_its_features(tiny_bert, texts, cache_dir):
    X, y = texts
    y = [label if i % 3 else "mid" for i, label in enumerate(y)]  # three classes
    clf = FineTuneClassifier(tiny_bert, method=HeadTuning(hidden_layer_sizes=()), cache_dir=cache_dir, **FROZEN)
    clf.fit(X, y)
    features = unit_rows(clf.embedder_.transform(X))
    lr = LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000).fit(features, y)
    assert clf.classes_.tolist() == lr.classes_.tolist()
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(features), atol=1e-4)
    assert (clf.predict(X) == lr.predict(features)).all()


def test_two_classes_give_the_logistic_regressions_probabilities(tiny_bert, texts, cache_dir):
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method=HeadTuning(hidden_layer_sizes=()), cache_dir=cache_dir, **FROZEN)
    clf.fit(X, y)
    features = unit_rows(clf.embedder_.transform(X))
    lr = LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000).fit(features, y)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(features), atol=1e-4)


@pytest.mark.parametrize("three_classes", [False, True])
def test_the_default_head_starts_as_the_logistic_regression_on_unit_features(
    tiny_bert, texts, cache_dir, three_classes
):
    # The default head is an MLP beside a linear layer; the MLP's last layer starts at
    # zero and the probe goes into the linear layer, so the first predictions are the
    # logistic regression's on the normalised features, as in a frozen-embedding pipeline.
    X, y = texts
    if three_classes:
        y = [label if i % 3 else "mid" for i, label in enumerate(y)]
    clf = FineTuneClassifier(tiny_bert, method="head", cache_dir=cache_dir, **FROZEN).fit(X, y)
    assert clf.network_.skip is not None and clf.network_.layers[-1].weight.abs().max() < 1e-9
    features = unit_rows(clf.embedder_.transform(X))
    lr = LogisticRegressionCV(Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", max_iter=2000).fit(features, y)
    np.testing.assert_allclose(clf.predict_proba(X), lr.predict_proba(features), atol=1e-4)
    # Without the linear layer the probe is fitted on the hidden layer's output instead.
    plain = HeadTuning(residual=False, normalize=False)
    mlp = FineTuneClassifier(tiny_bert, method=plain, cache_dir=cache_dir, **FROZEN).fit(X, y)
    assert mlp.network_.skip is None
    assert not np.allclose(mlp.predict_proba(X), clf.predict_proba(X), atol=1e-3)


@pytest.mark.parametrize("method", ["lora", "full", "adapter"])
def test_methods_starting_from_the_backbone_start_from_its_probe(tiny_bert, texts, cache_dir, method):
    # LoRA and adapters start as the unchanged backbone (zero-initialised updates), so their
    # first predictions are those of the probe on the backbone's pooled features.
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, **FROZEN).fit(X, y)
    linear = HeadTuning(hidden_layer_sizes=(), normalize=False)  # the probe sees the raw pooled features
    head = FineTuneClassifier(tiny_bert, method=linear, cache_dir=cache_dir, **FROZEN)
    head.fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), head.predict_proba(X), atol=1e-4)
    random = FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, head_init="random", **FROZEN)
    assert not np.allclose(random.fit(X, y).predict_proba(X), clf.predict_proba(X), atol=1e-3)


def test_the_regressor_starts_as_the_ridge_regression(tiny_bert, texts, cache_dir):
    X, _ = texts
    y = np.arange(len(X), dtype=float) % 5
    reg = FineTuneRegressor(tiny_bert, method=HeadTuning(hidden_layer_sizes=()), cache_dir=cache_dir, **FROZEN)
    reg.fit(X, y)
    features = unit_rows(reg.embedder_.transform(X))
    standardised = (y - y.mean()) / y.std()
    ridge = RidgeCV(alphas=list(PROBE_ALPHAS)).fit(features, standardised)
    np.testing.assert_allclose(reg.predict(X), ridge.predict(features) * y.std() + y.mean(), atol=1e-3)


def test_a_class_with_too_few_texts_still_gets_a_probe(tiny_bert, texts, cache_dir):
    X, y = texts
    y = list(y)
    y[0] = "rare"  # one text: no 3-fold cross-validation, a plain C=1 fit
    clf = FineTuneClassifier(tiny_bert, method="head", cache_dir=cache_dir, **FROZEN).fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_head_init_is_validated(tiny_bert, texts, cache_dir):
    with pytest.raises(ValueError, match="head_init"):
        FineTuneClassifier(tiny_bert, head_init="zeros", cache_dir=cache_dir).fit(*texts)


def _probe_passes(monkeypatch):
    """Record how many rows each forward pass of the probe runs, and the texts the embedder embeds."""
    from skllm import _embed, _probe

    record = {"rows": [], "embedded": [], "uncached": []}
    real_layer_inputs, real_embed_new = _probe.layer_inputs, _embed.TransformerEmbedder._embed_new

    def layer_inputs(network, layer, inputs, rows, *args):
        record["rows"].append(len(rows))
        return real_layer_inputs(network, layer, inputs, rows, *args)

    def embed_new(self, texts, cache, keys):
        record["embedded" if cache is not None else "uncached"].extend(texts)
        return real_embed_new(self, texts, cache, keys)

    monkeypatch.setattr(_probe, "layer_inputs", layer_inputs)
    monkeypatch.setattr(_embed.TransformerEmbedder, "_embed_new", embed_new)
    return record


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_probe_reads_the_backbone_features_from_the_embedding_cache(
    tiny_bert, texts, cache_dir, method, monkeypatch
):
    X, y = texts
    record = _probe_passes(monkeypatch)
    clf = FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, **FROZEN).fit(X, y)
    # The network and the backbone run on a few rows to check that the network's features
    # are the backbone's (the backbone's afresh, not stored); the embedder computes every
    # text once and caches it.
    assert record["rows"] == [8] and record["uncached"] == X[:8] and sorted(record["embedded"]) == sorted(set(X))
    record["rows"].clear(), record["embedded"].clear(), record["uncached"].clear()
    again = FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, **FROZEN).fit(X[:40], y[:40])
    # another fold or candidate: no forward pass but the check's
    assert record["rows"] == [8] and record["uncached"] == X[:8] and record["embedded"] == []
    # The same starting point as the network's own pass over every text (no cache).
    uncached = FineTuneClassifier(tiny_bert, method=method, cache_dir=None, **FROZEN).fit(X, y)
    assert record["rows"][-1] == len(X)
    np.testing.assert_allclose(clf.predict_proba(X), uncached.predict_proba(X), atol=1e-5)
    assert (clf.predict(X) == uncached.predict(X)).all()
    trained = {"random_state": 0, "max_length": 16, "epochs": 2, "batch_size": 8}
    cached = FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, **trained).fit(X, y)
    own = FineTuneClassifier(tiny_bert, method=method, cache_dir=None, **trained).fit(X, y)
    np.testing.assert_allclose(cached.predict_proba(X), own.predict_proba(X), atol=1e-4)
    assert again.predict_proba(X).shape == (len(X), 2)


def test_the_check_embeds_its_rows_afresh_not_from_the_cache(tiny_bert, texts, cache_dir, monkeypatch):
    # A cached text was embedded in the batch it came with, padded to that batch's width:
    # under bfloat16 that changes its features by up to 4.7e-3 of their scale (MiniLM),
    # above the check's tolerance. Cached vectors off by that much still serve the next
    # fold, whose check compares the network with the backbone on the same batch.
    from skllm import _cache

    real_put = _cache.EmbeddingCache.put
    monkeypatch.setattr(
        _cache.EmbeddingCache, "put", lambda self, keys, vectors, *rest: real_put(self, keys, vectors * 1.005, *rest)
    )
    X, y = texts
    record = _probe_passes(monkeypatch)
    FineTuneClassifier(tiny_bert, method="lora", cache_dir=cache_dir, **FROZEN).fit(X, y)
    record["rows"].clear(), record["embedded"].clear(), record["uncached"].clear()
    FineTuneClassifier(tiny_bert, method="lora", cache_dir=cache_dir, **FROZEN).fit(X[8:40], y[8:40])
    assert record["rows"] == [8] and record["uncached"] == X[8:16] and record["embedded"] == []


def test_methods_that_change_the_features_probe_their_own(tiny_bert, texts, cache_dir, monkeypatch):
    # Prefix tuning changes what the output layer receives from the start: the cached
    # backbone features are not its features, and the network runs over every text.
    X, y = texts
    record = _probe_passes(monkeypatch)
    clf = FineTuneClassifier(tiny_bert, method="prefix", cache_dir=cache_dir, **FROZEN).fit(X, y)
    assert record["rows"] == [8, len(X)] and len(record["embedded"]) == 8
    uncached = FineTuneClassifier(tiny_bert, method="prefix", cache_dir=None, **FROZEN).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), uncached.predict_proba(X), atol=1e-6)


def test_the_probe_reads_a_stratified_sample_of_at_most_its_bound_keeping_every_class():
    from skllm._probe import PROBE_MAX_ROWS, probe_rows

    rows = np.arange(100, 100 + 3 * PROBE_MAX_ROWS)
    few, weights = probe_rows(rows[:PROBE_MAX_ROWS], 0, None, [1.0, 2.0])
    assert few.tolist() == rows[:PROBE_MAX_ROWS].tolist() and weights == [1.0, 2.0]
    classes = np.r_[np.zeros(2 * PROBE_MAX_ROWS), np.ones(PROBE_MAX_ROWS - 2), [2, 2]].astype(int)
    sample, weights = probe_rows(rows, 0, classes)
    assert PROBE_MAX_ROWS < len(sample) <= PROBE_MAX_ROWS + 2  # both texts of the rare class are in it
    assert set(sample) <= set(rows) and (np.diff(sample) > 0).all()  # in the order of the rows
    counts = np.bincount(classes[sample - 100])
    assert counts[2] == 2 and abs(counts[0] - 2 * counts[1]) <= 3  # the classes' shares, and the rare one
    # weighted back to their shares of all the rows: the rare class, over-represented, weighs less
    np.testing.assert_allclose(weights * counts / len(sample), np.bincount(classes) / len(classes))
    _, given = probe_rows(rows, 0, classes, np.array([1.0, 3.0, 10.0]))
    np.testing.assert_allclose(given, weights * [1.0, 3.0, 10.0])
    assert probe_rows(rows, 0, classes)[0].tolist() == sample.tolist()
    assert probe_rows(rows, 1, classes)[0].tolist() != sample.tolist()
    plain, weights = probe_rows(rows, 0, None)  # a regressor's: a plain sample
    assert len(plain) == PROBE_MAX_ROWS and weights is None


def test_only_methods_whose_probe_runs_the_backbone_probe_a_sample(tiny_bert, texts, cache_dir, monkeypatch):
    from skllm import _probe

    X, y = texts
    monkeypatch.setattr(_probe, "PROBE_MAX_ROWS", 10)
    seen = []
    real = _probe.probe_classifier

    def probe_classifier(features, *args):
        seen.append(len(features))
        return real(features, *args)

    monkeypatch.setattr(_probe, "probe_classifier", probe_classifier)
    FineTuneClassifier(tiny_bert, method="lora", cache_dir=cache_dir, **FROZEN).fit(X, y)
    FineTuneClassifier(tiny_bert, method=HeadTuning(), cache_dir=cache_dir, **FROZEN).fit(X, y)
    assert len(X) > 10 and seen == [10, len(X)]
