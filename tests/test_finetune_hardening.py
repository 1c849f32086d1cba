"""Edge cases of the fine-tuners' inputs, the method contract, restoring and the training loop."""

import copy
import inspect
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import DataConversionWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from skllm import FineTuneClassifier, FineTuneGenerator, FineTuneRegressor, FineTuningMethod, RewardModel, _finetune
from skllm._methods import METHODS
from skllm.exceptions import SkllmWarning

ROOT = Path(__file__).resolve().parent.parent


def head(model_dir, cache_dir, **kw):
    return {"model_name": model_dir, "method": "head", "epochs": 2, "random_state": 0, "cache_dir": cache_dir, **kw}


# -- targets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, message",
    [
        (["a", "b", "c", "d"], [0.5, 1.25, 2.0, 3.75], r"continuous values \(e.g. 0.5\).*FineTuneRegressor"),
        (["a", "b", "c"], [[0], [1], [1]], r"one label per text \(a 1-D y\) .* y has shape \(3, 1\), a single column"),
        (["a", "b", "c"], [["x", "y"], ["y", "x"], ["x", "x"]], r"shape \(3, 2\) \(multiclass-multioutput\)"),
        (["a", "b", "c"], ["x", 1, "y"], r"mixes label types \(number 1, str 'x'\)"),
        (["a", "b", "c"], ["x", np.nan, "y"], r"missing label\(s\) \(None, NaN, NaT or NA\) at positions \[1\]"),
        (["a", "b", "c"], ["x", pd.NA, "y"], r"missing label\(s\) .* at positions \[1\]"),  # a nullable column
        ([f"t{i}" for i in range(3)], [pd.Timestamp(0), pd.NaT, pd.Timestamp(1)], r"missing .* at positions \[1\]"),
        (["a", "b", "c"], [[1, 2], [3], [4]], "one hashable label per text"),
        # Sets are not totally ordered: sorting them would keep equal labels apart, a class per row.
        (["a", "b", "c", "d"], [frozenset({"x"}), frozenset({"y"})] * 2, "not a collection.*MultiLabelBinarizer"),
        (["a", "b", "c"], "xyz", "sequence of labels"),
        (["a", "b", "c"], [1.0, np.inf, 2.0], r"infinite labels, at positions \[1\]"),
        # numpy reads them as floats, where 2**63 + 1 and 2**63 + 3 are one number
        (["a", "b", "c"], np.array([2**63 + 1, 2**63 + 3, 1], dtype=np.uint64), "past the int64 range"),
        (["a", "b"], [1e20, 0.0], r"past the int64 range as labels \(e.g. 1e\+20 at position 0\)"),
        ([], [], "empty X"),  # X is validated before y: no IndexError
        ([], ["x", "y"], "empty X"),
    ],
)
def test_classifier_rejects_bad_targets_clearly(tiny_bert, cache_dir, X, y, message):
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(X, y)


@pytest.mark.parametrize(
    "y, classes",
    [
        ([True, False], [False, True]),
        ([np.int64(3), np.int64(7)], [3, 7]),
        ([1.0, 2.0], [1.0, 2.0]),  # integral floats are classes, not a continuous target
        (np.array(["b", "a"], dtype=object), ["a", "b"]),
    ],
)
def test_classifier_labels_of_plain_types(tiny_bert, cache_dir, texts, y, classes):
    X = texts[0][:16]
    labels = [y[i % 2] for i in range(len(X))]
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(X, labels)
    assert clf.classes_.tolist() == classes
    assert set(clf.predict(X).tolist()) <= set(classes)


def test_regressor_standardises_targets_near_float64_limits(tiny_bert, cache_dir, texts, monkeypatch):
    X = texts[0][:16]
    y = np.array([1e308, -1e308] * 8)
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(y.std())  # what a naive standardisation would divide by
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*overflow", category=RuntimeWarning)
        reg = FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, y)
    assert np.isfinite(reg.target_scale_) and reg.target_scale_ == pytest.approx(1e308)
    assert reg.target_mean_ == 0.0
    assert all(np.isfinite(v).all() for v in reg.trainable_state_.values())
    monkeypatch.setattr(reg, "_raw_outputs", lambda X: np.full((len(X), 1), 5.0, dtype=np.float32))
    with pytest.warns(SkllmWarning, match="exceed float64's range"):
        assert np.isinf(reg.predict(["a"])).all()


