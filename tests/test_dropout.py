"""Dropout masks drawn from 16-bit numbers on the CPU, during training only."""

import copy
import pickle

import numpy as np
import pytest
import torch

from skllm import BottleneckAdapter, FineTuneClassifier, FullFineTuning, LoRA, PrefixTuning, PromptTuning
from skllm._dropout import fast_cpu_dropout, keep_mask, transformers_configs


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_the_masks_keep_each_element_with_one_minus_p_in_every_lane_of_the_words(p):
    torch.manual_seed(0)
    n = 400_000
    mask, scale = keep_mask((n,), p, torch.device("cpu"))
    rounded = round(p * 65536) / 65536
    assert scale == pytest.approx(1 / (1 - rounded))
    assert abs(rounded - p) <= 0.5 / 65536
    # each 64-bit word gives four numbers: a biased lane (a sign bit always 0) would move its share by 0.5
    lanes = mask.view(-1, 4).float().mean(0).numpy()
    se = np.sqrt(p * (1 - p) / (n / 4))
    np.testing.assert_allclose(lanes, 1 - rounded, atol=5 * se)
    # and neighbours are independent: both kept as often as (1 - p) ** 2
    both = (mask[:-1] & mask[1:]).float().mean().item()
    assert both == pytest.approx((1 - rounded) ** 2, abs=5 * se)


def test_the_masks_follow_torch_seed():
    torch.manual_seed(3)
    first, _ = keep_mask((5, 7, 3), 0.2, torch.device("cpu"))
    torch.manual_seed(3)
    again, _ = keep_mask((5, 7, 3), 0.2, torch.device("cpu"))
    assert first.shape == (5, 7, 3)
    assert torch.equal(first, again)


def test_dropout_in_the_block_scales_kept_values_and_its_gradient_is_the_mask():
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Dropout(0.25))
    x = torch.randn(64, 6)
    with fast_cpu_dropout(net):
        assert type(net[1]).__name__ == "FastCPUDropout"
        # a pickle or copy taken while training runs (by another thread) holds torch's class
        assert type(pickle.loads(pickle.dumps(net))[1]) is torch.nn.Dropout
        assert type(copy.deepcopy(net)[1]) is torch.nn.Dropout
        restored = pickle.loads(pickle.dumps(net))[1]
        assert restored.p == 0.25 and restored.training
        torch.testing.assert_close(restored.eval()(x), x)
        torch.manual_seed(1)
        out = net(x)
        torch.manual_seed(1)
        mask, scale = keep_mask(out.shape, 0.25, x.device)
        plain = net[0](x)
        torch.testing.assert_close(out, plain * mask * scale)
        grad = torch.randn_like(out)
        leaf = plain.detach().requires_grad_()
        torch.manual_seed(1)
        net[1](leaf).backward(grad)
        torch.testing.assert_close(leaf.grad, grad * mask * scale)
        # evaluation mode drops nothing
        net.eval()
        torch.testing.assert_close(net(x), net[0](x))
    assert type(net[1]) is torch.nn.Dropout


def test_the_modules_get_their_class_back_when_training_fails():
    net = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Dropout(0.3))
    with pytest.raises(RuntimeError), fast_cpu_dropout(net):
        raise RuntimeError("a failed step")
    assert [type(m) for m in net] == [torch.nn.Dropout, torch.nn.Dropout]
    pickle.loads(pickle.dumps(net))


