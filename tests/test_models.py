"""Finding models by name: local folders, revisions."""

import warnings

import numpy as np
import pytest

from skllm import TransformerEmbedder
from skllm._models import resolve_model


def test_revision_with_a_local_folder_is_an_error_not_ignored(tiny_bert):
    with pytest.raises(ValueError, match=r"revision='v2'.*local folder"):
        resolve_model(tiny_bert, "v2")
    with pytest.raises(ValueError, match="local folder"):
        TransformerEmbedder(tiny_bert, revision="v2", cache_dir=None).fit()
    assert resolve_model(tiny_bert).origin == "local"


NOT_CAUSAL = r"is not a causal \(decoder\) language model"


def _load_causal(folder):
    from skllm._models import load_backbone

    return load_backbone(resolve_model(folder), "cpu", kind="causal-lm")


def test_an_encoder_is_refused_as_a_causal_lm_even_with_its_masked_lm_head(tiny_bert, tmp_path):
    # BertLMHeadModel is in transformers' causal-LM mapping: loading succeeds, with a random head.
    with pytest.raises(ValueError, match=NOT_CAUSAL + r".*bert attention is bidirectional"):
        _load_causal(tiny_bert)
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    # With its trained masked-LM head the checkpoint is complete, and still not a causal LM.
    BertForMaskedLM(BertConfig.from_pretrained(tiny_bert)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=NOT_CAUSAL + r".*bidirectional"):
        _load_causal(str(tmp_path))


def test_a_causal_lm_checkpoint_without_its_output_layer_is_refused(tiny_llama, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    config = LlamaConfig.from_pretrained(tiny_llama)
    config.tie_word_embeddings = False  # an output layer of its own, which the checkpoint lacks
    LlamaModel(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=NOT_CAUSAL + r".*no output layer \(lm_head.weight"):
        _load_causal(str(tmp_path))
    model, _ = _load_causal(tiny_llama)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_an_encoder_decoder_is_refused_as_a_causal_lm(tiny_llama, tmp_path):
    import shutil

    from transformers import T5Config

    shutil.copytree(tiny_llama, tmp_path, dirs_exist_ok=True)  # its tokenizer
    T5Config(vocab_size=64, d_model=8, d_ff=8, num_layers=1, num_heads=1, d_kv=4).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=NOT_CAUSAL + r".*encoder-decoder \(t5\)"):
        _load_causal(str(tmp_path))


def test_a_local_folder_without_config_or_tokenizer_files_is_refused_by_name(tiny_bert, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"model_name='.*empty' is a folder without config\.json.*tokenizer files"):
        resolve_model(str(empty))
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{tiny_bert}/{name}", no_tokenizer / name)
    with pytest.raises(ValueError, match=r"no-tokenizer' is a folder without tokenizer files \(one of tokenizer\.json"):
        TransformerEmbedder(str(no_tokenizer), cache_dir=None).fit()


def test_folders_under_home_are_shown_from_home(monkeypatch, tmp_path):
    from pathlib import Path

    from skllm._models import _home_relative

    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert _home_relative(tmp_path / ".cache" / "skllm" / "models") == str(Path("~/.cache/skllm/models"))
    assert _home_relative("/elsewhere/models") == "/elsewhere/models"


def _save_again_with_other_weights(folder, cls):
    """Save the model of ``folder`` into the same folder with every weight changed (as a user re-saving it)."""
    import torch

    model = cls.from_pretrained(folder)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)


def test_a_model_saved_again_in_place_is_loaded_again_and_cached_under_its_new_files(tiny_bert, tmp_path):
    import shutil

    import numpy as np
    from transformers import BertModel

    folder, cache = str(tmp_path / "model"), str(tmp_path / "cache")
    shutil.copytree(tiny_bert, folder)
    X = ["great film", "awful film"]
    before = TransformerEmbedder(folder, cache_dir=cache).fit().transform(X)
    _save_again_with_other_weights(folder, BertModel)
    after = TransformerEmbedder(folder, cache_dir=cache).fit().transform(X)
    assert not np.allclose(after, before, atol=1e-3)  # not the weights loaded before the change
    from skllm._models import clear_model_registry

    clear_model_registry()  # a fresh load of the new files gives what was cached under them
    np.testing.assert_allclose(TransformerEmbedder(folder, cache_dir=None).fit().transform(X), after, atol=1e-5)


