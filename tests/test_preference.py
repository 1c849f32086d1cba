"""PreferenceTuner's KL control, PPO, the guard against a gamed reward, and its input checks (tiny models)."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV

from skllm import FineTuneGenerator, PreferenceTuner, PromptTuning, RewardModel
from skllm._rl import RunningMoments, _HackingGuard, adaptive_kl_coef, gae_advantages, ppo_loss
from skllm.exceptions import RewardHackingWarning, TruncationWarning

from helpers import untrained_generator

PROMPTS = ["great film", "awful film", "loved it", "hated it", "the story", "the actor"]
PAIRS = pd.DataFrame(
    {
        "prompt": ["the film was"] * 4,
        "chosen": ["great fun", "loved it", "the best movie", "good acting"],
        "rejected": ["awful and dull", "hated it", "the worst movie", "bad acting"],
    }
)


def count_good(prompts, completions):
    return [float(c.count("good")) - 0.1 * len(c) for c in completions]


def length(prompts, completions):
    return [float(len(c)) for c in completions]


@pytest.fixture(scope="module")
def policy(tiny_llama):
    return untrained_generator(tiny_llama, max_new_tokens=4, random_state=0)


def quiet_fit(tuner, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RewardHackingWarning)
        return tuner.fit(X)


# -- the pieces, against their definitions ------------------------------------------------


def test_running_moments_standardise_by_every_reward_seen():
    moments = RunningMoments()
    first, second = np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0])
    moments.normalise(first)
    out = moments.normalise(second)
    everything = np.concatenate([first, second])
    np.testing.assert_allclose(out, (second - everything.mean()) / everything.std(ddof=1))
    # The scale of the reward does not matter any more.
    a, b = RunningMoments(), RunningMoments()
    np.testing.assert_allclose(a.normalise(first * 1000 + 7), b.normalise(first))


def test_the_kl_controller_moves_towards_the_target_by_at_most_a_fifth_of_n_over_the_horizon():
    assert adaptive_kl_coef(0.1, 3.0, 3.0, 16) == pytest.approx(0.1)
    assert adaptive_kl_coef(0.1, 30.0, 3.0, 16) == pytest.approx(0.1 * (1 + 0.2 * 16 / 64))
    assert adaptive_kl_coef(0.1, 0.0, 3.0, 16) == pytest.approx(0.1 * (1 - 0.2 * 16 / 64))
    assert adaptive_kl_coef(0.1, 3.3, 3.0, 16) == pytest.approx(0.1 * (1 + 0.1 * 16 / 64))
    # A step of more answers than the horizon moves it by the whole clipped error, never to 0 or below.
    assert adaptive_kl_coef(0.1, 0.0, 3.0, 512) == pytest.approx(0.08)
    assert adaptive_kl_coef(0.1, 30.0, 3.0, 320) == pytest.approx(0.12)


def test_gae_with_lambda_1_is_the_return_and_with_lambda_0_the_one_step_error():
    # One answer of 3 tokens in columns 1-3 (column 0 belongs to another answer's layout).
    mask = torch.tensor([[False, True, True, True]])
    rewards = torch.tensor([[0.0, 1.0, 2.0, 4.0]])
    values = torch.tensor([[0.0, 0.5, 1.0, 1.5]])
    advantages, returns = gae_advantages(rewards, values, mask, lam=1.0)
    np.testing.assert_allclose(returns[0, 1:], [7.0, 6.0, 4.0])
    np.testing.assert_allclose(advantages[0, 1:], [6.5, 5.0, 2.5])
    advantages, _ = gae_advantages(rewards, values, mask, lam=0.0)
    np.testing.assert_allclose(advantages[0, 1:], [1.0 + 1.0 - 0.5, 2.0 + 1.5 - 1.0, 4.0 - 1.5])
    assert advantages[0, 0] == 0


def test_ppo_loss_clips_the_ratio():
    mask = torch.ones(1, 2, dtype=torch.bool)
    old = torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, -1.0]])
    zeros = torch.zeros(1, 2)
    # Ratios e^1 (positive advantage: clipped at 1.2) and e^-1 (negative advantage: clipped at 0.8).
    logp = torch.tensor([[1.0, -1.0]])
    _, policy, value = ppo_loss(logp, old, advantages, zeros, zeros, zeros, mask, 0.2)
    assert float(policy) == pytest.approx((-1.2 + 0.8) / 2)
    assert float(value) == 0


# -- RLOO and PPO on the tiny Llama -------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("template", "{txt}", r"template='\{txt\}' must contain"),
        ("max_new_tokens", 0, "max_new_tokens must be an integer >= 1, got 0"),
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("stop_at_newline", "yes", "stop_at_newline must be True or False"),  # was read as True
    ],
)
def test_a_fitted_generators_settings_changed_since_its_fit_are_checked_as_its_predict_does(
    policy, param, value, message
):
    generator = pickle.loads(pickle.dumps(policy)).set_params(**{param: value})
    with pytest.raises(ValueError, match=message):
        generator.predict(PROMPTS[:1])
    tuner = PreferenceTuner(length, generator, n_generations=2, batch_size=2, random_state=0)
    with pytest.raises(ValueError, match=message):
        tuner.fit(PROMPTS)
    assert not hasattr(tuner, "generator_")


@pytest.mark.parametrize(("algorithm", "X"), [("rloo", PROMPTS), ("dpo", PAIRS)])
def test_a_y_is_refused_not_dropped(policy, algorithm, X):
    # "First preferred" labels and the like would otherwise be ignored without a word.
    tuner = PreferenceTuner(None if algorithm == "dpo" else length, policy, algorithm=algorithm)
    with pytest.raises(
        ValueError, match=r"PreferenceTuner.fit takes no y: X holds all it trains on.*Got y of type list"
    ):
        tuner.fit(X, [1] * len(X))
    assert not hasattr(tuner, "generator_")


def test_ppo_trains_a_value_head_and_drops_it(policy):
    tuner = PreferenceTuner(
        length,
        policy,
        algorithm="ppo",
        epochs=1,
        batch_size=2,
        n_generations=2,
        ppo_epochs=2,
        learning_rate=5e-2,
        random_state=0,
    )
    tuner.fit(PROMPTS[:4])
    history = tuner.history_
    assert list(history.columns) == ["step", "reward", "kl", "kl_coef", "loss", "length"]
    assert tuner.n_steps_ == 2 and history["kl"].iloc[0] == 0.0 and history["kl"].iloc[1] != 0.0
    # The KL never reached the target (3 nats), so the controller held the coefficient.
    assert (history["kl"] < 3).all() and (history["kl_coef"] == tuner.kl_coef).all() and tuner.kl_coef_ == 0.1
    assert not any("value" in name for name in tuner.generator_.trainable_state_)
    restored = pickle.loads(pickle.dumps(tuner))
    assert restored.predict(PROMPTS[:2]).tolist() == tuner.predict(PROMPTS[:2]).tolist()
    again = PreferenceTuner(**tuner.get_params(deep=False)).fit(PROMPTS[:4])
    pd.testing.assert_frame_equal(again.history_, history)


def test_ppo_reads_the_values_past_the_virtual_tokens_of_prompt_tuning(tiny_llama):
    generator = FineTuneGenerator(tiny_llama, method=PromptTuning(n_virtual_tokens=3), max_new_tokens=3)
    tuner = PreferenceTuner(length, generator, algorithm="ppo", batch_size=2, n_generations=2, ppo_epochs=2)
    tuner.fit(PROMPTS[:2])
    assert tuner.history_["kl"].iloc[0] == 0.0 and np.isfinite(tuner.history_["loss"]).all()


@pytest.mark.parametrize("algorithm", ["rloo", "ppo"])
def test_with_stop_at_newline_only_the_first_line_is_rewarded_trained_and_counted(tiny_llama, monkeypatch, algorithm):
    gen = untrained_generator(tiny_llama, max_new_tokens=8, stop_at_newline=True, random_state=0)
    tokenizer = gen.tokenizer_
    line = tokenizer("good\n", add_special_tokens=False)["input_ids"]
    sampled = tokenizer("good\nbad bad", add_special_tokens=False)["input_ids"]
    assert sampled[: len(line)] == line and len(sampled) > len(line)
    generate = FineTuneGenerator._generate_ids

    def fixed_samples(self, prompts, **kwargs):  # every sampled answer: a first line, then more
        return [list(sampled) for _ in prompts] if kwargs.get("do_sample") else generate(self, prompts, **kwargs)

    monkeypatch.setattr(FineTuneGenerator, "_generate_ids", fixed_samples)
    seen = []

    def reward(prompts, completions):
        seen.extend(completions)
        return [float(len(c)) for c in completions]

    tuner = PreferenceTuner(reward, gen, algorithm=algorithm, batch_size=2, n_generations=2, random_state=0)
    tuner.fit(PROMPTS[:2])
    assert set(seen) == {"good"}
    assert (tuner.history_["length"] == len(line)).all()  # not len(sampled): the rest is never read


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_reference_shares_the_policys_frozen_weights_and_copies_the_trained(tiny_llama, method, monkeypatch):
    from skllm import _preference

    real, seen = _preference.frozen_copy, {}

    def recording(network, shares=None):
        reference = real(network, shares)
        frozen = {p.untyped_storage().data_ptr() for p in network.parameters() if not p.requires_grad}
        trained = {p.untyped_storage().data_ptr() for p in network.parameters() if p.requires_grad}
        held = [p.untyped_storage().data_ptr() for p in reference.parameters()]
        seen.update(frozen=sum(q in frozen for q in held), trained=sum(q in trained for q in held), all=len(held))
        seen["requires_grad"] = any(p.requires_grad for p in reference.parameters())
        return reference

    monkeypatch.setattr(_preference, "frozen_copy", recording)
    policy = untrained_generator(tiny_llama, method=method, max_new_tokens=4, random_state=0)
    PreferenceTuner(length, policy, batch_size=2, n_generations=2, random_state=0).fit(PROMPTS[:4])
    assert seen["trained"] == 0 and not seen["requires_grad"]
    if method == "full":
        assert seen["frozen"] == 0
    else:  # all but the adapters
        assert seen["frozen"] >= 0.5 * seen["all"]


def test_a_fixed_kl_coef_without_target_kl(policy):
    tuner = PreferenceTuner(length, policy, target_kl=None, kl_coef=0.3, batch_size=2, n_generations=2, random_state=0)
    tuner.fit(PROMPTS[:4])
    assert (tuner.history_["kl_coef"] == 0.3).all() and tuner.kl_coef_ == 0.3


def test_the_kl_coefficient_is_held_until_the_kl_first_reaches_the_target(policy):
    params = dict(batch_size=2, n_generations=2, kl_coef=0.2, epochs=2, learning_rate=0.05, random_state=0)
    held = PreferenceTuner(length, policy, target_kl=1e6, **params).fit(PROMPTS)
    assert (held.history_["kl_coef"] == 0.2).all() and held.kl_coef_ == 0.2
    moving = PreferenceTuner(length, policy, target_kl=1e-6, **params).fit(PROMPTS)
    kl, coef = moving.history_["kl"].to_numpy(), moving.history_["kl_coef"].to_numpy()
    assert kl[0] == 0.0 and (kl >= 1e-6).any()
    first = int(np.argmax(kl >= 1e-6))
    assert (coef[: first + 1] == 0.2).all()  # each step's coefficient is the one its penalty used
    assert moving.kl_coef_ != 0.2


def test_the_guard_warns_when_the_training_reward_rises_and_the_validation_score_does_not():
    records = []
    guard = _HackingGuard(records)
    for reward, score in [(0.0, 0.1), (1.0, 0.5), (2.0, 0.4), (3.0, 0.3)]:
        records += [{"reward": reward}, {"reward": reward}]
        if score == 0.3:
            with pytest.warns(RewardHackingWarning, match=r"rose from 1 to 3 over the last 2 evaluations.*step 3"):
                guard.check(score)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                guard.check(score)
    assert guard.best_step() == 3
    # A validation score that keeps up, or a training reward that falls too, is no alarm.
    for rewards, scores in [([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4]), ([0, 3, 2, 1], [0.1, 0.5, 0.4, 0.3])]:
        records = []
        guard = _HackingGuard(records)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for reward, score in zip(rewards, scores):
                records.append({"reward": float(reward)})
                guard.check(score)


@pytest.mark.parametrize("max_new_tokens", [None, 2])
def test_validation_records_both_scorers_and_keeps_the_best_step(policy, max_new_tokens):
    # The judge disagrees with the reward: it prefers short answers while the reward pays for length.
    # Training answers of 2 tokens: the validation answers are still predict's, of the generator's 4.
    seen = []

    def judge(prompts, completions):
        seen.append(list(prompts))
        return [-float(len(c)) for c in completions]

    tuner = PreferenceTuner(
        length,
        policy,
        eval_reward=judge,
        validation_fraction=0.25,
        eval_every=1,
        batch_size=1,
        n_generations=2,
        learning_rate=0.3,
        target_kl=None,
        kl_coef=0.0,
        max_new_tokens=max_new_tokens,
        random_state=0,
    )
    quiet_fit(tuner, PROMPTS[:4] + PROMPTS[:1])
    history = tuner.history_
    assert {"eval_reward", "val_reward", "val_eval_reward"} <= set(history.columns)
    assert history["val_eval_reward"].notna().all()  # eval_every=1: every step
    np.testing.assert_allclose(history["eval_reward"], -history["reward"])
    assert tuner.best_step_ == int(history["val_eval_reward"].idxmax())
    validation = [p for p in seen if len(p) == 1][-1]  # training steps score 2 answers, validation 1
    kept = tuner.predict(validation)
    assert -len(kept[0]) == history["val_eval_reward"].iloc[tuner.best_step_]


def test_validation_every_n_steps_and_a_too_large_fraction(policy):
    tuner = PreferenceTuner(
        length, policy, validation_fraction=0.2, eval_every=2, batch_size=1, n_generations=2, random_state=0
    )
    quiet_fit(tuner, PROMPTS[:5])  # 1 validation prompt, 4 steps per pass, PPO's 2 passes: evaluated every 2 steps
    assert tuner.history_["val_reward"].notna().tolist() == [False, True] * 4
    assert "val_eval_reward" not in tuner.history_
    with pytest.raises(ValueError, match=r"validation_fraction=0.9 of 2 distinct prompts leaves none to train on"):
        PreferenceTuner(length, policy, validation_fraction=0.9).fit(PROMPTS[:2])


def test_the_validation_split_holds_out_every_copy_of_a_prompt():
    from skllm._online import split_prompts

    prompts = ["a", "a", "b", "b", "c", "c"]
    train, validation = split_prompts(prompts, 0.34, np.random.RandomState(0))
    assert sorted(train + validation) == list(range(6))
    assert not {prompts[i] for i in train} & {prompts[i] for i in validation}
    # Distinct prompts: the split is the one drawn before copies were grouped.
    train, validation = split_prompts(list("abcdef"), 0.34, np.random.RandomState(0))
    order = np.random.RandomState(0).permutation(6)
    assert validation == sorted(order[:2].tolist()) and train == sorted(order[2:].tolist())


# -- inputs that used to pass silently ------------------------------------------------------


def test_dpo_refuses_pairs_that_truncation_makes_identical_and_names_the_users_rows(policy):
    from skllm.exceptions import TruncationWarning

    long = "great film " * 40
    pairs = PAIRS.assign(chosen=["great fun", long + "good", "the best movie", "good acting"])
    pairs.loc[1, "rejected"] = long + "bad"
    with pytest.warns(TruncationWarning, match=r"rows \[1\]"):  # the pair's row, not its place among 2n texts
        with pytest.raises(ValueError, match=r"1 preference pair\(s\), at rows \[1\], are the same once cut"):
            PreferenceTuner(generator=clone(policy).set_params(max_length=32), algorithm="dpo").fit(pairs)


def test_a_reward_returning_a_list_of_tensors_that_require_grad_is_read(policy):
    weight = torch.tensor(2.0, requires_grad=True)
    tuner = PreferenceTuner(lambda p, c: [weight * len(x) for x in c], policy, batch_size=2, n_generations=2)
    quiet_fit(tuner.set_params(epochs=1, random_state=0), PROMPTS[:2])
    assert np.isfinite(tuner.history_["reward"]).all()


def test_the_answers_of_a_pair_are_scored_after_the_same_cut_of_its_prompt(tiny_llama):
    g = untrained_generator(tiny_llama, max_length=24, max_new_tokens=4, random_state=0)
    prompt = "the film was great and the story was fun and the actor was good and it was long"
    answers = ["ok", "the worst movie and bad acting"]
    with pytest.warns(TruncationWarning):
        ids, labels = g._examples([prompt, prompt], answers, rows=[0, 0])
    prompts = [row[: lab.count(-100)] for row, lab in zip(ids, labels)]
    assert prompts[0] == prompts[1] and max(map(len, ids)) <= 24
    # Alone, the short answer's prompt keeps more of the text.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        _, alone_labels = g._examples([prompt], answers[:1])
    assert alone_labels[0].count(-100) > len(prompts[0])


def test_dpo_refuses_a_reward_it_would_ignore(policy):
    with pytest.raises(ValueError, match=r"algorithm='dpo' learns from the preference pairs alone.*\['reward'\]"):
        PreferenceTuner(length, policy, algorithm="dpo").fit(PAIRS)
    with pytest.raises(ValueError, match=r"does not use \['eval_reward'\]"):
        PreferenceTuner(generator=policy, algorithm="dpo", eval_reward=length).fit(PAIRS)


def test_pairs_given_to_an_algorithm_that_learns_from_prompts_point_to_dpo(policy):
    with pytest.raises(ValueError, match=r"X holds preference pairs .* set algorithm='dpo'.*X\['prompt'\]"):
        PreferenceTuner(length, policy, algorithm="rloo").fit(PAIRS)


def test_dpo_refuses_empty_chosen_responses_naming_the_users_rows(policy):
    pairs = PAIRS.assign(chosen=["great fun", "  ", "the best movie", ""]).set_axis([100, 101, 102, 103])
    with pytest.raises(ValueError, match=r"2 empty chosen response\(s\), at rows \[101, 103\]"):
        PreferenceTuner(generator=policy, algorithm="dpo").fit(pairs)
    # Ranked lists: the rows of the pair's two responses, not its place among the pairs made from them.
    ranked = pd.DataFrame({"prompt": ["A", "A", "B", "B"], "response": ["x", "y", "", "z"], "rank": [1, 2, 1, 2]})
    with pytest.raises(ValueError, match=r"at the pairs of rows \(chosen, rejected\) \[\(2, 3\)\]"):
        PreferenceTuner(generator=policy, algorithm="dpo").fit(ranked)


def test_a_reward_returning_a_series_is_read_by_its_index(policy):
    tuner = PreferenceTuner(length, policy, batch_size=2, n_generations=2)
    completions = ["xxxxx", "x", "xxx"]
    shuffled = lambda p, c: pd.Series([float(len(x)) for x in c]).sort_values()  # noqa: E731
    np.testing.assert_array_equal(tuner._rewards(["a"] * 3, completions, shuffled), [5.0, 1.0, 3.0])
    labelled = lambda p, c: pd.Series([1.0] * len(c), index=[10 + i for i in range(len(c))])  # noqa: E731
    with pytest.raises(ValueError, match=r"reward returned a pandas Series indexed \[10, 11, 12\].*0 to 2"):
        tuner._rewards(["a"] * 3, completions, labelled)


def test_a_reward_that_cannot_be_called_with_prompts_and_completions_is_named_before_loading(policy, reward_model):
    with pytest.raises(ValueError, match=r"reward is the predict method of a RewardModel.*pass the RewardModel itself"):
        PreferenceTuner(reward_model.predict, policy).fit(PROMPTS)
    with pytest.raises(ValueError, match=r"reward is called as reward\(prompts, completions\).*cannot take them"):
        PreferenceTuner(lambda completions: [1.0] * len(completions), policy).fit(PROMPTS)
    with pytest.raises(ValueError, match="temperature"):
        PreferenceTuner(length, policy, temperature=1e-300).fit(PROMPTS)


def test_new_parameters_are_validated(policy):
    with pytest.raises(ValueError, match="target_kl"):
        PreferenceTuner(length, policy, target_kl=0).fit(PROMPTS)
    with pytest.raises(ValueError, match="clip_range"):
        PreferenceTuner(length, policy, algorithm="ppo", clip_range=-1).fit(PROMPTS)
    with pytest.raises(ValueError, match="eval_reward must be a fitted RewardModel or a callable, got int"):
        PreferenceTuner(length, policy, eval_reward=3).fit(PROMPTS)
    with pytest.raises(ValueError, match="algorithm="):
        PreferenceTuner(length, policy, algorithm="ppo2").fit(PROMPTS)


@pytest.fixture(scope="module")
def reward_model(tiny_bert):
    pairs = pd.DataFrame({"prompt": ["a"] * 4, "chosen": ["good fun"] * 4, "rejected": ["bad dull"] * 4})
    return RewardModel(tiny_bert, epochs=1, batch_size=4, random_state=0).fit(pairs)


def test_an_unfitted_reward_model_is_named_and_a_frozen_one_survives_clone_and_grid_search(policy, reward_model):
    with pytest.raises(ValueError, match=r"reward is an unfitted RewardModel.*FrozenEstimator"):
        clone(PreferenceTuner(reward_model, policy)).fit(PROMPTS)
    tuner = PreferenceTuner(
        FrozenEstimator(reward_model), FrozenEstimator(policy), batch_size=2, n_generations=2, random_state=0
    )
    cloned = clone(tuner)
    np.testing.assert_allclose(cloned.reward.predict([("a", "good fun")]), reward_model.predict([("a", "good fun")]))
    search = GridSearchCV(tuner, {"kl_coef": [0.05, 0.5]}, cv=2, refit=False).fit(PROMPTS[:4])
    assert set(search.cv_results_["param_kl_coef"]) == {0.05, 0.5}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_nested_method_parameters_with_a_method_given_by_name():
    from skllm._methods import LoRA

    tuner = PreferenceTuner(method="lora").set_params(method__r=4)
    assert isinstance(tuner.method, LoRA) and tuner.method.r == 4
    assert clone(tuner).get_params()["method__r"] == 4


def test_max_new_tokens_that_leave_no_room_for_the_prompt_are_named(tiny_llama):
    tuner = PreferenceTuner(
        reward=lambda p, c: [0.0] * len(c),
        generator=FineTuneGenerator(tiny_llama, max_length=32, max_new_tokens=4),
        max_new_tokens=10**12,
    )
    with pytest.raises(ValueError, match=r"max_new_tokens=1000000000000 leaves no room for the prompt.*max_length"):
        tuner.fit(["a prompt", "another prompt"])


@pytest.mark.parametrize("algorithm, passes", [("rloo", 1), ("ppo", 2)])
def test_the_default_number_of_passes_is_per_algorithm(policy, algorithm, passes):
    tuner = PreferenceTuner(length, policy, algorithm=algorithm, batch_size=2, n_generations=2, ppo_epochs=1)
    assert tuner.fit(PROMPTS[:4]).n_steps_ == 2 * passes
    assert tuner.set_params(epochs=3).fit(PROMPTS[:4]).n_steps_ == 6


@pytest.mark.parametrize("algorithm, scale", [("rloo", 5.0), ("ppo", 1.0), ("dpo", 0.1)])
def test_the_default_learning_rate_is_the_methods_scaled_per_algorithm(policy, algorithm, scale):
    tuner = PreferenceTuner(None if algorithm == "dpo" else length, policy, algorithm=algorithm, random_state=0)
    fitted = tuner._policy(0)
    lr = tuner._optimisation(fitted, fitted.network_, 1).optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(fitted.method_.default_learning_rate * scale)
    given = clone(tuner).set_params(learning_rate=2e-4)._optimisation(fitted, fitted.network_, 1)
    assert given.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_the_policy_gradient_reads_the_probabilities_the_answers_were_sampled_with(policy, monkeypatch):
    from skllm import _causal, _online, _rl

    seen = []
    real = _causal.token_logprobs

    def recording(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("temperature", 1.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(_online, "token_logprobs", recording)
    monkeypatch.setattr(_rl, "token_logprobs", recording)
    for algorithm in ("rloo", "ppo"):
        seen.clear()
        tuner = PreferenceTuner(length, policy, algorithm=algorithm, temperature=0.7, batch_size=2, n_generations=2)
        quiet_fit(tuner.set_params(epochs=1, random_state=0), PROMPTS[:2])
        assert seen and set(seen) == {0.7}, algorithm  # the reference's and the policy's alike
    ids, labels = torch.tensor([[1, 5, 7, 9]]), torch.tensor([[-100, -100, 7, 9]])
    with torch.no_grad():
        logits, targets = _causal.scored_logits(policy.network_, ids, torch.ones_like(ids), labels)
        expected = torch.log_softmax(logits / 0.7, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        got, _ = _causal.token_logprobs(policy.network_, ids, torch.ones_like(ids), labels, 0.7)
    torch.testing.assert_close(got, expected)


def test_training_answers_are_drawn_from_the_whole_distribution_whatever_the_generators_top_p(tiny_llama):
    from skllm._sft import FineTuneGenerator

    narrow = untrained_generator(tiny_llama, max_new_tokens=4, random_state=0, top_p=0.1, do_sample=True)
    drawn = []
    real = FineTuneGenerator._generate_ids

    def recording(self, prompts, **kwargs):
        drawn.append(kwargs.get("top_p"))
        return real(self, prompts, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FineTuneGenerator, "_generate_ids", recording)
        tuner = PreferenceTuner(length, narrow, algorithm="rloo", batch_size=2, n_generations=2)
        quiet_fit(tuner.set_params(epochs=1, random_state=0), PROMPTS[:2])
    assert drawn and set(drawn) == {1.0}  # token_logprobs reads the whole tempered distribution
    assert tuner.generator_.top_p == 0.1  # predict keeps the generator's


def test_a_bound_predict_of_another_object_taking_prompts_and_completions_is_a_reward(policy):
    from skllm._rl import check_scorer

    class Scorer:
        def predict(self, prompts, completions):
            return [float(len(c)) for c in completions]

    check_scorer(Scorer().predict, "reward")  # only a RewardModel's predict takes pairs


@pytest.mark.parametrize("dtype, limit", [("float32", 256), ("bfloat16", 256), ("bfloat16", 1)])
@pytest.mark.parametrize("algorithm", ["dpo", "rloo"])
def test_the_first_step_is_at_the_reference(tiny_llama, algorithm, dtype, limit, monkeypatch):
    # The reference must compute as the policy does: under bfloat16 on the CPU with the same attention
    # (eager for batches of at most `limit` positions, else SDPA), and in the same batches, as padding
    # changes sums (DPO's pairs of many lengths, in batches of 3, gave a KL of 3e-6 computed otherwise).
    from skllm import _attention
    from skllm.exceptions import PrecisionWarning

    monkeypatch.setattr(_attention, "EAGER_MAX_WIDTH", limit)
    words = "great fun loved it the best movie good acting awful dull hated worst bad".split()
    pairs = pd.DataFrame(
        {
            "prompt": ["the film was " + " ".join(words[: 1 + i % 7]) for i in range(12)],
            "chosen": [" ".join(words[i % 5 : i % 5 + 1 + (i * 7) % 11]) for i in range(12)],
            "rejected": [" ".join(words[(i + 3) % 5 : (i + 3) % 5 + 1 + (i * 5) % 9]) for i in range(12)],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # a CPU without bfloat16 computes in float32
        generator = untrained_generator(tiny_llama, max_new_tokens=4, random_state=0, dtype=dtype)
        extra = {"n_generations": 2, "batch_size": 2} if algorithm == "rloo" else {"batch_size": 3}
        tuner = PreferenceTuner(None if algorithm == "dpo" else length, generator, algorithm=algorithm,
                                epochs=1, random_state=0, **extra)  # fmt: skip
        quiet_fit(tuner, pairs if algorithm == "dpo" else PROMPTS[:4])
    assert tuner.history_["kl"].iloc[0] == 0.0
