"""Models saved by an earlier layout of the package still load and predict the same.

The pickles in tests/legacy/ were written by skllm 0.1 (private class paths such
as ``skllm._embed.TransformerEmbedder``) with tests/legacy/make_legacy_models.py.
"""

import json
import pickle
import pickletools
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest

import skllm

ROOT = Path(__file__).resolve().parent.parent
LEGACY = ROOT / "tests" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())
NAMES = [name for name in EXPECTED if name not in ("skllm", "queries")]


def _outputs(model, queries):
    if isinstance(model, skllm.TransformerEmbedder):
        return model.transform(queries)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(queries)
    return model.predict(queries)


@pytest.mark.parametrize("name", NAMES)
def test_model_pickled_by_skllm_0_1_loads_and_predicts_the_same(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the pickles name their tiny backbones by a relative path
    assert EXPECTED["skllm"] == "0.1.0"
    model = joblib.load(LEGACY / f"{name}.joblib")
    out = _outputs(model, EXPECTED["queries"])
    expected = EXPECTED[name]
    if isinstance(expected[0], str):
        # Since these were written, an answer cut inside a character leaves that character out ("K\ufffd" is "K").
        assert out.tolist() == [e.rstrip("\ufffd").rstrip() for e in expected]
    else:
        np.testing.assert_allclose(out, np.asarray(expected), rtol=1e-4, atol=1e-5)


def _globals(data):
    """Module names of the classes a pickle refers to."""
    modules, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            modules.add(strings[-2])
        elif opcode.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
    return modules


@pytest.mark.parametrize("name", NAMES)
def test_resaved_models_record_only_public_class_paths(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    model = joblib.load(LEGACY / f"{name}.joblib")
    modules = _globals(pickle.dumps(model))
    assert "skllm" in modules
    assert not [m for m in modules if m.startswith("skllm.")], modules


PREVIOUS = LEGACY / "previous"
PREVIOUS_EXPECTED = json.loads((PREVIOUS / "expected.json").read_text())


@pytest.mark.parametrize("name", [name for name in PREVIOUS_EXPECTED if name != "queries"])
def test_model_pickled_before_the_training_engine_loads_and_predicts_the_same(name, monkeypatch):
    # Written by tests/legacy/make_previous_models.py: parameters added since (early
    # stopping of the generator, the tuner's schedule, embedder) and renamed attributes
    # (n_features_) must not stop them loading, predicting, cloning or refitting.
    import warnings

    from sklearn.base import clone

    monkeypatch.chdir(ROOT)
    model = joblib.load(PREVIOUS / f"{name}.joblib")
    queries = PREVIOUS_EXPECTED["queries"]
    if hasattr(model, "predict_proba"):
        out = model.predict_proba(queries)
    elif isinstance(model, skllm.RewardModel):
        out = model.predict([("the film was", q) for q in queries])
    else:
        out = model.predict(queries)
    expected = PREVIOUS_EXPECTED[name]
    if isinstance(expected[0], str):
        # Since these were written, an answer cut inside a character leaves that character out ("K\ufffd" is "K").
        assert out.tolist() == [e.rstrip("\ufffd").rstrip() for e in expected]
    else:
        np.testing.assert_allclose(out, np.asarray(expected), rtol=1e-4, atol=1e-5)
    params = clone(model).get_params()
    if isinstance(model, skllm.FineTuneGenerator):
        assert params["early_stopping"] is False and params["weight_decay"] == 0.0  # as it was fitted
    if isinstance(model, skllm.PreferenceTuner):
        assert (params["weight_decay"], params["warmup_ratio"]) == (0.0, 0.0)
    if isinstance(model, skllm.FineTuneClassifier):
        with pytest.warns(FutureWarning, match="renamed embedding_dim_"):
            assert model.n_features_ == model.embedding_dim_
    if isinstance(model, skllm.FewShotClassifier):
        assert params["embedder"] is None
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            model.predict(queries[:1])  # predicting with a saved model warns of nothing


def test_prefix_model_pickled_before_peft_fed_the_prefixes_predicts_the_same(monkeypatch):
    # Written by tests/legacy/make_prefix_hook_model.py with skllm's own attention hook.
    monkeypatch.chdir(ROOT)
    expected = json.loads((LEGACY / "finetune_prefix_bert_hook.json").read_text())
    model = joblib.load(LEGACY / "finetune_prefix_bert_hook.joblib")
    assert set(model.trainable_state_) == {"encoder.extra.embedding", "head.layers.1.weight", "head.layers.1.bias"}
    out = model.predict_proba(expected["queries"])
    np.testing.assert_allclose(out, np.asarray(expected["predict_proba"]), rtol=1e-4, atol=1e-5)


def test_prefix_tuned_roberta_pickled_before_its_positions_were_kept_predicts_as_trained(monkeypatch):
    # Written by tests/legacy/make_prefix_roberta_model.py at 7e12c83: the text numbered from 0, not
    # from RoBERTa's padding_idx + 1. The method records no build, and builds as then.
    monkeypatch.chdir(ROOT)
    expected = json.loads((LEGACY / "finetune_prefix_roberta.json").read_text())
    model = joblib.load(LEGACY / "finetune_prefix_roberta.joblib")
    assert not model.method_.builds_as(2)
    np.testing.assert_allclose(
        model.predict_proba(expected["queries"]), np.asarray(expected["predict_proba"]), rtol=1e-4, atol=1e-5
    )
    # Built as now (the model's own numbering, which it was not trained with), it would predict otherwise.
    import pickle

    model.method_._build = 2
    rebuilt = pickle.loads(pickle.dumps(model))
    assert not np.allclose(rebuilt.predict_proba(expected["queries"]), expected["predict_proba"], atol=1e-4)


def test_a_model_saved_by_another_skllm_version_warns_on_load(tiny_bert, monkeypatch):
    import pickle

    from skllm import TransformerEmbedder, _live
    from skllm.exceptions import InconsistentVersionWarning

    embedder = TransformerEmbedder(tiny_bert, cache_dir=None).fit()
    monkeypatch.setattr(_live, "__version__", "0.0.1")  # saved by an older release
    saved = pickle.dumps(embedder)
    monkeypatch.undo()
    with pytest.warns(InconsistentVersionWarning, match="TransformerEmbedder from skllm version 0.0.1 when using"):
        loaded = pickle.loads(saved)
    assert not hasattr(loaded, "_skllm_version")  # not a fitted attribute of the estimator
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        pickle.loads(pickle.dumps(embedder))  # the same version: no warning
