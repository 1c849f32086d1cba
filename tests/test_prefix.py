"""Prefix tuning through peft: padding, positions, what the prefix changes, the peft release it needs."""

import pytest
import torch

from skllm import PrefixTuning, _architecture, _models
from skllm._methods import _prefix
from skllm._tokens import pad_batch, tokenize

TEXTS = ["great film and a fun story", "awful"]


def _network(model_dir, **method):
    backbone, tokenizer = _models.load_backbone(_models.resolve_model(model_dir), torch.device("cpu"))
    method = {"n_prefix_tokens": 3, "projection_size": 8, **method}
    network = PrefixTuning(**method).build_network(backbone, 2, "mean").eval()
    return backbone, tokenizer, network.encoder


def _batch(tokenizer, texts):
    ids, _ = tokenize(tokenizer, texts, 16)
    return pad_batch(ids, list(range(len(texts))), tokenizer.pad_token_id or 0, torch.device("cpu"))


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_a_padded_text_gives_what_it_gives_alone_and_the_prefix_changes_it(request, fixture):
    backbone, tokenizer, encoder = _network(request.getfixturevalue(fixture))
    input_ids, mask = _batch(tokenizer, TEXTS)
    short, short_mask = _batch(tokenizer, TEXTS[1:])
    n = short.shape[1]
    assert n < input_ids.shape[1]  # the second text is padded in the batch
    with torch.no_grad():
        padded = encoder(input_ids, mask)
        alone = encoder(short, short_mask)
        plain = backbone(input_ids=short, attention_mask=short_mask).last_hidden_state
        encoder.extra.embedding.add_(1.0)
        other_prefix = encoder(short, short_mask)
    torch.testing.assert_close(padded[1, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert (alone - plain).abs().max() > 1e-3
    assert (other_prefix - alone).abs().max() > 1e-3


def test_with_grouped_query_attention_the_prefixes_are_keys_and_values_of_the_shared_heads(tiny_llama):
    from transformers import AutoConfig, LlamaModel

    config = AutoConfig.from_pretrained(tiny_llama)
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = 4, 1, 8
    torch.manual_seed(0)
    backbone = LlamaModel(config).eval()
    encoder = PrefixTuning(n_prefix_tokens=3, projection_size=8).build_network(backbone, 2, "last").eval().encoder
    assert encoder.extra.weight.shape == (3, 2 * 2 * 1 * 8)  # layers x (keys, values) x 1 head x 8
    input_ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        padded = encoder(input_ids, mask)
        alone = encoder(input_ids[1:, :2], mask[1:, :2])
        plain = backbone(input_ids=input_ids[1:, :2], attention_mask=mask[1:, :2]).last_hidden_state
    torch.testing.assert_close(padded[1, :2], alone[0], atol=1e-5, rtol=1e-5)
    assert (alone - plain).abs().max() > 1e-3


def test_the_text_keeps_its_positions_and_the_prefix_takes_none(tiny_bert):
    # BERT adds a learned vector per position: were the text placed after the prefix,
    # the vectors of positions n and on would change its output.
    _, tokenizer, encoder = _network(tiny_bert)
    input_ids, mask = _batch(tokenizer, TEXTS[:1])
    n = input_ids.shape[1]
    positions = encoder.model.embeddings.position_embeddings
    # The network's frozen weights are the loaded model's (frozen_copy): the layer changed here gets its own.
    positions.weight = torch.nn.Parameter(positions.weight.detach().clone(), requires_grad=False)
    with torch.no_grad():
        before = encoder(input_ids, mask)
        later = positions.weight[n:]
        later += torch.randn_like(later)
        after = encoder(input_ids, mask)
    torch.testing.assert_close(after, before)


def test_roberta_like_models_keep_their_positions_after_the_padding_index():
    # RoBERTa's position ids start at padding_idx + 1 (row padding_idx is zeros): the text must get
    # the ids it gets without a prefix, not 0 on.
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
        max_position_embeddings=20, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    backbone = RobertaModel(config).eval()
    encoder = PrefixTuning(n_prefix_tokens=3, projection_size=8).build_network(backbone, 2, "mean").eval().encoder
    seen = []
    hook = encoder.model.embeddings.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"]), with_kwargs=True
    )
    input_ids = torch.tensor([[0, 5, 6, 7, 2]])
    with torch.no_grad():
        encoder(input_ids, torch.ones_like(input_ids))
    hook.remove()
    own = encoder.model.embeddings.create_position_ids_from_input_ids(input_ids, config.pad_token_id)
    assert seen[0].tolist() == own.tolist() == [[2, 3, 4, 5, 6]]
    # A method pickled before this numbering (no build recorded) builds as then, from 0, and stays so.
    import pickle

    state = PrefixTuning(n_prefix_tokens=3, projection_size=8).__getstate__()
    del state["_build"]
    old = PrefixTuning.__new__(PrefixTuning)
    old.__setstate__(state)
    old = pickle.loads(pickle.dumps(old))
    encoder = old.build_network(backbone, 2, "mean").eval().encoder
    hook = encoder.model.embeddings.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["position_ids"]), with_kwargs=True
    )
    with torch.no_grad():
        encoder(input_ids, torch.ones_like(input_ids))
    hook.remove()
    assert seen[-1].tolist() == [[0, 1, 2, 3, 4]]
    # A warm start does not continue a network built as before into one built otherwise.
    from skllm._methods import same_method

    assert not same_method(PrefixTuning(n_prefix_tokens=3, projection_size=8), old)
    fresh = PrefixTuning(n_prefix_tokens=3, projection_size=8)
    assert same_method(fresh, pickle.loads(pickle.dumps(fresh)))


