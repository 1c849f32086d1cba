"""Every estimator of the common contract, in a pipeline, saved with skops: plain data, trusted types only.

The models are fitted once; one fresh process loads every skops and joblib file
and predicts, so that nothing relies on the state of the process that saved them.
"""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from test_common import CASES, _in_pipeline, _output, case_data

import skllm
from skllm._methods import METHODS

sio = pytest.importorskip("skops.io")

ROOT = Path(__file__).resolve().parent.parent

# Types that are not skllm's, which a user checks and trusts by hand: the model a
# LabelEncodedClassifier wraps, and the tuner's reward function (code, imported by name).
EXTRA_TRUSTED = {
    "LabelEncodedClassifier(XGBClassifier)": ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier"],
    "PreferenceTuner(ppo)": ["test_common._shorter"],
}
# What a saved file may be made of: values, containers, numpy arrays, bytes (the
# xgboost booster's own JSON format), and functions and classes named by their path.
DATA_LOADERS = {
    "ObjectNode",
    "DictNode",
    "ListNode",
    "TupleNode",
    "JsonNode",
    "TypeNode",
    "NdArrayNode",
    "BytearrayNode",
    "FunctionNode",
}

# Run in a fresh interpreter: load each case's skops and joblib files, record whether
# the live state (model, network) was absent after loading, and the predictions.
LOAD_AND_PREDICT = """
import json, sys
import joblib, skops.io as sio
import skllm
from test_common import _output, case_data

folder = sys.argv[1]
plan = json.loads(open(folder + "/plan.json").read())
texts = tuple(plan["texts"])
results = {}
for name, (index, kind, extra) in plan["cases"].items():
    X, _ = case_data(kind, texts)
    model = sio.load(f"{folder}/{index}.skops", trusted=skllm.trusted_types() + extra)
    steps = [step for _, step in model.steps if getattr(step, "_live_attributes", ())]
    live_after_load = any(hasattr(step, a) for step in steps for a in step._live_attributes)
    results[name] = {
        "skops": _output(model, X).tolist(),
        "joblib": _output(joblib.load(f"{folder}/{index}.joblib"), X).tolist(),
        "live_after_load": live_after_load,
    }
open(folder + "/results.json", "w").write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def saved(tiny_bert, tiny_llama, texts, tmp_path_factory):
    """name -> (skops file, joblib file, in-process output, fresh-process results) for every case."""
    from chat_servers import FakeChat

    folder = tmp_path_factory.mktemp("skops")
    chat = FakeChat()
    paths = {"tiny_bert": tiny_bert, "tiny_llama": tiny_llama, "chat": chat.url}
    fitted, plan = {}, {}
    try:
        for index, (name, (factory, data, _)) in enumerate(CASES.items()):
            try:
                estimator = factory(paths, folder / f"case{index}")
            except pytest.skip.Exception:  # xgboost not installed
                continue
            X, y = case_data(data, texts)
            pipe = _in_pipeline(estimator, isinstance(X, list) or hasattr(X, "columns")).fit(X, y)
            sio.dump(pipe, folder / f"{index}.skops")
            joblib.dump(pipe, folder / f"{index}.joblib")
            fitted[name] = (folder / f"{index}.skops", folder / f"{index}.joblib", _output(pipe, X))
            plan[name] = (index, data, EXTRA_TRUSTED.get(name, []))
        (folder / "plan.json").write_text(json.dumps({"texts": list(texts), "cases": plan}))
        subprocess.run(
            [sys.executable, "-c", LOAD_AND_PREDICT, str(folder)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "tests"), "HF_HUB_OFFLINE": "1"},
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"loading in a fresh process failed:\n{exc.stderr[-4000:]}")
    finally:
        chat.close()
    results = json.loads((folder / "results.json").read_text())
    return {name: (*fitted[name], results[name]) for name in fitted}


def _case(saved, name):
    if name not in saved:
        pytest.skip(f"{name} needs an optional package")
    return saved[name]


def _nodes(node):
    """Every node of a skops schema, depth first."""
    if isinstance(node, dict):
        if "__loader__" in node:
            yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _schema(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json")), archive.namelist()


def _trained_arrays(schema):
    """The .npy file of each trainable_state_ tensor, by tensor name."""
    for node in _nodes(schema):
        content = node.get("content")
        if node["__loader__"] == "DictNode" and isinstance(content, dict) and "trainable_state_" in content:
            return {name: array["file"] for name, array in content["trainable_state_"]["content"].items()}
    return {}


@pytest.mark.parametrize("name", list(CASES))
def test_skops_file_loaded_in_a_fresh_process_predicts_as_joblibs(saved, name):
    _, _, out, results = _case(saved, name)
    skops_out, joblib_out = np.asarray(results["skops"]), np.asarray(results["joblib"])
    if out.dtype == object:  # generated texts
        assert skops_out.tolist() == joblib_out.tolist() == out.tolist()
    else:
        np.testing.assert_allclose(skops_out, joblib_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(skops_out, out, rtol=1e-5, atol=1e-6)
    # As after joblib.load: the model is loaded by name on first use (if at all: embeddings
    # may come from the cache), not by loading the file.
    assert not results["live_after_load"]


@pytest.mark.parametrize("name", list(CASES))
def test_skops_file_holds_values_and_arrays_only(saved, name):
    path = _case(saved, name)[0]
    schema, entries = _schema(path)
    assert {node["__loader__"] for node in _nodes(schema)} <= DATA_LOADERS
    # .bin: bytes read as bytes (the booster's UBJSON), never unpickled.
    assert all(entry == "schema.json" or entry.endswith((".npy", ".bin")) for entry in entries)
    assert ("BytearrayNode" in str(schema)) == any(entry.endswith(".bin") for entry in entries)
    untrusted = set(sio.get_untrusted_types(file=path))
    assert untrusted - set(skllm.trusted_types()) == set(EXTRA_TRUSTED.get(name, []))
    for file in _trained_arrays(schema).values():  # the trained tensors are arrays, not lists
        assert file in entries


@pytest.mark.parametrize("name", list(CASES))
def test_skops_refuses_a_type_not_trusted(saved, name):
    path = _case(saved, name)[0]
    extra = EXTRA_TRUSTED.get(name, [])
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    own = f"skllm.{type(_estimator(sio.load(path, trusted=skllm.trusted_types() + extra))).__name__}"
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException, match=own):
        sio.load(path, trusted=[t for t in skllm.trusted_types() if t != own] + extra)


def _estimator(pipe):
    """The skllm step of a contract pipeline."""
    return next(step for _, step in pipe.steps if type(step).__module__ == "skllm")


def _replace_entry(path, entry, array):
    """A copy of the skops file at ``path`` with its ``entry`` (.npy) replaced by ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    altered = path.with_name(f"altered-{path.name}")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(altered, "w") as target:
        for item in source.infolist():
            target.writestr(item, buffer.getvalue() if item.filename == entry else source.read(item))
    return altered


