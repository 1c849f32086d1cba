"""OpenAIChat: answers to classes, the response cache, retries, concurrency and secrets, against an in-process fake.

The fake (tests/chat_servers.py) speaks the chat-completions API over HTTP, so
the official client, the cache and the retry loop run as against a real
endpoint; tests/test_api_server.py repeats the essentials on `transformers serve`.
"""

import json
import logging
import pickle
import random
import time
import warnings

import numpy as np
import pytest
from chat_servers import FakeChat, sentiment
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils import estimator_checks as ec

from skllm import FewShotClassifier, FewShotGenerator, OpenAIChat, ZeroShotClassifier
from skllm._answers import class_logprobs, parse_label
from skllm._api import Secret, backoff_delay, retry_after_seconds
from skllm._cache import request_key
from skllm._prompt_classifier import LOGPROBS_PROBES
from skllm.exceptions import (
    APIKeyMissingError,
    APIRequestError,
    SkllmWarning,
    UnparsedAnswerError,
    UnparsedAnswerWarning,
)

pytest.importorskip("openai")

KEY = "sk-test-DO-NOT-LEAK-1234567890"
X = ["great film", "awful film", "loved it", "hated it", "fun story", "dull story"]
Y = ["pos", "neg", "pos", "neg", "pos", "neg"]


def _chat(server, **params):
    params = {"backoff": 0.01, "timeout": 5.0, "base_url": server.url, **params}
    return OpenAIChat("fake-model", **params)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# -- answers to classes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("positive", 0),
        ("Positive.", 0),
        ("  NEGATIVE!\n", 1),
        ("neg", 1),  # a cut answer: the start of one wording
        ("positive review", 0),  # starts with a wording
        ("The review is positive,", 0),  # contains one wording
        ("This is a positive", 0),
        ("positive or negative", None),  # both
        ("I cannot tell", None),
        ("", None),
        ("Not positive.", None),  # a class it rules out
        ("It isn't negative at all", None),
        ("Not really positive.", None),  # a negation, a filler, the wording
        ("non-negative", None),
        ("No doubt, positive.", 0),  # "doubt" is no filler: the negation is of something else
        ("ｎｅｇａｔｉｖｅ", 1),  # full-width letters
    ],
)
def test_answers_map_to_one_class_or_none(answer, expected):
    assert parse_label(answer, ["positive", "negative"]) == expected


def test_a_decomposed_accent_reads_as_the_composed_one():
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "Négatif")
    assert decomposed != "Négatif" and parse_label(decomposed, ["positif", "négatif"]) == 1


def test_a_wording_inside_a_longer_one_counts_as_the_longer():
    words = ["positive", "very positive", "negative"]
    assert parse_label("I'd say very positive.", words) == 1
    assert parse_label("It is positive.", words) == 0
    # "p" starts two wordings: ambiguous.
    assert parse_label("p", ["positive", "pleasant"]) is None


def test_class_logprobs_sum_the_tokens_that_start_each_wording():
    top = [("pos", np.log(0.5)), (" positive", np.log(0.2)), ("neg", np.log(0.1)), ("The", np.log(0.05))]
    scores = class_logprobs(top, ["positive", "negative", "neutral"])
    np.testing.assert_allclose(np.exp(scores[:2]), [0.7, 0.1])
    # A class with no listed token: half the least likely listed one.
    np.testing.assert_allclose(np.exp(scores[2]), 0.025)
    # "ne" starts two wordings and counts for none; no class token at all gives None.
    assert class_logprobs([("ne", -0.1), ("The", -1.0)], ["negative", "neutral"]) is None


def test_a_negated_wording_that_is_itself_a_class_is_that_class():
    assert parse_label("It is not spam.", ["not spam", "spam"]) == 0
    assert parse_label("spam", ["not spam", "spam"]) == 1
    # Other negations of "spam" are not the wording "not spam": they name no class.
    for answer in ("It isn't spam.", "This is no spam.", "Never spam.", "Not really spam"):
        assert parse_label(answer, ["not spam", "spam"]) is None, answer
    assert parse_label("Definitely not spam, not spam!", ["not spam", "spam"]) == 0
    # Such a wording negated in turn is ruled out too.
    assert parse_label("It isn't 'not spam', it's spam", ["not spam", "spam"]) is None
    assert parse_label("not non-toxic", ["toxic", "non-toxic"]) is None
    assert parse_label("Non-toxic.", ["toxic", "non-toxic"]) == 1


def test_a_negated_answer_from_the_endpoint_predicts_no_class(tmp_path):
    # As a user reaches parse_label: the endpoint answers "It isn't spam." with classes spam and not spam.
    server = FakeChat(answer=lambda messages: "It isn't spam.")
    try:
        chat = _chat(server, unparsed="error")
        clf = ZeroShotClassifier(chat, classes=["not spam", "spam"], calibration=None, cache_dir=str(tmp_path)).fit()
        with pytest.raises(UnparsedAnswerError, match="answers name none of the classes"):
            clf.predict(["win a prize now"])
    finally:
        server.close()


def test_the_answered_token_must_count_for_one_class_or_its_alternatives_say_nothing():
    words = ["very negative", "negative", "positive", "very positive"]
    # "very" starts two wordings: the scores would come from the unlikely alternatives.
    assert class_logprobs([("very", -0.1), ("negative", -2.8), ("positive", -3.9)], words) is None
    assert class_logprobs([("The", -0.01), ("Positive", -5.0)], ["positive", "negative"]) is None


@pytest.mark.parametrize(
    "classes, answer, top, expected",
    [
        (
            ["very negative", "negative", "positive", "very positive"],
            "very negative",
            [("very", -0.1), ("negative", -2.8)],
            "very negative",
        ),
        (["pos", "positive", "negative"], "pos", [("pos", -0.01), ("positive", -5.3)], "pos"),
        (["positive", "negative"], "The sentiment is negative.", [("The", -0.01), ("Positive", -5.0)], "negative"),
        (["positive", "negative"], "Positive", [("Positive", -0.01), ("Negative", -5.0)], "positive"),
    ],
)
def test_a_class_is_read_from_what_was_answered(classes, answer, top, expected, tmp_path):
    server = FakeChat(answer=lambda m: answer, logprobs=lambda m: top)
    try:
        clf = ZeroShotClassifier(_chat(server), classes=classes, calibration=None, cache_dir=str(tmp_path)).fit()
        assert clf.predict(["some text"]).tolist() == [expected]
    finally:
        server.close()


