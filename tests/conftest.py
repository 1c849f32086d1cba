"""Tiny models built from a config (no download), saved like real ones."""

import os
import string

import pytest


def pytest_configure(config):
    # Under pytest-xdist (``-n 2``), each worker has a core: one torch thread each, not two fighting for both.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


WORDS = (
    "the a an and or but not no is was are film movie great good bad awful dull boring fun "
    "loved hated it this that story plot actor acting funny sad long short best worst free win "
    "call now prize hello see you later text me tomorrow ok thanks"
).split()


def _bert_vocab():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits] + WORDS
    return {token: i for i, token in enumerate(dict.fromkeys(tokens))}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """Folder of a 2-layer BERT with hidden size 32 and a WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    # transformers 5 builds BERT tokenizers from a vocabulary dict.
    tokenizer = BertTokenizer(vocab=_bert_vocab(), do_lower_case=True)
    assert tokenizer.tokenize("great film") == ["great", "film"]
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """Folder of a 2-layer Llama with hidden size 32 and a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([" ".join(WORDS)] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One skllm cache folder for the end-to-end tests: a de-quantised LM is made once.

    Shared by the workers of ``pytest -n``: the cache is safe for several processes.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "skllm-cache"
        folder.mkdir(exist_ok=True)
        return str(folder)
    return str(tmp_path_factory.mktemp("skllm-cache"))


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


@pytest.fixture(scope="session")
def texts():
    """Short labelled texts with duplicates, in the tiny vocabulary."""
    pos = ["great film", "loved it", "best movie", "fun story", "good acting", "funny and great"]
    neg = ["awful film", "hated it", "worst movie", "dull story", "bad acting", "boring and long"]
    X = [f"{t} {i}" for i in range(4) for t in pos + neg]
    y = ["pos" if t in pos else "neg" for i in range(4) for t in pos + neg]
    return X, y


@pytest.fixture
def fake_chat():
    """An in-process OpenAI-compatible chat server (tests/chat_servers.py), stopped afterwards."""
    from chat_servers import FakeChat

    server = FakeChat()
    yield server
    server.close()