@pytest.mark.parametrize("factor", [1e308, 1e40])
def test_a_warm_start_whose_targets_overflow_at_the_kept_scale_is_refused_by_name(tiny_bert, cache_dir, texts, factor):
    # 1e40: finite in float64, past float32's range (and its squared errors long before).
    X, y = texts[0][:8], np.linspace(0.0, 1.0, 8)
    reg = FineTuneRegressor(**head(tiny_bert, cache_dir), warm_start=True).fit(X, y)
    with pytest.raises(ValueError, match=r"warm_start=True keeps the previous fit's target scale"):
        reg.fit(X, y * factor)


def test_regressor_constant_and_bad_targets(tiny_bert, cache_dir, texts):
    X = texts[0][:8]
    reg = FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, [4.0] * 8)
    assert reg.target_scale_ == 1.0 and reg.target_mean_ == 4.0
    with pytest.raises(ValueError, match=r"one number per text, but y has shape \(8, 2\)"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, np.ones((8, 2)))
    with pytest.raises(ValueError, match="empty X"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit([], [])
    # Dates and durations are not numbers (numpy would read them as nanosecond counts).
    with pytest.raises(ValueError, match=r"y holds durations; .* to seconds"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, pd.to_timedelta(np.arange(8), unit="s"))
    with pytest.raises(ValueError, match="y must be a sequence of numbers"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, (float(v) for v in range(8)))
    with pytest.raises(ValueError, match="y must be numeric for a regressor: int too large"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, [10**400] + [1] * 7)
    with pytest.raises(ValueError, match=r"y must hold one number per text; position 2 holds \[1\.0, 2\.0\]\."):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, [0.5, 1.0, [1.0, 2.0]] + [1.0] * 5)  # numpy: ragged


def test_a_max_length_that_leaves_no_room_for_text_is_refused(tiny_bert, cache_dir, texts):
    from skllm import TransformerEmbedder

    with pytest.raises(ValueError, match=r"max_length=2 leaves no room for text: .* adds 2 special token"):
        FineTuneClassifier(**head(tiny_bert, cache_dir, max_length=2)).fit(*texts)
    with pytest.raises(ValueError, match=r"max_length=2 leaves no room for text"):
        TransformerEmbedder(tiny_bert, max_length=2, cache_dir=cache_dir).fit()
    FineTuneClassifier(**head(tiny_bert, cache_dir, max_length=3, epochs=1, verbose=True)).fit(*texts)


def test_warm_start_compares_whole_methods_not_reprs_cut_at_700_characters():
    from skllm import BottleneckAdapter
    from skllm._methods import same_method

    modules = [rf"layer\.{i}\.output\.dense$" for i in range(60)]
    other = [*modules[:30], r"layer\.99\.output\.dense$", *modules[31:]]
    a, b = BottleneckAdapter(target_modules=modules), BottleneckAdapter(target_modules=other)
    assert repr(a) == repr(b)  # scikit-learn elides the middle
    assert not same_method(a, b) and same_method(a, BottleneckAdapter(target_modules=list(modules)))
    # A list of names is the same setting as a tuple of them.
    assert same_method(BottleneckAdapter(target_modules=tuple(modules)), a)


def test_a_method_by_name_set_to_its_defaults_after_fit_is_no_change(tiny_bert, cache_dir, texts):
    from skllm import LoRA

    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, method="lora", epochs=1)).fit(*texts)
    expected = clf.predict_proba(texts[0])
    clf.set_params(method__r=LoRA().r)  # "lora" becomes LoRA(), the method it was fitted with
    np.testing.assert_array_equal(clf.predict_proba(texts[0]), expected)
    with pytest.raises(ValueError, match=r"fitted with method='lora', set to method=LoRA\(.*r=2,"):
        clf.set_params(method__r=2).predict(texts[0])


def test_partial_fine_tuning_checks_a_batch_size_set_after_fit(tiny_bert, cache_dir, texts):
    from skllm import PartialFineTuning

    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, method=PartialFineTuning(n_last_layers=1), epochs=1))
    clf.fit(*texts).set_params(batch_size=None)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        clf.predict(texts[0][:2])