TRAINED = ["FineTuneClassifier(lora)", "FineTuneRegressor(head)", "FineTuneGenerator(lora)", "RewardModel(lora)"]


@pytest.mark.parametrize("name", TRAINED)
def test_skops_file_with_an_array_of_another_size_is_refused_on_load(saved, name):
    path = _case(saved, name)[0]
    tensor, entry = next(iter(_trained_arrays(_schema(path)[0]).items()))
    with zipfile.ZipFile(path) as archive:
        array = np.load(io.BytesIO(archive.read(entry)))
    altered = _replace_entry(path, entry, np.zeros((array.shape[0] + 1, *array.shape[1:]), array.dtype))
    with pytest.raises(ValueError, match=r"trainable_state_ holds .* n_trainable_params_") as info:
        sio.load(altered, trusted=skllm.trusted_types())
    assert tensor in str(info.value)


@pytest.mark.parametrize("name", TRAINED)
def test_skops_file_with_an_array_of_another_shape_is_refused_on_first_use(saved, name, texts):
    path = _case(saved, name)[0]
    tensors = _trained_arrays(_schema(path)[0])
    with zipfile.ZipFile(path) as archive:
        arrays = {tensor: np.load(io.BytesIO(archive.read(entry))) for tensor, entry in tensors.items()}
    # Same number of values, another shape: the count checked on load matches.
    tensor, array = next((t, a) for t, a in arrays.items() if a.ndim == 2 and a.shape[0] != a.shape[1])
    altered = _replace_entry(path, tensors[tensor], array.T.copy())
    model = sio.load(altered, trusted=skllm.trusted_types())
    X, _ = case_data(CASES[name][1], texts)
    shapes = rf"\({array.shape[1]}, {array.shape[0]}\).*\({array.shape[0]}, {array.shape[1]}\)"
    with pytest.raises(RuntimeError, match=rf"trainable_state_\['{tensor}'\] has shape {shapes}"):
        _output(model, X)