def test_wordings_that_answers_cannot_tell_apart_are_refused(fake_chat, tmp_path):
    for classes, words in [(["C", "C++", "C#"], None), (["down", "up"], {"up": "\N{THUMBS UP SIGN}", "down": "-"})]:
        clf = ZeroShotClassifier(_chat(fake_chat), classes=classes, label_words=words, cache_dir=str(tmp_path))
        with pytest.raises(ValueError, match="cannot be told apart in an endpoint's answers"):
            clf.fit()


def test_a_deep_copy_keeps_the_key_and_a_base_url_may_carry_spaces(fake_chat, tmp_path):
    import copy

    chat = _chat(fake_chat, api_key="sk-test-key", base_url=f" {fake_chat.url} ")
    assert copy.deepcopy(chat).api_key == copy.copy(chat).api_key == "sk-test-key"
    clf = ZeroShotClassifier(chat, classes=["neg", "pos"], calibration=None, cache_dir=str(tmp_path))
    assert copy.deepcopy(clf).fit().predict(["great film"]).tolist() == ["pos"]


def test_a_shallow_copy_counts_its_own_requests(fake_chat):
    import copy

    clf = ZeroShotClassifier(_chat(fake_chat), cache_dir=None).fit(X[:2], Y[:2])
    clf.predict(X[:4])
    before = dict(clf.usage_)
    copied = copy.copy(clf)
    copied.predict(X[2:])
    assert clf.usage_ == before
    assert copied.usage_["requests"] == before["requests"] + len(X[2:])


def test_the_endpoints_parameters_set_after_fit_are_refused_until_the_next_fit(fake_chat, tmp_path):
    clf = ZeroShotClassifier(_chat(fake_chat), classes=["neg", "pos"], calibration=None, cache_dir=str(tmp_path)).fit()
    clf.set_params(model_name__max_concurrency=2, model_name__timeout=9.0)  # how it is reached: fine
    assert clf.predict(["great film"]).tolist() == ["pos"]
    clf.set_params(model_name__model="other-model")
    with pytest.raises(
        ValueError,
        match=r"fitted with model_name=OpenAIChat\(.*model='fake-model'.*set to model_name=OpenAIChat\(.*'other-model'",
    ):
        clf.predict(["great film"])
    with pytest.raises(ValueError, match="call fit again"):
        pickle.loads(pickle.dumps(clf)).predict(["great film"])
    assert clf.fit().predict(["great film"]).tolist() == ["pos"]


def test_an_empty_answer_is_not_cached_and_the_generator_says_so(tmp_path):
    from skllm.exceptions import SkllmWarning

    said = []

    def first_empty(messages):
        said.append(1)
        return "" if len(said) == 1 else "bonjour"

    server = FakeChat(answer=first_empty)
    try:
        gen = FewShotGenerator(_chat(server), n_examples=0, cache_dir=str(tmp_path)).fit(["a"], ["b"])
        with pytest.warns(SkllmWarning, match=r"answered 1 of 1 prompts with nothing \(rows \[0\]\)"):
            assert gen.predict(["hello"]).tolist() == [""]
        assert gen.predict(["hello"]).tolist() == ["bonjour"]  # asked again, not read from the cache
        assert gen.predict(["hello"]).tolist() == ["bonjour"] and len(said) == 2  # now cached
    finally:
        server.close()


# -- retry schedule -------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, rng) for a in range(8)]
    for attempt, delay in enumerate(delays):
        base = min(60.0, 2.0**attempt)
        assert base / 2 <= delay <= base
    assert delays[-1] <= 60.0
    # Jitter: two clients failing together do not retry together.
    assert backoff_delay(3, 1.0, random.Random(1)) != backoff_delay(3, 1.0, random.Random(2))
    assert backoff_delay(0, 1.0, rng, retry_after=7.0) == 7.0
    assert backoff_delay(0, 1.0, rng, retry_after=600.0) == 600.0  # Retry-After honoured up to 10 minutes
    assert backoff_delay(0, 1.0, rng, retry_after=6000.0) == 600.0


def test_retry_after_in_seconds_milliseconds_or_as_a_date():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


# -- cache keys -----------------------------------------------------------------------------


def test_request_key_covers_endpoint_model_messages_and_sampling_but_no_key(fake_chat):
    est = ZeroShotClassifier(_chat(fake_chat), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    request = est.model_._request([{"role": "user", "content": "hi"}], 10, True)
    key = request_key(request)
    assert KEY not in repr(request)
    for change in (
        {"endpoint": "http://elsewhere/v1"},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"params": {**request["params"], "max_tokens": 11}},
        {"params": {**request["params"], "temperature": 0.5}},
    ):
        assert request_key({**request, **change}) != key
    assert request_key(dict(request)) == key


# -- classification through the endpoint ------------------------------------------------