def test_regressor_takes_a_sparse_column_of_targets(tiny_bert, cache_dir, texts):
    X, y = texts[0][:8], np.arange(8.0)
    dense = FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, y).predict(X)
    # A column: read as its values, with scikit-learn's warning (its regressors give it too).
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        sparse = FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, sp.csr_matrix(y[:, None])).predict(X)
    np.testing.assert_allclose(sparse, dense)
    assert sparse.shape == (8,)


def test_classifier_scores_are_float64_as_scikit_learns(tiny_bert, cache_dir, texts):
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(*texts)
    assert clf.predict_proba(texts[0]).dtype == np.float64 and clf.decision_function(texts[0]).dtype == np.float64
    assert clf.classes_[clf.predict_proba(texts[0]).argmax(axis=1)].tolist() == clf.predict(texts[0]).tolist()


def test_a_regressor_validation_split_of_one_text_is_refused_as_r2_needs_two(tiny_bert, cache_dir, texts):
    X, y = texts[0][:10], np.arange(10.0)
    early = {"early_stopping": True, "validation_fraction": 0.1, "epochs": 20}
    with pytest.raises(ValueError, match=r"validation_fraction=0.1 of 10 texts holds out 1, and the .* needs 2"):
        FineTuneRegressor(**head(tiny_bert, cache_dir, **early)).fit(X, y)
    reg = FineTuneRegressor(**head(tiny_bert, cache_dir, **{**early, "validation_fraction": 0.2})).fit(X, y)
    assert np.isfinite(reg.validation_scores_).all()


@pytest.mark.parametrize("estimator", ["classifier", "generator", "reward"])
def test_a_validation_fraction_that_leaves_nothing_to_train_on_is_named(
    tiny_bert, tiny_llama, cache_dir, texts, estimator
):
    X, y = texts[0][:8], texts[1][:8]
    early = {"early_stopping": True, "validation_fraction": 0.9, "epochs": 1, "random_state": 0}
    rows = "texts" if estimator == "classifier" else "pairs"
    with pytest.raises(ValueError, match=rf"validation_fraction=0.9 of 8 {rows} holds out 8 and leaves none"):
        if estimator == "classifier":
            FineTuneClassifier(tiny_bert, method="head", cache_dir=cache_dir, **early).fit(X, y)
        elif estimator == "generator":
            FineTuneGenerator(tiny_llama, method="lora", max_new_tokens=2, **early).fit(X, X)
        else:
            pairs = pd.DataFrame({"prompt": "p", "chosen": X[:4] * 2, "rejected": X[4:] * 2})
            RewardModel(tiny_bert, method="head", cache_dir=cache_dir, **early).fit(pairs)


def test_int_and_float_labels_that_float64_makes_one_are_refused(tiny_bert, cache_dir):
    # Two classes: 2**53 + 1 (an int) and 2.0**53; as float64 both are 2**53 (classes_ held it twice).
    y = [2**53 + 1, 2.0**53, 2**53 + 1, 2.0**53]
    with pytest.raises(ValueError, match=r"The labels 9007199254740992.0 and 9007199254740993 in y are one number"):
        FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(["a", "b", "c", "d"], y)
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, epochs=1)).fit(["a", "b", "c", "d"], [1, 2.0, 1, 2.0])
    assert clf.classes_.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("y", [[1 + 1j, 2, 1, 2], np.array([1.0, 2.0, 1.0, 2.0]) + 0j])
@pytest.mark.parametrize("estimator", [FineTuneClassifier, FineTuneRegressor])
def test_complex_targets_are_refused(tiny_bert, cache_dir, y, estimator):
    allowed = "labels of one type" if estimator is FineTuneClassifier else "real numbers"
    with pytest.raises(ValueError, match=rf"y holds complex numbers, e.g. \(1\+[01]j\) at position 0; .* {allowed}"):
        estimator(**head(tiny_bert, cache_dir)).fit(["a", "b", "c", "d"], y)


@pytest.mark.parametrize("weight, shown", [(-1.0, "-1.0"), (0, "0"), (np.inf, "inf"), (np.nan, "nan"), ("2", "'2'")])
def test_class_weights_must_be_positive_finite_numbers(tiny_bert, cache_dir, texts, weight, shown):
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight={"pos": 2.0, "neg": weight}))
    with pytest.raises(ValueError, match=rf"class_weight\['neg'\] must be a number > 0, got {shown}\."):
        clf.fit(*texts)


