"""Full fine-tuning trains only the embedding rows of the tokens its texts hold (skllm/_seen_rows.py)."""

import numpy as np
import pandas as pd
import pytest

from skllm import FineTuneClassifier, FineTuneGenerator, RewardModel, _seen_rows
from skllm._training import Optimisation


@pytest.fixture
def spy(monkeypatch):
    """The rows each fit trained (the token ids of its SeenRows), in order."""
    made = []
    build = _seen_rows._seen_rows_class

    def recording():
        cls = build()

        class Recorded(cls):
            def __init__(self, embedding, seen):
                super().__init__(embedding, seen)
                made.append(seen.copy())

        return Recorded

    monkeypatch.setattr(_seen_rows, "_seen_rows_class", recording)
    return made


def _dense(monkeypatch):
    monkeypatch.setattr(_seen_rows, "_compactable", lambda embedding: False)


def _fit(estimator, tiny_bert, tiny_llama, texts, **kw):
    X, y = texts
    common = dict(method="full", epochs=3, batch_size=4, random_state=0, **kw)
    if estimator == "classifier":
        return FineTuneClassifier(tiny_bert, cache_dir=None, **common).fit(X, y)
    if estimator == "reward model":
        pairs = pd.DataFrame({"prompt": "the film was", "chosen": X[:6] * 2, "rejected": X[6:12] * 2})
        return RewardModel(tiny_bert, head_init="random", learning_rate=1e-3, **common).fit(pairs)
    return FineTuneGenerator(tiny_llama, max_new_tokens=2, **common).fit(X[:12], y[:12])


@pytest.mark.parametrize(
    "estimator, params",
    [
        ("classifier", {}),
        ("classifier", {"max_grad_norm": None}),
        ("classifier", {"early_stopping": True, "n_iter_no_change": 1}),
        ("classifier", {"dtype": "bfloat16"}),
        ("reward model", {}),
        ("generator", {}),  # the tiny Llama's embedding is not tied to its output layer
    ],
)
def test_the_seen_rows_train_the_model_the_whole_table_trains(
    estimator, params, tiny_bert, tiny_llama, texts, spy, monkeypatch
):
    compact = _fit(estimator, tiny_bert, tiny_llama, texts, **params)
    assert len(spy) == 1
    _dense(monkeypatch)
    dense = _fit(estimator, tiny_bert, tiny_llama, texts, **params)
    assert len(spy) == 1  # the second fit trained the whole table
    assert sorted(compact.trainable_state_) == sorted(dense.trainable_state_)
    # The same to the bit (in theory up to the rounding of the gradient norm, a sum over fewer zeros).
    for name, value in dense.trainable_state_.items():
        np.testing.assert_array_equal(compact.trainable_state_[name], value, err_msg=name)
    if estimator == "classifier":
        unseen = texts[0] + ["zebra quantum xylophone", "a film of no words ~"]
        np.testing.assert_array_equal(compact.predict_proba(unseen), dense.predict_proba(unseen))


def test_rows_of_tokens_no_text_holds_end_the_fit_as_loaded(tiny_bert, texts, spy):
    from transformers import AutoModel, AutoTokenizer

    clf = _fit("classifier", tiny_bert, None, texts)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    used = set().union(*tokenizer(texts[0])["input_ids"], [tokenizer.pad_token_id])
    assert set(spy[0].tolist()) == used  # the texts' tokens, [CLS] and [SEP] among them, and the padding
    name = next(n for n in clf.trainable_state_ if n.endswith("word_embeddings.weight"))
    trained = clf.trainable_state_[name]
    loaded = AutoModel.from_pretrained(tiny_bert).get_input_embeddings().weight.detach().numpy()
    others = np.setdiff1d(np.arange(len(loaded)), spy[0])
    assert len(others) > len(spy[0])
    np.testing.assert_array_equal(trained[others], loaded[others])
    text_rows = np.setdiff1d(spy[0], [tokenizer.pad_token_id])  # the padding row gets no gradient
    assert np.abs(trained[text_rows] - loaded[text_rows]).max(axis=1).min() > 0  # every other row trained


def _bert(tiny_bert):
    from transformers import AutoModel

    return AutoModel.from_pretrained(tiny_bert)


def test_a_lookup_with_tokens_outside_the_rows_reads_them_from_the_table(tiny_bert):
    import torch

    model = _bert(tiny_bert)
    table = model.get_input_embeddings()
    ids = torch.tensor([[2, 7, 40, 3], [2, 11, 9, 0]])
    expected = table.weight.detach()[ids].clone()
    expected[torch.isin(ids, torch.tensor([2, 7, 9, 3, 0]))] *= 2
    with _seen_rows.seen_rows(model, [[2, 7, 9, 3], [0]]):
        compact = model.get_input_embeddings()
        assert type(compact).__name__ == "SeenRows"
        with torch.no_grad():
            compact.rows.mul_(2)  # as training would change them
        out = compact(ids)
        out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # The rows' gradient: one per occurrence, none for the padding; the table gets none.
    np.testing.assert_array_equal(compact.rows.grad[:, 0].numpy(), [0, 2, 1, 1, 1])  # ids 0, 2, 3, 7, 9
    assert table.weight.grad is None


