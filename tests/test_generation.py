"""FineTuneGenerator, RewardModel and PreferenceTuner on tiny models built from a config."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from skllm import FewShotGenerator, FineTuneGenerator, LoRA, PreferenceTuner, PromptTuning, RewardModel
from skllm._causal import IGNORE, build_example, pad_examples, sequence_loss, token_logprobs
from skllm._pairs import preference_pairs
from skllm._prompting import decode_answer
from skllm._reward import bradley_terry_loss
from skllm._rl import dpo_loss, rloo_advantages
from skllm.exceptions import SkllmWarning, TruncationWarning

from helpers import untrained_generator

X = ["great film", "awful film", "loved it", "hated it"] * 3
Y = ["good", "bad", "good", "bad"] * 3
PAIRS = pd.DataFrame(
    {
        "prompt": ["the film was"] * 8,
        "chosen": ["great fun", "loved it", "the best movie", "good acting"] * 2,
        "rejected": ["awful and dull", "hated it", "the worst movie", "bad acting"] * 2,
    }
)


def count_good(prompts, completions):
    return [float(c.count("good")) - 0.1 * len(c) for c in completions]


@pytest.fixture(scope="module")
def untrained(tiny_llama):
    return untrained_generator(tiny_llama, max_new_tokens=4, random_state=0)


# -- FineTuneGenerator ---------------------------------------------------------------


def test_labels_mask_exactly_the_prompt_tokens(untrained):
    ids, labels = untrained._examples(X[:2], Y[:2])
    eos = untrained.tokenizer_.eos_token_id
    for text, target, row, lab in zip(X, Y, ids, labels):
        prompt = untrained._encode_prompt(text)
        target_ids = untrained.tokenizer_(target, add_special_tokens=False)["input_ids"] + [eos]
        assert row == prompt + target_ids
        assert lab == [IGNORE] * len(prompt) + target_ids
    assert build_example([5, 6], [7]) == ([5, 6, 7], [IGNORE, IGNORE, 7])


def test_an_answer_ends_at_the_models_own_end_of_turn_token_too(tiny_llama):
    # An instruct model may end its turn with a token of its generation config's, not the tokenizer's eos.
    generator = untrained_generator(tiny_llama, max_new_tokens=6, random_state=0)
    prompts = [generator._encode_prompt("great film")]
    tokens = generator._generate_ids(prompts)[0]
    assert len(tokens) == 6 and generator.tokenizer_.eos_token_id not in tokens
    config = generator.network_._base().generation_config
    config.eos_token_id = [generator.tokenizer_.eos_token_id, tokens[2]]
    cut = tokens[: tokens.index(tokens[2])]
    assert generator._generate_ids(prompts)[0] == cut
    assert generator._generate_ids(prompts, keep_eos=True)[0] == [*cut, tokens[2]]


def test_the_loss_curve_is_the_mean_loss_per_target_token(tiny_llama):
    # Each batch's mean was weighed by its pairs: a long target counted as much as a one-token one.
    from skllm._causal import mean_token_loss
    from skllm._tokens import pad_token_id

    targets = ["good", "the best story of the worst movie and a long boring plot", "ok", "bad"]
    gen = FineTuneGenerator(
        tiny_llama, epochs=1, learning_rate=1e-12, batch_size=1, max_new_tokens=20, random_state=0
    ).fit(X[:4], targets)
    ids, labels = gen._examples(X[:4], targets)
    device, pad = torch.device("cpu"), pad_token_id(gen.tokenizer_)
    per_token = mean_token_loss(gen.network_, ids, labels, [0, 1, 2, 3], pad, device, "float32", 4)
    per_pair = np.mean([mean_token_loss(gen.network_, ids, labels, [i], pad, device, "float32", 1) for i in range(4)])
    assert gen.loss_curve_[0] == pytest.approx(per_token, rel=1e-4) and abs(per_token - per_pair) > 1e-3


def spy_generate(monkeypatch, model):
    """The new tokens of each ``model.generate`` call, recorded in a list as the calls run."""
    calls, generate = [], model.generate

    def spied(**kwargs):
        out = generate(**kwargs)
        calls.append(out[:, kwargs["input_ids"].shape[1] :].tolist())
        return out

    monkeypatch.setattr(model, "generate", spied)
    return calls


def test_a_few_shot_answer_ends_at_the_models_own_end_of_turn_token_too(tiny_llama, monkeypatch):
    # The generation config may name an end of turn that is not the tokenizer's eos (a ChatML fine-tune's
    # config naming </s>): the answer ran past it, into a turn the model made up.
    gen = FewShotGenerator(tiny_llama, n_examples=1, max_new_tokens=6, stop_at_newline=False).fit(X[:2], Y[:2])
    calls = spy_generate(monkeypatch, gen.model_)
    gen.predict(X[:1])
    (tokens,) = calls[0]
    assert len(tokens) == 6 and gen.tokenizer_.eos_token_id not in tokens
    monkeypatch.setattr(gen.model_.generation_config, "eos_token_id", [gen.tokenizer_.eos_token_id, tokens[2]])
    cut = tokens[: tokens.index(tokens[2])]
    assert gen.predict(X[:1])[0] == decode_answer(gen.tokenizer_, cut, False)


def generating_width(widths):
    """``_prompting.generate`` recording in ``widths`` how many tokens each batch generated."""
    from skllm import _prompting

    def recorded(new_tokens, *args, **kwargs):
        def counted(*batch):
            out = new_tokens(*batch)
            widths.append(out.shape[1])
            return out

        return _prompting.generate(counted, *args, **kwargs)

    return recorded


def test_generation_stops_at_the_line_break_that_ends_an_answer(tiny_llama, monkeypatch):
    # With stop_at_newline, every answer of a plain prompt was generated to max_new_tokens and then cut.
    from skllm import _generator, _prompting, _sft

    few_shot = FewShotGenerator(tiny_llama, n_examples=2, max_new_tokens=24, batch_size=3)
    few_shot.fit(X[:4], ["good", "fun", "great", "x"])
    tokenizer = few_shot.tokenizer_
    line = tokenizer("\nfun\nstory", add_special_tokens=False)["input_ids"]
    (stop,) = _prompting.line_end_stop(tokenizer, True)["stopping_criteria"]
    ends = [stop(torch.tensor([[7, 8, *line[:n]]] * 2), None).tolist() for n in range(1, len(line) + 1)]
    first = next(n for n in range(1, len(line) + 1) if "\n" in tokenizer.decode(line[:n]).lstrip())
    assert ends == [[n >= first] * 2 for n in range(1, len(line) + 1)]  # a leading line break ends nothing
    assert _prompting.line_end_stop(tokenizer, False) == {}
    texts = [f"{a} {b}" for a in X[:4] for b in ("story", "the plot", "fun fun fun")]
    fine_tuned = untrained_generator(tiny_llama, max_new_tokens=24, stop_at_newline=True, batch_size=2)
    for estimator, model in [(few_shot, few_shot.model_), (fine_tuned, fine_tuned.network_._base())]:
        # The random tiny model writes a line break now and then, at a different place in each answer.
        monkeypatch.setattr(model.generation_config, "sequence_bias", [[tokenizer("\n")["input_ids"][-1:], 0.2]])
        widths = []
        for module in (_generator, _sft):
            monkeypatch.setattr(module, "generate", generating_width(widths))
        stopped, stopped_widths = estimator.predict(texts), list(widths)
        for module in (_generator, _prompting):
            monkeypatch.setattr(module, "line_end_stop", lambda tokenizer, stop_at_newline: {})
        widths.clear()
        assert estimator.predict(texts).tolist() == stopped.tolist()
        assert any("\n" in a for a in estimator.set_params(stop_at_newline=False).predict(texts))
        assert min(stopped_widths) < 24 and widths == [24] * len(widths)
        monkeypatch.undo()


@pytest.mark.parametrize("estimator", ["FineTuneGenerator", "FewShotGenerator"])
def test_targets_of_several_lines_are_warned_of_where_answers_stop_at_the_first(tiny_llama, estimator):
    import skllm

    X_, y_ = ["lisbon", "paris", "rome"], ["Portugal\nEurope", "France", "Italy\n"]  # a final line break is one line
    params = {"epochs": 1, "max_new_tokens": 24} if estimator == "FineTuneGenerator" else {"n_examples": 2}
    make = getattr(skllm, estimator)
    with pytest.warns(
        SkllmWarning, match=r"1 of 3 targets span several lines \(positions \[0\]\), but stop_at_newline"
    ):
        make(tiny_llama, stop_at_newline=True, random_state=0, **params).fit(X_, y_)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkllmWarning)
        make(tiny_llama, stop_at_newline=False, random_state=0, **params).fit(X_, y_)


def test_targets_longer_than_max_new_tokens_are_warned_of(tiny_llama):
    X_, y_ = ["good", "bad"], ["great film and fun story", "ok"]  # 6 tokens and 1
    gen = FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=3, random_state=0)
    with pytest.warns(SkllmWarning, match=r"1 of 2 targets \(rows \[0\]\) are longer than max_new_tokens=3 tokens"):
        gen.fit(X_, y_)
    longest = len(gen._target_ids(y_[:1])[0]) - 1  # less the end of sequence
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkllmWarning)
        gen.set_params(max_new_tokens=longest).fit(X_, y_)
    # Few-shot answers imitate their demonstrations: the same warning.
    with pytest.warns(SkllmWarning, match=r"1 of 2 targets \(rows \[0\]\) are longer than max_new_tokens=3"):
        FewShotGenerator(tiny_llama, n_examples=1, max_new_tokens=3).fit(X_, y_)


def test_special_token_strings_in_a_target_are_learnt_as_text(untrained):
    tokenizer = untrained.tokenizer_
    target = f"{tokenizer.bos_token}old{tokenizer.eos_token} new"
    _, labels = untrained._examples(["a"], [target])
    learnt = [t for t in labels[0] if t != IGNORE]
    assert learnt[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in learnt[:-1]
    assert tokenizer.bos_token_id not in learnt and tokenizer.decode(learnt[:-1]) == target


def test_loss_is_the_cross_entropy_of_the_target_tokens_only(untrained):
    network = untrained.network_
    ids, labels = build_example([3, 4, 5, 6], [7, 8])
    input_ids, mask = torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)
    with torch.no_grad():
        loss = sequence_loss(network, input_ids, mask, torch.tensor([labels]))
        logp = torch.log_softmax(network(input_ids, mask)[0], dim=-1)
    naive = -(logp[3, 7] + logp[4, 8]) / 2  # position t predicts token t + 1
    assert float(loss) == pytest.approx(float(naive), rel=1e-5)


@pytest.mark.parametrize("method", ["lora", "full", PromptTuning(n_virtual_tokens=3), "adapter"])
def test_output_layer_on_the_scored_positions_only_gives_the_full_computation(tiny_llama, method):
    gen = untrained_generator(tiny_llama, method=method, random_state=0)
    network = gen.network_
    examples = [build_example([3, 4, 5, 6, 9], [7, 8]), build_example([3, 4, 5], [7, 8]), build_example([5, 6, 7], [6])]
    ids, labels = [e[0] for e in examples], [e[1] for e in examples]
    input_ids, mask, batch_labels = pad_examples(ids, labels, np.arange(3), 0, torch.device("cpu"))
    with torch.no_grad():
        logp = torch.log_softmax(network(input_ids, mask)[:, :-1].float(), dim=-1)
        targets = batch_labels[:, 1:]
        scored = targets != IGNORE
        naive = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
        token_logp, token_mask = token_logprobs(network, input_ids, mask, batch_labels)
        loss = sequence_loss(network, input_ids, mask, batch_labels)
    # Only the columns with a scored token are computed; the sums per row are the same.
    assert token_logp.shape[1] == int(scored.any(dim=0).sum()) < scored.shape[1]
    assert torch.allclose(token_logp.sum(dim=1), naive.sum(dim=1), atol=1e-5)
    assert torch.equal(token_mask.sum(dim=1), scored.sum(dim=1))
    assert float(loss) == pytest.approx(float(-naive.sum() / scored.sum()), rel=1e-5)


def test_fit_lowers_the_loss_and_lora_pickle_holds_the_adapter_only(tiny_llama):
    gen = FineTuneGenerator(
        tiny_llama, method=LoRA(r=4), epochs=4, learning_rate=1e-2, max_new_tokens=4, random_state=0
    )
    gen.fit(X, Y)
    assert gen.loss_curve_[-1] < gen.loss_curve_[0]
    assert gen.trainable_state_ and all("lora_" in name for name in gen.trainable_state_)
    restored = pickle.loads(pickle.dumps(gen))
    assert "network_" not in vars(restored)
    assert restored.predict(X[:4]).tolist() == gen.predict(X[:4]).tolist()


@pytest.mark.parametrize("method", ["full", PromptTuning(n_virtual_tokens=3), "adapter"])
def test_other_methods_train_and_generate(tiny_llama, method):
    gen = FineTuneGenerator(tiny_llama, method=method, epochs=1, max_new_tokens=3, random_state=0).fit(X, Y)
    answers = gen.predict(X[:3])
    assert answers.shape == (3,) and all(isinstance(a, str) for a in answers)
    assert pickle.loads(pickle.dumps(gen)).predict(X[:3]).tolist() == answers.tolist()


@pytest.mark.parametrize("method", ["prefix", "head"])
def test_methods_that_do_not_apply_to_generation_are_refused(tiny_llama, method):
    with pytest.raises(ValueError, match=f"method={method!r} does not apply to generation"):
        FineTuneGenerator(tiny_llama, method=method).fit(X, Y)


def test_sampling_is_reproducible_with_random_state(tiny_llama):
    gen = untrained_generator(tiny_llama, do_sample=True, max_new_tokens=5, random_state=3)
    first = gen.predict(X).tolist()
    assert gen.predict(X).tolist() == first
    greedy = gen.set_params(do_sample=False).predict(X).tolist()
    assert greedy != first  # the random tiny model's samples differ from its argmax


def test_score_is_exact_match_or_chrf(untrained):
    answers = untrained.predict(X)
    assert untrained.score(X, answers.tolist()) == 1.0
    untrained.set_params(metric="chrf")
    try:
        assert untrained.score(X, answers.tolist()) == pytest.approx(1.0)
        assert untrained.score(X, ["zzzz"] * len(X)) < 0.5
    finally:
        untrained.set_params(metric="exact_match")


def test_an_encoder_is_refused_as_the_lm_to_fine_tune(tiny_bert):
    with pytest.raises(ValueError, match=r"not a causal \(decoder\) language model.*bidirectional"):
        FineTuneGenerator(tiny_bert, epochs=1).fit(["a"], ["b"])
    with pytest.raises(ValueError, match=r"not a causal \(decoder\) language model"):
        PreferenceTuner(generator=FineTuneGenerator(tiny_bert), algorithm="dpo").fit(PAIRS[:1])


def test_bad_generation_input_names_the_problem(tiny_llama):
    gen = FineTuneGenerator(tiny_llama, epochs=1)
    with pytest.raises(ValueError, match=r"empty target\(s\) at positions \[1\]"):
        gen.fit(["a", "b"], ["x", "  "])
    with pytest.raises(ValueError, match=r"empty target\(s\) at positions \[0, 2\]"):  # demonstrations too
        FewShotGenerator(tiny_llama, n_examples=2, cache_dir=None).fit(["a", "b", "c"], ["", "x", "\n"])
    with pytest.raises(ValueError, match="X has 2 texts but y has 1"):
        gen.fit(["a", "b"], ["x"])
    with pytest.raises(ValueError, match=r"max_new_tokens=60 leaves 4 token\(s\) for the prompt"):
        FineTuneGenerator(tiny_llama, max_length=64, max_new_tokens=60).fit(["a"], ["b"])
    with pytest.raises(ValueError, match=r"max_length=8, which needs at least 8: raise max_length to at least 11\."):
        FineTuneGenerator(tiny_llama, max_length=8, max_new_tokens=3).fit(["a"], ["b"])  # no max_new_tokens fits
    with pytest.raises(ValueError, match="template"):
        FineTuneGenerator(tiny_llama, template="no field").fit(["a"], ["b"])
    long_text = " ".join(["great film"] * 200)
    with pytest.warns(TruncationWarning, match=r"rows \[1\]"):
        fitted = FineTuneGenerator(tiny_llama, epochs=1, max_length=32, max_new_tokens=4).fit(
            ["great", long_text], ["good", "good"]
        )
    ids, _ = fitted._examples(["great", long_text], ["good", "good"])
    assert max(map(len, ids)) <= 32
    # At predict too the warning points at the caller's line (it named the caller's caller, or sys:1).
    with pytest.warns(TruncationWarning, match=r"rows \[0\]") as caught:
        fitted.predict([long_text])
    assert [w.filename for w in caught] == [__file__]
    few = FewShotGenerator(tiny_llama, n_examples=0, max_length=32, max_new_tokens=4).fit(["a"], ["b"])
    with pytest.warns(TruncationWarning, match=r"max_length=32 tokens less the 4 kept for the answer") as caught:
        few.predict([long_text])
    assert [w.filename for w in caught] == [__file__]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"do_sample": "no"}, "do_sample must be"),
        ({"stop_at_newline": "no"}, "stop_at_newline must be"),
        ({"do_sample": True, "top_p": 5.0}, "top_p must be"),
        ({"do_sample": True, "temperature": 0}, "temperature must be"),
        ({"do_sample": True, "temperature": 1e-39}, "temperature must be"),  # would overflow float32 logits
        ({"template": "{txt}"}, r"template='\{txt\}' must contain"),
        ({"metric": "bleu"}, "metric="),
        ({"max_new_tokens": 300}, r"max_new_tokens=300 leaves 0 token\(s\) for the prompt in max_length=256"),
    ],
)
def test_generation_parameters_set_after_fit_are_checked_where_they_are_read(tiny_llama, params, message):
    gen = untrained_generator(tiny_llama, max_new_tokens=3)
    gen.set_params(**params)
    with pytest.raises(ValueError, match=message):
        gen.score(X[:2], Y[:2])


@pytest.mark.parametrize(
    "params", [{"use_chat_template": False}, {"max_length": 100}, {"method": "full"}, {"dtype": "bfloat16"}]
)
def test_generator_settings_that_fit_reads_are_refused_after_fit_by_name(tiny_llama, params):
    gen = untrained_generator(tiny_llama, max_new_tokens=3)
    gen.set_params(**params)
    (name,) = params
    with pytest.raises(ValueError, match=rf"fitted with {name}=.*read by fit.*take effect at the next fit"):
        gen.predict(X[:1])


def test_a_tokenizer_without_an_end_of_sequence_token_is_named(tiny_llama, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from skllm.exceptions import SkllmWarning

    folder = tmp_path / "noeos"
    shutil.copytree(tiny_llama, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.eos_token = None
    tokenizer.save_pretrained(folder)
    with pytest.warns(SkllmWarning, match="no end-of-sequence token.*max_new_tokens=3"):
        untrained_generator(str(folder), max_new_tokens=3)


def test_stop_at_newline_skips_any_leading_white_space():
    from skllm._prompting import clean_answer

    assert [clean_answer(t, True) for t in ["\nParis\nx", " \nParis", "\r\nParis\r\nx", "Paris"]] == ["Paris"] * 4
    assert clean_answer(" \nParis\nx", False) == "Paris\nx"


# -- RewardModel -----------------------------------------------------------------------


def test_bradley_terry_loss_equals_the_naive_formula():
    chosen, rejected = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.0])
    naive = np.mean([-np.log(1 / (1 + np.exp(-(c - r)))) for c, r in zip(chosen.tolist(), rejected.tolist())])
    assert float(bradley_terry_loss(chosen, rejected)) == pytest.approx(naive, rel=1e-6)


def test_ranked_lists_expand_to_every_strictly_ordered_pair():
    ranked = pd.DataFrame(
        {
            "prompt": ["p", "p", "p", "q", "q", "r", "r"],
            "response": ["a", "b", "c", "d", "e", "f", "g"],
            "rank": [2, 1, 3, 1, 1, 1, 2],
        }
    )
    prompts, chosen, rejected = preference_pairs(ranked)
    assert list(zip(prompts, chosen, rejected)) == [
        ("p", "b", "a"),
        ("p", "b", "c"),
        ("p", "a", "c"),
        ("r", "f", "g"),  # q's two responses are tied: no pair
    ]


def test_bad_preferences_are_refused_with_their_rows():
    bad = PAIRS.copy()
    bad.loc[3, "rejected"] = bad.loc[3, "chosen"]
    with pytest.raises(ValueError, match=r"same text, at rows \[3\]"):
        preference_pairs(bad)
    with pytest.raises(ValueError, match="no preference pair"):
        preference_pairs(pd.DataFrame({"prompt": ["p", "p"], "response": ["a", "b"], "rank": [1, 1]}))
    # One response ranked twice, differently: named by its input rows, not the expanded pairs'.
    twice = pd.DataFrame({"prompt": ["p", "p", "p"], "response": ["a", "b", "a"], "rank": [1, 2, 3]})
    with pytest.raises(
        ValueError, match=r"response 'a' of the prompt 'p' more than once, .*rows \[0, 2\] with ranks \[1, 3\]"
    ):
        preference_pairs(twice)
    with pytest.raises(ValueError, match="columns"):
        preference_pairs(pd.DataFrame({"text": ["a"]}))
    missing = PAIRS.copy()
    missing.loc[2, "chosen"] = None
    with pytest.raises(ValueError, match="chosen"):
        preference_pairs(missing)


def test_reward_model_learns_the_preferences(tiny_bert):
    rm = RewardModel(
        tiny_bert, method="full", epochs=8, learning_rate=1e-3, batch_size=4, random_state=0, head_init="random"
    )
    rm.fit(PAIRS)
    assert rm.n_pairs_ == 8
    assert rm.loss_curve_[-1] < rm.loss_curve_[0]
    assert rm.score(PAIRS) == 1.0
    as_tuples = rm.predict(list(zip(PAIRS["prompt"], PAIRS["chosen"])))
    as_frame = rm.predict(PAIRS.rename(columns={"chosen": "response"})[["prompt", "response"]])
    np.testing.assert_allclose(as_tuples, as_frame, atol=1e-6)
    assert rm.predict(["great fun"]).shape == (1,)


# -- PreferenceTuner ---------------------------------------------------------------------


def test_rloo_advantages_and_dpo_loss_follow_their_definitions():
    rewards = np.array([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    expected = [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0]
    np.testing.assert_allclose(rloo_advantages(rewards, 3), expected)
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.0))
    naive = -np.log(1 / (1 + np.exp(-0.1 * ((-1.0 + 1.5) - (-2.0 + 1.0)))))
    assert float(dpo_loss(pc, pr, rc, rr, 0.1)) == pytest.approx(naive, rel=1e-6)


def test_rloo_starts_at_zero_kl_and_leaves_the_reference_untouched(tiny_llama):
    sft = FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=5, random_state=0).fit(X, Y)
    before = {k: v.copy() for k, v in sft.trainable_state_.items()}
    tuner = PreferenceTuner(
        count_good, sft, algorithm="rloo", batch_size=2, n_generations=3, learning_rate=5e-2, random_state=0
    )
    tuner.fit(X[:6])
    history = tuner.history_
    assert list(history.columns) == ["step", "reward", "kl", "kl_coef", "loss", "length"]
    assert len(history) == tuner.n_steps_ == 3
    assert history["kl"].iloc[0] == 0.0
    assert (history["kl"].iloc[1:] != 0).any()  # the policy moved away from the reference
    for name, value in sft.trainable_state_.items():
        np.testing.assert_array_equal(value, before[name])  # the given generator is not trained
    changed = [k for k, v in tuner.generator_.trainable_state_.items() if not np.array_equal(v, before[k])]
    assert changed
    restored = pickle.loads(pickle.dumps(tuner))
    assert restored.predict(X[:3]).tolist() == tuner.predict(X[:3]).tolist()


def test_dpo_raises_the_chosen_over_the_rejected(tiny_llama):
    gen = FineTuneGenerator(tiny_llama, max_new_tokens=4)
    tuner = PreferenceTuner(generator=gen, algorithm="dpo", kl_coef=0.1, epochs=3, learning_rate=1e-2, random_state=0)
    tuner.fit(PAIRS)
    history = tuner.history_
    assert abs(history["kl"].iloc[0]) < 1e-5 and history["loss"].iloc[0] == pytest.approx(np.log(2), abs=1e-4)
    assert history["accuracy"].iloc[0] == 0.5  # the policy is the reference: every pair a tie, counted half
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["accuracy"].iloc[-1] == 1.0


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        (lambda p, c: [float("nan")] * len(c), "NaN or infinite"),
        (lambda p, c: [1.0], "one number per completion"),
        (lambda p, c: ["7"] * len(c), "it returned text"),
    ],
)
def test_a_bad_reward_is_reported(tiny_llama, reward, message):
    tuner = PreferenceTuner(reward, FineTuneGenerator(tiny_llama, max_new_tokens=3), batch_size=2, n_generations=2)
    with pytest.raises(ValueError, match=message):
        tuner.fit(X[:2])


def test_a_reward_given_as_a_tensor_that_requires_grad_is_read(tiny_llama):
    def reward(prompts, completions):
        return torch.tensor([-float(len(c)) for c in completions], requires_grad=True)

    gen = untrained_generator(tiny_llama, max_new_tokens=3)
    tuner = PreferenceTuner(reward, gen, algorithm="rloo", batch_size=2, n_generations=2, random_state=0).fit(X[:2])
    assert np.isfinite(tuner.history_["reward"]).all()
    # A bfloat16 reward model's output (NumPy has no bfloat16), as a tensor or a list of them.
    from skllm._rl import read_rewards

    half = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    for values in (half, list(half)):
        np.testing.assert_array_equal(read_rewards(values, ["p", "q"], ["a", "b"], "reward"), [1.5, -2.0])
    for values in (np.array([1 + 2j, 1.0]), [1 + 2j, 1.0], np.array(["2026-01-01", "2026-01-02"], "datetime64[D]")):
        with pytest.raises(ValueError, match="must return real numbers"):
            read_rewards(values, ["p", "q"], ["a", "b"], "reward")


def test_an_estimator_reward_that_cannot_read_pairs_is_named(tiny_llama):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # A classifier of texts: it has predict, but of texts, not of (prompt, completion) pairs.
    judge = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(["good film", "bad film"], [1, 0])
    gen = untrained_generator(tiny_llama, max_new_tokens=3)
    tuner = PreferenceTuner(lambda p, c: [1.0] * len(c), gen, eval_reward=judge, batch_size=2, n_generations=2)
    with pytest.raises(ValueError, match=r"The eval_reward, a Pipeline, is called as eval_reward.predict\(pairs\)"):
        tuner.fit(X[:2])


def test_bad_tuner_parameters_are_named(tiny_llama):
    sft = untrained_generator(tiny_llama, max_new_tokens=3)
    with pytest.raises(ValueError, match="needs a reward"):
        PreferenceTuner(generator=sft).fit(X)
    with pytest.raises(ValueError, match="method must be None with a fitted generator"):
        PreferenceTuner(count_good, sft, method="full").fit(X)
    with pytest.raises(ValueError, match="n_generations must be an integer >= 2"):
        PreferenceTuner(count_good, sft, algorithm="rloo", n_generations=1).fit(X)
    with pytest.raises(ValueError, match="algorithm="):
        PreferenceTuner(count_good, sft, algorithm="trpo").fit(X)
    # A coefficient of 0 would never move: DPO would have no gradient, the controller no effect.
    with pytest.raises(ValueError, match="DPO needs kl_coef > 0"):
        PreferenceTuner(generator=sft, algorithm="dpo", kl_coef=0).fit(PAIRS)
    with pytest.raises(ValueError, match=r"kl_coef=0 with target_kl=3.0.*target_kl=None"):
        PreferenceTuner(count_good, sft, kl_coef=0).fit(X)


def test_frozen_fitted_generator_survives_clone(tiny_llama):
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    sft = FineTuneGenerator(tiny_llama, epochs=1, max_new_tokens=3, random_state=0).fit(X, Y)
    tuner = clone(PreferenceTuner(count_good, FrozenEstimator(sft), batch_size=2, n_generations=2, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuner.fit(X[:2])
    assert tuner.generator_.method_.name == sft.method_.name
    assert set(tuner.generator_.trainable_state_) == set(sft.trainable_state_)


@pytest.mark.e2e
def test_lora_sft_of_the_packaged_lm_learns_the_answer_format_in_an_adapter_under_5_mb(session_cache, monkeypatch):
    pytest.importorskip("gguf")
    monkeypatch.setenv("SKLLM_CACHE_DIR", session_cache)
    template = "Is this review positive or negative?\n\n{text}"
    X = ["a wonderful, moving film", "dull and far too long", "funny and smart", "a tedious mess"] * 2
    y = ["positive", "negative", "positive", "negative"] * 2
    common = dict(template=template, max_new_tokens=3, max_length=64, random_state=0, device="cpu")
    before = untrained_generator(method=LoRA(r=8), **common)
    gen = FineTuneGenerator(method=LoRA(r=8), epochs=3, batch_size=4, **common).fit(X, y)
    assert gen.loss_curve_[-1] < gen.loss_curve_[0] / 2  # measured: 2.92, 1.28, 0.66
    # Untuned, the chat model answers in a sentence ("The review is ..."); tuned, with a label word.
    assert not set(before.predict(X[:4])) & {"positive", "negative"}
    assert set(gen.predict(X[:4])) <= {"positive", "negative"}
    assert len(pickle.dumps(gen)) < 5e6  # the LoRA adapter only: 1.86 MB


@pytest.mark.parametrize("generator", ["classifier", "fine-tuned"])
def test_retrieval_qa_says_which_generator_it_needs(tiny_bert, tiny_llama, cache_dir, generator):
    from skllm import DocumentIndex, RetrievalQA, TransformerEmbedder, ZeroShotClassifier

    index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), backend="numpy").fit(["great film"])
    wrong = ZeroShotClassifier(tiny_llama) if generator == "classifier" else FineTuneGenerator(tiny_llama)
    with pytest.raises(ValueError, match=rf"generator must be a FewShotGenerator.*got {type(wrong).__name__}\."):
        RetrievalQA(index, generator=wrong).fit()


def test_retrieval_qa_refuses_answers_without_questions(tiny_bert, cache_dir):
    from skllm import DocumentIndex, RetrievalQA, TransformerEmbedder

    index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), backend="numpy").fit(["great film"])
    with pytest.raises(ValueError, match=r"answers y without questions X.*fit\(questions, answers\)"):
        RetrievalQA(index).fit(None, ["x"])


def test_retrieval_qa_leaves_out_the_lowest_ranked_chunks_not_the_question(tiny_bert, tiny_llama, cache_dir):
    from skllm import DocumentIndex, FewShotGenerator, RetrievalQA, TransformerEmbedder

    documents = [" ".join(["great film loved it"] * 12), " ".join(["awful film hated it"] * 12), "fun story"]
    index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), backend="numpy").fit(documents)
    # 150 tokens hold the question with one chunk (126 with this tokenizer), not with two (178).
    generator = FewShotGenerator(tiny_llama, max_new_tokens=2, max_length=150, use_chat_template=False)
    qa = RetrievalQA(index, generator=generator, k=3).fit()
    question = "Which film did they love?"
    with pytest.warns(TruncationWarning, match=r"1 of 1 prompts .* their lowest-ranked chunks were left out"):
        _, sources = qa.predict_with_sources([question])
    assert sources[0] == index.query([question], k=3)[0][:1]  # the best one
    given = qa._template().format(context=sources[0][0].chunk, question=question)
    assert qa.generator_._fits(given) and given.endswith(f"Question: {question}\nAnswer:")
    # A question too long on its own is given with no chunk, and the warning does not say it was kept whole.
    long_question = "Which film did they love? " * 30
    generate, given = qa.generator_.predict, []
    qa.generator_.predict = lambda prompts: given.extend(prompts) or generate(prompts)
    with pytest.warns(TruncationWarning, match=r"rows \[1\] are too long on their own") as caught:
        _, sources = qa.predict_with_sources([question, long_question])
    assert len(sources[0]) == 1 and sources[1] == []
    # Its end is cut, not the prompt's: the answer cue stays (the generator cut the prompt's end, "\nAn").
    start = qa._template().format(context="", question="Which film").split("Which film")[0]
    assert given[1].startswith(start + "Which film did they love?") and given[1].endswith("love\nAnswer:")
    assert qa.generator_._fits(given[1]) and len(given[1]) < len(
        qa._template().format(context="", question=long_question)
    )
    assert not [w for w in caught if "even without demonstrations" in str(w.message)]  # not cut again by the generator


def test_a_text_cut_to_fit_keeps_whole_characters(tiny_llama):
    from transformers import AutoTokenizer

    from skllm._prompting import fit_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    text = "😀é漢" * 30  # byte-level tokens: a cut can fall inside a character

    def prompt_ids(piece):
        return tokenizer(f"Q: {piece}\nA:", add_special_tokens=False)["input_ids"]

    for budget in range(8, 60):
        ids, cut = fit_text(tokenizer, prompt_ids, text, budget, max_length=100)
        assert cut and len(ids) <= budget
        assert "\ufffd" not in tokenizer.decode(ids), budget


def test_an_answer_cut_inside_a_character_leaves_that_character_out(tiny_llama):
    from transformers import AutoTokenizer

    from skllm._prompting import decode_answer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    ids = tokenizer("ok 明白", add_special_tokens=False)["input_ids"]  # byte-level: 3 tokens a character
    answers = [decode_answer(tokenizer, ids[:n], stop_at_newline=False) for n in range(1, len(ids) + 1)]
    assert not any("\ufffd" in a for a in answers), answers
    assert answers[-1] == "ok 明白" and "ok 明" in answers and answers.count("ok") >= 3
