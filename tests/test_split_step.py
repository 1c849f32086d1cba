"""Training steps in two halves on two threads (skllm._split_step)."""

import numpy as np
import pytest
import torch

from skllm import FineTuneClassifier, _attention, _split_step
from skllm._dropout import keep_mask, thread_functional_dropout, thread_generator
from skllm._split_step import SplitSteps, splits


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_thread_generator_decides_the_masks_and_leaves_torch_generator_alone():
    state = torch.get_rng_state()
    masks = []
    for _ in range(2):
        with thread_generator(torch.Generator().manual_seed(3)):
            masks.append(keep_mask((64, 32), 0.1, torch.device("cpu"))[0])
    assert torch.equal(masks[0], masks[1])
    assert torch.equal(state, torch.get_rng_state())
    with thread_generator(torch.Generator().manual_seed(4)):
        assert not torch.equal(masks[0], keep_mask((64, 32), 0.1, torch.device("cpu"))[0])


def test_functional_dropout_draws_from_the_thread_generator_only_in_the_block():
    x = torch.ones(32, 64)
    original = torch.nn.functional.dropout
    with thread_functional_dropout():
        with thread_generator(torch.Generator().manual_seed(0)):
            first = torch.nn.functional.dropout(x, 0.2)
        with thread_generator(torch.Generator().manual_seed(0)):
            assert torch.equal(first, torch.nn.functional.dropout(x, 0.2))
        kept = first[first > 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - round(0.2 * 65536))))
        # no generator for the thread: torch's own
        torch.manual_seed(0)
        own = torch.nn.functional.dropout(x, 0.2)
        torch.manual_seed(0)
        assert torch.equal(own, original(x, 0.2))
    assert torch.nn.functional.dropout is original


def _linear_problem():
    torch.manual_seed(0)
    features = torch.randn(10, 6)
    targets = torch.tensor([0, 1, 2, 1, 0, 2, 2, 1, 0, 1])
    weights = torch.tensor([1.0, 2.0, 0.5])
    network = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Dropout(0.0))

    def forward(rows):
        return network(features[torch.as_tensor(rows)])

    def output_loss(output, rows):
        return torch.nn.functional.cross_entropy(output, targets[torch.as_tensor(rows)], weight=weights), len(rows)

    return network, forward, output_loss


def test_a_split_step_gives_the_whole_batch_loss_and_gradient(two_threads):
    network, forward, output_loss = _linear_problem()
    params = list(network.parameters())
    rows = np.array([7, 2, 9, 0, 4, 5, 1])  # odd, and a class weighted 4x another: not a mean of half means
    loss, _ = output_loss(forward(rows), rows)
    loss.backward()
    whole = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    split = SplitSteps(network, forward, output_loss, params)
    with split.running():
        assert _threads(split) == (1, 2, 1)  # the halves' threads and the caller have 1, the process keeps 2
        split_loss, weight, backward = split.step_loss(rows)
        backward()
    assert torch.get_num_threads() == 2 and weight == 7
    torch.testing.assert_close(split_loss, loss)
    for p, g in zip(params, whole):
        torch.testing.assert_close(p.grad, g)


def test_a_network_drawing_from_torch_generator_or_not_one_row_per_row_keeps_whole_steps(two_threads):
    network, forward, output_loss = _linear_problem()
    state = torch.get_rng_state()

    def noisy(rows):
        return forward(rows) + torch.rand(1)  # randomness skllm cannot give each half a generator for

    assert not SplitSteps(network, noisy, output_loss, list(network.parameters())).check(np.arange(6))
    assert torch.equal(state, torch.get_rng_state())  # the check ran on a copy of torch's state

    def pairs(rows):  # two outputs per row, as a reward model's pairs give
        return torch.cat([forward(rows), forward(rows)])

    assert not SplitSteps(network, pairs, output_loss, list(network.parameters())).check(np.arange(6))
    split = SplitSteps(network, forward, output_loss, list(network.parameters()))
    assert split.check(np.arange(6))
    assert split.step_loss(np.arange(1))[2] is None  # one row: a whole step, the engine's backward


def _threads(split):
    """torch's thread count on the calling thread, on a thread started now, and on the halves' threads."""
    on_the_pool = set(split._pool.map(lambda _: torch.get_num_threads(), range(4)))
    assert len(on_the_pool) == 1
    return torch.get_num_threads(), _split_step._on_a_new_thread(torch.get_num_threads), on_the_pool.pop()