@pytest.mark.parametrize("weights, named", [({"neg": 1e-50}, r"'neg'\]=1e-50 "), ({"pos": 1e39}, r"'neg'\]=1 ")])
def test_class_weights_too_far_apart_for_float32_are_refused_naming_the_class(
    tiny_bert, cache_dir, texts, weights, named
):
    # They used to pass, and the loss of a batch of the tiny class's texts was 0 / 0 (a NaN, blamed on the data).
    with pytest.raises(ValueError, match=rf"class_weight\[{named}is too small next to the largest"):
        FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight=weights, batch_size=1)).fit(*texts)


def test_the_loss_weights_are_the_class_weights_up_to_a_factor(tiny_bert, cache_dir, texts):
    # Weights 10x each give the same model (the loss scales them to a mean of 1 over the training texts).
    # (The linear probe's regularisation does see their scale: a random start here.)
    params = dict(head_init="random")
    a = FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight={"pos": 2.0, "neg": 1.0}, **params)).fit(*texts)
    b = FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight={"pos": 20.0, "neg": 10.0}, **params))
    b.fit(*texts)
    np.testing.assert_allclose(a.predict_proba(texts[0]), b.predict_proba(texts[0]), atol=1e-5)


def test_class_weights_count_in_batches_of_one_class(tiny_bert, cache_dir, texts):
    # torch's weighted mean divided a batch's loss by its weights: in a batch of one class (every batch at
    # batch_size=1, and many where grouping by length meets classes of different lengths) they cancelled.
    params = dict(head_init="random", batch_size=1, epochs=1)
    plain = FineTuneClassifier(**head(tiny_bert, cache_dir, **params)).fit(*texts)
    weighted = FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight={"pos": 50.0, "neg": 1.0}, **params))
    weighted.fit(*texts)
    positive = list(weighted.classes_).index("pos")
    assert (weighted.predict_proba(texts[0])[:, positive] > plain.predict_proba(texts[0])[:, positive] + 0.01).all()


def test_class_weight_may_name_a_label_y_lacks_where_every_label_of_y_has_one(tiny_bert, cache_dir, texts):
    # As scikit-learn's: a fold of a cross-validation may lack a class the weights name.
    weights = {"pos": 2.0, "neg": 1.0, "neutral": 3.0}
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight=weights, epochs=1)).fit(*texts)
    assert clf.classes_.tolist() == ["neg", "pos"]
    with pytest.raises(
        ValueError, match=r"names labels that are not in y \('neutral'\) and gives no weight to labels "
    ):
        FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight={"pos": 2.0, "neutral": 3.0})).fit(*texts)


def test_class_weight_given_as_an_array_and_y_as_a_generator_are_named(tiny_bert, cache_dir, texts):
    X, y = texts
    with pytest.raises(ValueError, match=r"class_weight must be None, 'balanced' or a dict, got array"):
        FineTuneClassifier(**head(tiny_bert, cache_dir, class_weight=np.array([1.0, 2.0]))).fit(X, y)
    with pytest.raises(ValueError, match="y must be a sequence of labels, one per text, got <generator"):
        FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(X, (label for label in y))


def test_cls_pooling_on_a_decoder_is_refused(tiny_llama, cache_dir, texts):
    from skllm import TransformerEmbedder

    message = r"pooling='cls' reads the first token, and .* is a decoder"
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(tiny_llama, method="lora", pooling="cls", cache_dir=cache_dir).fit(*texts)
    with pytest.raises(ValueError, match=message):
        TransformerEmbedder(tiny_llama, pooling="cls", cache_dir=cache_dir).fit()


def test_adapter_target_modules_that_break_the_model_are_named(tiny_bert, cache_dir, texts):
    from skllm import BottleneckAdapter

    method = BottleneckAdapter(target_modules=r"attention\.self\.dropout$")
    with pytest.raises(ValueError, match=r"BottleneckAdapter\(target_modules=.*\) adapts .* no longer runs"):
        FineTuneClassifier(tiny_bert, method=method, epochs=1, cache_dir=cache_dir).fit(*texts)