def test_the_table_comes_back_with_its_trained_rows_even_from_a_failed_fit(tiny_bert):
    import torch

    model = _bert(tiny_bert)
    table = model.get_input_embeddings()
    before = table.weight.detach().clone()
    with pytest.raises(RuntimeError, match="stopped"):
        with _seen_rows.seen_rows(model, [[5, 6]]):
            assert not table.weight.requires_grad
            with torch.no_grad():
                model.get_input_embeddings().rows.add_(1.0)
            raise RuntimeError("stopped")
    assert model.get_input_embeddings() is table and table.weight.requires_grad
    torch.testing.assert_close(table.weight[[5, 6]], before[[5, 6]] + 1.0)
    torch.testing.assert_close(table.weight[7:], before[7:], rtol=0, atol=0)


def _tied(tiny_llama):
    """The tiny Llama with its output layer tied to its token embedding, as SmolLM2's is."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.lm_head.weight = model.get_input_embeddings().weight
    return model


def test_nothing_is_swapped_for_a_frozen_a_tied_or_a_scaling_embedding(tiny_bert, tiny_llama):
    import torch

    frozen = _bert(tiny_bert)
    frozen.get_input_embeddings().weight.requires_grad_(False)
    tied = _tied(tiny_llama)

    class Scaled(torch.nn.Embedding):  # as Gemma's: the lookup times a constant
        def forward(self, ids):
            return super().forward(ids) * 2.0

    scaled = _bert(tiny_bert)
    old = scaled.get_input_embeddings()
    scaled.set_input_embeddings(Scaled(old.num_embeddings, old.embedding_dim))
    for model in (frozen, tied, scaled):
        embedding = model.get_input_embeddings()
        with _seen_rows.seen_rows(model, [[5, 6]]):
            assert model.get_input_embeddings() is embedding
    assert _seen_rows.token_embedding(frozen) is None and _seen_rows.token_embedding(tied) is None
    # Out-of-range ids are left for the model to refuse, as without the rows.
    model = _bert(tiny_bert)
    with _seen_rows.seen_rows(model, [[5, 10_000]]):
        assert type(model.get_input_embeddings()).__name__ == "Embedding"


def test_the_token_embedding_gets_no_weight_decay_other_matrices_do(tiny_bert, tiny_llama):
    import torch

    def decayed(model):
        optimisation = Optimisation(
            model,
            learning_rate=1e-3,
            weight_decay=0.1,
            warmup_ratio=0.0,
            max_grad_norm=None,
            total_steps=1,
            device=torch.device("cpu"),
            dtype="float32",
            who="test",
        )
        (with_decay, without) = optimisation.optimizer.param_groups
        assert with_decay["weight_decay"] == 0.1 and without["weight_decay"] == 0.0
        return {id(p) for p in with_decay["params"]}

    model = _bert(tiny_bert)
    group = decayed(model)
    assert id(model.get_input_embeddings().weight) not in group
    assert id(model.embeddings.position_embeddings.weight) in group
    assert id(model.encoder.layer[0].attention.self.query.weight) in group
    with _seen_rows.seen_rows(model, [[5, 6]]):
        assert id(model.get_input_embeddings().rows) not in decayed(model)
    # Tied to the output layer, the matrix is the output's weights too: decayed as before.
    tied = _tied(tiny_llama)
    assert id(tied.get_input_embeddings().weight) in decayed(tied)


def test_the_seen_rows_count_as_their_whole_table_in_the_split_decision():
    # A model whose table is nearly all its weights: its full fit must not turn into a
    # parameter-efficient one (steps in two halves, skllm._split_step) for training its rows.
    import torch
    from transformers import BertConfig, BertModel

    from skllm._split_step import splits

    config = BertConfig(vocab_size=30_000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    config.intermediate_size = 37
    model = BertModel(config)
    assert not splits(model, torch.device("cpu"), "float32")
    with _seen_rows.seen_rows(model, [[5, 6, 7]]):
        assert type(model.get_input_embeddings()).__name__ == "SeenRows"
        assert not splits(model, torch.device("cpu"), "float32")


def test_lora_factors_on_the_embedding_keep_their_weight_decay(tiny_bert):
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_bert(tiny_bert), LoraConfig(r=2, target_modules=["word_embeddings", "query"]))
    assert _seen_rows.token_embedding(model) is None
    optimisation = Optimisation(
        model, learning_rate=1e-3, weight_decay=0.1, warmup_ratio=0.0, max_grad_norm=None, total_steps=1,
        device=torch.device("cpu"), dtype="float32", who="test",
    )  # fmt: skip
    decayed = {id(p) for p in optimisation.optimizer.param_groups[0]["params"]}
    factors = [p for n, p in model.named_parameters() if "lora_embedding" in n]
    assert factors and all(id(p) in decayed for p in factors)