def test_a_split_from_a_worker_thread_leaves_the_thread_counts_set_since(two_threads):
    from concurrent.futures import ThreadPoolExecutor

    network, forward, output_loss = _linear_problem()
    worker = ThreadPoolExecutor(1)
    split = worker.submit(SplitSteps, network, forward, output_loss, list(network.parameters())).result()
    torch.set_num_threads(1)  # after the worker took 2: the process-wide count, and this thread's

    def step():
        with split.running():
            assert _threads(split) == (1, 1, 1)
            split.step_loss(np.arange(6))[2]()

    worker.submit(step).result()
    assert torch.get_num_threads() == 1 and _split_step._on_a_new_thread(torch.get_num_threads) == 1
    assert worker.submit(torch.get_num_threads).result() == 2
    worker.shutdown()


def test_the_halves_compute_under_the_callers_autocast(two_threads):
    network, forward, output_loss = _linear_problem()
    dtypes = []

    def recording(rows):
        output = forward(rows)
        dtypes.append(output.dtype)
        return output

    split = SplitSteps(network, recording, output_loss, list(network.parameters()))
    with split.running(), torch.autocast("cpu", dtype=torch.bfloat16):
        split.step_loss(np.arange(6))
    assert dtypes == [torch.bfloat16] * 2


def test_epochs_of_single_rows_step_whole(two_threads):
    network, forward, output_loss = _linear_problem()
    split = SplitSteps(network, forward, output_loss, list(network.parameters()))
    assert split.decided([np.array([3]), np.array([1])]) is split.whole and split.usable is None
    assert split.decided([np.array([3]), np.arange(2)]) is split


def _optimisation(network, learning_rate, total_steps, dtype="float32"):
    """The engine's optimiser on the CPU, without weight decay, warm-up or clipping."""
    from skllm._training import Optimisation

    return Optimisation(
        network, learning_rate=learning_rate, weight_decay=0.0, warmup_ratio=0.0, max_grad_norm=None,
        total_steps=total_steps, device=torch.device("cpu"), dtype=dtype, who="Test",
    )  # fmt: skip


def test_an_epoch_of_single_rows_does_not_keep_the_next_from_splitting(two_threads, monkeypatch):
    from skllm._training import train_epochs

    network, forward, output_loss = _linear_problem()
    monkeypatch.setattr(_split_step, "MAX_TRAINABLE_SHARE", 1.0)
    steps = []
    step_loss = SplitSteps.step_loss
    monkeypatch.setattr(SplitSteps, "step_loss", lambda self, rows: steps.append(step_loss(self, rows)) or steps[-1])
    optimisation = _optimisation(network, 1e-2, 4, "float32")
    epochs = [[np.array([0]), np.array([1])], [np.arange(6)]]  # single rows, then a batch of 6
    train_epochs(
        optimisation, network, epochs=2, batches=lambda epoch: epochs[epoch],
        forward=forward, output_loss=output_loss, splittable=True,
    )  # fmt: skip
    assert len(steps) == 1 and steps[0][2] is not None  # the second epoch's batch did split


def test_whole_steps_keep_every_thread_where_the_check_fails(two_threads, monkeypatch):
    from skllm._training import train_epochs

    network, _, output_loss = _linear_problem()
    network[0].weight.requires_grad_(False)
    network.append(torch.nn.Linear(3, 3, bias=False).requires_grad_(False))
    monkeypatch.setattr(_split_step, "MAX_TRAINABLE_SHARE", 0.5)  # 3 biases of 30 weights trained: splits() holds
    assert splits(network, torch.device("cpu"), "float32")
    checks = []
    check = SplitSteps.check
    monkeypatch.setattr(SplitSteps, "check", lambda self, rows: checks.append(check(self, rows)) or checks[-1])

    def noisy(rows):
        return network(torch.randn(len(rows), 6))

    threads = []

    def loss_counting_threads(output, rows):
        threads.append(torch.get_num_threads())
        return output_loss(output, rows)

    optimisation = _optimisation(network, 1e-2, 2, "float32")
    train_epochs(
        optimisation, network, epochs=1, batches=lambda epoch: [np.arange(5), np.arange(5, 10)],
        forward=noisy, output_loss=loss_counting_threads, splittable=True,
    )  # fmt: skip
    assert checks == [False]  # the check ran once, and refused
    assert len(threads) >= 2 and set(threads) == {2}  # the two steps (and the last weights' check)


def test_splits_is_for_parameter_efficient_networks_on_the_cpu():
    net = torch.nn.Sequential(torch.nn.Linear(100, 100), torch.nn.Linear(100, 2))
    cpu = torch.device("cpu")
    assert not splits(net, cpu, "float32")  # every weight trained
    net[0].requires_grad_(False)
    assert splits(net, cpu, "float32")  # 202 of 10,302
    assert not splits(net, torch.device("meta"), "float32")
    assert not splits(net, cpu, "bfloat16")  # whole steps were the faster there