def test_zero_shot_reads_text_answers_and_caches_them(fake_chat, tmp_path):
    clf = ZeroShotClassifier(_chat(fake_chat), cache_dir=str(tmp_path)).fit(X, Y)
    # Text answers: no calibration, after three requests that found no log-probabilities.
    assert clf.label_prior_ is None and clf.calibrated_on_ is None
    assert fake_chat.answered == LOGPROBS_PROBES == 3
    assert clf.predict(X).tolist() == Y
    # Answers read as text: one-hot probabilities to 1e-12 (classes_ is ["neg", "pos"]), and a finite
    # decision_function that ranking scorers read.
    np.testing.assert_allclose(
        clf.predict_proba(X), [[0.0, 1.0] if v == "pos" else [1.0, 0.0] for v in Y], rtol=0, atol=1e-11
    )
    np.testing.assert_allclose(clf.decision_function(X), [27.631 if v == "pos" else -27.631 for v in Y], atol=1e-3)
    assert get_scorer("roc_auc")(clf, X, Y) == 1.0
    assert clf.n_unparsed_ == 0
    sent = fake_chat.answered
    assert sent == len(set(X))  # the probes were of X
    # The second time (and a clone, and a new estimator on the same cache) sends nothing.
    clf.predict(X)
    clone(clf).fit(X, Y).predict(X)
    assert fake_chat.answered == sent
    assert clf.usage_["requests"] == sent and clf.usage_["cached"] > 0 and clf.usage_["prompt_tokens"] > 0


def test_cache_dir_set_after_fit_is_the_one_used(fake_chat, tmp_path):
    clf = ZeroShotClassifier(_chat(fake_chat), classes=["neg", "pos"], cache_dir=str(tmp_path / "a")).fit()
    clf.predict(X)
    sent, n = fake_chat.answered, len(set(X))
    clf.set_params(cache_dir=None).predict(X)  # no cache: every text asked again
    assert fake_chat.answered == sent + n
    clf.set_params(cache_dir=str(tmp_path / "b")).predict(X)
    assert fake_chat.answered == sent + 2 * n and (tmp_path / "b" / "responses").is_dir()
    clf.predict(X)  # answered from the new cache
    assert fake_chat.answered == sent + 2 * n


def test_logprobs_give_calibrated_probabilities(tmp_path):
    def logprobs(messages):
        return (
            [("pos", np.log(0.6)), ("neg", np.log(0.3))]
            if sentiment(messages) == "pos"
            else [
                ("neg", np.log(0.55)),
                ("pos", np.log(0.4)),
            ]
        )

    server = FakeChat(logprobs=logprobs)
    try:
        clf = ZeroShotClassifier(_chat(server), cache_dir=str(tmp_path)).fit(X, Y)
        assert clf.calibrated_on_ == "batch" and clf.label_prior_ is not None
        proba = clf.predict_proba(X)
        assert proba.shape == (6, 2) and np.allclose(proba.sum(1), 1) and (proba > 0.05).all()
        assert clf.predict(X).tolist() == Y
        raw = clone(clf).set_params(calibration=None).fit(X, Y)
        np.testing.assert_allclose(raw.predict_proba(["great film"])[0], [0.3 / 0.9, 0.6 / 0.9])
    finally:
        server.close()


def test_one_calibration_answer_read_by_its_text_does_not_turn_calibration_off(tmp_path):
    def answer(messages):
        return "The text is negative" if "hated" in messages[-1]["content"] else sentiment(messages)

    def logprobs(messages):
        if "hated" in messages[-1]["content"]:
            return [("The", -0.1), ("neg", -3.0)]  # the answer starts with a word that is no class
        said = sentiment(messages)
        return [(said, np.log(0.9)), ("neg" if said == "pos" else "pos", np.log(0.1))]

    server = FakeChat(answer=answer, logprobs=logprobs)
    try:
        priors = []
        for order in (X, X[3:] + X[:3]):  # "hated it" first among the calibration texts, then not
            labels = [Y[X.index(t)] for t in order]
            clf = ZeroShotClassifier(_chat(server), calibration="batch", cache_dir=str(tmp_path)).fit(order, labels)
            assert clf.calibrated_on_ == "batch"
            priors.append(clf.label_prior_)
        np.testing.assert_allclose(priors[0], priors[1])  # the same answers count, whatever their order
    finally:
        server.close()


def test_a_first_calibration_answer_without_log_probabilities_does_not_turn_calibration_off(tmp_path):
    def logprobs(messages):  # a content filter on one text: its answer comes without log-probabilities
        said = sentiment(messages)
        return None if "hated" in messages[-1]["content"] else [(said, np.log(0.7)), ("x", np.log(0.3))]

    server = FakeChat(logprobs=logprobs)
    try:
        first = ["hated it"] + [t for t in X if t != "hated it"]
        labels = [Y[X.index(t)] for t in first]
        clf = ZeroShotClassifier(_chat(server), calibration="batch", cache_dir=None).fit(first, labels)
        assert clf.calibrated_on_ == "batch" and clf.label_prior_ is not None
        # An endpoint that returns none at all is asked a few prompts one by one, not all of them.
        answered = server.answered
        clf = ZeroShotClassifier(_chat(server), calibration="batch", cache_dir=None)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(server, "logprobs", lambda messages: None)
            clf.fit(X, Y)
        assert clf.calibrated_on_ is None and server.answered - answered == 3
    finally:
        server.close()


def test_answers_read_from_their_text_predict_the_class_they_name_whatever_the_prior(tmp_path):
    def answer(messages):
        last = messages[-1]["content"]
        if "plain" in last or "unsure" in last:
            return "The answer is neg." if "plain" in last else "I cannot tell."
        return sentiment(messages)

    def logprobs(messages):  # the other class near -inf (vLLM's -9999): a prior of [0, log(1e-30)]
        last = messages[-1]["content"]
        if "plain" in last or "unsure" in last:
            return [("The", -0.01), ("pos", -5.0)] if "plain" in last else [("I", -0.01)]
        said = sentiment(messages)
        return [(said, 0.0), ("neg" if said == "pos" else "pos", -9999.0)]

    server = FakeChat(answer=answer, logprobs=logprobs)
    try:
        clf = ZeroShotClassifier(_chat(server, unparsed="neg"), calibration="contextual", cache_dir=None).fit(X, Y)
        assert clf.label_prior_.min() < np.log(1e-12)  # the prior alone would outweigh a text row's -27.6
        with pytest.warns(UnparsedAnswerWarning, match="predict 'neg'"):
            assert clf.predict(["plain film", "unsure film", "great film"]).tolist() == ["neg", "neg", "pos"]
        np.testing.assert_allclose(clf.predict_proba(["plain film"]), [[1.0, 1e-12]])
    finally:
        server.close()