def test_a_model_without_a_position_limit_is_read_as_having_none():
    from types import SimpleNamespace

    xlnet_like = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=-1))
    assert _architecture.positions(xlnet_like, SimpleNamespace(model_max_length=512)) == 512


def _tiny(model_type, **extra):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(
        model_type, vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=20, max_position_embeddings=20, **extra,
    )  # fmt: skip
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


@pytest.mark.parametrize("model_type", ["albert", "mpnet"])
def test_a_model_that_takes_no_key_value_cache_is_refused_by_prefix_tuning(model_type):
    # peft's prefixes are a key/value cache: these models drop it, or fail once a batch is padded.
    with pytest.raises(ValueError, match=r"Prefix tuning cannot be applied to (Albert|MPNet)Model.*method='lora'"):
        PrefixTuning(n_prefix_tokens=3, projection_size=8).build_network(_tiny(model_type), 2, "mean")


@pytest.mark.parametrize("model_type, extra", [("albert", {"embedding_size": 8}), ("distilbert", {})])
def test_prompt_tuning_reads_the_input_embeddings_width(model_type, extra):
    # ALBERT's input embeddings are narrower than its hidden states; DistilBERT's config names its widths otherwise.
    from skllm import PromptTuning

    encoder = PromptTuning(n_virtual_tokens=2).build_network(_tiny(model_type, **extra), 2, "mean").eval().encoder
    out = encoder(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long))
    out.square().sum().backward()
    (virtual,) = [p for p in encoder.parameters() if p.requires_grad]
    assert out.shape == (1, 3, 16) and virtual.shape == (2, extra.get("embedding_size", 16))
    assert virtual.grad.abs().max() > 0  # the text's states depend on the virtual tokens


def test_the_prefixes_are_named_as_before_peft_fed_them(tiny_llama):
    # Models saved by earlier versions store these names (see tests/test_legacy.py).
    _, _, encoder = _network(tiny_llama, keep_projection=True)
    trained = {n for n, p in encoder.named_parameters() if p.requires_grad}
    mlp = {f"extra.mlp.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")}
    assert trained == {"extra.embedding", *mlp}
    # 2 layers x (keys, values) x 2 key/value heads x head size 16
    assert encoder.extra.weight.shape == (3, 2 * 2 * 2 * 16)


def test_an_old_peft_is_named_with_the_release_needed(monkeypatch):
    import peft

    monkeypatch.setattr(peft, "__version__", "0.18.1")
    with pytest.raises(ImportError, match=r"peft>=0\.19.*peft 0\.18\.1 is installed"):
        _prefix._peft()