def _lora_bert(folder, dropout):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    bert = AutoModel.from_pretrained(folder, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    network = get_peft_model(
        bert, LoraConfig(r=4, target_modules=["query", "value"], lora_dropout=dropout, init_lora_weights=False)
    )
    network.train()
    ids = torch.randint(5, 60, (6, 9))
    mask = torch.ones_like(ids)
    mask[:, 6:] = 0  # rows padded as batches are

    def forward(rows):
        rows = torch.as_tensor(rows)
        return network(input_ids=ids[rows], attention_mask=mask[rows]).last_hidden_state[:, 0]

    def output_loss(output, rows):
        return output.pow(2).sum(), len(rows)

    return network, forward, output_loss


def test_a_split_step_of_a_transformer_without_dropout_gives_the_whole_gradient(tiny_bert, two_threads):
    network, forward, output_loss = _lora_bert(tiny_bert, 0.0)
    params = [p for p in network.parameters() if p.requires_grad]
    rows = np.arange(6)
    output_loss(forward(rows), rows)[0].backward()
    whole = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    split = SplitSteps(network, forward, output_loss, params)
    assert split.check(rows)
    with split.running():
        split.step_loss(rows)[2]()
    for p, g in zip(params, whole):
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-12)  # gradients of 1e-8 to 1e-5 here


def test_a_failing_step_puts_back_threads_dropout_and_attention(tiny_bert, two_threads):
    network, forward, output_loss = _lora_bert(tiny_bert, 0.1)
    config = network.get_base_model().config
    assert config._attn_implementation == "sdpa"
    split = SplitSteps(network, forward, output_loss, [p for p in network.parameters() if p.requires_grad])
    assert split.check(np.arange(6))
    with pytest.raises(IndexError), split.running():
        assert config._attn_implementation == "eager" and _threads(split) == (1, 2, 1)
        split.step_loss(np.array([0, 1, 2, 99]))  # the second half fails on its thread
    assert config._attn_implementation == "sdpa" and torch.get_num_threads() == 2
    assert torch.nn.functional.dropout.__module__ == "torch.nn.functional"


def _fit_lora(tiny_bert, texts, cache_dir):
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method="lora", epochs=2, batch_size=8, random_state=0, cache_dir=cache_dir)
    return clf.fit(X, y)


def test_a_split_fit_is_reproducible_whatever_the_thread_count_and_puts_everything_back(
    tiny_bert, texts, cache_dir, two_threads, monkeypatch
):
    # the tiny model's LoRA trains a large share of it: let it split all the same
    monkeypatch.setattr(_split_step, "MAX_TRAINABLE_SHARE", 1.0)
    steps = []
    step_loss = SplitSteps.step_loss
    monkeypatch.setattr(SplitSteps, "step_loss", lambda self, rows: steps.append(step_loss(self, rows)) or steps[-1])
    fits = [_fit_lora(tiny_bert, texts, cache_dir) for _ in range(2)]
    assert any(backward is not None for _, _, backward in steps)  # steps did split
    for name, value in fits[0].trainable_state_.items():
        np.testing.assert_array_equal(value, fits[1].trainable_state_[name])
    np.testing.assert_array_equal(fits[0].decision_function(texts[0]), fits[1].decision_function(texts[0]))
    assert torch.get_num_threads() == 2
    assert torch.nn.functional.dropout.__module__ == "torch.nn.functional"
    configs = [m.config for m in fits[0].network_.modules() if hasattr(m, "config")]
    assert configs and all(c._attn_implementation == "sdpa" for c in configs)
    # one thread: the halves one after the other, the same masks, the same model up to rounding
    torch.set_num_threads(1)
    one = _fit_lora(tiny_bert, texts, cache_dir)
    for name, value in fits[0].trainable_state_.items():
        np.testing.assert_allclose(value, one.trainable_state_[name], rtol=1e-3, atol=1e-5)


def test_a_reward_model_does_not_split_its_pairs(tiny_bert, monkeypatch, two_threads):
    from test_reward import PAIRS, reward_model

    from skllm import _training

    monkeypatch.setattr(_split_step, "MAX_TRAINABLE_SHARE", 1.0)
    first = reward_model(tiny_bert, method="lora", epochs=2).fit(PAIRS)
    monkeypatch.setattr(_training, "splits", lambda *args: False)
    whole = reward_model(tiny_bert, method="lora", epochs=2).fit(PAIRS)
    for name, value in first.trainable_state_.items():
        np.testing.assert_array_equal(value, whole.trainable_state_[name])


