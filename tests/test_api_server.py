"""OpenAIChat against a real OpenAI-compatible server: `transformers serve` on the packaged SmolLM2.

The server is started once for the module on 127.0.0.1 and a free port and
stopped afterwards; every test talks to it through a proxy
(tests/chat_servers.py) that counts the requests and injects faults. One
answer takes a few seconds on two busy cores, so each test sends only a few.
"""

import pickle

import pytest
from chat_servers import FaultProxy, TransformersServe
from sklearn.base import clone

from skllm import (
    DEFAULT_CAUSAL_LM,
    DocumentIndex,
    FewShotClassifier,
    FewShotGenerator,
    OpenAIChat,
    RetrievalQA,
    ZeroShotClassifier,
)
from skllm.exceptions import APIRequestError

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::skllm.exceptions.QuantizedModelWarning")]
pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "sk-e2e-never-shown-4242"
CLASSES = ["positive", "negative"]


@pytest.fixture(scope="module")
def served(session_cache):
    from skllm import _models

    folder = _models.resolve_model(DEFAULT_CAUSAL_LM, cache_dir=session_cache).location
    server = TransformersServe(folder)
    yield server
    server.close()


@pytest.fixture
def proxy(served):
    proxy = FaultProxy(served.url)
    yield proxy
    proxy.close()


@pytest.fixture(autouse=True)
def _packaged_model(session_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SKLLM_CACHE_DIR", session_cache)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def _chat(served, proxy, **params):
    return OpenAIChat(served.model, base_url=proxy.url, **{"max_tokens": 6, "backoff": 0.1, **params})


def test_zero_shot_through_the_server_is_cached_and_keeps_the_key_secret(served, proxy, tmp_path):
    texts = ["I loved every minute of this film.", "A dull, boring mess."]
    clf = ZeroShotClassifier(_chat(served, proxy, api_key=KEY), cache_dir=str(tmp_path))
    clf.fit(texts, CLASSES)
    # transformers serve returns no log-probabilities: answers are read as text, not calibrated.
    assert clf.calibrated_on_ is None
    predicted = clf.predict(texts)
    assert set(predicted) <= set(CLASSES) and clf.n_unparsed_ + len(predicted) >= 2
    sent = proxy.answered
    assert sent == 2  # the calibration probe was one of the texts
    assert clf.predict(texts).tolist() == predicted.tolist()
    assert proxy.answered == sent  # the second predict sends nothing
    assert clf.usage_["requests"] == 2 and clf.usage_["completion_tokens"] > 0
    assert all(h["authorization"] == f"Bearer {KEY}" for h in proxy.headers)
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaks and KEY not in repr(clf) and KEY.encode() not in pickle.dumps(clf)
    assert KEY not in served.log.read_text()


def test_few_shot_with_nearest_demonstrations(served, proxy, tmp_path):
    X = ["a wonderful, moving film", "terrible acting and a dull plot", "great fun", "boring"]
    y = ["positive", "negative", "positive", "negative"]
    clf = FewShotClassifier(
        _chat(served, proxy), n_examples=2, example_selection="nearest", cache_dir=str(tmp_path), calibration=None
    )
    clf.fit(X, y)
    assert clf.predict(["what a wonderful film"])[0] in CLASSES
    messages = proxy.messages()[-1]
    # The two nearest demonstrations as earlier turns, the nearest last.
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert "wonderful, moving" in messages[2]["content"]
    assert proxy.answered == 1


def test_generation_and_retrieval_qa(served, proxy, tmp_path):
    chat = _chat(served, proxy)
    gen = FewShotGenerator(chat, n_examples=2, max_new_tokens=4, cache_dir=str(tmp_path))
    answer = gen.fit(["Hund", "Katze"], ["dog", "cat"]).predict(["Haus"])
    assert isinstance(answer[0], str) and answer[0]
    index = DocumentIndex().fit(
        ["The Eiffel Tower is in Paris. It was finished in 1889.", "Mount Everest is in the Himalayas."]
    )
    qa = RetrievalQA(index, generator=FewShotGenerator(chat, max_new_tokens=8, cache_dir=str(tmp_path)), k=1).fit()
    answers, sources = qa.predict_with_sources(["When was the Eiffel Tower finished?"])
    assert sources[0][0].chunk.startswith("The Eiffel Tower") and isinstance(answers[0], str)
    assert "Eiffel" in proxy.messages()[-1][-1]["content"]
    assert proxy.answered == 2


def test_faults_in_front_of_the_server(served, proxy, tmp_path):
    texts = ["Great fun.", "Awful.", "Loved it."]
    chat = _chat(served, proxy, max_concurrency=1, max_retries=2, timeout=120.0)
    clf = ZeroShotClassifier(chat, classes=CLASSES, calibration=None, cache_dir=str(tmp_path)).fit()
    # A rate limit (with Retry-After) and a server error, then the answer.
    proxy.faults, proxy.retry_after = ["429", "500"], 0.2
    clf.predict(texts[:1])
    assert clf.usage_["retries"] == 2 and proxy.answered == 1
    # A server that hangs: the request times out, is retried, and the error counts what was done.
    impatient = clone(clf).set_params(model_name__timeout=1.0).fit()
    proxy.faults = ["hang", "hang", "hang"]
    with pytest.raises(APIRequestError, match=r"APITimeoutError.*0 of 2 prompts"):
        impatient.predict(texts)
    # A server that dies after one answer: the error says so; the answer stays cached and a rerun continues.
    proxy.faults = [None, "drop", "drop", "drop"]
    with pytest.raises(APIRequestError, match=r"1 of 2 prompts were answered.*cached in"):
        clf.predict(texts)
    before = proxy.answered
    assert len(clf.predict(texts)) == 3
    assert proxy.answered - before == 1