@pytest.mark.parametrize(
    "method, message",
    [
        ("LoRA(target_modules=('query', 5))", r"non-empty tuple of non-empty str \(module names\), got \('query', 5\)"),
        ("LoRA(target_modules=())", "non-empty tuple of non-empty str"),
        ("LoRA(target_modules='(')", r"target_modules entry '\(' is not a regular expression"),
        ("BottleneckAdapter(target_modules=[1])", r"non-empty str \(module names\), got \[1\]"),
        ("BottleneckAdapter(target_modules=('(',))", r"target_modules entry '\(' is not a regular expression"),
    ],
)
def test_target_modules_entries_are_checked_before_anything_loads(method, message):
    from skllm import BottleneckAdapter, LoRA

    method = eval(method, {"LoRA": LoRA, "BottleneckAdapter": BottleneckAdapter})
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier("/no/such/model", method=method).fit(["a", "b"], ["x", "y"])


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("cache_dir_value", [123, ["a"]])
def test_cache_dir_is_validated_the_same_for_every_method(tiny_bert, method, cache_dir_value, texts):
    with pytest.raises(ValueError, match=r"cache_dir must be 'auto', None or a folder path"):
        FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir_value).fit(*texts)


# -- one method contract -------------------------------------------------------------------


def test_the_estimator_knows_no_method_by_name():
    code = [f for n, f in vars(_finetune._FineTuneBase).items() if inspect.isfunction(f) and n != "__init__"]
    code += [FineTuneClassifier.fit, FineTuneRegressor.fit, FineTuneRegressor.predict]
    source = "".join(inspect.getsource(f) for f in code)
    for name in METHODS:
        assert f'"{name}"' not in source, name
    for name, cls in METHODS.items():
        assert cls.name == name and issubclass(cls, FineTuningMethod)


class BitFit(FineTuningMethod):
    """Train only the backbone's biases (Ben Zaken et al., 2022): a method in one class."""

    name = "bitfit"
    default_learning_rate = 1e-2

    def build(self, backbone):
        from skllm._methods._encoders import PlainEncoder

        for name, p in backbone.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
        return PlainEncoder(backbone)


def test_a_new_method_is_one_class_and_one_registry_line(tiny_bert, texts, cache_dir, monkeypatch):
    monkeypatch.setitem(METHODS, "bitfit", BitFit)
    clf = FineTuneClassifier(tiny_bert, method="bitfit", epochs=2, random_state=0, cache_dir=cache_dir).fit(*texts)
    trained = {n for n in clf.trainable_state_ if not n.startswith("head.")}
    assert trained and all(n.endswith(".bias") for n in trained)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(texts[0]), clf.predict_proba(texts[0]), atol=1e-6)


# -- restoring -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "head"])
def test_restore_requires_every_trained_tensor(tiny_bert, texts, cache_dir, method):
    clf = FineTuneClassifier(tiny_bert, method=method, epochs=1, random_state=0, cache_dir=cache_dir).fit(*texts)
    blob = pickle.dumps(clf)
    missing = pickle.loads(blob)
    dropped = sorted(missing.trainable_state_)[0]
    del missing.trainable_state_[dropped]
    with pytest.raises(RuntimeError, match=r"1 trained tensor\(s\) missing"):
        missing.predict(texts[0])
    extra = pickle.loads(blob)
    extra.trainable_state_["encoder.surplus"] = np.zeros(3, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"1 unexpected \['encoder.surplus'\]"):
        extra.predict(texts[0])
    assert pickle.loads(blob).predict(texts[0]).shape == (len(texts[0]),)


# -- training loop -------------------------------------------------------------------------


def test_learning_rate_schedule_is_linear_warmup_then_decay(tiny_bert, texts, cache_dir, monkeypatch):
    seen = []
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    params = head(tiny_bert, cache_dir, epochs=5, batch_size=8, learning_rate=0.1, warmup_ratio=0.2)
    FineTuneClassifier(**params).fit(*texts)
    total = 5 * len(texts[0]) // 8
    warmup = int(0.2 * total)
    expected = [0.1 * (s / warmup if s < warmup else (total - s) / (total - warmup)) for s in range(total)]
    np.testing.assert_allclose(seen, expected, atol=1e-12)