@pytest.mark.parametrize("name", TRAINED)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_saved_non_finite_weights_are_refused_on_first_use(saved, name, value, texts):
    skops_file, joblib_file, _, _ = _case(saved, name)
    tensor, entry = list(_trained_arrays(_schema(skops_file)[0]).items())[-1]
    with zipfile.ZipFile(skops_file) as archive:
        array = np.load(io.BytesIO(archive.read(entry)))
    altered = _replace_entry(skops_file, entry, np.full_like(array, value))
    from_skops = sio.load(altered, trusted=skllm.trusted_types())  # same sizes and shapes
    from_joblib = joblib.load(joblib_file)
    _estimator(from_joblib).trainable_state_[tensor][...] = value
    X, _ = case_data(CASES[name][1], texts)
    for model in from_skops, from_joblib:
        with pytest.raises(ValueError, match=rf"trainable_state_\['{tensor}'\] holds NaN or infinite values"):
            _output(model, X)


def test_tuner_history_loads_as_the_same_dataframe(saved):
    import pandas as pd

    skops_file, joblib_file, _, _ = _case(saved, "PreferenceTuner(ppo)")
    trusted = skllm.trusted_types() + EXTRA_TRUSTED["PreferenceTuner(ppo)"]
    history = _estimator(sio.load(skops_file, trusted=trusted)).history_
    assert len(history) > 0
    pd.testing.assert_frame_equal(history, _estimator(joblib.load(joblib_file)).history_)


def test_trusted_types_name_every_public_estimator_class():
    from sklearn.base import BaseEstimator

    classes = [getattr(skllm, name) for name in skllm.__all__ if isinstance(getattr(skllm, name), type)]
    public = {f"skllm.{c.__name__}" for c in classes if issubclass(c, BaseEstimator)}
    abstract = {"skllm.FineTuningMethod", "skllm.ExampleSelection"}  # their subclasses are saved, not they
    assert public - abstract <= set(skllm.trusted_types())


def test_api_key_is_left_out_and_its_placeholder_is_trusted(tmp_path):
    chat = skllm.OpenAIChat("m", api_key="sk-not-saved", base_url="http://127.0.0.1:9")
    sio.dump(chat, tmp_path / "chat.skops")
    assert b"sk-not-saved" not in (tmp_path / "chat.skops").read_bytes()
    loaded = sio.load(tmp_path / "chat.skops", trusted=skllm.trusted_types())
    assert loaded.get_params()["base_url"] == "http://127.0.0.1:9"


def test_a_path_parameter_loads_with_the_trusted_types(tiny_bert, tmp_path):
    embedder = skllm.TransformerEmbedder(Path(tiny_bert), cache_dir=tmp_path / "cache").fit()
    sio.dump(embedder, tmp_path / "e.skops")
    loaded = sio.load(tmp_path / "e.skops", trusted=skllm.trusted_types())
    assert loaded.cache_dir == tmp_path / "cache"
    np.testing.assert_array_equal(loaded.transform(["great film"]), embedder.transform(["great film"]))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_saves_its_trained_tensors_as_arrays(method, tiny_bert, texts, tmp_path):
    clf = skllm.FineTuneClassifier(tiny_bert, method=method, epochs=1, random_state=0, cache_dir=None)
    clf.fit(texts[0][:16], texts[1][:16])
    sio.dump(clf, tmp_path / "m.skops")
    schema, entries = _schema(tmp_path / "m.skops")
    assert {node["__loader__"] for node in _nodes(schema)} <= DATA_LOADERS
    assert set(_trained_arrays(schema)) == set(clf.trainable_state_)
    assert set(_trained_arrays(schema).values()) <= set(entries)
    loaded = sio.load(tmp_path / "m.skops", trusted=skllm.trusted_types())
    np.testing.assert_allclose(loaded.predict_proba(texts[0]), clf.predict_proba(texts[0]), atol=1e-6)


def test_dict_parameters_keyed_by_bools_come_back_whole(tiny_llama, tiny_bert, tmp_path, cache_dir):
    # skops 0.16 alone loads a saved False key as True: {False: "awful", True: "great"} came back {True: "great"}.
    X = ["great film", "awful film", "loved it", "hated it"] * 2
    y = np.array([True, False, True, False] * 2)
    words = {False: "awful", True: "great"}
    zero = skllm.ZeroShotClassifier(tiny_llama, label_words=words, calibration=None, cache_dir=cache_dir).fit(X, y)
    weighted = skllm.FineTuneClassifier(
        tiny_bert, method="head", class_weight={False: 5.0, True: 1.0}, epochs=1, max_length=16, random_state=0
    ).fit(X, y)
    for model, name, value in [(zero, "label_words", words), (weighted, "class_weight", {False: 5.0, True: 1.0})]:
        sio.dump(model, tmp_path / "model.skops")
        loaded = sio.load(tmp_path / "model.skops", trusted=skllm.trusted_types())
        assert loaded.get_params()[name] == value
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
        assert joblib.load(_dumped(model, tmp_path)).get_params()[name] == value


def _dumped(model, tmp_path):
    joblib.dump(model, tmp_path / "model.joblib")
    return tmp_path / "model.joblib"