def test_batch_calibration_without_a_class_read_by_its_probabilities_falls_back_with_a_warning(tmp_path):
    def answer(messages):
        return "The sentiment is negative." if sentiment(messages) == "neg" else "Positive"

    def logprobs(messages):
        if sentiment(messages) == "pos":
            return [("Positive", -0.05), ("Negative", -3.0)]
        return [("The", -0.05), ("Negative", -3.2), ("Positive", -4.0)]  # every negative answer: read by its text

    server = FakeChat(answer=answer, logprobs=logprobs)
    try:
        clf = ZeroShotClassifier(_chat(server), label_words={"pos": "positive", "neg": "negative"}, cache_dir=None)
        with pytest.warns(SkllmWarning, match=r"every calibration text of the class\(es\) 'neg'"):
            clf.fit(X, Y)
        assert clf.calibrated_on_ != "batch"
    finally:
        server.close()


def test_a_class_without_probability_in_the_calibration_prompts_gives_no_nan(tmp_path):
    def certain(messages):  # the other class at -9999, as vLLM reports a -inf log-probability
        said = sentiment(messages)
        return [(said, 0.0), ("neg" if said == "pos" else "pos", -9999.0)]

    server = FakeChat(logprobs=certain)
    try:
        # The content-free texts all read as one class: the other's prior is floored, not -inf.
        clf = ZeroShotClassifier(_chat(server), calibration="contextual", cache_dir=str(tmp_path)).fit(X, Y)
        np.testing.assert_allclose(sorted(clf.label_prior_), [np.log(1e-30), 0.0], atol=1e-9)
        assert np.isfinite(clf.predict_proba(X)).all()
        assert clf.predict(X).tolist() == Y
        # Batch calibration on texts that all read as one class: the same.
        positive = ["great film", "loved it", "fun story", "great story"]
        clf = ZeroShotClassifier(_chat(server), calibration="batch", cache_dir=str(tmp_path))
        clf.fit(positive, ["pos", "neg", "pos", "neg"])
        assert np.isfinite(clf.predict_proba(X)).all()
    finally:
        server.close()


def _mixed(messages):
    last = messages[-1]["content"]
    return "I really cannot say" if "dull" in last or "awful" in last else sentiment(messages)


@pytest.mark.parametrize("unparsed, expected", [("most_frequent", "neg"), ("pos", "pos")])
def test_unparsed_answers_warn_with_their_rows_and_take_the_fallback(unparsed, expected, tmp_path):
    server = FakeChat(answer=_mixed)
    try:
        y = ["pos", "neg", "pos", "neg", "neg", "neg"]
        clf = ZeroShotClassifier(_chat(server, unparsed=unparsed), cache_dir=str(tmp_path)).fit(X, y)
        with pytest.warns(UnparsedAnswerWarning, match=r"2 of 6 answers .* rows 1: 'I really cannot say', 5"):
            pred = clf.predict(X)
        assert clf.n_unparsed_ == 2 and clf.unparsed_rows_ == [1, 5]
        assert pred[1] == pred[5] == expected
    finally:
        server.close()


def test_unparsed_answers_can_be_an_error(tmp_path):
    server = FakeChat(answer=_mixed)
    try:
        clf = ZeroShotClassifier(_chat(server, unparsed="error"), cache_dir=str(tmp_path), calibration=None)
        clf.fit(X, Y)
        with pytest.raises(UnparsedAnswerError, match="2 of 6 answers") as info:
            clf.predict(X)
        assert info.value.rows == [1, 5]
        with pytest.raises(ValueError, match="unparsed='maybe'"):
            clone(clf).set_params(model_name__unparsed="maybe").fit(X, Y)
    finally:
        server.close()


def test_an_unparsed_class_is_matched_by_kind_of_label_as_y_is(fake_chat):
    words = {False: "negative", True: "positive"}
    with pytest.raises(ValueError, match=r"unparsed=1\) must be one of .* the classes \[False, True\]"):
        ZeroShotClassifier(_chat(fake_chat, unparsed=1), classes=[False, True], label_words=words, cache_dir=None).fit()
    clf = ZeroShotClassifier(
        _chat(fake_chat, unparsed=True), classes=[False, True], label_words=words, cache_dir=None
    ).fit()
    assert clf.fallback_ == 1


def test_few_shot_and_generation_send_demonstrations_as_turns(fake_chat, tmp_path):
    clf = FewShotClassifier(_chat(fake_chat), n_examples=2, random_state=0, cache_dir=str(tmp_path)).fit(X, Y)
    assert clf.predict(["a delightful film"]).tolist() == ["pos"]
    messages = fake_chat.messages()[-1]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]

    fake_chat.answer = lambda messages: messages[-1]["content"].split("Input: ")[-1].split("\n")[0].upper() + "\nmore"
    gen = FewShotGenerator(_chat(fake_chat), n_examples=1, max_new_tokens=5, cache_dir=str(tmp_path))
    assert gen.fit(["hund"], ["dog"]).predict(["katze"]).tolist() == ["KATZE"]
    assert json_params(fake_chat.bodies[-1])["max_tokens"] == 5
    # max_length is the local model's: an endpoint's answer may be longer, at fit and after it.
    gen.set_params(max_new_tokens=2000).fit(["hund"], ["dog"]).predict(["maus"])
    gen.set_params(max_new_tokens=3000).predict(["hase"])
    assert json_params(fake_chat.bodies[-1])["max_tokens"] == 3000


def json_params(body):
    import json

    return json.loads(body)


def test_grid_search_and_cross_validation_send_each_distinct_prompt_once(fake_chat, tmp_path):
    clf = ZeroShotClassifier(_chat(fake_chat), cache_dir=str(tmp_path))
    Xs, ys = X * 2, Y * 2  # 6 distinct texts, each twice
    cross_val_score(clf, Xs, ys, cv=3)
    search = GridSearchCV(clf, {"template": [None, "{text} -> {labels}?"]}, cv=3).fit(Xs, ys)
    assert search.best_score_ == 1.0
    distinct = {json_params(b)["messages"][-1]["content"] for b in fake_chat.bodies}
    assert fake_chat.answered == len(fake_chat.bodies) == len(distinct) <= 2 * 6