def test_early_stopping_restores_the_best_epoch(tiny_bert, texts, cache_dir, monkeypatch):
    clones, training = [], []
    real_clone, real_train = torch.Tensor.clone, _finetune._FineTuneBase._train

    def clone(self, *args, **kwargs):
        if training:
            clones.append(self.numel())
        return real_clone(self, *args, **kwargs)

    def train(self, *args, **kwargs):
        training.append(True)
        try:
            return real_train(self, *args, **kwargs)
        finally:
            training.clear()

    monkeypatch.setattr(torch.Tensor, "clone", clone)
    monkeypatch.setattr(_finetune._FineTuneBase, "_train", train)
    X, y = texts
    params = {"epochs": 6, "early_stopping": True, "validation_fraction": 0.25, "n_iter_no_change": 3}
    clf = FineTuneClassifier(tiny_bert, method="lora", random_state=0, cache_dir=cache_dir, **params).fit(X, y)
    monkeypatch.undo()
    # The same split as fit: the restored weights score the best validation accuracy.
    seed = int(check_random_state(0).randint(np.iinfo(np.int32).max))
    encoded = np.unique(y, return_inverse=True)[1]
    _, valid = train_test_split(np.arange(len(X)), test_size=0.25, random_state=seed, stratify=encoded)
    accuracy = float((clf.predict([X[i] for i in valid]) == np.asarray(y)[valid]).mean())
    assert accuracy == clf.best_validation_score_ == max(clf.validation_scores_)
    # Snapshots hold the trained tensors only, never the frozen backbone.
    per_snapshot = sum(v.size for v in clf.trainable_state_.values())
    assert sum(clones) <= per_snapshot * clf.n_iter_


def test_float16_uses_a_grad_scaler_only_on_cuda(tiny_bert, texts, cache_dir, monkeypatch):
    made = []
    real = torch.amp.GradScaler

    def recording(*args, **kwargs):
        scaler = real(*args, **kwargs)
        made.append((args, kwargs.get("enabled"), scaler.is_enabled()))
        return scaler

    monkeypatch.setattr(torch.amp, "GradScaler", recording)
    with pytest.warns(Warning, match="float16"):
        FineTuneClassifier(**head(tiny_bert, cache_dir, dtype="float16", device="cpu")).fit(*texts)
    assert made == [(("cpu",), False, False)]  # float16 falls back to float32 on the CPU


# -- the GPU check script ------------------------------------------------------------------


def test_gpu_check_without_cuda_says_so_and_passes():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CUDA is not available" in result.stdout and "torch " in result.stdout


# -- random_state ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 1.5, "3", float("nan"), 2**40, True])
def test_bad_random_state_is_named_at_fit(tiny_bert, tiny_llama, cache_dir, value):
    from skllm import FewShotClassifier, FewShotGenerator, FineTuneGenerator, PreferenceTuner

    message = r"random_state must be None, an integer in \[0, 2\*\*32 - 1\] or a numpy.random.RandomState, got"
    X, y = ["good", "bad", "fine", "awful"], ["pos", "neg", "pos", "neg"]
    fits = [
        lambda: FineTuneClassifier(**head(tiny_bert, cache_dir, random_state=value)).fit(X, y),
        lambda: FineTuneRegressor(**head(tiny_bert, cache_dir, random_state=value)).fit(X, [0.0, 1.0, 0.5, 2.0]),
        lambda: FewShotClassifier(tiny_llama, cache_dir=cache_dir, random_state=value).fit(X, y),
        lambda: FewShotGenerator(tiny_llama, cache_dir=cache_dir, random_state=value).fit(X, y),
        lambda: PreferenceTuner(
            lambda p, c: [0.0] * len(c), FineTuneGenerator(tiny_llama, cache_dir=cache_dir), random_state=value
        ).fit(X),
    ]
    for fit in fits:
        with pytest.raises(ValueError, match=message):
            fit()


def test_random_state_accepts_none_int_and_random_state():
    from skllm._validation import check_random_state_param

    for value in (None, 0, 2**32 - 1, np.int64(7), np.random.RandomState(0)):
        check_random_state_param(value)


