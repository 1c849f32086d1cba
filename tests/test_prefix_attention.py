"""Smoke test of the hook prefix tuning puts into transformers' attention registry."""

import sys

import pytest
import torch

from skllm import PrefixTuning, _models
from skllm._embed import pad_batch, tokenize
from skllm._methods import _prefix


def _attention_modules(model):
    return [m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "is_causal")]


@pytest.mark.parametrize("fixture", ["tiny_bert", "tiny_llama"])
def test_prefix_attention_matches_sdpa_without_prefix_and_follows_the_prefix(request, fixture):
    source = _models.resolve_model(request.getfixturevalue(fixture))
    backbone, tokenizer = _models.load_backbone(source, torch.device("cpu"))
    ids, _ = tokenize(tokenizer, ["great film and a fun story", "awful"], 16)
    input_ids, mask = pad_batch(ids, [0, 1], tokenizer.pad_token_id or 0, torch.device("cpu"))
    keep = mask.bool()
    network = PrefixTuning(n_prefix_tokens=3, projection_size=8).build_network(backbone, 2, "mean").eval()
    encoder = network.encoder
    attention = _attention_modules(encoder.model)
    assert attention and encoder.model.config._attn_implementation == _prefix.ATTENTION_NAME
    config = backbone.config
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = config.hidden_size // config.num_attention_heads
    empty = torch.zeros(kv_heads, 0, head_dim)

    with torch.no_grad():
        plain = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state
        for module in attention:  # prefix removed: the hook is plain SDPA
            module._skllm_prefix = None
        removed = encoder.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        for module in attention:  # zero-length prefix: nothing more to attend to
            module._skllm_prefix = lambda index: (empty, empty)
        zero_length = encoder.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        for module in attention:
            module._skllm_prefix = encoder.extra.layer
        prefixed = encoder(input_ids, mask)
        encoder.extra.embedding.add_(1.0)
        other_prefix = encoder(input_ids, mask)

    torch.testing.assert_close(removed[keep], plain[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(zero_length[keep], plain[keep], atol=1e-5, rtol=1e-5)
    assert (prefixed[keep] - plain[keep]).abs().max() > 1e-4
    assert (other_prefix[keep] - prefixed[keep]).abs().max() > 1e-4


def test_missing_transformers_internals_name_the_supported_range(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers.masking_utils", None)  # makes its import fail
    with pytest.raises(ImportError, match=r"masking_utils.*Supported: transformers>="):
        _prefix._internals()