@pytest.mark.parametrize("temperature, sent", [(0.0, 1), (0.7, 3)])
def test_a_prompt_asked_twice_in_a_call_is_sent_once_unless_answers_are_sampled(fake_chat, temperature, sent):
    chat = _chat(fake_chat, temperature=temperature)
    clf = ZeroShotClassifier(chat, classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    n = len(fake_chat.bodies)
    assert clf.predict(["great film"] * 3).tolist() == ["pos"] * 3
    assert len(fake_chat.bodies) - n == sent


def test_max_concurrency_bounds_requests_in_flight(tmp_path):
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def slow(messages):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return sentiment(messages)

    server = FakeChat(answer=slow)
    try:
        texts = [f"great film {i}" for i in range(12)]
        clf = ZeroShotClassifier(_chat(server, max_concurrency=3), classes=["neg", "pos"], calibration=None)
        clf.set_params(cache_dir=None).fit().predict(texts)
        assert peak[0] == 3
    finally:
        server.close()


# -- faults ---------------------------------------------------------------------------------


def test_rate_limits_and_server_errors_are_retried(fake_chat, tmp_path):
    fake_chat.faults = ["429", "500", "500"]
    fake_chat.retry_after = 0.2
    clf = ZeroShotClassifier(_chat(fake_chat, max_concurrency=1), classes=["neg", "pos"], calibration=None)
    clf.set_params(cache_dir=str(tmp_path)).fit()
    start = time.perf_counter()
    assert clf.predict(["great film", "awful film"]).tolist() == ["pos", "neg"]
    assert time.perf_counter() - start >= 0.2  # Retry-After outweighs the 0.01 s backoff
    assert clf.usage_["retries"] == 3 and clf.usage_["requests"] == 2


def test_answers_that_are_no_chat_completion_are_retried_then_named(fake_chat, tmp_path):
    fake_chat.faults = ["html", "not-json", "error", "no-choices"]
    clf = ZeroShotClassifier(_chat(fake_chat, max_concurrency=1), classes=["neg", "pos"], calibration=None)
    clf.set_params(cache_dir=str(tmp_path)).fit()
    assert clf.predict(["great film"]).tolist() == ["pos"]  # a proxy's page or a broken body is transient
    assert clf.usage_["retries"] == 4
    for fault, said in [
        ("html", r"not JSON: '<html><body>502 Bad Gateway"),
        ("not-json", "not valid JSON"),
        ("error", r"no choices \(an error instead: .*model overloaded"),
        ("no-choices", r"no choices \(choices=\[\]\)"),
        ("choices-not-a-list", r"choices that are not a list"),
    ]:
        fake_chat.faults = [fault] * 3
        chat = _chat(fake_chat, max_concurrency=1, max_retries=2)
        clf = ZeroShotClassifier(chat, classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
        with pytest.raises(APIRequestError, match=rf"failed after 2 retries: MalformedResponse: the response .*{said}"):
            clf.predict(["awful film"])


def test_log_probabilities_of_minus_infinity_are_read_as_absent(tmp_path):
    # The classes' top tokens all at -inf tell nothing: the answer's text decides.
    server = FakeChat(logprobs=lambda messages: [("pos", float("-inf")), ("neg", float("-inf"))])
    try:
        clf = ZeroShotClassifier(_chat(server), classes=["neg", "pos"], calibration=None, cache_dir=str(tmp_path))
        proba = clf.fit().predict_proba(X)
        assert np.isfinite(proba).all() and clf.predict(X).tolist() == Y
    finally:
        server.close()


def test_after_the_retries_the_error_says_how_many_rows_were_done_and_a_rerun_continues(fake_chat, tmp_path):
    chat = _chat(fake_chat, max_concurrency=1, max_retries=2)
    clf = ZeroShotClassifier(chat, classes=["neg", "pos"], calibration=None, cache_dir=str(tmp_path)).fit()
    fake_chat.faults = [None, None, "500", "500", "500"]
    with pytest.raises(APIRequestError, match=r"failed after 2 retries: InternalServerError 500.*2 of 6 prompts") as e:
        clf.predict(X)
    assert e.value.n_done == 2 and "cached in" in str(e.value)
    assert clf.usage_["requests"] == 2 == e.value.usage["requests"]  # answered, billed: counted
    before = fake_chat.answered
    assert clf.predict(X).tolist() == Y
    assert fake_chat.answered - before == 4  # only the rows not done


def test_a_hanging_endpoint_times_out_and_a_bad_request_is_not_retried(fake_chat, tmp_path):
    fake_chat.faults = ["hang", "hang"]
    fake_chat.hang_seconds = 2.0
    chat = _chat(fake_chat, timeout=0.3, max_retries=1, max_concurrency=1)
    clf = ZeroShotClassifier(chat, classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    with pytest.raises(APIRequestError, match="APITimeoutError"):
        clf.predict(["great film"])
    # A refused request (here an unknown path: 404) stops at once.
    clf = ZeroShotClassifier(_chat(fake_chat, base_url=fake_chat.url + "/nowhere"), classes=["neg", "pos"])
    n = len(fake_chat.bodies)
    with pytest.raises(APIRequestError, match=r"\(not retried\): NotFoundError 404"):
        clf.set_params(calibration=None, cache_dir=None).fit().predict(["great film"])
    assert len(fake_chat.bodies) == n + 1


# -- secrets -------------------------------------------------------------------------------


def test_the_key_never_shows_in_repr_params_html_logs_errors_cache_or_pickle(fake_chat, tmp_path, caplog):
    chat = _chat(fake_chat, api_key=KEY, max_retries=1)
    clf = ZeroShotClassifier(chat, cache_dir=str(tmp_path))
    for shown in (repr(chat), repr(clf), str(clf.get_params()), clf._repr_html_(), repr(clone(clf))):
        assert KEY not in shown
    assert isinstance(clf.get_params()["model_name__api_key"], Secret)
    caplog.set_level(logging.DEBUG)
    clf.fit(X, Y).predict(X)
    assert fake_chat.headers[-1]["authorization"] == f"Bearer {KEY}"  # it is sent, and only there
    assert clone(clf).fit(X, Y).model_name.get_params()["api_key"].get_secret_value() == KEY
    fake_chat.faults = ["500", "500"]
    with pytest.raises(APIRequestError) as error:
        clf.predict(["something new"])
    assert KEY not in str(error.value) and KEY not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()
    fake_chat.faults = ["401-echo"]  # a key echoed where a message is cut: scrubbed before the cut
    with pytest.raises(APIRequestError, match=r"invalid key \*") as error:
        clf.predict(["something else"])
    assert KEY[:8] not in str(error.value)
    blob = pickle.dumps(clf)
    assert KEY.encode() not in blob
    restored = pickle.loads(blob)
    with pytest.raises(APIKeyMissingError, match="OPENAI_API_KEY"):
        restored.predict(X)


def test_an_unpickled_estimator_reads_the_key_from_the_environment(fake_chat, tmp_path, monkeypatch):
    clf = ZeroShotClassifier(_chat(fake_chat, api_key=KEY), cache_dir=str(tmp_path)).fit(X, Y)
    expected = clf.predict(X)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    restored = pickle.loads(pickle.dumps(clf))
    fake_chat.faults, n = [], len(fake_chat.bodies)
    np.testing.assert_array_equal(restored.predict([*X, "fun and great"]), [*expected, "pos"])
    assert fake_chat.headers[n]["authorization"] == "Bearer sk-from-env"


def test_the_command_lines_openai_form_as_a_model_name_points_to_openaichat():
    with pytest.raises(
        ValueError, match=r"in Python pass model_name=OpenAIChat\('gpt-4o-mini', base_url='http://h/v1'\)"
    ):
        ZeroShotClassifier("openai:gpt-4o-mini@http://h/v1", classes=["neg", "pos"]).fit()


def test_openai_itself_needs_a_key(monkeypatch):
    clf = ZeroShotClassifier(OpenAIChat("gpt-4o-mini"), classes=["a", "b"], cache_dir=None)
    with pytest.raises(APIKeyMissingError, match="needs an API key"):
        clf.fit()


def test_parameters_are_checked_by_name(fake_chat):
    for bad, match in [({"max_concurrency": 0}, "max_concurrency"), ({"timeout": 0}, "timeout")]:
        with pytest.raises(ValueError, match=match):
            ZeroShotClassifier(_chat(fake_chat, **bad), classes=["a", "b"]).fit()
    with pytest.raises(ValueError, match="model name"):
        ZeroShotClassifier(OpenAIChat(base_url=fake_chat.url), classes=["a", "b"]).fit()


@pytest.mark.parametrize(
    "check",
    [
        ec.check_estimator_cloneable,
        ec.check_estimator_repr,
        ec.check_no_attributes_set_in_init,
        ec.check_parameters_default_constructible,
        ec.check_get_params_invariance,
        ec.check_set_params,
    ],
    ids=lambda c: c.__name__,
)
def test_openai_chat_is_a_plain_valued_sklearn_object(check):
    check("OpenAIChat", OpenAIChat("gpt-4o-mini", api_key=KEY))


def test_skllm_compare_has_an_api_row_with_the_tokens_it_used(fake_chat, tmp_path):
    from skllm import compare_methods
    from skllm._cli import parse_llm

    llm = parse_llm(f"openai:fake-model@{fake_chat.url}")
    assert isinstance(llm, OpenAIChat) and llm.base_url == fake_chat.url
    assert parse_llm("openai:gpt-4o-mini").base_url is None and parse_llm("HuggingFaceTB/x") == "HuggingFaceTB/x"
    assert parse_llm("openai:claude@20240229").model == "claude@20240229"  # no URL after the @: part of the name
    # A URL it cannot use is refused, not read as part of the model name on the default endpoint.
    for bad in ("openai:m@127.0.0.1:8000/v1", "openai:m@localhost:11434/v1", "openai:m@ftp://x/v1"):
        with pytest.raises(ValueError, match=r"the URL of --llm .* must be an http:// or https:// URL"):
            parse_llm(bad)
    table = compare_methods(X * 2, Y * 2, methods=["zero-shot"], cv=2, llm=llm, cache_dir=str(tmp_path), verbose=0)
    row = table.iloc[0]
    assert row["status"] == "computed" and row["accuracy_mean"] == 1.0 and row["api_tokens"] > 0
    assert fake_chat.answered == 6  # each distinct text once over both folds


def test_one_grid_compares_a_local_model_and_an_endpoint(fake_chat, tiny_llama, tmp_path):
    grid = {"model_name": [tiny_llama, _chat(fake_chat)]}
    search = GridSearchCV(ZeroShotClassifier(cache_dir=str(tmp_path)), grid, cv=2).fit(X * 2, Y * 2)
    assert isinstance(search.best_params_["model_name"], OpenAIChat) and search.best_score_ == 1.0
    assert search.predict(["a delightful film"]).tolist() == ["pos"]


def test_verbose_shows_a_progress_bar_of_the_requests(fake_chat, capsys):
    clf = ZeroShotClassifier(_chat(fake_chat, verbose=True), classes=["neg", "pos"], calibration=None, cache_dir=None)
    clf.fit().predict(X)
    assert "requests: 100%" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/v1", "", "http://", "127.0.0.1:8000/v1"])
def test_a_base_url_that_is_not_an_http_url_with_a_host_is_refused_at_fit(url):
    clf = ZeroShotClassifier(OpenAIChat("m", base_url=url, api_key=KEY), classes=["a", "b"], cache_dir=None)
    with pytest.raises(ValueError, match=r"base_url must be an http:// or https:// URL with a host.*got"):
        clf.fit()


def test_a_bad_openai_base_url_variable_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "localhost")
    clf = ZeroShotClassifier(OpenAIChat("m", api_key=KEY), classes=["a", "b"], cache_dir=None)
    with pytest.raises(ValueError, match=r"environment variable OPENAI_BASE_URL must be an http"):
        clf.fit()


@pytest.mark.parametrize("key", ["", "  "])
def test_an_empty_api_key_is_refused_saying_how_to_pass_one(fake_chat, key):
    clf = ZeroShotClassifier(OpenAIChat("m", base_url=fake_chat.url, api_key=key), classes=["a", "b"], cache_dir=None)
    with pytest.raises(ValueError, match=r"api_key='\s*' is empty.*OPENAI_API_KEY"):
        clf.fit()


# -- answers and responses in other shapes, errors that name the request ------------------------


def test_an_answer_naming_no_class_is_not_read_from_a_first_token_it_shares_with_one(tmp_path):
    # "Ne" starts "negative" and "Neutral" alike: the answer names no class, whatever the alternatives favour.
    ne, pos = [("Ne", -0.1), ("Pos", -2.5), ("Neg", -4.0)], [("Pos", -0.1), ("Neg", -2.5)]
    for answer, top, expected in [("Neutral", ne, None), ("Ne", ne, "negative"), ("Positively so", pos, "positive")]:
        server = FakeChat(answer=lambda m, a=answer: a, logprobs=lambda m, t=top: t)
        try:
            chat = _chat(server, unparsed="error")
            clf = ZeroShotClassifier(chat, classes=["positive", "negative"], calibration=None, cache_dir=str(tmp_path))
            if expected is None:
                with pytest.raises(UnparsedAnswerError, match="row"):
                    clf.fit().predict(["some text"])
            else:
                assert clf.fit().predict(["some text"]).tolist() == [expected]
        finally:
            server.close()


def test_a_class_no_listed_token_names_gets_at_most_the_probability_left():
    # Only the answered token came back, at -0.01: the other class has at most the 1% left.
    scores = class_logprobs([("positive", -0.01)], ["positive", "negative"])
    np.testing.assert_allclose(np.exp(scores), [np.exp(-0.01), -np.expm1(-0.01)], rtol=1e-9)
    # With many listed tokens, half the least likely one stays the bound where it is smaller.
    top = [("pos", np.log(0.6)), ("The", np.log(0.3)), ("A", np.log(0.0999))]
    np.testing.assert_allclose(np.exp(class_logprobs(top, ["positive", "negative"])[1]), 1e-4, rtol=1e-6)


class _Reshaped(FakeChat):
    """The fake, its responses changed by ``reshape(payload)`` (other servers' shapes)."""

    def __init__(self, reshape, **kwargs):
        self.reshape = reshape
        super().__init__(**kwargs)

    def post(self, path, body, headers):
        status, payload = super().post(path, body, headers)
        if status == 200:
            self.reshape(payload)
        return status, payload


def _alternatives_as_a_mapping(payload):
    entry = payload["choices"][0]["logprobs"]["content"][0]
    entry["top_logprobs"] = {e["token"]: e["logprob"] for e in entry["top_logprobs"]}


def _alternatives_as_pairs(payload):
    entry = payload["choices"][0]["logprobs"]["content"][0]
    entry["top_logprobs"] = [[e["token"], e["logprob"]] for e in entry["top_logprobs"]]


def _content_as_parts_and_no_usage_numbers(payload):
    message = payload["choices"][0]["message"]
    message["content"] = [{"type": "text", "text": message["content"]}]
    payload["usage"] = {"prompt_tokens": "n/a", "completion_tokens": None}


@pytest.mark.parametrize(
    "reshape", [_alternatives_as_a_mapping, _alternatives_as_pairs, _content_as_parts_and_no_usage_numbers]
)
@pytest.mark.parametrize("cache", [True, False])
def test_responses_in_other_servers_shapes_are_read(reshape, cache, tmp_path):
    top = {"pos": [("pos", -0.2), ("neg", -1.8)], "neg": [("neg", -0.3), ("pos", -1.5)]}
    server = _Reshaped(reshape, logprobs=lambda m: top[sentiment(m)])
    try:
        cache_dir = str(tmp_path) if cache else None
        clf = ZeroShotClassifier(_chat(server), classes=["neg", "pos"], calibration=None, cache_dir=cache_dir).fit()
        assert clf.predict(X).tolist() == Y
        proba = clf.predict_proba(X)[:, 1]
        if reshape is not _content_as_parts_and_no_usage_numbers:  # the alternatives were read
            np.testing.assert_allclose(proba[0], np.exp(-0.2) / (np.exp(-0.2) + np.exp(-1.8)))
    finally:
        server.close()


class _RefusesOne(FakeChat):
    """The fake, refusing (400) every prompt that contains ``word``."""

    def post(self, path, body, headers):
        if "awful" in json.loads(body)["messages"][-1]["content"]:
            return 400, {"error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}}
        return super().post(path, body, headers)


def test_a_refused_request_names_its_prompt():
    server = _RefusesOne()
    try:
        clf = ZeroShotClassifier(_chat(server, max_concurrency=1), classes=["neg", "pos"], calibration=None)
        clf.set_params(cache_dir=None).fit()
        with pytest.raises(
            APIRequestError,
            match=r"BadRequestError 400.*on prompt 1 of the 6 of this call \(in the order given: the row of X\)",
        ) as e:
            clf.predict(X)
        assert e.value.rows == [1] and "awful film" in str(e.value)
    finally:
        server.close()


def test_a_refused_calibration_request_names_its_place_among_the_calibration_prompts():
    # calibration="batch" sends the texts of fit, one first (does the endpoint return log-probabilities?)
    # and then the rest: the refused "awful film" is the second of the six, which are no rows of X.
    server = _RefusesOne(logprobs=lambda messages: [("pos", -0.1), ("neg", -2.5)])
    try:
        clf = ZeroShotClassifier(_chat(server, max_concurrency=1), calibration="batch", cache_dir=None)
        with pytest.raises(APIRequestError, match=r"on prompt 1 of the 6 of the calibration prompts of fit") as e:
            clf.fit(X, Y)
        assert e.value.rows == [1] and "awful film" in str(e.value) and "row of X" not in str(e.value)
    finally:
        server.close()


def test_a_wrong_base_url_path_says_where_the_request_went(fake_chat):
    clf = ZeroShotClassifier(_chat(fake_chat, base_url=fake_chat.url[: -len("/v1")]), classes=["neg", "pos"])
    with pytest.raises(APIRequestError, match=r"404.*went to http://127\.0\.0\.1:\d+/chat/completions.* ends in /v1"):
        clf.set_params(calibration=None, cache_dir=None).fit().predict(["great film"])


class _SaysWhy(FakeChat):
    def __init__(self, status, body):
        self.status, self.body = status, body
        super().__init__()

    def post(self, path, body, headers):
        return self.status, self.body


@pytest.mark.parametrize(
    "status, body, said",
    [
        (422, {"detail": "max_tokens must be at least 1"}, r'422.*the server said: \{"detail": "max_tokens must be'),
        (400, {"error": "Input validation error: too many tokens"}, r"400.*the server said: Input validation error"),
    ],
)
def test_an_error_body_in_another_shape_than_openais_is_shown(status, body, said):
    server = _SaysWhy(status, body)
    try:
        clf = ZeroShotClassifier(_chat(server), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
        with pytest.raises(APIRequestError, match=said):
            clf.predict(["great film"])
    finally:
        server.close()


def test_an_unknown_model_gets_no_base_url_hint_and_a_refused_connection_says_why():
    server = _SaysWhy(404, {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}})
    try:
        clf = ZeroShotClassifier(_chat(server), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
        with pytest.raises(APIRequestError, match=r"404.*The model `x` does not exist") as error:
            clf.predict(["great film"])
        assert "ends in /v1" not in str(error.value)
    finally:
        server.close()
    gone = OpenAIChat("m", api_key=KEY, base_url=server.url, backoff=0.0, max_retries=0)
    clf = ZeroShotClassifier(gone, classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    with pytest.raises(APIRequestError, match=r"Connection error \(cause: ConnectError: .*refused"):
        clf.predict(["great film"])


class _QuotaSpent(FakeChat):
    def post(self, path, body, headers):
        return 429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}


def test_a_spent_quota_and_a_wait_over_ten_minutes_are_not_retried(fake_chat):
    server = _QuotaSpent()
    try:
        clf = ZeroShotClassifier(_chat(server), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
        with pytest.raises(APIRequestError, match=r"\(not retried\): RateLimitError 429.*quota"):
            clf.predict(["great film"])
        assert len(server.bodies) == 1
    finally:
        server.close()
    fake_chat.faults, fake_chat.retry_after = ["429"], 3600
    clf = ZeroShotClassifier(_chat(fake_chat), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    with pytest.raises(APIRequestError, match=r"not retried: it asked for a wait of 3600 s"):
        clf.predict(["great film"])


def test_the_key_timeout_and_retries_set_after_fit_are_used_and_checked(fake_chat):
    clf = ZeroShotClassifier(_chat(fake_chat, api_key="old-key"), classes=["neg", "pos"], calibration=None)
    clf.set_params(cache_dir=None).fit()
    clf.set_params(model_name__api_key="new-key")
    clf.predict(["great film"])
    assert fake_chat.headers[-1]["authorization"] == "Bearer new-key"
    fake_chat.faults, fake_chat.hang_seconds = ["hang"], 2.0
    clf.set_params(model_name__timeout=0.3, model_name__max_retries=0)
    with pytest.raises(APIRequestError, match="APITimeoutError"):
        clf.predict(["awful film"])
    for name, value in [("max_retries", -1), ("max_concurrency", 0), ("timeout", -5)]:
        clf.set_params(**{f"model_name__{name}": value})
        with pytest.raises(ValueError, match=name):
            clf.predict(["great film"])
        clf.set_params(model_name__max_retries=0, model_name__max_concurrency=1, model_name__timeout=5.0)


def test_an_openai_chat_put_in_after_fit_is_the_one_that_asks(fake_chat):
    clf = ZeroShotClassifier(_chat(fake_chat, api_key="old-key"), classes=["neg", "pos"], calibration=None)
    clf.set_params(cache_dir=None).fit()
    clf.set_params(model_name=_chat(fake_chat, api_key="new-key", max_retries=0))  # answers alike: accepted
    fake_chat.faults = ["500"]
    with pytest.raises(APIRequestError, match="failed after 0 retries"):
        clf.predict(["great film"])
    assert fake_chat.headers[-1]["authorization"] == "Bearer new-key"


def test_an_estimator_loaded_where_openai_base_url_names_another_endpoint_warns(fake_chat, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_chat.url)
    clf = ZeroShotClassifier(OpenAIChat("fake-model", backoff=0.01), classes=["neg", "pos"], cache_dir=None).fit()
    blob = pickle.dumps(clf)
    other = FakeChat()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", other.url)
        restored = pickle.loads(blob)
        with pytest.warns(UserWarning, match=r"fitted on openai:fake-model@http.* and now prompts .*OPENAI_BASE_URL"):
            restored.predict(["great film"])
        assert other.answered == 1
    finally:
        other.close()
    monkeypatch.setenv("OPENAI_BASE_URL", fake_chat.url)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pickle.loads(blob).predict(["great film"])  # the endpoint it was fitted on: no warning


def test_a_key_read_from_the_environment_at_fit_stays_when_the_variable_goes(fake_chat, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    clf = ZeroShotClassifier(_chat(fake_chat), classes=["neg", "pos"], calibration=None, cache_dir=None).fit()
    monkeypatch.delenv("OPENAI_API_KEY")
    clf.predict(["great film"])
    assert fake_chat.headers[-1]["authorization"] == "Bearer env-key"