@pytest.mark.parametrize("splittable", [False, True])
@pytest.mark.parametrize(
    "dtype, limit, during", [("bfloat16", 256, "eager"), ("float32", 256, "sdpa"), ("bfloat16", 8, "sdpa")]
)
def test_training_under_bfloat16_on_the_cpu_runs_eager_attention_for_short_batches_and_puts_sdpa_back(
    tiny_bert, monkeypatch, dtype, limit, during, splittable
):
    # SDPA's CPU backward pass is slow in bfloat16, eager attention's memory grows with the width squared
    # (see training_attention); these batches are 9 positions wide. Each forward call chooses by its width;
    # under bfloat16 steps do not split, as the two halves' calls would race on the config.
    from skllm._training import train_epochs

    monkeypatch.setattr(_attention, "EAGER_MAX_WIDTH", limit)
    network, forward, output_loss = _lora_bert(tiny_bert, 0.0)
    model = network.get_base_model()
    seen = []
    model.register_forward_hook(lambda *_: seen.append(model.config._attn_implementation))
    optimisation = _optimisation(network, 1e-3, 2, dtype)
    train_epochs(optimisation, network, epochs=1, batches=lambda epoch: [np.arange(6)], forward=forward,
                 output_loss=output_loss, splittable=splittable)  # fmt: skip
    # split (float32 only): the check, two halves; and the last weights' check
    assert len(seen) == (4 if splittable and dtype == "float32" else 2)
    assert set(seen) == {during}
    assert model.config._attn_implementation == "sdpa"
    assert not any(m._forward_pre_hooks for m in network.modules())  # the engine's hooks are gone


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_with_attention_dropout_on_the_cpu_runs_eager_attention_and_draws_no_torch_mask(
    tiny_bert, monkeypatch, dtype
):
    # SDPA on the CPU draws an attention-dropout mask with torch's bernoulli_; eager attention's goes
    # through torch.nn.functional.dropout, which the engine serves with its cheaper masks (see _dropout.py)
    from torch.profiler import ProfilerActivity, profile

    from skllm._training import train_epochs

    monkeypatch.setattr(_attention, "EAGER_MAX_WIDTH", 8)  # these batches are 9 wide: only the dropout decides
    network, forward, output_loss = _lora_bert(tiny_bert, 0.1)
    model = network.get_base_model()
    seen = []
    model.register_forward_hook(lambda module, *_: seen.append((module.training, module.config._attn_implementation)))
    optimisation = _optimisation(network, 1e-3, 2, dtype)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_epochs(optimisation, network, epochs=1, batches=lambda epoch: [np.arange(6)], forward=forward,
                     output_loss=output_loss)  # fmt: skip
    assert seen == [(True, "eager"), (False, "sdpa")]  # the step; the last weights' check, in evaluation
    assert not [e for e in prof.events() if e.name == "aten::bernoulli_"]
    assert model.config._attn_implementation == "sdpa"
    assert not any(m._forward_pre_hooks for m in network.modules())


def test_estimators_fit_under_bfloat16_and_keep_sdpa_for_prediction(
    tiny_bert, tiny_llama, texts, cache_dir, monkeypatch
):
    # where the CPU lacks bfloat16, dtype falls back to float32 (a PrecisionWarning) and this checks that path
    import warnings

    import pandas as pd

    from skllm import FineTuneGenerator, RewardModel, _training
    from skllm._device import _bf16_supported
    from skllm.exceptions import PrecisionWarning

    eager, training_attention = [], _training.training_attention

    def recording(network, device, dtype, *args, **kw):
        eager.append(device.type == "cpu" and dtype == "bfloat16")
        return training_attention(network, device, dtype, *args, **kw)

    monkeypatch.setattr(_training, "training_attention", recording)
    X, y = texts
    pairs = pd.DataFrame({"prompt": ["the film was"] * 8, "chosen": X[:8], "rejected": X[12:20]})
    bf16 = {"epochs": 1, "dtype": "bfloat16", "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        fitted = [
            FineTuneClassifier(tiny_bert, method="lora", batch_size=8, cache_dir=cache_dir, **bf16).fit(X, y),
            FineTuneGenerator(tiny_llama, max_new_tokens=2, **bf16).fit(X[:8], y[:8]),
            RewardModel(tiny_bert, **bf16).fit(pairs),
        ]
    for estimator in fitted:
        configs = [m.config for m in estimator.network_.modules() if hasattr(m, "config")]
        assert configs and all(c._attn_implementation == "sdpa" for c in configs), type(estimator).__name__
    assert eager == [_bf16_supported(torch.device("cpu"))] * 3  # one training each, under bfloat16 where supported
    assert np.isfinite(fitted[0].decision_function(X[:4])).all()
