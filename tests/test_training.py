"""The training engine: one loop for every estimator, its guard against a non-finite loss, its lock."""

import ast
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

import skllm
from skllm import FineTuneClassifier, FineTuneGenerator, FineTuneRegressor, PreferenceTuner, RewardModel
from skllm._splits import validation_split as base_split
from skllm.exceptions import NonFiniteLossError

X = ["great film", "awful film", "loved it", "hated it"] * 3
Y = ["good", "bad", "good", "bad"] * 3
PAIRS = pd.DataFrame(
    {
        "prompt": ["the film was"] * 4,
        "chosen": ["great fun", "loved it", "the best movie", "good acting"],
        "rejected": ["awful and dull", "hated it", "the worst movie", "bad acting"],
    }
)


def test_one_file_runs_the_backward_pass():
    package = Path(skllm.__file__).parent
    loops = sorted(p.name for p in package.rglob("*.py") if ".backward(" in p.read_text())
    assert loops == ["_training.py"]


def _nan_at_second_call(loss):
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        value = loss(*args, **kwargs)
        return value * float("nan") if calls["n"] >= 2 else value

    return wrapped


@pytest.mark.parametrize("estimator", [FineTuneClassifier, FineTuneRegressor])
def test_a_non_finite_loss_stops_training_and_keeps_the_previous_model(estimator, tiny_bert, texts, cache_dir):
    X_, y = texts
    again = y
    if estimator is FineTuneRegressor:
        y = [float(label == "pos") for label in y]
        again = [1000 * v + 5 for v in y]  # another scale: the failed fit must not leave it behind
    model = estimator(tiny_bert, method="lora", epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    model.fit(X_, y)
    before = model.predict(X_[:6])
    state = {k: v.copy() for k, v in model.trainable_state_.items()}
    model._loss = _nan_at_second_call(model._loss)
    with pytest.raises(NonFiniteLossError, match=r"step 2 \(epoch 1, batch 2 of \d+\): the loss is nan"):
        model.fit(X_, again)
    vars(model).pop("_loss")
    np.testing.assert_array_equal(model.predict(X_[:6]), before)
    assert all(np.array_equal(v, state[k]) for k, v in model.trainable_state_.items())


def test_a_non_finite_gradient_stops_training(tiny_bert, texts, cache_dir):
    import torch

    X_, y = texts
    model = FineTuneClassifier(tiny_bert, method="lora", epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)

    def loss(output, target, weights):  # finite value, infinite gradient
        return torch.nn.functional.cross_entropy(output, target) + 0 * torch.sqrt(output - output).sum()

    model._loss = loss
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*the gradient norm is nan"):
        model.fit(X_, y)
    assert not hasattr(model, "trainable_state_")


def test_reward_model_stops_on_a_non_finite_loss(tiny_bert):
    model = RewardModel(tiny_bert, method="lora", epochs=2, batch_size=2, random_state=0)
    model._loss = _nan_at_second_call(model._loss)
    with pytest.raises(NonFiniteLossError, match="RewardModel stopped training at step 2"):
        model.fit(PAIRS)
    assert not hasattr(model, "trainable_state_") and not hasattr(model, "n_pairs_")


def _optimisation(network, *, learning_rate=0.0, weight_decay=0.0, total_steps=1, who="Test"):
    """The engine's optimiser on the CPU in float32, without warm-up or clipping."""
    import torch

    from skllm._training import Optimisation

    return Optimisation(
        network,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_ratio=0.0,
        max_grad_norm=None,
        total_steps=total_steps,
        device=torch.device("cpu"),
        dtype="float32",
        who=who,
    )


def test_the_fused_optimiser_takes_the_unfused_step():
    import copy

    import torch

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    reference = copy.deepcopy(network)
    optimisation = _optimisation(network, learning_rate=1e-2, weight_decay=0.1, total_steps=10)
    assert optimisation.optimizer.defaults["fused"]
    unfused = torch.optim.AdamW(
        [
            {"params": [p for p in reference.parameters() if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in reference.parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        foreach=False,
    )
    x = torch.randn(16, 8)
    for _ in range(3):
        for group, scheduled in zip(unfused.param_groups, optimisation.optimizer.param_groups):
            group["lr"] = scheduled["lr"]  # the engine's linear schedule
        unfused.zero_grad()
        reference(x).square().mean().backward()
        unfused.step()
        optimisation.step(network(x).square().mean())
    for mine, theirs in zip(network.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", ["lora", "full", "early stopping", "generator", "rloo", "dpo"])
def test_a_finished_fit_frees_its_optimiser_without_the_garbage_collector(
    estimator, tiny_bert, tiny_llama, texts, cache_dir, monkeypatch
):
    # release_memory does not run gc.collect on the CPU: no reference cycle may keep the
    # optimiser's moments (as large as the trained weights) alive after fit.
    import gc
    import weakref

    from skllm import _training

    optimisers = []
    real_init = _training.Optimisation.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        optimisers.append(weakref.ref(self.optimizer))

    monkeypatch.setattr(_training.Optimisation, "__init__", init)
    gc.collect()
    gc.disable()
    try:
        if estimator == "generator":
            FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=2, random_state=0).fit(X, Y)
        elif estimator in ("rloo", "dpo"):
            generator = FineTuneGenerator(tiny_llama, max_new_tokens=2)
            reward = None if estimator == "dpo" else (lambda p, c: [float(len(a)) for a in c])
            tuner = PreferenceTuner(reward, generator, algorithm=estimator)
            tuner.set_params(batch_size=2, n_generations=2, random_state=0).fit(PAIRS if estimator == "dpo" else X[:4])
        else:
            X_, y = texts
            params = {"early_stopping": True, "epochs": 3} if estimator == "early stopping" else {"epochs": 1}
            method = "full" if estimator == "full" else "lora"
            FineTuneClassifier(tiny_bert, method=method, cache_dir=cache_dir, random_state=0, **params).fit(X_, y)
        assert len(optimisers) == 1 and optimisers[0]() is None  # an unfitted generator is tuned as it is
    finally:
        gc.enable()


def test_the_weight_check_tells_finite_weights_whose_sum_overflows_from_a_non_finite_weight():
    import torch

    network = torch.nn.Linear(4, 2, bias=False)
    optimisation = _optimisation(network)
    with torch.no_grad():
        network.weight.fill_(3e38)  # finite; their sum is inf in float32
    optimisation._check_parameters("")
    with torch.no_grad():
        network.weight[1, 2] = float("nan")
    with pytest.raises(NonFiniteLossError, match="weights NaN or infinite"):
        optimisation._check_parameters("")
    with torch.no_grad():
        network.weight.fill_(1.0)
        network.weight[0, 0] = -float("inf")
    with pytest.raises(NonFiniteLossError, match="weights NaN or infinite"):
        optimisation._check_parameters("")


def test_weights_made_non_finite_by_the_step_stop_training_and_keep_the_previous_model(tiny_bert, texts, cache_dir):
    X_, y = texts
    y = [float(label == "pos") for label in y]
    model = FineTuneRegressor(tiny_bert, method="lora", epochs=1, batch_size=8, random_state=0, cache_dir=cache_dir)
    model.fit(X_, y)
    before = model.predict(X_[:6])
    model.set_params(weight_decay=1e12)
    with pytest.raises(NonFiniteLossError, match=r"step \d+.*weight_decay=1e\+12"):
        model.fit(X_, y)
    np.testing.assert_array_equal(model.predict(X_[:6]), before)
    reward = RewardModel(tiny_bert, method="lora", epochs=1, batch_size=2, random_state=0, learning_rate=1e12)
    with pytest.raises(NonFiniteLossError, match=r"RewardModel stopped training .*learning_rate=1e\+12"):
        reward.fit(PAIRS)
    assert not hasattr(reward, "trainable_state_")


@pytest.mark.parametrize("estimator", [FineTuneClassifier, FineTuneRegressor])
def test_early_stopping_does_not_keep_an_epoch_whose_weights_give_nan(estimator, tiny_bert, texts, cache_dir):
    X_, y = texts
    y = y if estimator is FineTuneClassifier else [float(label == "pos") for label in y]
    model = estimator(
        tiny_bert, method="full", learning_rate=1e30, weight_decay=0.0, max_grad_norm=None, batch_size=64,
        early_stopping=True, validation_fraction=0.3, head_init="random", epochs=1, random_state=0,
        cache_dir=cache_dir,
    )  # fmt: skip
    # Huge finite weights: every step passes, the outputs are NaN (read as class 0 by an accuracy score).
    with pytest.raises(NonFiniteLossError, match=r"after step \d+: the weights it left give a loss of nan"):
        model.fit(X_, y)


def test_generator_stops_on_a_non_finite_loss_and_keeps_its_previous_state(tiny_llama, monkeypatch):
    import skllm._sft

    gen = FineTuneGenerator(tiny_llama, epochs=1, batch_size=4, max_new_tokens=3, random_state=0).fit(X, Y)
    before, state = gen.predict(X[:4]), {k: v.copy() for k, v in gen.trainable_state_.items()}
    monkeypatch.setattr(skllm._sft, "sequence_loss", _nan_at_second_call(skllm._sft.sequence_loss))
    with pytest.raises(NonFiniteLossError, match="FineTuneGenerator stopped training at step 2"):
        gen.fit(X, Y)
    assert gen.predict(X[:4]).tolist() == before.tolist()
    assert all(np.array_equal(v, state[k]) for k, v in gen.trainable_state_.items())


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_a_huge_finite_reward_stops_with_an_error_naming_the_rewards(tiny_llama, algorithm):
    # 1e300 is finite, but its advantages overflow float32: the tuned policy would become NaN.
    sft = FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=3, random_state=0).fit(X, Y)
    state = {k: v.copy() for k, v in sft.trainable_state_.items()}
    huge = PreferenceTuner(
        lambda p, c: [1e300 * (i % 2) for i in range(len(c))], sft, algorithm=algorithm, batch_size=2, n_generations=2
    )
    with pytest.raises(NonFiniteLossError, match=r"step 1 .*loss is (nan|inf).*rewards of extreme magnitude"):
        huge.fit(X[:4])
    assert not hasattr(huge, "generator_")
    assert all(np.array_equal(v, state[k]) for k, v in sft.trainable_state_.items())


def test_dpo_stops_on_a_non_finite_loss(tiny_llama, monkeypatch):
    import skllm._preference

    monkeypatch.setattr(skllm._preference, "dpo_loss", _nan_at_second_call(skllm._preference.dpo_loss))
    tuner = PreferenceTuner(
        generator=FineTuneGenerator(tiny_llama, max_new_tokens=3), algorithm="dpo", batch_size=2, random_state=0
    )
    with pytest.raises(NonFiniteLossError, match=r"PreferenceTuner\('dpo'\) stopped training at step 2"):
        tuner.fit(PAIRS)
    assert not hasattr(tuner, "history_")


def _same_searches(a, b):
    for key in ("mean_test_score", "split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(a.cv_results_[key], b.cv_results_[key])


def test_generator_fits_in_threads_of_one_process_same_as_one_at_a_time(tiny_llama):
    gen = FineTuneGenerator(tiny_llama, epochs=1, batch_size=4, max_new_tokens=3, metric="chrf", random_state=0)
    grid = {"learning_rate": [1e-3, 5e-2]}
    with joblib.parallel_backend("threading", n_jobs=2):
        threaded = GridSearchCV(gen, grid, cv=2, n_jobs=2, refit=False).fit(X, Y)
    _same_searches(threaded, GridSearchCV(clone(gen), grid, cv=2, refit=False).fit(X, Y))


def test_preference_tuner_fits_in_threads_of_one_process_same_as_one_at_a_time(tiny_llama):
    def brevity(prompts, completions):
        return [-len(c) / 10 for c in completions]

    tuner = PreferenceTuner(
        brevity, FineTuneGenerator(tiny_llama, max_new_tokens=4), batch_size=2, n_generations=2, random_state=0
    )
    grid = {"learning_rate": [1e-3, 5e-2]}
    with joblib.parallel_backend("threading", n_jobs=2):
        threaded = GridSearchCV(tuner, grid, cv=2, n_jobs=2, refit=False).fit(X[:8])
    _same_searches(threaded, GridSearchCV(clone(tuner), grid, cv=2, refit=False).fit(X[:8]))


def test_generator_epochs_follow_the_method_default_and_zero_is_refused(tiny_llama):
    gen = FineTuneGenerator(tiny_llama, method="prompt", batch_size=6, max_new_tokens=3, random_state=0).fit(X, Y)
    assert gen.n_iter_ == len(gen.loss_curve_) == skllm.PromptTuning.default_epochs
    with pytest.raises(ValueError, match="epochs must be an integer >= 1 or None, got 0"):
        FineTuneGenerator(tiny_llama, epochs=0).fit(X, Y)


def test_generator_early_stopping_keeps_the_best_epoch_and_warm_start_continues(tiny_llama):
    common = dict(batch_size=4, max_new_tokens=3, random_state=0, learning_rate=5e-2)
    gen = FineTuneGenerator(tiny_llama, epochs=6, early_stopping=True, validation_fraction=0.25, **common)
    gen.fit(X, Y)
    scores = gen.validation_scores_
    assert len(scores) == gen.n_iter_ and gen.best_validation_score_ == max(scores)
    assert gen.n_iter_ == 6 or scores[-1] < max(scores)

    warm = FineTuneGenerator(tiny_llama, epochs=1, warm_start=True, **common).fit(X, Y)
    first = {k: v.copy() for k, v in warm.trainable_state_.items()}
    warm.fit(X, Y)
    cold = FineTuneGenerator(tiny_llama, epochs=1, **common).fit(X, Y)
    assert any(not np.array_equal(first[k], v) for k, v in warm.trainable_state_.items())
    assert all(np.array_equal(first[k], v) for k, v in cold.trainable_state_.items())  # same seed, fresh start


def test_old_generator_and_tuner_pickles_get_the_new_parameters():
    gen = FineTuneGenerator()
    state = {k: v for k, v in vars(gen).items() if k not in ("early_stopping", "warm_start")}
    restored = FineTuneGenerator.__new__(FineTuneGenerator)
    restored.__setstate__(dict(state))
    assert restored.get_params()["early_stopping"] is False and restored.get_params()["warm_start"] is False
    state = {k: v for k, v in vars(PreferenceTuner()).items() if k not in ("weight_decay", "warmup_ratio")}
    old = PreferenceTuner.__new__(PreferenceTuner)
    old.__setstate__(dict(state))
    assert (old.weight_decay, old.warmup_ratio) == (0.0, 0.0)  # what such a tuner trained with


def test_no_method_name_is_compared_as_a_string_outside_the_methods_package():
    names = set(skllm._methods.METHODS)
    # Alone, "full" and "prompt" are ordinary words (a DataFrame's "prompt" column); in a
    # collection of two or more method names they count.
    alone = names - {"full", "prompt"}
    package = Path(skllm.__file__).parent
    found = []
    for path in package.rglob("*.py"):
        if "_methods" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                literals = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                found += [f"{path.name}:{node.lineno}" for c in literals if c.value in alone]
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                if sum(isinstance(e, ast.Constant) and e.value in names for e in node.elts) >= 2:
                    found.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Dict):
                if sum(isinstance(k, ast.Constant) and k.value in names for k in node.keys) >= 2:
                    found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_a_network_with_nothing_to_train_is_refused_with_a_clear_error():
    import torch

    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="FineTuneClassifier has nothing to train"):
        _optimisation(frozen, who="FineTuneClassifier")


@pytest.mark.parametrize("cache_frozen", [True, False])
def test_partial_fine_tuning_predicts_in_threads_as_one_at_a_time(tiny_bert, texts, cache_dir, cache_frozen):
    import threading

    from skllm import PartialFineTuning

    X_, y = texts
    method = PartialFineTuning(n_last_layers=1, cache_frozen=cache_frozen)
    model = FineTuneClassifier(tiny_bert, method=method, epochs=1, batch_size=1, random_state=0, cache_dir=cache_dir)
    model.fit(X_[:16], y[:16])
    batches = [X_[:12], ["awful " * (i % 7 + 1) + "dull" for i in range(12)]]
    expected = [model.predict_proba(batch) for batch in batches]
    results, errors = [[], []], []

    def work(i):
        try:
            for _ in range(8):
                results[i].append(model.predict_proba(batches[i]))
        except Exception as exc:  # the hidden states of the other thread's batch
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for got, want in zip(results, expected):
        for proba in got:
            np.testing.assert_allclose(proba, want, atol=1e-6)


@pytest.mark.parametrize("estimator", ["lora", "prefix", "adapter", "early stopping", "generator", "rloo", "dpo"])
def test_frozen_weights_held_in_bfloat16_train_the_model_autocast_trains(
    estimator, tiny_bert, tiny_llama, texts, monkeypatch
):
    # Held cast for the whole fit (skllm._device.frozen_weights_in), not cast at each call.
    import contextlib

    import torch

    from skllm import _training

    held, real = [], _training.frozen_weights_in

    @contextlib.contextmanager
    def counting(network, device, dtype):
        # Within each call of a layer, after the engine's hook: its weight in bfloat16 (outside, float32).
        with real(network, device, dtype):
            linear = [m for m in network.modules() if type(m) is torch.nn.Linear]
            hooks = [m.register_forward_pre_hook(lambda m, a: held.append(m.weight.dtype)) for m in linear]
            yield
            assert all(m.weight.dtype == torch.float32 for m in linear)
        for hook in hooks:
            hook.remove()

    def fit():
        common = {"random_state": 0, "dtype": "bfloat16"}
        if estimator == "generator":
            return FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=2, **common).fit(X, Y)
        if estimator in ("rloo", "dpo"):
            generator = FineTuneGenerator(tiny_llama, max_new_tokens=2, **common)
            reward = None if estimator == "dpo" else (lambda p, c: [float(len(a)) for a in c])
            tuner = PreferenceTuner(reward, generator, algorithm=estimator, batch_size=2, n_generations=2)
            return tuner.set_params(random_state=0).fit(PAIRS if estimator == "dpo" else X[:4]).generator_
        params = {"early_stopping": True, "epochs": 3} if estimator == "early stopping" else {"epochs": 2}
        method = "lora" if estimator == "early stopping" else estimator
        clf = FineTuneClassifier(tiny_bert, method=method, cache_dir=None, batch_size=4, **common, **params)
        return clf.fit(*texts)

    monkeypatch.setattr(_training, "frozen_weights_in", counting)
    held_cast = fit()
    assert torch.bfloat16 in held
    monkeypatch.setattr(_training, "frozen_weights_in", lambda *args: contextlib.nullcontext())
    cast_per_call = fit()
    assert sorted(held_cast.trainable_state_) == sorted(cast_per_call.trainable_state_)
    for name, value in cast_per_call.trainable_state_.items():
        np.testing.assert_array_equal(held_cast.trainable_state_[name], value, err_msg=name)
    assert all(p.dtype == torch.float32 for p in held_cast.network_.parameters())  # back in float32 after the fit


def test_tied_and_shared_weights_are_not_held_cast(tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM

    from skllm._device import frozen_weights_in
    from skllm._models import load_backbone, resolve_model

    tied = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tied.lm_head.weight = tied.get_input_embeddings().weight
    tied.requires_grad_(False)

    def weights_in_calls(model):
        seen = {}
        hooks = [
            m.register_forward_pre_hook(lambda m, a, name=name: seen.setdefault(name, set()).add(m.weight.dtype))
            for name, m in model.named_modules()
            if type(m) is torch.nn.Linear
        ]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(torch.tensor([[1, 2, 3]]))
        model(torch.tensor([[1, 2, 3]]))  # without autocast: float32
        for hook in hooks:
            hook.remove()
        return seen

    with frozen_weights_in(tied, torch.device("cpu"), "bfloat16"):
        seen = weights_in_calls(tied)
    assert seen["lm_head"] == {torch.float32}  # the embedding's lookup would return bfloat16
    assert seen["model.layers.0.self_attn.q_proj"] == {torch.bfloat16, torch.float32}
    shared, _ = load_backbone(resolve_model(tiny_llama), torch.device("cpu"), kind="causal-lm")
    with frozen_weights_in(shared, torch.device("cpu"), "bfloat16"):  # other estimators may be running it
        assert set().union(*weights_in_calls(shared).values()) == {torch.float32}


def test_held_weights_go_back_after_an_interrupt_and_a_copy_of_the_network_runs(tiny_llama):
    # torch skips a forward hook for a KeyboardInterrupt inside the call; deepcopy keeps the hooks.
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from skllm._device import frozen_weights_in

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).requires_grad_(False)
    query = model.model.layers[0].self_attn.q_proj
    ids = torch.tensor([[1, 2, 3]])

    def interrupt(module, args, output):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with frozen_weights_in(model, torch.device("cpu"), "bfloat16"):
            handle = query.register_forward_hook(interrupt)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(ids)
    handle.remove()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    expected = model(ids).logits
    with frozen_weights_in(model, torch.device("cpu"), "bfloat16"):
        copied = copy.deepcopy(model)
    torch.testing.assert_close(copied(ids).logits, expected, rtol=0, atol=0)


def test_early_stopping_keeps_a_text_of_every_class_in_training():
    from sklearn.model_selection import train_test_split

    from skllm._splits import validation_split

    # 3 of 10 held out for 4 classes: too few to stratify; a plain split held out both texts of a
    # class for 34 of 200 seeds, and the model never trained on it.
    labels = np.array(list("aabbccdddd"))
    for seed in range(200):
        train, valid = validation_split(np.arange(10), 0.3, seed, labels)
        assert set(labels[train]) == set("abcd"), seed
        assert len(valid) == 3 and sorted([*train, *valid]) == list(range(10))
    # A split that can be stratified is left as it was.
    expected = train_test_split(np.arange(10), test_size=0.4, random_state=0, stratify=labels)
    for got, want in zip(validation_split(np.arange(10), 0.4, 0, labels), expected):
        np.testing.assert_array_equal(got, want)
    # No class has a text to spare: fewer are held out, and none where every class has one text.
    few = np.array(list("aabc"))
    for seed in range(20):
        train, valid = validation_split(np.arange(4), 0.75, seed, few)
        assert set(few[train]) == set("abc") and len(valid) == 1
    with pytest.raises(ValueError, match=r"validation_fraction=0.5: .* each the only one of their class"):
        validation_split(np.arange(2), 0.5, 0, np.array(["a", "b"]))


def test_a_classifier_with_early_stopping_trains_on_every_class(tiny_bert, cache_dir, monkeypatch):
    import skllm._finetune_base as base

    # As a user reaches the split: 3 of 10 texts held out for 4 classes (seed 0 held out both 'c' texts).
    splits = []
    monkeypatch.setattr(base, "validation_split", lambda *a, **k: splits.append(base_split(*a, **k)) or splits[-1])
    X_ = ["great film", "loved it", "awful film", "hated it", "dull story", "boring and long",
          "fun story", "good acting", "best movie", "funny and great"]  # fmt: skip
    y = ["a", "a", "b", "b", "c", "c", "d", "d", "d", "d"]
    FineTuneClassifier(
        tiny_bert, method="head", epochs=1, max_length=16, cache_dir=cache_dir, early_stopping=True,
        validation_fraction=0.3, random_state=0,
    ).fit(X_, y)  # fmt: skip
    ((train, valid),) = splits
    assert {y[i] for i in train} == set("abcd") and len(valid) == 3


def test_a_regressor_holds_out_targets_of_two_values_where_it_has_them(tiny_bert, cache_dir, monkeypatch):
    import skllm._finetune_base as base

    # 18 of 24 targets equal: a plain split held out 3 rows of 5.0 for random_state 1, 2 and 5 of 0-5, and
    # R² (0 for equal targets, whatever the predictions) stopped the fit on nothing.
    y = np.array([5.0] * 18 + [1, 2, 3, 4, 2, 1])
    for seed in range(30):
        train, valid = base_split(np.arange(24), 0.1, seed, varied=y)
        assert len(set(y[valid])) >= 2 and len(valid) == 3 and sorted([*train, *valid]) == list(range(24)), seed
    # Equal targets everywhere: nothing to swap.
    train, valid = base_split(np.arange(24), 0.1, 0, varied=np.zeros(24))
    assert len(valid) == 3 and len(train) == 21
    # As a user reaches it: the regressor's split holds out targets that vary.
    splits = []
    monkeypatch.setattr(base, "validation_split", lambda *a, **k: splits.append(base_split(*a, **k)) or splits[-1])
    X_ = [f"great film {i}" for i in range(24)]
    FineTuneRegressor(
        tiny_bert, method="head", epochs=1, max_length=16, cache_dir=cache_dir, early_stopping=True,
        validation_fraction=0.1, random_state=1,
    ).fit(X_, y)  # fmt: skip
    ((train, valid),) = splits
    assert len(set(y[valid])) >= 2
