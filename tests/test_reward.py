"""RewardModel: the inputs it refuses and its diagnostics, on the tiny BERT."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import check_random_state

from skllm import RewardModel
from skllm._pairs import preference_pairs
from skllm._scoring import pairwise_accuracy
from skllm._training import draw_seed

PAIRS = pd.DataFrame(
    {
        "prompt": ["the film was", "the film was", "the story was", "the story was"] * 2
        + ["the acting was", "the acting was", "the plot was", "the plot was"] * 2,
        "chosen": ["great fun", "loved it", "the best", "good"] * 4,
        "rejected": ["awful and dull", "hated it", "the worst", "bad"] * 4,
    }
)


def reward_model(model_dir, **kw):
    params = dict(method="full", epochs=6, learning_rate=1e-3, batch_size=4, head_init="random", random_state=0)
    return RewardModel(model_dir, **{**params, **kw})


@pytest.fixture(scope="module")
def fitted(tiny_bert):
    return reward_model(tiny_bert).fit(PAIRS)


# -- inputs it refuses -------------------------------------------------------------------


def test_predict_refuses_a_frame_without_a_response_column(fitted):
    with pytest.raises(ValueError, match=r"X as a DataFrame needs a 'response' column .* columns \['prompt'\]"):
        fitted.predict(pd.DataFrame({"prompt": ["the film was", "the plot was"]}))
    with pytest.raises(ValueError, match=r"To score preference pairs, use score\(\)"):
        fitted.predict(PAIRS)
    responses = PAIRS.rename(columns={"chosen": "response"})[["prompt", "response"]]
    np.testing.assert_allclose(
        fitted.predict(responses), fitted.predict(list(zip(PAIRS["prompt"], PAIRS["chosen"]))), atol=1e-6
    )


def test_predict_refuses_a_bare_pair_rather_than_score_its_prompt_as_a_response(fitted):
    with pytest.raises(ValueError, match=r"X is a tuple of 2 texts: .* pass \[\(prompt, response\)\]"):
        fitted.predict(("the film was", "great fun"))
    assert fitted.predict([("the film was", "great fun")]).shape == (1,)
    assert fitted.predict(("great fun", "awful", "ok")).shape == (3,)  # a tuple of 3 texts: 3 responses
    # Pairs as lists (as JSON gives them), a Series of tuples or an (n, 2) array: the same items.
    items = [("the film was", "great fun"), ("the plot was", "awful")]
    expected = fitted.predict(items)
    for given in ([list(x) for x in items], pd.Series(items), np.array(items, dtype=object)):
        np.testing.assert_array_equal(fitted.predict(given), expected)
    with pytest.raises(ValueError, match=r"rows \[1\] do not have 2 items"):
        fitted.predict([("the film was", "great fun"), ("only one",)])


def test_ranked_lists_of_one_response_per_prompt_say_so():
    alone = pd.DataFrame({"prompt": ["A", "B"], "response": ["x", "y"], "rank": [1, 2]})
    with pytest.raises(ValueError, match=r"each prompt has one response.*GroupKFold"):
        preference_pairs(alone, "X")
    tied = pd.DataFrame({"prompt": ["A", "A"], "response": ["x", "y"], "rank": [1, 1]})
    with pytest.raises(ValueError, match=r"every prompt's responses share one rank"):
        preference_pairs(tied, "X")


def test_fit_and_score_refuse_a_y(tiny_bert, fitted):
    with pytest.raises(ValueError, match=r"RewardModel.fit takes no y: the preferences are in X itself"):
        reward_model(tiny_bert).fit(PAIRS, np.ones(len(PAIRS)))
    with pytest.raises(ValueError, match=r"RewardModel.score takes no y.*Got y of type list"):
        fitted.score(PAIRS, [1] * len(PAIRS))


def test_a_frame_with_both_forms_of_preferences_is_refused():
    both = PAIRS.assign(response=PAIRS["chosen"], rank=1)
    with pytest.raises(ValueError, match=r"both forms .* \['chosen', 'rejected'\] of pairs .* \['rank', 'response'\]"):
        preference_pairs(both, "X")
    with pytest.raises(ValueError, match="both forms"):
        preference_pairs(PAIRS.drop(columns="rejected").assign(response="x", rank=1), "X")


def test_a_rank_column_of_objects_and_a_frame_index_are_read_as_given():
    ranked = pd.DataFrame(
        {"prompt": ["p"] * 3, "response": ["a", "a", "b"], "rank": pd.Series([1, 2, 3], dtype=object)}
    )
    with pytest.raises(ValueError, match=r"ranks the response 'a' .* more than once, differently: rows \[0, 1\]"):
        preference_pairs(ranked)
    assert preference_pairs(ranked.iloc[1:]) == (["p"], ["a"], ["b"])
    # Given twice with one rank, each of its pairs would count twice.
    twice = pd.DataFrame({"prompt": ["p"] * 4, "response": ["a", "a", "b", "c"], "rank": [1, 1, 2, 3]})
    with pytest.raises(
        ValueError, match=r"'a' .* more than once, alike \(each pair would count twice\): rows \[0, 1\]"
    ):
        preference_pairs(twice)
    shifted = PAIRS.set_axis(range(100, 100 + len(PAIRS)))
    shifted.loc[105, "chosen"] = None
    with pytest.raises(ValueError, match=r"positions \[5\] \(index labels \[105\]\)"):
        preference_pairs(shifted)


def test_ranked_prompts_that_differ_only_by_spaces_are_refused():
    # "review the film " would be a prompt of its own: its response, alone there, would be in no pair.
    ranked = pd.DataFrame(
        {"prompt": ["review the film"] * 2 + ["review the film "], "response": ["a", "b", "c"], "rank": [1, 3, 2]}
    )
    with pytest.raises(ValueError, match=r"prompts that differ only by surrounding spaces: \['review the film'"):
        preference_pairs(ranked)
    assert len(preference_pairs(ranked.assign(prompt=ranked["prompt"].str.strip()))[0]) == 3


def test_a_misspelt_prompt_column_is_named_not_read_as_no_prompt(fitted):
    with pytest.raises(
        ValueError, match=r"no 'prompt' column but has 'Prompt'.*rename\(columns=\{'Prompt': 'prompt'\}\)"
    ):
        preference_pairs(PAIRS.rename(columns={"prompt": "Prompt"}))
    with pytest.raises(ValueError, match="no 'prompt' column but has ' prompt '"):
        fitted.predict(pd.DataFrame({" prompt ": ["the film was"], "response": ["great"]}))


def test_prompts_in_the_index_are_named_not_read_as_no_prompt(fitted):
    with pytest.raises(ValueError, match=r"holds its prompts in its index \('prompt'\).*reset_index\(\)"):
        preference_pairs(PAIRS.set_index("prompt"), "X")
    with pytest.raises(ValueError, match=r"holds its prompts in its index"):
        fitted.predict(PAIRS.rename(columns={"chosen": "response"}).set_index("prompt")[["response"]])


def test_a_long_prompt_loses_its_start_not_the_response(tiny_bert, fitted):
    from skllm.exceptions import TruncationWarning

    long_prompt = "the film was " * 40
    model = reward_model(tiny_bert, max_length=24, epochs=2).fit(PAIRS)
    items = [(long_prompt, "great fun"), (long_prompt, "awful and dull")]
    with pytest.warns(TruncationWarning, match=r"2 of 2 \(prompt, response\) texts .* prompts lost their start"):
        rewards = model.predict(items)
    assert rewards[0] != rewards[1]  # the end of each text, the response, was read
    texts = model._joined([long_prompt] * 2, ["great fun", "awful and dull"], warn=False)
    assert all(t.endswith(r) for t, r in zip(texts, ["great fun", "awful and dull"]))
    lengths = [len(ids) for ids in model.tokenizer_(texts)["input_ids"]]
    assert max(lengths) <= 24 and min(lengths) >= 20  # as much of the prompt as fits
    assert texts[0].split("[SEP]")[0].strip() in long_prompt  # its end, whole words


def test_pairs_the_cut_to_max_length_makes_identical_are_refused(tiny_bert):
    long = "great film " * 20
    pairs = PAIRS.assign(chosen=[long + "and fun", *PAIRS["chosen"][1:]])
    pairs.loc[0, "rejected"] = long + "and dull"
    with pytest.raises(ValueError, match=r"1 preference pair\(s\), at rows \[0\], are the same once cut to max_len"):
        reward_model(tiny_bert, max_length=24, epochs=1).fit(pairs)
    # Scored, such a pair is a tie (half a pair), as score documents.
    model = reward_model(tiny_bert, max_length=24, epochs=1).fit(PAIRS)
    assert model.score(pairs.iloc[:1]) == 0.5


def test_a_refit_without_early_stopping_leaves_no_best_score_of_the_previous_fit(tiny_bert):
    model = reward_model(tiny_bert, epochs=2, early_stopping=True, validation_fraction=0.5).fit(PAIRS)
    assert model.best_validation_score_ is not None
    model.set_params(early_stopping=False).fit(PAIRS)
    assert model.validation_scores_ is None and model.best_validation_score_ is None


# -- diagnostics -------------------------------------------------------------------------


def test_pairwise_accuracy_counts_a_tie_as_half():
    assert pairwise_accuracy([1.0, -1.0, 0.0, 2.0]) == 0.625
    assert RewardModel._validation_score(np.array([[0.0], [1.0]]), None) == 0.75


def test_validation_accuracy_is_the_kept_epochs_accuracy_on_held_out_prompts(tiny_bert, fitted):
    assert fitted.validation_accuracy_ is None and fitted.validation_scores_ is None
    rm = reward_model(tiny_bert, early_stopping=True, validation_fraction=0.25, n_iter_no_change=6).fit(PAIRS)
    assert len(rm.validation_scores_) == rm.n_iter_ == 6
    assert rm.validation_accuracy_ == max(rm.validation_scores_)
    # The split fit made, again: whole prompts are held out.
    codes = {}
    rm._pair_groups = [codes.setdefault(p, len(codes)) for p in PAIRS["prompt"]]
    train, valid = rm._split(len(PAIRS), draw_seed(check_random_state(0)), None, None)
    del rm._pair_groups
    assert len(valid) == 4 and not set(PAIRS["prompt"][train]) & set(PAIRS["prompt"][valid])
    assert rm.score(PAIRS.iloc[valid]) == pytest.approx(rm.validation_accuracy_)


def test_held_out_prompts_hold_at_most_the_fraction_of_the_pairs(tiny_bert):
    # One ranked list of 10 responses (45 pairs) and four prompts of one pair each: holding out a
    # tenth of the *prompts* held out the 45 pairs (or one), whatever validation_fraction said.
    rm = reward_model(tiny_bert, early_stopping=True, validation_fraction=0.1)
    rm._pair_groups = [0] * 45 + [1, 2, 3, 4]
    for seed in range(20):
        train, valid = rm._split(49, seed, None, None)
        groups = np.asarray(rm._pair_groups)
        assert 1 <= len(valid) <= 5 and len(train) + len(valid) == 49
        assert not set(groups[train]) & set(groups[valid])
    rm._pair_groups = [0] * 45 + [1] * 45  # no prompt fits in twice a tenth: the pairs are split instead
    train, valid = rm._split(90, 0, None, None)
    assert len(valid) == 9
    rm._pair_groups = [g for g in range(6) for _ in range(3)]  # 3 pairs a prompt, a tenth is 2: one prompt
    train, valid = rm._split(18, 0, None, None)
    assert len(valid) == 3 and len(set(np.asarray(rm._pair_groups)[valid])) == 1


def test_reward_distribution_shows_a_shift_from_the_training_responses(fitted):
    assert fitted.score(PAIRS) == 1.0
    items = list(dict.fromkeys([*zip(PAIRS["prompt"], PAIRS["chosen"]), *zip(PAIRS["prompt"], PAIRS["rejected"])]))
    np.testing.assert_allclose(fitted.training_rewards_, fitted.predict(items), atol=1e-6)
    same = fitted.reward_distribution(items)
    assert same.index.tolist() == ["training", "given"]
    assert same.columns.tolist() == [
        *("count", "mean", "std", "min", "q05", "q25", "q50", "q75", "q95", "max"),
        *("shift", "outside_training_range"),
    ]
    assert same.loc["training", "count"] == len(items) == 16
    np.testing.assert_allclose(same.loc["given"].to_numpy(), same.loc["training"].to_numpy(), atol=1e-6)
    training = fitted.training_rewards_
    chosen = list(zip(PAIRS["prompt"], PAIRS["chosen"]))
    better = fitted.reward_distribution(chosen).loc["given"]
    rewards = fitted.predict(chosen)
    assert better["shift"] == pytest.approx((rewards.mean() - training.mean()) / training.std(ddof=1))
    assert better["shift"] > 0.5
    assert better["q50"] == pytest.approx(np.median(rewards))
    worse = fitted.reward_distribution(list(zip(PAIRS["prompt"], PAIRS["rejected"]))).loc["given"]
    assert worse["shift"] < -0.5
    unseen = ["great great great", "awful awful", "it", "the best film", "bad bad bad bad"]
    rewards = fitted.predict(unseen)
    expected = np.mean((rewards < training.min()) | (rewards > training.max()))
    assert fitted.reward_distribution(unseen).loc["given", "outside_training_range"] == expected


def test_reward_distribution_survives_pickling_and_names_a_model_without_training_rewards(fitted):
    restored = pickle.loads(pickle.dumps(fitted))
    given = ["great fun", "hated it"]
    pd.testing.assert_frame_equal(restored.reward_distribution(given), fitted.reward_distribution(given))
    del restored.training_rewards_  # as in a model pickled by an earlier version
    with pytest.raises(ValueError, match=r"fitted by an earlier version .* fit it again"):
        restored.reward_distribution(given)


def test_method_none_is_refused_at_fit_as_by_the_fine_tuned_estimators(tiny_bert):
    from skllm import FineTuneClassifier

    with pytest.raises(ValueError, match=r"method=None is not supported; use one of \['adapter'"):
        RewardModel(tiny_bert, method=None).fit(PAIRS)
    with pytest.raises(ValueError, match=r"method=None is not supported"):
        FineTuneClassifier(tiny_bert, method=None).fit(["a", "b"], ["x", "y"])


def test_with_one_prompt_the_copies_of_a_pair_are_held_out_together(tiny_bert, monkeypatch):
    # One prompt, 4 pairs each given twice: a split of the pairs held out copies of training pairs.
    twice = pd.DataFrame({"prompt": ["p"] * 8, "chosen": [f"good {i}" for i in range(4)] * 2})
    twice["rejected"] = [f"bad {i}" for i in range(4)] * 2
    splits = []
    split = RewardModel._split
    monkeypatch.setattr(RewardModel, "_split", lambda *a: splits.append(split(*a)) or splits[-1])
    reward_model(tiny_bert, early_stopping=True, validation_fraction=0.5, n_iter_no_change=1).fit(twice)
    ((train, valid),) = splits
    pairs = list(zip(twice["chosen"], twice["rejected"]))
    assert not {pairs[i] for i in train} & {pairs[i] for i in valid} and len(valid) == 4