# -- unordered inputs -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dict", "set"])
def test_y_as_a_dict_or_set_is_refused_naming_its_type(tiny_bert, cache_dir, kind):
    X = ["good", "bad", "fine", "awful"]
    labels = ["pos", "neg", "pos", "neg"]
    y = dict(enumerate(labels)) if kind == "dict" else set(labels)
    for method in ("head", "lora"):
        with pytest.raises(TypeError, match=rf"FineTuneClassifier expected y to be an ordered sequence.*got a {kind}"):
            FineTuneClassifier(**head(tiny_bert, cache_dir, method=method)).fit(X, y)
    with pytest.raises(TypeError, match=rf"FineTuneRegressor expected y .*got a {kind}"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(X, {0: 1.0} if kind == "dict" else {1.0})
    with pytest.raises(TypeError, match=rf"expected X to be an ordered sequence.*got a {kind}"):
        FineTuneClassifier(**head(tiny_bert, cache_dir)).fit(dict(enumerate(X)) if kind == "dict" else set(X), labels)


# -- labels of mixed types and odd containers, wherever labels are read ---------------------


def test_prompt_classifiers_refuse_labels_of_mixed_types_rather_than_merge_them():
    from skllm._targets import plain_labels, unique_labels

    # True == 1: a set would keep whichever came first, and classes_ would change type with the row order.
    for y in ([True, False, 1, 0], [1, 0, True, False], ["x", 1, "y"]):
        with pytest.raises(ValueError, match="y mixes label types"):
            unique_labels(y)
    assert plain_labels(sp.csr_matrix([[1], [0], [1]])) == [1, 0, 1]  # a sparse single column is read as its values


def test_zero_shot_classes_of_mixed_types_are_refused(tiny_llama):
    from skllm import ZeroShotClassifier

    with pytest.raises(ValueError, match=r"classes mixes label types \(bool True, number 2\)"):
        ZeroShotClassifier(tiny_llama, classes=[True, 2]).fit(["a", "b"])


@pytest.mark.parametrize("y", [["1", 1, "1", 1, "a", "a"], np.array(["x", 1] * 3, dtype=object), ["x", True] * 3])
def test_label_encoded_classifier_refuses_labels_of_mixed_types(y):
    from sklearn.linear_model import LogisticRegression

    from skllm import LabelEncodedClassifier

    with pytest.raises(ValueError, match="y mixes label types"):
        LabelEncodedClassifier(LogisticRegression()).fit(np.arange(6.0).reshape(-1, 1), y)


def test_label_encoded_classifier_gives_class_weight_keyed_by_labels_to_their_codes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skllm import LabelEncodedClassifier

    # Labels 1 and 2: the weight of label 1 went to code 1, which is label 2, and the model leant the other way.
    X, y = np.array([[0.0], [0.2], [0.8], [1.0]] * 3), np.array([1, 1, 2, 2] * 3)
    heavy = LogisticRegression(C=0.01, class_weight={1: 1000.0})
    plain = heavy.fit(X, y).predict(X)
    assert (plain == 1).all()
    wrapped = LabelEncodedClassifier(heavy).fit(X, y)
    np.testing.assert_array_equal(wrapped.predict(X), plain)
    assert wrapped.estimator_.class_weight == {0: 1000.0} and heavy.class_weight == {1: 1000.0}
    nested = LabelEncodedClassifier(make_pipeline(StandardScaler(), heavy)).fit(X, y)
    assert nested.estimator_.get_params()["logisticregression__class_weight"] == {0: 1000.0}
    with pytest.raises(
        ValueError, match=r"names labels that are not classes of y, \[3\], and leaves the classes \[2\]"
    ):
        LabelEncodedClassifier(LogisticRegression(class_weight={1: 1.0, 3: 2.0})).fit(X, y)
    # A weight for a class this y lacks (a fold without a rare class), every class weighted: as scikit-learn.
    extra = LabelEncodedClassifier(LogisticRegression(class_weight={1: 1.0, 2: 3.0, 3: 2.0})).fit(X, y)
    assert extra.estimator_.class_weight == {0: 1.0, 1: 3.0}


def test_a_sparse_indicator_with_a_cell_given_twice_is_refused_not_summed_to_2():
    from skllm._targets import _multilabel_indicator

    twice = sp.coo_matrix(([1, 1, 1, 1], ([0, 0, 1, 2], [0, 0, 1, 1])), shape=(3, 2))
    with pytest.raises(ValueError, match="with 2 at row 0, column 0"):
        _multilabel_indicator(twice, 3, "FineTuneClassifier")


def test_a_missing_regression_target_in_a_list_is_named_by_position():
    from skllm._targets import _numeric_targets

    with pytest.raises(ValueError, match=r"missing label\(s\) .* at positions \[1\]"):
        _numeric_targets([1.0, pd.NA, 3.0], 3, "FineTuneRegressor")


def test_a_single_number_as_y_is_refused_asking_for_one_per_text(tiny_bert, cache_dir, texts):
    with pytest.raises(ValueError, match=r"y as one number per text \(a list or 1-D array\), got the single value 3.0"):
        FineTuneRegressor(**head(tiny_bert, cache_dir)).fit(texts[0][:4], 3.0)


def test_a_class_of_one_text_is_trained_on_never_only_held_out_for_early_stopping():
    from sklearn.model_selection import train_test_split

    from skllm._splits import validation_split

    rows, stratify = np.arange(12), np.array([0] * 9 + [1, 2, 2])  # class 1 has one text
    for seed in range(100):
        train, valid = validation_split(rows, 0.25, seed, stratify)
        assert 9 in train and len(valid) == 3, seed  # a plain split held it out 1 time in 4
        assert sorted([*train, *valid]) == rows.tolist()
    stratifiable = np.array([0] * 8 + [1] * 4)  # unchanged where every class can be stratified
    for part, expected in zip(
        validation_split(rows, 0.25, 3, stratifiable),
        train_test_split(rows, test_size=0.25, random_state=3, stratify=stratifiable),
    ):
        np.testing.assert_array_equal(part, expected)


@pytest.mark.parametrize(
    "params", [{"method__r": 2}, {"method": "full"}, {"pooling": "cls"}, {"max_length": 8}, {"dtype": "bfloat16"}]
)
def test_network_settings_set_after_fit_are_refused_by_name_not_ignored(tiny_bert, cache_dir, texts, params):
    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, method="lora", epochs=1)).fit(*texts)
    proba = clf.predict_proba(texts[0])
    name = next(iter(params)).split("__")[0]
    original = copy.deepcopy(clf.get_params(deep=False)[name])
    clf.set_params(**params)
    with pytest.raises(ValueError, match=rf"fitted with {name}=.*take effect at the next fit"):
        clf.predict(texts[0])
    clf.set_params(**{name: original})
    np.testing.assert_array_equal(clf.predict_proba(texts[0]), proba)  # set back: as fitted