def _fitted_on_a_copy(kind, tiny_bert, tiny_llama, folder, texts):
    """An estimator of ``kind`` fitted on a copy of a tiny model in ``folder``; the model's class; its warning."""
    import shutil

    from transformers import BertModel, LlamaForCausalLM

    from skllm import FineTuneClassifier, FineTuneGenerator, ZeroShotClassifier

    shutil.copytree(tiny_llama if kind != "fine-tuned" else tiny_bert, folder)
    if kind == "fine-tuned":
        model = FineTuneClassifier(folder, method="head", epochs=1, cache_dir=None, random_state=0).fit(*texts)
        return model, BertModel, "frozen weights now come from the new files"
    if kind == "generator":
        model = FineTuneGenerator(folder, method="lora", epochs=1, max_new_tokens=2, random_state=0)
        return model.fit(texts[0][:4], texts[0][:4]), LlamaForCausalLM, "frozen weights now come from the new files"
    model = ZeroShotClassifier(folder, cache_dir=None).fit(*texts)
    return model, LlamaForCausalLM, "calibration prior\\): fit it again"


@pytest.mark.parametrize("kind", ["fine-tuned", "generator", "prompted"])
def test_an_unpickled_model_whose_files_changed_warns(tiny_bert, tiny_llama, tmp_path, texts, kind):
    import pickle

    folder = str(tmp_path / "model")
    model, cls, message = _fitted_on_a_copy(kind, tiny_bert, tiny_llama, folder, texts)
    saved = pickle.dumps(model)
    _save_again_with_other_weights(folder, cls)
    with pytest.warns(UserWarning, match=rf"files of model .* changed since this model was fitted .*{message}"):
        pickle.loads(saved).predict(texts[0][:2])


def test_a_pipeline_saved_again_after_its_files_changed_still_warns(tiny_bert, tmp_path, texts):
    # The logistic regression was fitted on the first files' embeddings, however often it is saved.
    import pickle
    import shutil

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from transformers import BertModel

    folder = str(tmp_path / "model")
    shutil.copytree(tiny_bert, folder)
    pipe = make_pipeline(TransformerEmbedder(folder, cache_dir=str(tmp_path / "cache")), LogisticRegression())
    saved = pickle.dumps(pipe.fit(*texts))
    _save_again_with_other_weights(folder, BertModel)
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"files of model .* changed since this model was fitted"):
            loaded = pickle.loads(saved)
            loaded.predict(texts[0][:2])
        saved = pickle.dumps(loaded)
    assert loaded[0].model_identity_ != loaded[0]._fitted_identity  # the cache keys name the files in use


