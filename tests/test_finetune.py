import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skllm import (
    BottleneckAdapter,
    FineTuneClassifier,
    FineTuneGenerator,
    FineTuneRegressor,
    LoRA,
    PrefixTuning,
    PromptTuning,
    _finetune,
    _models,
)

# Where each method's trained parameters live in the network (besides the head).
TRAINED = {
    "lora": lambda name: "lora_" in name,
    "prefix": lambda name: name.startswith("encoder.extra."),
    "prompt": lambda name: "prompt_encoder" in name,
    "adapter": lambda name: ".down." in name or ".up." in name or "norm" in name.lower(),
    "full": lambda name: name.startswith("encoder."),
    "partial": lambda name: ".layer." in name or ".layers." in name or name.startswith("encoder.model.norm."),
}


def fit(model_dir, method, X, y, cache_dir, **kw):
    params = {"epochs": 2, "batch_size": 8, "random_state": 0, "cache_dir": cache_dir, **kw}
    return FineTuneClassifier(model_dir, method=method, **params).fit(X, y)


@pytest.fixture(params=["tiny_bert", "tiny_llama"])
def backbone(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("method", ["full", "lora", "prefix", "prompt", "adapter", "partial"])
def test_exactly_the_intended_parameters_change(backbone, method, texts, cache_dir, monkeypatch):
    # The network as trained and stored, not merged for prediction (LoRA).
    monkeypatch.setattr(LoRA, "for_inference", lambda self, network: network)
    built = {}
    real_build = _finetune._FineTuneBase._build_network

    def recording_build(self, *args):
        network = real_build(self, *args)
        built["before"] = {k: v.detach().clone() for k, v in network.state_dict().items()}
        return network

    monkeypatch.setattr(_finetune._FineTuneBase, "_build_network", recording_build)
    shared = _models.load_backbone(_models.resolve_model(backbone), torch.device("cpu"))[0]
    shared_before = {k: v.clone() for k, v in shared.state_dict().items()}

    clf = fit(backbone, method, *texts, cache_dir, learning_rate=1e-2)
    after = clf.network_.state_dict()
    trainable = set(clf.trainable_state_)
    assert trainable == {n for n, p in clf.network_.named_parameters() if p.requires_grad}
    expected = {n for n in trainable if not n.startswith("head.")}
    assert expected and all(TRAINED[method](n) for n in expected), sorted(expected)[:5]
    assert any(n.startswith("head.") for n in trainable)
    for name, value in built["before"].items():
        if name in trainable or name not in after:  # trained, or dropped after training (prefix MLP)
            continue
        assert torch.equal(after[name], value), f"frozen {name} changed"
    changed = [n for n in trainable if not torch.equal(after[n], built["before"][n])]
    assert len(changed) >= 0.9 * len(trainable) - 2  # a few biases may see no gradient (pooler)
    # The shared, loaded backbone is never modified.
    for name, value in shared.state_dict().items():
        assert torch.equal(value, shared_before[name]), name
    assert clf.n_trainable_params_ == sum(v.size for v in clf.trainable_state_.values())


@pytest.mark.parametrize("method", ["lora", "prefix", "prompt", "adapter", "full", "partial"])
def test_the_network_holds_the_loaded_weights_it_does_not_train_and_leaves_them_as_they_are(
    backbone, method, texts, cache_dir
):
    # skllm._methods._base.frozen_copy: the network's copy of the backbone shares the loaded model's frozen
    # weights; what it trains, and what LoRA merges for prediction, are its own.
    shared = _models.load_backbone(_models.resolve_model(backbone), torch.device("cpu"))[0]
    shared_before = {k: v.clone() for k, v in shared.state_dict().items()}
    loaded = {p.untyped_storage().data_ptr() for p in shared.parameters()}

    clf = fit(backbone, method, *texts, cache_dir, learning_rate=1e-2)
    clf.predict(texts[0][:4])
    holds = {n for n, p in clf.network_.named_parameters() if p.untyped_storage().data_ptr() in loaded}
    trained = set(clf.trainable_state_)
    assert not holds & trained
    if method == "full":
        assert not holds
    elif method != "partial":  # most of the backbone: all but what the method trains or merges (partial
        # keeps the blocks it trains, and runs the frozen ones outside the network: FrozenLayers)
        assert len(holds) >= 0.5 * len(list(shared.parameters())), (len(holds), sorted(holds)[:5])
    if method == "lora":  # merged for prediction into the adapted layers' own weights (not their biases)
        adapted = [n for n in clf.network_.state_dict() if n.split(".")[-2] in ("query", "value", "q_proj", "v_proj")]
        assert adapted and not [n for n in adapted if n.endswith(".weight") and n in holds]
    for name, value in shared.state_dict().items():
        assert torch.equal(value, shared_before[name]), name


@pytest.mark.parametrize("method", ["lora", "prompt", "full"])
def test_a_generators_network_leaves_the_loaded_model_as_it_is(tiny_llama, method):
    from skllm import FineTuneGenerator

    shared = _models.load_backbone(_models.resolve_model(tiny_llama), torch.device("cpu"), kind="causal-lm")[0]
    shared_before = {k: v.clone() for k, v in shared.state_dict().items()}
    loaded = {p.untyped_storage().data_ptr() for p in shared.parameters()}
    X = ["a great film", "so dull", "loved it", "awful"]
    gen = FineTuneGenerator(tiny_llama, method=method, epochs=2, learning_rate=1e-2, max_new_tokens=2, random_state=0)
    gen.fit(X, ["good", "bad", "good", "bad"])
    gen.predict(X[:2])
    holds = [p for p in gen.network_.parameters() if p.untyped_storage().data_ptr() in loaded]
    assert not [p for p in holds if p.requires_grad]
    assert (not holds) if method == "full" else holds
    for name, value in shared.state_dict().items():
        assert torch.equal(value, shared_before[name]), name


def test_head_method_trains_only_new_layers_on_cached_features(tiny_bert, texts, cache_dir):
    from helpers import count_rows

    clf = FineTuneClassifier(tiny_bert, method="head", epochs=10, random_state=0, cache_dir=cache_dir)
    shared = _models.load_backbone(_models.resolve_model(tiny_bert), torch.device("cpu"))[0]
    seen, handle = count_rows(shared)
    try:
        clf.fit(*texts)
        refit = clone(clf).fit(*texts)  # another fold or candidate: nothing to embed
    finally:
        handle.remove()
    assert sum(seen) == len(set(texts[0]))  # ten epochs, two fits, one forward pass per text
    assert all(n.startswith(("layers.", "skip.")) for n in clf.trainable_state_)  # the head alone
    assert any(n.startswith("skip.") for n in clf.trainable_state_)
    assert refit.n_iter_ == 10


@pytest.mark.parametrize("method", ["full", "lora", "prefix", "prompt", "adapter", "partial"])
def test_every_method_learns_on_both_architectures(backbone, method, texts, cache_dir):
    X, y = texts
    lr = 5e-3 if method in ("full", "partial") else 3e-2
    # From a random output layer, so that the falling loss is the method's training alone.
    clf = fit(backbone, method, X, y, cache_dir, epochs=8, learning_rate=lr, head_init="random")
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert set(clf.predict(X)) <= {"pos", "neg"}
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.decision_function(X).shape == (len(X),)


def test_gridsearch_over_methods_and_their_parameters(tiny_bert, texts, cache_dir):
    # The method named by a string: its nested parameters are tuned all the same.
    clf = FineTuneClassifier(tiny_bert, method="lora", epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    grid = [{"method__r": [2, 4]}, {"method": ["full", "head"]}]
    search = GridSearchCV(clf, grid, cv=2).fit(*texts)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_estimator_.method_.name in {"lora", "full", "head"}
    tuned = [p["method__r"] for p in search.cv_results_["params"] if "method__r" in p]
    assert tuned == [2, 4]
    assert clf.method == "lora"  # the searched estimator is left as it was


@pytest.mark.parametrize("cls", [FineTuneClassifier, FineTuneRegressor, FineTuneGenerator])
def test_nested_parameters_of_a_method_given_by_name(cls):
    est = cls(method="lora")
    assert est.get_params()["method__r"] == LoRA().r
    assert repr(est.set_params(method__r=4).method) == "LoRA(r=4)"
    assert repr(clone(est).method) == "LoRA(r=4)" and clone(est).method is not est.method
    # Set together, the name is resolved first, then its parameter.
    assert repr(cls().set_params(method="lora", method__alpha=4).method) == "LoRA(alpha=4)"
    with pytest.raises(ValueError, match=r"Invalid parameter 'r' for estimator PromptTuning\(\)"):
        cls(method="prompt").set_params(method__r=4)
    with pytest.raises(ValueError, match=r"method='qlora' is not supported; use one of"):
        cls(method="qlora").set_params(method__r=4)


def test_same_random_state_same_model_other_seed_other_model(tiny_bert, texts, cache_dir):
    a = fit(tiny_bert, "lora", *texts, cache_dir)
    b = fit(tiny_bert, "lora", *texts, cache_dir)
    c = fit(tiny_bert, "lora", *texts, cache_dir, random_state=1)
    for name in a.trainable_state_:
        np.testing.assert_array_equal(a.trainable_state_[name], b.trainable_state_[name])
    assert any(not np.array_equal(a.trainable_state_[n], c.trainable_state_[n]) for n in a.trainable_state_)


def test_global_random_state_is_untouched(tiny_bert, texts, cache_dir):
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(1), np.random.rand()
    torch.manual_seed(123)
    np.random.seed(123)
    fit(tiny_bert, "lora", *texts, cache_dir)
    assert torch.equal(torch.rand(1), expected_torch)
    assert np.random.rand() == expected_np


def test_pickle_holds_only_trained_weights(tiny_bert, texts, cache_dir):
    lora = fit(tiny_bert, "lora", *texts, cache_dir)
    full = fit(tiny_bert, "full", *texts, cache_dir)
    lora_blob, full_blob = pickle.dumps(lora), pickle.dumps(full)
    assert len(lora_blob) < len(full_blob) / 2
    restored = pickle.loads(lora_blob)
    assert "network_" not in restored.__dict__
    np.testing.assert_allclose(restored.predict_proba(texts[0]), lora.predict_proba(texts[0]), atol=1e-6)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in restored.trainable_state_.values())


def test_early_stopping_records_scores_and_keeps_the_best(tiny_bert, texts, cache_dir):
    clf = fit(
        tiny_bert,
        "lora",
        *texts,
        cache_dir,
        epochs=6,
        early_stopping=True,
        validation_fraction=0.25,
        n_iter_no_change=1,
    )
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert fit(tiny_bert, "lora", *texts, cache_dir).validation_scores_ is None


def test_warm_start_continues_training(tiny_bert, texts, cache_dir):
    clf = fit(tiny_bert, "lora", *texts, cache_dir, warm_start=True)
    first = {k: v.copy() for k, v in clf.trainable_state_.items()}
    # A second fit with a vanishing learning rate starts from, and so keeps, the fitted weights.
    clf.set_params(learning_rate=1e-12).fit(*texts)
    assert all(np.allclose(clf.trainable_state_[k], v, atol=1e-6) for k, v in first.items())
    clf.set_params(learning_rate=None).fit(*texts)
    assert any(not np.allclose(clf.trainable_state_[k], v, atol=1e-6) for k, v in first.items())
    network = clf.network_
    clf.set_params(pooling="cls").fit(*texts)  # other pooling: a fresh network
    assert clf.network_ is not network and clf.network_.pooling == "cls"
    network = clf.network_
    X, _ = texts
    other = [f"c{i % 3}" for i in range(len(X))]
    clf.fit(X, other)  # other classes: a fresh network with three outputs
    assert clf.network_ is not network and clf.predict_proba(X).shape == (len(X), 3)
    cold = fit(tiny_bert, "lora", *texts, cache_dir)
    first = cold.network_
    cold.fit(*texts)
    assert cold.network_ is not first


def test_a_warm_started_regressor_keeps_its_target_scale(tiny_bert, cache_dir):
    X, y = [f"t{i} film" for i in range(40)], np.linspace(0, 100, 40)
    params = {"method": "head", "epochs": 3, "random_state": 0, "cache_dir": cache_dir}
    reg = FineTuneRegressor(tiny_bert, **params).fit(X, y)
    before, scale = reg.predict(X), (reg.target_mean_, reg.target_scale_)
    # The last quarter alone has another mean and spread; a vanishing step keeps the function.
    reg.set_params(warm_start=True, learning_rate=1e-12, epochs=1).fit(X[30:], y[30:])
    assert (reg.target_mean_, reg.target_scale_) == scale
    np.testing.assert_allclose(reg.predict(X), before, atol=1e-3)
    reg.set_params(warm_start=False).fit(X[30:], y[30:])
    assert reg.target_mean_ == pytest.approx(y[30:].mean())


def test_a_warm_start_after_a_fit_on_one_value_standardises_the_new_targets(tiny_bert, cache_dir):
    X, y = [f"t{i} film" for i in range(16)], np.arange(16) * 1e6
    params = {"method": "head", "epochs": 1, "random_state": 0, "cache_dir": cache_dir, "warm_start": True}
    reg = FineTuneRegressor(tiny_bert, **params).fit(X, np.full(16, 5.0))  # no spread: no scale to keep
    reg.fit(X, y)
    assert (reg.target_mean_, reg.target_scale_) == pytest.approx((y.mean(), y.std()))
    assert reg.loss_curve_[0] < 10  # standardised targets, not values up to 1.5e7 at the stand-in scale 1


def test_labels_of_any_type_and_class_weight(tiny_bert, texts, cache_dir):
    X, y = texts
    ints = [3 if label == "pos" else 7 for label in y]
    clf = fit(tiny_bert, "head", X, ints, cache_dir, class_weight="balanced")
    assert clf.classes_.tolist() == [3, 7] and set(clf.predict(X)) <= {3, 7}
    three = [f"c{i % 3}" for i in range(len(X))]
    clf = fit(tiny_bert, "lora", X, three, cache_dir, class_weight={"c0": 2.0})
    assert clf.predict_proba(X).shape == (len(X), 3) and clf.decision_function(X).shape == (len(X), 3)


@pytest.mark.parametrize(
    "X, y, params, error, message",
    [
        (["a", None, "b"], ["x", "y", "x"], {}, ValueError, r"positions \[1\]: None"),
        (["a", "b", "c"], ["x", "x", "x"], {}, ValueError, r"single class \('x'\)"),
        (["a", "b", "c"], ["x", "y"], {}, ValueError, "X has 3 texts but y has 2 labels"),
        (
            ["a", "b", "c"],
            ["x", None, "y"],
            {},
            ValueError,
            r"missing label\(s\) \(None, NaN, NaT or NA\) at positions \[1\]",
        ),
        (["a", "b"], ["x", "y"], {"method": "qlora"}, ValueError, r"method='qlora' is not supported; use one of"),
        (["a", "b"], ["x", "y"], {"epochs": 0}, ValueError, "epochs must be an integer >= 1 or None, got 0"),
        (["a", "b"], ["x", "y"], {"method": LoRA(r=0)}, ValueError, "r must be an integer >= 1, got 0"),
        (["a", "b"], ["x", "y"], {"class_weight": {"z": 1.0}}, ValueError, "class_weight names labels that are not"),
        (["a", "b"], ["x", "y"], {"learning_rate": -1}, ValueError, "learning_rate must be a number > 0"),
    ],
)
def test_bad_input_gets_clear_errors(tiny_bert, cache_dir, X, y, params, error, message):
    with pytest.raises(error, match=message):
        FineTuneClassifier(tiny_bert, cache_dir=cache_dir, **params).fit(X, y)


def test_method_objects_validate_their_parameters(tiny_bert, texts, cache_dir):
    for method, message in [
        (PrefixTuning(n_prefix_tokens=0), "n_prefix_tokens must be"),
        (PromptTuning(n_virtual_tokens=-1), "n_virtual_tokens must be"),
        (BottleneckAdapter(activation="tanh"), "activation='tanh' is not supported"),
    ]:
        with pytest.raises(ValueError, match=message):
            FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir).fit(*texts)