@pytest.mark.parametrize("method", ["lora", "adapter", "prefix"])
def test_loading_a_fitted_model_leaves_the_users_random_state_alone(tiny_bert, cache_dir, texts, method):
    import torch

    clf = FineTuneClassifier(**head(tiny_bert, cache_dir, method=method, epochs=1)).fit(*texts)
    restored = pickle.loads(pickle.dumps(clf))
    torch.manual_seed(0)
    restored.predict(texts[0][:2])  # rebuilds the network
    drawn = torch.rand(1).item()
    torch.manual_seed(0)
    assert drawn == torch.rand(1).item()


ALTERED = [("target_scale_", np.nan), ("target_scale_", 0.0), ("target_mean_", np.inf)]


@pytest.mark.parametrize(("name", "value"), ALTERED)
def test_an_altered_target_scale_is_refused_on_loading(tiny_bert, texts, cache_dir, name, value):
    X, labels = texts
    reg = FineTuneRegressor(**head(tiny_bert, cache_dir, epochs=1)).fit(X, [float(v == "pos") for v in labels])
    state = reg.__getstate__()
    state[name] = value  # NaN predicted NaN for every row
    with pytest.raises(ValueError, match=rf"The saved {name} must be a finite number .* altered or damaged"):
        FineTuneRegressor.__new__(FineTuneRegressor).__setstate__(state)
    pickle.loads(pickle.dumps(reg)).predict(X[:2])


def test_lora_target_modules_that_match_nothing_name_the_models_linear_layers(tiny_bert, cache_dir, texts):
    from skllm import LoRA

    # peft matches a string as a regular expression against a layer's whole name: "dense" matches none.
    with pytest.raises(ValueError, match=r"names of its linear layers \(dense, key, query, value\).*r'\.\*\\\.dense'"):
        FineTuneClassifier(**head(tiny_bert, cache_dir, method=LoRA(target_modules="dense"))).fit(*texts)
    fitted = FineTuneClassifier(**head(tiny_bert, cache_dir, method=LoRA(target_modules=r".*\.dense"), epochs=1))
    assert fitted.fit(*texts).n_trainable_params_ > 0