def test_a_fitted_network_holds_torch_dropout_and_a_seed_gives_the_same_model(tiny_bert, texts, cache_dir):
    X, y = texts
    method = LoRA(dropout=0.1, backbone_dropout=True)  # every dropout of the network on
    first = FineTuneClassifier(tiny_bert, method=method, epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    first.fit(X, y)
    dropouts = [m for m in first.network_.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is torch.nn.Dropout for m in dropouts)
    again = FineTuneClassifier(tiny_bert, method=method, epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    again.fit(X, y)
    for name, value in first.trainable_state_.items():
        np.testing.assert_array_equal(value, again.trainable_state_[name])


def test_functional_dropout_in_the_block_draws_these_masks_in_its_thread_only():
    from concurrent.futures import ThreadPoolExecutor

    F = torch.nn.functional
    original, x = F.dropout, torch.randn(64, 6)
    with fast_cpu_dropout(torch.nn.Sequential()):
        torch.manual_seed(2)
        out = F.dropout(x, 0.25, True)
        torch.manual_seed(2)
        mask, scale = keep_mask(x.shape, 0.25, x.device)
        torch.testing.assert_close(out, x * mask * scale)
        torch.testing.assert_close(F.dropout(x, 0.25, False), x)  # evaluation drops nothing
        with ThreadPoolExecutor(1) as other:  # another thread, without a generator of its own: torch's
            torch.manual_seed(2)
            elsewhere = other.submit(F.dropout, x, 0.25, True).result()
    assert F.dropout is original
    torch.manual_seed(2)
    torch.testing.assert_close(elsewhere, original(x, 0.25, True))


def test_a_full_fine_tuning_fit_on_the_cpu_draws_no_torch_mask_and_predicts_with_sdpa(tiny_bert, texts, cache_dir):
    # as a user reaches it: the backbone's attention dropout goes through eager attention and skllm's masks
    from torch.profiler import ProfilerActivity, profile

    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method="full", epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        clf.fit(X, y)
    assert not [e for e in prof.events() if e.name == "aten::bernoulli_"]
    configs = transformers_configs(clf.network_)
    assert configs and all(c.attention_probs_dropout_prob > 0 for c in configs)
    assert all(c._attn_implementation == "sdpa" for c in configs)
    assert torch.nn.functional.dropout.__module__ == "torch.nn.functional"


@pytest.mark.parametrize("p", [1 - 2**-18, 2**-18])
def test_a_p_that_rounds_to_zero_or_one_is_torch_own(p):
    net = torch.nn.Sequential(torch.nn.Dropout(p))
    x = torch.randn(4, 8)
    with fast_cpu_dropout(net):
        torch.manual_seed(0)
        out = net[0](input=x)  # torch's argument name
        torch.manual_seed(0)
        torch.testing.assert_close(out, torch.nn.functional.dropout(x, p, True))


# the methods with a backbone_dropout parameter, off by default
WITHOUT_BACKBONE_DROPOUT = [LoRA, BottleneckAdapter, PromptTuning]
# those whose parameter keeps it by default
WITH_BACKBONE_DROPOUT = [FullFineTuning, PrefixTuning]


def test_every_method_that_copies_the_backbone_has_the_parameter():
    from skllm._methods import METHODS

    copying = {cls for cls in METHODS.values() if cls.modifies_backbone}
    assert copying == set(WITHOUT_BACKBONE_DROPOUT + WITH_BACKBONE_DROPOUT)
    for cls in copying:
        assert cls().get_params()["backbone_dropout"] is (cls in WITH_BACKBONE_DROPOUT)
        with pytest.raises(ValueError, match="backbone_dropout"):
            cls(backbone_dropout="no").validate()


@pytest.mark.parametrize("backbone_dropout", [False, True])
@pytest.mark.parametrize("method", WITHOUT_BACKBONE_DROPOUT + WITH_BACKBONE_DROPOUT)
def test_methods_train_without_the_backbone_dropout_when_asked_and_leave_the_loaded_backbone_alone(
    tiny_bert, method, backbone_dropout
):
    from skllm._models import load_backbone, resolve_model

    backbone, tokenizer = load_backbone(resolve_model(tiny_bert), torch.device("cpu"))
    assert backbone.config.attention_probs_dropout_prob > 0 and backbone.config.hidden_dropout_prob > 0
    network = method(backbone_dropout=backbone_dropout).build_network(backbone, 2, "mean")
    batch = tokenizer(["a great film", "so dull and long"], padding=True, return_tensors="pt")
    network.train()
    with torch.no_grad():
        first, second = (network.encoder(batch["input_ids"], batch["attention_mask"]) for _ in range(2))
    # the backbone's own dropout (hidden states and attention) is what makes two training passes differ
    assert torch.equal(first, second) is not backbone_dropout
    attention = [c.attention_probs_dropout_prob for c in transformers_configs(network)]
    assert attention and all((a > 0) is backbone_dropout for a in attention)  # SDPA stays for the split steps
    # the loaded backbone, shared by every fit and by TransformerEmbedder, is unchanged
    assert all(m.p > 0 for m in backbone.modules() if isinstance(m, torch.nn.Dropout))
    assert backbone.config.attention_probs_dropout_prob > 0
    head = [m.p for m in network.head.modules() if isinstance(m, torch.nn.Dropout)]
    assert head == [0.1]  # the output layer's dropout is the method's, kept


@pytest.mark.parametrize("method", WITHOUT_BACKBONE_DROPOUT)
def test_a_method_saved_before_backbone_dropout_existed_keeps_the_backbone_dropout_it_trained_with(method):
    state = {k: v for k, v in vars(method()).items() if k != "backbone_dropout"}
    unpickled = method.__new__(method)
    unpickled.__setstate__(state)
    assert unpickled.get_params()["backbone_dropout"] is True
    assert method().get_params()["backbone_dropout"] is False


@pytest.mark.parametrize("method", [LoRA(), LoRA(dropout=0.1, backbone_dropout=True), PromptTuning(n_virtual_tokens=2)])
def test_a_fit_trains_the_network_the_method_asks_for_and_an_unpickled_model_rebuilds_it(
    tiny_bert, texts, cache_dir, method
):
    # The way a user reaches backbone_dropout: through the estimator's fit, and a saved model loaded again.
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method=method, epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    clf.fit(X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-6)  # rebuilds its network
    for network in (clf.network_, loaded.network_):
        model = network.encoder.model
        probs = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        assert probs and all((p > 0) is method.backbone_dropout for p in probs)
        attention = [c.attention_probs_dropout_prob for c in transformers_configs(model)]
        assert attention and all((a > 0) is method.backbone_dropout for a in attention)
    # the shared, loaded backbone that TransformerEmbedder and other fits use keeps its dropout
    from skllm._models import load_backbone, resolve_model

    backbone, _ = load_backbone(resolve_model(tiny_bert), torch.device("cpu"))
    assert backbone.config.attention_probs_dropout_prob > 0
    assert all(m.p > 0 for m in backbone.modules() if isinstance(m, torch.nn.Dropout))


@pytest.mark.parametrize("method", [LoRA(), LoRA(backbone_dropout=True), PromptTuning(n_virtual_tokens=2)])
def test_a_causal_lm_trains_without_its_dropout_when_the_method_says_so(method):
    # FineTuneGenerator and PreferenceTuner build their network here; SmolLM2 has no dropout, GPT-2 has
    from transformers import GPT2Config, GPT2LMHeadModel

    from skllm._causal import CausalNetwork

    lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64))
    network = CausalNetwork.build(method, lm)
    probs = [m.p for m in network.modules() if isinstance(m, torch.nn.Dropout)]
    assert probs and all((p > 0) is method.backbone_dropout for p in probs)
    assert [c.attn_pdrop > 0 for c in transformers_configs(network)] == [method.backbone_dropout]
    assert all(m.p == 0.1 for m in lm.modules() if isinstance(m, torch.nn.Dropout))  # the loaded model keeps its own
