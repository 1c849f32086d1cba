"""Decoder layouts other than Llama's: their facts are read from the model, not assumed."""

import shutil
import warnings

import numpy as np
import pytest
import torch

from skllm import BottleneckAdapter, FineTuneClassifier, FineTuneGenerator, PreferenceTuner, TransformerEmbedder
from skllm._architecture import is_decoder, output_width


def _save(folder, model, tiny_llama):
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        source = f"{tiny_llama}/{name}"
        try:
            shutil.copy(source, folder / name)
        except FileNotFoundError:
            pass
    return str(folder)


@pytest.fixture(scope="module")
def tiny_opt_350m(tmp_path_factory, tiny_llama):
    """An OPT laid out as opt-350m: layers 32 wide, embeddings and output 16 (projected in and out)."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=400, hidden_size=32, word_embed_proj_dim=16, ffn_dim=37, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=128, pad_token_id=2, bos_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    return _save(tmp_path_factory.mktemp("tiny-opt-350m"), OPTForCausalLM(config), tiny_llama)


@pytest.fixture(scope="module")
def tiny_bloom(tmp_path_factory, tiny_llama):
    """A Bloom: ALiBi attention, whose modules state no ``is_causal``."""
    from transformers import BloomConfig, BloomForCausalLM

    config = BloomConfig(vocab_size=400, hidden_size=32, n_layer=2, n_head=2, pad_token_id=2, bos_token_id=0,
                         eos_token_id=1, initializer_range=0.5)  # fmt: skip
    torch.manual_seed(0)
    return _save(tmp_path_factory.mktemp("tiny-bloom"), BloomForCausalLM(config), tiny_llama)


TEXTS = ["great film", "great awful boring story", "great fun", "sad end of it all"]


def test_an_opt_whose_output_is_narrower_than_its_layers_embeds_fine_tunes_and_tunes_preferences(tiny_opt_350m):
    # Sized from hidden_size (32), the arrays and output layers did not fit the 16-wide hidden states.
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_opt_350m).eval()
    assert (model.config.hidden_size, output_width(model.config)) == (32, 16)
    embedder = TransformerEmbedder(tiny_opt_350m, pooling="last", normalize=False, cache_dir=None).fit()
    vectors = embedder.transform(TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_opt_350m)
    with torch.no_grad():
        last = model(**tokenizer(TEXTS[1], return_tensors="pt")).last_hidden_state[0, -1]
    assert vectors.shape == (4, 16) and embedder.embedding_dim_ == 16
    np.testing.assert_allclose(vectors[1], last.numpy(), atol=1e-5)
    for method in ("lora", "head"):
        clf = FineTuneClassifier(tiny_opt_350m, method=method, epochs=1, cache_dir=None, random_state=0)
        assert clf.fit(TEXTS * 3, [0, 1, 0, 1] * 3).predict_proba(TEXTS).shape == (4, 2)
    # PPO read the hidden states from a hook on the base model, which OPT's causal LM skips (KeyError).
    generator = FineTuneGenerator(tiny_opt_350m, max_new_tokens=3)
    tuner = PreferenceTuner(lambda p, c: [-len(x) for x in c], generator, algorithm="ppo", batch_size=2,
                            n_generations=2, epochs=1, random_state=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit(["a b", "c d"])
    assert tuner.predict(["a b"]).shape == (1,)


def test_a_bloom_is_a_decoder_though_its_modules_do_not_say_so(tiny_bloom, tiny_bert):
    # It was taken for an encoder: pooling="cls" gave every text its first token's vector, "auto" chose "mean".
    from transformers import AutoModel

    assert is_decoder(AutoModel.from_pretrained(tiny_bloom)) and not is_decoder(AutoModel.from_pretrained(tiny_bert))
    with pytest.raises(ValueError, match="pooling='cls' reads the first token"):
        TransformerEmbedder(tiny_bloom, pooling="cls", cache_dir=None).fit()
    clf = FineTuneClassifier(tiny_bloom, method="head", epochs=1, cache_dir=None).fit(TEXTS, [0, 1, 0, 1])
    assert clf.pooling_ == "last"


def test_bottleneck_adapters_wrap_gpt2s_conv1d_projections(tiny_llama, tmp_path):
    # GPT-2's projections are transformers' Conv1D, not nn.Linear: patterns naming them found "no layer".
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=400, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=0,
                        eos_token_id=1, initializer_range=0.5)  # fmt: skip
    gpt2 = _save(tmp_path / "gpt2", GPT2LMHeadModel(config), tiny_llama)
    method = BottleneckAdapter(target_modules=(r"attn\.c_proj$", r"mlp\.c_proj$"))
    generator = FineTuneGenerator(gpt2, method=method, epochs=1, max_new_tokens=3, random_state=0)
    generator.fit(["great film", "awful story"], ["good", "bad"])
    assert sum(type(m).__name__ == "Adapted" for m in generator.network_.modules()) == 4
    texts = ["great film", "awful story it was"]
    assert list(generator.predict(texts)) == [generator.predict([t])[0] for t in texts]
    with pytest.raises(ValueError, match=r"matches \['transformer\.ln_f'\], \['LayerNorm'\] layers"):
        FineTuneGenerator(gpt2, method=BottleneckAdapter(target_modules=r"ln_f$"), epochs=1).fit(["a"], ["b"])