def test_partial_fine_tuning_warns_when_its_frozen_blocks_would_run_from_changed_files(tiny_bert, tmp_path, texts):
    # It runs its frozen blocks from the files at every predict (the others hold their network).
    import shutil

    from transformers import BertModel

    from skllm import FineTuneClassifier

    folder = str(tmp_path / "model")
    shutil.copytree(tiny_bert, folder)
    model = FineTuneClassifier(folder, method="partial", epochs=1, cache_dir=None, random_state=0).fit(*texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(texts[0][:2])
    _save_again_with_other_weights(folder, BertModel)
    with pytest.warns(UserWarning, match=r"files of model .* changed since this model was fitted .*frozen blocks now"):
        model.predict(texts[0][:2])


@pytest.mark.parametrize("kind", ["fine-tuned", "generator", "prompted"])
def test_an_unpickled_model_whose_folder_is_gone_names_it(tiny_bert, tiny_llama, tmp_path, texts, kind, monkeypatch):
    import pickle
    import shutil

    monkeypatch.chdir(tmp_path)  # the folder is named relative to here, as a user's "models/enc"
    model, _, _ = _fitted_on_a_copy(kind, tiny_bert, tiny_llama, "enc", texts)
    before = model.predict(texts[0][:2])
    saved = pickle.dumps(model)
    shutil.move("enc", "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"'enc' was a local folder .* or set model_name to where"):
        pickle.loads(saved).predict(texts[0][:2])
    # Told where the folder is now (the same files), the model predicts as it did.
    np.testing.assert_array_equal(pickle.loads(saved).set_params(model_name="elsewhere").predict(texts[0][:2]), before)
    # Named by its absolute path, as a folder usually is: a FileNotFoundError too (and a ValueError at fit).
    model, _, _ = _fitted_on_a_copy(kind, tiny_bert, tiny_llama, str(tmp_path / "abs"), texts)
    saved = pickle.dumps(model)
    shutil.rmtree(tmp_path / "abs")
    with pytest.raises(FileNotFoundError, match=r"abs' looks like a path, but no such folder exists"):
        pickle.loads(saved).predict(texts[0][:2])


def _model_folder_with(tiny_bert, folder, state_dict):
    import shutil

    from safetensors.torch import save_file

    shutil.copytree(tiny_bert, folder)
    save_file(state_dict, f"{folder}/model.safetensors", metadata={"format": "pt"})
    return str(folder)


def test_a_backbone_checkpoint_missing_weights_is_refused_not_filled_at_random(tiny_bert, tmp_path):
    from transformers import BertModel

    weights = BertModel.from_pretrained(tiny_bert).state_dict()
    # As saved from a peft wrapper: every key prefixed, so no weight is found under its own name.
    prefixed = {f"base_model.model.{k}": v for k, v in weights.items()}
    wrapped = _model_folder_with(tiny_bert, tmp_path / "wrapped", prefixed)
    with pytest.raises(ValueError, match=r"lacks \d+ of the network's weights \(embeddings\..*merge_and_unload"):
        TransformerEmbedder(wrapped, cache_dir=None).fit()
    # The pooler is not read (pooling is over the hidden states): a checkpoint without it loads.
    no_pooler = {k: v for k, v in weights.items() if not k.startswith("pooler.")}
    TransformerEmbedder(_model_folder_with(tiny_bert, tmp_path / "no-pooler", no_pooler), cache_dir=None).fit()


def test_damaged_model_files_are_named_not_reported_from_deep_inside(tiny_bert, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "cut")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(OSError, match=r"model .*cut' in .* could not be read: .*damaged or cut short"):
        TransformerEmbedder(str(folder), cache_dir=None).fit()
    shutil.copy(tiny_bert + "/model.safetensors", folder)
    (folder / "config.json").write_text('{"model_type": "bert", ')  # the local folder is there: no Hub hint
    with pytest.raises(OSError, match=r"A file of the folder is missing, damaged or cut short") as error:
        TransformerEmbedder(str(folder), cache_dir=None).fit()
    assert "Hub id" not in str(error.value)


def test_a_model_folder_under_home_can_be_named_with_a_tilde(tiny_bert, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_bert, tmp_path / "models" / "tiny")
    monkeypatch.setenv("HOME", str(tmp_path))
    source = resolve_model("~/models/tiny")
    assert source.origin == "local" and source.location == str(tmp_path / "models" / "tiny")


def test_a_hub_snapshot_holding_only_the_configuration_is_not_a_cached_model(tiny_bert, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--acme--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copy(f"{tiny_bert}/config.json", snapshot)  # as AutoConfig.from_pretrained leaves it
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("acme/tiny").origin == "hub"  # asked of the Hub, which downloads the weights
    shutil.copy(f"{tiny_bert}/model.safetensors", snapshot)
    assert resolve_model("acme/tiny").origin == "hub-cache"


def test_a_hub_model_whose_main_moved_can_be_pinned_to_the_commit_it_was_fitted_on(
    tiny_bert, tmp_path, monkeypatch, texts
):
    import pickle
    import shutil

    import huggingface_hub.constants

    from skllm import FineTuneClassifier

    repo, fitted, newer = tmp_path / "hub" / "models--acme--tiny", "a" * 40, "b" * 40
    shutil.copytree(tiny_bert, repo / "snapshots" / fitted)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(fitted)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    clf = FineTuneClassifier("acme/tiny", method="head", epochs=1, cache_dir=None, random_state=0).fit(*texts)
    expected, saved = clf.predict_proba(texts[0][:4]), pickle.dumps(clf)
    _other_checkpoint(tiny_bert, repo / "snapshots" / newer)
    (repo / "refs" / "main").write_text(newer)  # a new commit of the model became main
    with pytest.warns(UserWarning, match=rf"changed since .* set revision='{fitted}'"):
        assert not np.allclose(pickle.loads(saved).predict_proba(texts[0][:4]), expected)
    pinned = pickle.loads(saved).set_params(revision=fitted)  # the snapshot fitted on, still in the cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pinned.predict_proba(texts[0][:4]), expected)
    with pytest.raises(ValueError, match="fitted with revision=None"):
        pickle.loads(saved).set_params(revision=newer).predict(texts[0][:2])


def _other_checkpoint(tiny_bert, folder):
    """The tiny BERT's files with every weight changed: a checkpoint of the same size, other numbers."""
    import shutil

    from transformers import BertModel

    shutil.copytree(tiny_bert, folder)
    _save_again_with_other_weights(str(folder), BertModel)
    return folder / "model.safetensors"


@pytest.mark.parametrize("how", ["replaced", "overwritten"])
def test_a_checkpoint_of_the_same_size_and_time_put_over_a_folder_is_noticed(tiny_bert, tmp_path, how):
    import os
    import shutil

    import numpy as np

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    X = ["great film", "awful film"]
    first = TransformerEmbedder(str(folder), cache_dir=None).fit()
    before = first.transform(X)
    weights, other = folder / "model.safetensors", _other_checkpoint(tiny_bert, tmp_path / "other")
    old = weights.stat()
    assert other.stat().st_size == old.st_size
    # As tar extracts an archived file (a new file, or written over the old one with --overwrite): with the
    # archived modification time, here the same whole second as the old file's.
    target = tmp_path / "extracted" if how == "replaced" else weights
    with open(target, "r+b" if how == "overwritten" else "wb") as fh:
        fh.write(other.read_bytes())
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    if how == "replaced":
        os.replace(target, weights)
    second = TransformerEmbedder(str(folder), cache_dir=None).fit()
    assert second.model_identity_ != first.model_identity_
    assert not np.allclose(second.transform(X), before, atol=1e-3)


def test_a_checkpoint_copied_in_place_over_a_loaded_model_leaves_it_as_loaded(tiny_bert, tmp_path):
    import shutil

    import numpy as np

    folder, cache = shutil.copytree(tiny_bert, tmp_path / "model"), str(tmp_path / "cache")
    embedder = TransformerEmbedder(str(folder), cache_dir=cache).fit()
    # cp writes into the file the loaded model was read from (same inode), while the model is in use.
    shutil.copyfile(_other_checkpoint(tiny_bert, tmp_path / "other"), folder / "model.safetensors")
    X = ["great film", "awful film"]
    expected = TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(X)  # the fitted checkpoint
    np.testing.assert_allclose(embedder.transform(X), expected, atol=1e-6)
    # What it wrote to the cache is what another folder holding the fitted checkpoint reads.
    again = TransformerEmbedder(tiny_bert, cache_dir=cache).fit()
    assert again.model_identity_ == embedder.model_identity_
    np.testing.assert_allclose(again.transform(X), expected, atol=1e-6)


def test_a_large_folder_is_identified_by_samples_of_its_weights_too(tmp_path, monkeypatch):
    # Over the hashing limit, sizes and modification times alone named two checkpoints of one architecture
    # alike where a build set every time alike: the cache then served the first one's vectors for the second.
    import os

    from skllm import _models

    monkeypatch.setattr(_models, "_HASH_LIMIT_BYTES", 0)
    rng = np.random.default_rng(0)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    identities = []
    for _ in range(2):
        weights.write_bytes(rng.bytes(3 << 20))
        os.utime(weights, ns=(0, 10**18))
        identities.append(_models._folder_fingerprint(folder))
    assert identities[0] != identities[1]
    assert _models._folder_fingerprint(folder) == identities[1]


def test_a_git_folder_in_the_path_above_the_model_is_not_left_out(tmp_path):
    # ".git" anywhere in the absolute path left every file out: two models under one identity.
    from skllm import _models

    identities = []
    for name in ("a", "b"):
        folder = tmp_path / ".git" / name
        (folder / ".git").mkdir(parents=True)
        (folder / "config.json").write_text(f'{{"name": "{name}"}}')
        (folder / ".git" / "HEAD").write_text(name)  # the model's own repository stays out
        identities.append(_models._folder_fingerprint(folder))
    assert identities[0] != identities[1]
    (tmp_path / ".git" / "b" / ".git" / "HEAD").write_text("changed")
    assert _models._folder_fingerprint(tmp_path / ".git" / "b") == identities[1]


def test_a_model_lacking_tokens_of_its_tokenizer_or_not_reading_text_is_refused_at_fit(tiny_bert, tmp_path):
    # Both were accepted at fit and failed inside torch at a text (the first only at a text with such a token).
    import shutil

    import torch
    from transformers import AutoTokenizer, ViTConfig, ViTModel

    added = tmp_path / "added"
    shutil.copytree(tiny_bert, added)
    tokenizer = AutoTokenizer.from_pretrained(added)
    tokenizer.add_tokens(["newword"])
    tokenizer.save_pretrained(added)
    with pytest.raises(ValueError, match=r"token ids up to \d+ \('newword'\), but the model's embedding table has"):
        TransformerEmbedder(added, cache_dir=None).fit()
    image = tmp_path / "image"
    torch.manual_seed(0)
    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ).save_pretrained(image)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(image)
    with pytest.raises(ValueError, match=r"\(ViTModel\) does not read text: it takes 'pixel_values', not token ids"):
        TransformerEmbedder(image, cache_dir=None).fit()


def test_text_models_without_a_plain_embedding_table_still_load(tmp_path):
    # CANINE reads characters (get_input_embeddings raises NotImplementedError): the check refused it.
    import torch
    from transformers import CanineConfig, CanineModel, CanineTokenizer

    folder = tmp_path / "canine"
    config = CanineConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, max_position_embeddings=256
    )
    torch.manual_seed(0)
    CanineModel(config).save_pretrained(folder)
    CanineTokenizer().save_pretrained(folder)
    assert TransformerEmbedder(str(folder), cache_dir=None, max_length=64).fit().transform(["a text"]).shape == (1, 32)


def test_an_identity_recorded_before_the_weight_samples_still_names_the_files(tmp_path, monkeypatch):
    # Folders over 2 GB were identified by sizes and times only: estimators fitted then must not see changed files.
    from skllm import _models

    monkeypatch.setattr(_models, "_HASH_LIMIT_BYTES", 0)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(1 << 20))
    source = _models.ModelSource("m", None, str(folder), "local")
    old = f"files:{_models._folder_fingerprint(folder, samples=False)}"
    assert old != _models.model_identity(source) and _models.names_the_files(old, source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _models.check_fitted_files(old, source, "m", "predictions differ.")
    assert not _models.names_the_files("files:" + "0" * 64, source)
