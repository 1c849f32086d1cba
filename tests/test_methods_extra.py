"""LoRA merged for prediction, prefixes kept without their MLP, Houlsby adapters, partial fine-tuning."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from skllm import (
    BottleneckAdapter,
    FineTuneClassifier,
    FineTuneGenerator,
    HeadTuning,
    LoRA,
    PartialFineTuning,
    PrefixTuning,
    _models,
)
from skllm._methods._encoders import FrozenLayers, PartialEncoder, transformer_blocks
from skllm._tokens import pad_batch, tokenize


@pytest.fixture(params=["tiny_bert", "tiny_llama"])
def backbone(request):
    return request.getfixturevalue(request.param)


def fit(model_dir, method, X, y, cache_dir, **kw):
    params = {"epochs": 2, "batch_size": 8, "random_state": 0, "cache_dir": cache_dir, **kw}
    return FineTuneClassifier(model_dir, method=method, **params).fit(X, y)


def loaded(model_dir):
    return _models.load_backbone(_models.resolve_model(model_dir), torch.device("cpu"))


def batch(tokenizer, texts):
    ids, _ = tokenize(tokenizer, texts, 16)
    return pad_batch(ids, list(range(len(texts))), tokenizer.pad_token_id or 0, torch.device("cpu"))


# -- LoRA merged into the weights for prediction ------------------------------------------


def test_merged_lora_predicts_the_same_without_the_low_rank_branch(tiny_bert, texts, cache_dir):
    X, y = texts
    merged = fit(tiny_bert, LoRA(r=2), X, y, cache_dir, learning_rate=1e-2)
    branch = fit(tiny_bert, LoRA(r=2, merge_for_inference=False), X, y, cache_dir, learning_rate=1e-2)
    np.testing.assert_allclose(merged.predict_proba(X), branch.predict_proba(X), atol=1e-5)
    assert not any("lora_" in n for n, _ in merged.network_.named_parameters())
    assert any("lora_" in n for n, _ in branch.network_.named_parameters())
    # What is stored is the adapter (and the output layer), taken before merging.
    assert merged.trainable_state_.keys() == branch.trainable_state_.keys()
    assert all("lora_" in n or n.startswith("head.") for n in merged.trainable_state_)
    for name, value in merged.trainable_state_.items():
        np.testing.assert_array_equal(value, branch.trainable_state_[name])
    restored = pickle.loads(pickle.dumps(merged))
    np.testing.assert_allclose(restored.predict_proba(X), merged.predict_proba(X), atol=1e-6)
    assert not any("lora_" in n for n, _ in restored.network_.named_parameters())


def test_merged_lora_warm_starts_from_the_adapter_and_tunes_in_a_grid_search(tiny_bert, texts, cache_dir):
    X, y = texts
    clf = fit(tiny_bert, LoRA(r=2), X, y, cache_dir, warm_start=True)
    first = {k: v.copy() for k, v in clf.trainable_state_.items()}
    clf.set_params(learning_rate=1e-12).fit(X, y)  # continues from the stored adapter: nothing moves
    for name, value in first.items():
        np.testing.assert_allclose(clf.trainable_state_[name], value, atol=1e-6)
    search = GridSearchCV(
        FineTuneClassifier(tiny_bert, method=LoRA(r=2), epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir),
        {"method__merge_for_inference": [True, False]},
        cv=2,
    ).fit(X, y)
    np.testing.assert_allclose(*search.cv_results_["mean_test_score"], atol=1e-9)


# -- Prefix tuning: the MLP only for training -----------------------------------------------


def test_prefixes_are_stored_without_their_mlp_and_predict_the_same(backbone, texts, cache_dir):
    X, y = texts
    method = {"n_prefix_tokens": 4, "projection_size": 8}
    compact = fit(backbone, PrefixTuning(**method), X, y, cache_dir)
    with_mlp = fit(backbone, PrefixTuning(**method, keep_projection=True), X, y, cache_dir)
    np.testing.assert_allclose(compact.predict_proba(X), with_mlp.predict_proba(X), atol=1e-5)
    # 2 layers x (keys, values) x 32 wide x 4 prefix tokens, and the output layer (32 x 2 + 2).
    prefixes = compact.trainable_state_["encoder.extra.embedding"]
    assert prefixes.shape == (4, 2 * 2 * 32)
    assert set(compact.trainable_state_) == {"encoder.extra.embedding", "head.layers.1.weight", "head.layers.1.bias"}
    assert compact.n_trainable_params_ == 4 * 2 * 2 * 32 + 66
    assert any(".mlp." in n for n in with_mlp.trainable_state_)
    blob = pickle.dumps(compact)
    assert len(blob) < len(pickle.dumps(with_mlp))
    np.testing.assert_allclose(pickle.loads(blob).predict_proba(X), compact.predict_proba(X), atol=1e-6)


def test_a_warm_start_trains_the_stored_prefixes_on(tiny_bert, texts, cache_dir):
    X, y = texts
    clf = fit(tiny_bert, PrefixTuning(n_prefix_tokens=4, projection_size=8), X, y, cache_dir, warm_start=True)
    first = {k: v.copy() for k, v in clf.trainable_state_.items()}
    clf.set_params(learning_rate=1e-12).fit(X, y)
    assert clf.trainable_state_.keys() == first.keys()
    for name, value in first.items():
        np.testing.assert_allclose(clf.trainable_state_[name], value, atol=1e-6)


def _pickled_before(method, added):
    """``method`` as unpickled from a version that did not have the parameter ``added``."""
    state = method.__getstate__()
    del state[added]
    old = type(method).__new__(type(method))
    old.__setstate__(state)
    return old


def test_methods_pickled_before_their_new_parameters_behave_as_they_did():
    assert _pickled_before(PrefixTuning(), "keep_projection").keep_projection is True  # the MLP was stored
    assert _pickled_before(BottleneckAdapter(), "variant").variant == "projection"
    old = _pickled_before(LoRA(r=4), "merge_for_inference")
    assert old.get_params()["merge_for_inference"] is True and repr(old) == "LoRA(r=4)"
    old = _pickled_before(_pickled_before(HeadTuning(), "residual"), "normalize")
    assert (old.residual, old.normalize) == (False, False)  # the plain MLP on raw features


def test_epochs_none_is_the_methods_default(tiny_bert, texts, cache_dir):
    X, y = texts
    head = FineTuneClassifier(tiny_bert, method="head", max_length=16, cache_dir=cache_dir, random_state=0).fit(X, y)
    assert head.epochs is None and len(head.loss_curve_) == HeadTuning.default_epochs == 10
    lora = FineTuneClassifier(tiny_bert, method="lora", max_length=16, cache_dir=cache_dir, random_state=0).fit(X, y)
    assert len(lora.loss_curve_) == LoRA.default_epochs == 3
    with pytest.raises(ValueError, match=r"epochs must be an integer >= 1 or None, got 0"):
        FineTuneClassifier(tiny_bert, epochs=0, cache_dir=cache_dir).fit(X, y)


# -- Bottleneck adapters: Houlsby et al. and the adapters on the projections -----------------


@pytest.mark.parametrize(
    "variant, follows, norms_train",
    [
        ("houlsby", ("output.dropout", "o_proj", "down_proj"), True),
        ("projection", ("output.dense", "o_proj", "down_proj"), False),
    ],
)
def test_adapter_variants_place_the_adapters_and_train_the_norms(backbone, variant, follows, norms_train):
    shared, tokenizer = loaded(backbone)
    network = BottleneckAdapter(variant=variant).build_network(shared, 2, "mean").eval()
    trained = [n for n, p in network.named_parameters() if p.requires_grad and not n.startswith("head.")]
    adapters = [n for n in trained if n.endswith(".down.weight")]
    assert len(adapters) == 2 * 2  # attention and feed-forward of 2 layers
    assert all(any(f"{place}.down.weight" in n for place in follows) for n in adapters), adapters
    norms = [n for n in trained if "norm" in n.lower()]
    assert bool(norms) is norms_train
    assert set(trained) == {n for n in trained if ".down." in n or ".up." in n} | set(norms)
    input_ids, mask = batch(tokenizer, ["great film and a fun story", "awful"])
    with torch.no_grad():  # ``up`` starts at zero: the adapted model starts as the backbone
        torch.testing.assert_close(
            network.encoder(input_ids, mask)[mask.bool()],
            shared(input_ids=input_ids, attention_mask=mask).last_hidden_state[mask.bool()],
        )


# -- Partial fine-tuning --------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2])
def test_last_blocks_fed_the_frozen_states_give_the_backbones_output(backbone, k):
    shared, tokenizer = loaded(backbone)
    blocks = transformer_blocks(shared)
    index = shared.config.num_hidden_layers - k
    input_ids, mask = batch(tokenizer, ["great film and a fun story", "awful", "loved it"])
    encoder = PartialEncoder(shared, blocks, index).eval()
    with torch.no_grad():
        plain = shared(input_ids=input_ids, attention_mask=mask).last_hidden_state
        split = encoder(FrozenLayers(shared, blocks, index)(input_ids, mask), mask)
    keep = mask.bool()
    torch.testing.assert_close(split[keep], plain[keep], atol=1e-5, rtol=1e-5)
    # The copy holds the trained blocks (and the small embedding layers), not the frozen ones.
    assert len(encoder.model.get_submodule(blocks)) == k
    trained = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    per_block = sum(p.numel() for p in shared.get_submodule(blocks)[0].parameters())
    final_norm = sum(p.numel() for p in getattr(shared, "norm", torch.nn.Identity()).parameters())
    assert trained == k * per_block + final_norm


def test_partial_runs_the_frozen_blocks_once_per_fit_and_caching_changes_nothing(tiny_bert, texts, cache_dir):
    X, y = texts
    shared, _ = loaded(tiny_bert)
    seen = []
    # Copies of the backbone's structure carry its hooks: this counts the texts through block 0.
    handle = shared.encoder.layer[0].register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    try:
        cached = fit(tiny_bert, PartialFineTuning(n_last_layers=1), X, y, cache_dir, epochs=3)
        once = sum(seen)
        seen.clear()
        uncached = fit(tiny_bert, PartialFineTuning(n_last_layers=1, cache_frozen=False), X, y, cache_dir, epochs=3)
        every_epoch = sum(seen)
    finally:
        handle.remove()
    assert once == len(X) and every_epoch >= 3 * len(X)
    for name, value in cached.trainable_state_.items():
        np.testing.assert_allclose(uncached.trainable_state_[name], value, atol=1e-5)
    np.testing.assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-5)
    assert set(cached.trainable_state_) == {n for n, p in cached.network_.named_parameters() if p.requires_grad}
    restored = pickle.loads(pickle.dumps(cached))
    np.testing.assert_allclose(restored.predict_proba(X), cached.predict_proba(X), atol=1e-6)


def test_partial_tunes_its_number_of_layers_in_a_grid_search(backbone, texts, cache_dir):
    X, y = texts
    clf = FineTuneClassifier(
        backbone, method=PartialFineTuning(), epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir
    )
    search = GridSearchCV(clf, {"method__n_last_layers": [1, 2]}, cv=2).fit(X, y)
    assert [p["method__n_last_layers"] for p in search.cv_results_["params"]] == [1, 2]
    best = search.best_estimator_
    assert best.method_.n_last_layers == search.best_params_["method__n_last_layers"]
    assert set(best.predict(X)) <= {"pos", "neg"}


@pytest.mark.parametrize(
    "method, message",
    [
        (PartialFineTuning(n_last_layers=0), r"n_last_layers must be an integer >= 1, got 0"),
        (PartialFineTuning(n_last_layers=3), r"n_last_layers must be between 1 and 2, the number of .* got 3"),
        (PartialFineTuning(cache_frozen="yes"), r"cache_frozen must be True or False, got 'yes'"),
        (LoRA(merge_for_inference=None), r"merge_for_inference must be True or False, got None"),
        (PrefixTuning(keep_projection=1), r"keep_projection must be True or False, got 1"),
        (HeadTuning(residual="yes"), r"residual must be True or False, got 'yes'"),
        (HeadTuning(normalize=None), r"normalize must be True or False, got None"),
        (BottleneckAdapter(variant="pfeiffer"), r"variant='pfeiffer' is not supported; use one of \['houlsby'"),
    ],
)
def test_bad_method_parameters_get_clear_errors(tiny_bert, texts, cache_dir, method, message):
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(tiny_bert, method=method, epochs=1, cache_dir=cache_dir).fit(*texts)


def test_partial_is_compared_and_refused_for_generation(tiny_llama):
    from skllm._compare import ALL_METHODS, FINETUNE_METHODS

    assert "partial" in FINETUNE_METHODS and "partial" in ALL_METHODS
    with pytest.raises(ValueError, match="method='partial' does not apply to generation"):
        FineTuneGenerator(tiny_llama, method="partial").fit(["a"], ["b"])


def test_a_new_method_is_one_file_and_one_registry_line(tiny_bert, tiny_llama, texts, cache_dir, monkeypatch):
    """BitFit (tests/toy_method/bitfit.py) registered with one line reaches every place a method reaches."""
    from pathlib import Path

    from skllm import FineTuneGenerator, compare_methods
    from skllm._methods import METHODS

    from helpers import doc_list_problems

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "toy_method"))
    from bitfit import BitFit

    monkeypatch.setitem(METHODS, BitFit.name, BitFit)  # the registry line

    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method="bitfit", batch_size=8, random_state=0, cache_dir=cache_dir).fit(X, y)
    assert clf.n_iter_ == BitFit.default_epochs and clf.predict(X[:3]).shape == (3,)
    assert all(
        name.endswith("bias") or "norm" in name.lower() or name.startswith("head.") for name in clf.trainable_state_
    )

    gen = FineTuneGenerator(tiny_llama, method="bitfit", epochs=1, max_new_tokens=3, random_state=0).fit(X[:8], y[:8])
    assert len(gen.predict(X[:2])) == 2

    table = compare_methods(
        X, y, methods=["bitfit"], cv=2, encoder=tiny_bert, epochs=1, time_budget=600, cache_dir=cache_dir
    ).set_index("method")
    assert table.loc["bitfit", "status"] == "computed", table.loc["bitfit", "error"]

    # The docs must now list it: the check names every page that misses it.
    problems = [p for p in doc_list_problems(methods=dict(METHODS)) if "bitfit" in p]
    assert any(p.startswith("README.md") for p in problems)


@pytest.mark.parametrize(
    "model_type, extra",
    [
        # Block i's attention (sliding window or full) is config.layer_types[i], read by its number in the loop.
        ("gemma2", {"num_key_value_heads": 1, "head_dim": 8, "sliding_window": 4}),
        # A convolution applied after block 0 only.
        ("deberta-v2", {"conv_kernel_size": 3, "relative_attention": True, "position_buckets": 8}),
        # Input embeddings narrower than the hidden states.
        ("electra", {"embedding_size": 8}),
    ],
)
def test_partial_fine_tuning_starts_as_the_backbone_of_any_layout(model_type, extra):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(
        model_type, vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=32, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    backbone = AutoModel.from_config(config).eval()
    input_ids = torch.arange(3, 15).reshape(1, 12)  # longer than the sliding window
    mask = torch.ones_like(input_ids)
    with torch.no_grad():
        expected = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state
        for cache_frozen in (False, True):
            method = PartialFineTuning(n_last_layers=2, cache_frozen=cache_frozen)
            encoder = method.build_network(backbone, 2, "mean").eval().encoder
            if cache_frozen:  # the states entering the kept blocks, as the cache holds them
                blocks, index = method._split(backbone)
                hidden = FrozenLayers(backbone, blocks, index)(input_ids, mask)
            torch.testing.assert_close(encoder(hidden if cache_frozen else input_ids, mask), expected)
        # A method pickled before (no build recorded) builds its blocks as then, so saved models predict as then.
        state = PartialFineTuning(n_last_layers=2, cache_frozen=False).__getstate__()
        del state["_build"]
        old = PartialFineTuning.__new__(PartialFineTuning)
        old.__setstate__(state)
        built_then = old.build_network(backbone, 2, "mean").eval().encoder(input_ids, mask)
        assert (model_type == "electra") == torch.allclose(built_then, expected)  # ELECTRA failed then