def test_virtual_tokens_must_leave_room_for_the_text(tiny_bert, tiny_llama, cache_dir):
    # tiny_bert has 128 positions, tiny_llama 512: the tokens used to end in an OverflowError.
    message = r"PromptTuning\(n_virtual_tokens=130\) puts 130 positions.*accepts 128 .*n_virtual_tokens <= 120"
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(tiny_bert, method=PromptTuning(n_virtual_tokens=130), cache_dir=cache_dir).fit(
            ["a", "b"], [0, 1]
        )
    with pytest.raises(ValueError, match=r"n_virtual_tokens=510\).*leaves 2 for the text; use n_virtual_tokens <= 504"):
        FineTuneGenerator(tiny_llama, method=PromptTuning(n_virtual_tokens=510)).fit(["a"], ["b"])


@pytest.mark.parametrize("method", ["head", "lora"])
def test_regressor(tiny_bert, texts, cache_dir, method):
    X, _ = texts
    y = np.array([float(len(t)) for t in X])
    reg = FineTuneRegressor(tiny_bert, method=method, epochs=3, batch_size=8, random_state=0, cache_dir=cache_dir)
    reg.fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (len(X),) and np.isfinite(pred).all()
    assert abs(pred.mean() - y.mean()) < 3 * y.std()
    with pytest.raises(ValueError, match=r"missing or infinite value\(s\) at positions \[0\]"):
        clone(reg).fit(X, [np.nan, *y[1:]])
    with pytest.raises(ValueError, match="y must be numeric"):
        clone(reg).fit(X, ["a"] * len(X))


def test_verbose_prints_epochs(tiny_bert, texts, cache_dir, capsys):
    fit(tiny_bert, "lora", *texts, cache_dir, verbose=1)
    captured = capsys.readouterr()
    assert "epoch 2/2: loss" in captured.out and "epoch 1/2" in captured.err


def test_one_load_of_the_backbone_per_process(tiny_bert, texts, cache_dir):
    # The network, the probe's embedder, prediction, an unpickled model, the head method and
    # a TransformerEmbedder of the same model all share the copy loaded first.
    from skllm import TransformerEmbedder

    X, y = texts
    before = dict(_models._load_counts)
    clf = fit(tiny_bert, "lora", X, y, cache_dir, epochs=1)
    clf.predict(X)
    pickle.loads(pickle.dumps(clf)).predict(X)
    fit(tiny_bert, "head", X, y, cache_dir, epochs=1)
    TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().transform(X)
    new = {key: n - before.get(key, 0) for key, n in _models._load_counts.items() if n != before.get(key, 0)}
    assert sum(new.values()) <= 1, new
