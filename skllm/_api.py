"""OpenAIChat: a chat model behind an OpenAI-compatible endpoint, named where a local causal LM would be.

The in-context estimators take it as ``model_name``; ``fit`` connects to it
(``model_`` is then the live connection, never pickled) and every prompt goes
through :meth:`Endpoint.ask`: answers read from the response cache when the
same request was answered before, the rest sent ``max_concurrency`` at a time,
retried with exponential backoff and jitter on rate limits, server errors and
timeouts, and written to the cache one by one as they arrive.

The API key is not a plain parameter value: ``get_params`` (and so ``repr``,
the HTML view and ``GridSearchCV``'s results) shows it as ``'***'``, it is
never logged, cached or put into an error message, and a pickle leaves it out:
an estimator loaded from a pickle reads it again from ``OPENAI_API_KEY``.
"""

import concurrent.futures
import copy
import email.utils
import json
import logging
import os
import random
import threading
import time

from sklearn.base import BaseEstimator

from ._responses import MalformedResponse, answer_of, error_text
from ._validation import check_bool, check_int, check_number
from .exceptions import APIKeyMissingError, APIRequestError, MissingDependencyError

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
# Local servers (vLLM, Ollama, llama.cpp, transformers serve) take any key; the client needs one.
NO_KEY = "no-key"
# Answer budget of a classifier's request when max_tokens is None: a label, or a short sentence naming it.
CLASSIFIER_MAX_TOKENS = 10
# Most alternatives an OpenAI endpoint lists per token.
TOP_LOGPROBS = 20
UNPARSED_CHOICES = ("most_frequent", "error")
# Longest wait between two tries that the backoff alone asks for (a Retry-After may ask for more).
MAX_DELAY = 60.0
# The longest Retry-After honoured: a longer one ends the retries as if it were refused.
MAX_RETRY_AFTER = 600.0


class Secret:
    """An API key as ``get_params`` shows it: ``'***'`` in every repr, left out of pickles.

    ``clone`` and ``deepcopy`` keep the value (same process); ``pickle`` does
    not, so a copy made in another process (or loaded from disk) has no key
    and reads it from the environment.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def get_secret_value(self):
        return self._value

    def __repr__(self):
        return "'***'" if self._value is not None else "'*** (not pickled)'"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(Secret)

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (Secret, (None,))


def _key_value(api_key):
    return api_key.get_secret_value() if isinstance(api_key, Secret) else api_key


class OpenAIChat(BaseEstimator):
    """A chat model behind an OpenAI-compatible endpoint, to pass as ``model_name``.

    ``ZeroShotClassifier(model_name=OpenAIChat("gpt-4o-mini"))`` prompts a
    hosted model instead of a local one; so do :class:`FewShotClassifier`,
    :class:`FewShotGenerator` and (through its generator)
    :class:`RetrievalQA`. Any endpoint that speaks the chat-completions API
    works: OpenAI, Azure OpenAI, vLLM, Ollama, a llama.cpp server,
    ``transformers serve`` (``docs/api_models.md``). Its parameters are nested
    parameters of the estimator (``model_name__temperature``), and a
    ``GridSearchCV`` can put it in a grid next to local model names.

    Classifiers ask for one label. Where the endpoint returns token
    log-probabilities, each class is scored by the log-probability of the first
    answer token that starts its wording, and calibrated as a local model's;
    otherwise the answer text is mapped to a class (normalised, then equal to
    a wording, an unambiguous prefix, or containing one wording) and
    ``predict_proba`` is one-hot. An answer naming no class is never replaced
    silently: see ``unparsed``.

    Requests are deterministic (``temperature=0``) and their answers cached in
    the estimator's ``cache_dir`` (``<cache_dir>/responses/``), so that the
    folds of a cross-validation and the candidates of a grid search never send
    the same prompt twice and an interrupted run continues where it stopped.
    Requests with ``temperature > 0`` are not cached.

    Needs the ``openai`` package: ``pip install 'skllm-toolkit[api]'``.

    Parameters
    ----------
    model : str
        The endpoint's model name (``"gpt-4o-mini"``, an Azure deployment, a
        vLLM or Ollama model, the folder ``transformers serve`` lists).
    base_url : str, default=None
        The endpoint, an http(s) URL with a host, e.g.
        ``"http://127.0.0.1:8000/v1"``; ``None``: ``$OPENAI_BASE_URL``,
        else OpenAI's. Anything else (``""`` included) is a ``ValueError``.
    api_key : str, default=None
        The key; ``None``: ``$OPENAI_API_KEY``; an empty string is a
        ``ValueError``. Shown as ``'***'`` by
        ``get_params`` and ``repr``, and never pickled: an estimator loaded
        from a pickle (or sent to another process) reads ``$OPENAI_API_KEY``
        and raises :class:`~skllm.exceptions.APIKeyMissingError` when it is
        not set. Endpoints other than OpenAI's are sent a placeholder when
        there is no key (local servers need none).
    temperature : float, default=0.0
        Sampling temperature. Only requests at 0 are cached.
    max_tokens : int, default=None
        Longest answer. ``None``: 10 tokens for a classifier, the generator's
        ``max_new_tokens`` for :class:`FewShotGenerator`.
    logprobs : bool, default=True
        Ask for the log-probabilities of the 20 most likely first tokens
        (endpoints that do not return them are read as text). Set False for
        endpoints that refuse the parameter.
    unparsed : {"most_frequent", "error"} or a class, default="most_frequent"
        What a classifier predicts for an answer that names no class:
        the most frequent class of ``fit``'s labels (the first class when
        ``fit`` had none), an error
        (:class:`~skllm.exceptions.UnparsedAnswerError`), or the class given.
        Either way the estimator counts them (``n_unparsed_``) and warns with
        their rows (:class:`~skllm.exceptions.UnparsedAnswerWarning`).
    max_concurrency : int, default=4
        Requests in flight at once.
    timeout : float, default=60.0
        Seconds a request may wait to connect, or for the next bytes of its
        answer, before it is retried (the HTTP client's timeouts). It is no
        limit on a whole answer: one that keeps arriving, however slowly, is
        waited for.
    max_retries : int, default=5
        Tries after the first, on rate limits (429), server errors (5xx),
        timeouts and lost connections. Other errors (a bad key, an unknown
        model) stop at once.
    backoff : float, default=1.0
        First wait between tries, in seconds; it doubles with each retry, with
        random jitter (half of it random), up to 60 s, and is never shorter
        than the endpoint's ``Retry-After`` (up to 10 minutes). A 429 that
        says the quota is spent (``insufficient_quota``) is not retried.
    verbose : bool, default=False
        Show a progress bar of the requests.

    Examples
    --------
    >>> from skllm import OpenAIChat, ZeroShotClassifier
    >>> chat = OpenAIChat("gpt-4o-mini", api_key="sk-example")
    >>> chat
    OpenAIChat(api_key='***', model='gpt-4o-mini')
    >>> clf = ZeroShotClassifier(model_name=chat, classes=["positive", "negative"])
    >>> clf.get_params()["model_name__model"]
    'gpt-4o-mini'
    """

    def __init__(
        self,
        model=None,
        *,
        base_url=None,
        api_key=None,
        temperature=0.0,
        max_tokens=None,
        logprobs=True,
        unparsed="most_frequent",
        max_concurrency=4,
        timeout=60.0,
        max_retries=5,
        backoff=1.0,
        verbose=False,
    ):
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.logprobs = logprobs
        self.unparsed = unparsed
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.verbose = verbose

    # How the endpoint is reached, not what it answers: may change after an estimator's fit.
    _runtime_params = ("api_key", "max_concurrency", "timeout", "max_retries", "backoff", "verbose")

    def __deepcopy__(self, memo):
        # As clone: the key is kept within the process (a pickle leaves it out, see __getstate__).
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for name, value in vars(self).items():
            setattr(new, name, copy.deepcopy(value, memo))
        return new

    def __copy__(self):  # as deepcopy and clone: the key stays within the process (only a pickle leaves it out)
        return self.__deepcopy__({})

    def get_params(self, deep=True):
        """The parameters, the key shown as ``'***'`` (a :class:`Secret`, which ``clone`` keeps)."""
        params = super().get_params(deep=deep)
        if isinstance(params.get("api_key"), str):
            params["api_key"] = Secret(params["api_key"])
        return params

    def __getstate__(self):
        state = dict(super().__getstate__())
        if _key_value(state.get("api_key")) is not None:
            # The key stays out of the pickle; loading reads it from the environment.
            state["api_key"] = Secret(None)
        return state

    def _check_params(self):
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"OpenAIChat needs the endpoint's model name as model, got {self.model!r}.")
        if self.base_url is not None:
            _check_url(self.base_url, "base_url")
        key = _key_value(self.api_key)
        if key is not None and not isinstance(key, str):
            raise ValueError(f"api_key must be a string or None, got a {type(key).__name__}.")
        if isinstance(key, str) and not key.strip():
            raise ValueError(
                f"api_key={key!r} is empty. Pass the key as api_key, or leave api_key=None to read it from "
                f"OPENAI_API_KEY (an endpoint other than OpenAI's that needs no key works with None too)."
            )
        check_number(self.temperature, "temperature", 0.0)
        check_int(self.max_tokens, "max_tokens", allow_none=True)
        check_bool(self.logprobs, "logprobs")
        check_int(self.max_concurrency, "max_concurrency")
        check_number(self.timeout, "timeout", 0.0, low_inclusive=False)
        check_int(self.max_retries, "max_retries", 0)
        check_number(self.backoff, "backoff", 0.0)
        check_bool(self.verbose, "verbose")

    def _endpoint_url(self):
        if self.base_url is None and os.environ.get("OPENAI_BASE_URL"):
            _check_url(os.environ["OPENAI_BASE_URL"], "the environment variable OPENAI_BASE_URL")
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).strip().rstrip("/")

    def _resolve_key(self, url):
        key = _key_value(self.api_key)
        if key is not None:
            return key
        if os.environ.get("OPENAI_API_KEY"):
            return os.environ["OPENAI_API_KEY"]
        if isinstance(self.api_key, Secret):
            raise APIKeyMissingError(
                f"This OpenAIChat({self.model!r}) was given an API key, which pickles and other processes never "
                f"receive. Set the environment variable OPENAI_API_KEY (or set_params(api_key=...)) to use it."
            )
        if url == OPENAI_BASE_URL:
            raise APIKeyMissingError(
                f"OpenAIChat({self.model!r}) on {url} needs an API key: set OPENAI_API_KEY or pass api_key."
            )
        return NO_KEY

    def identity(self):
        """``"openai:<model>@<endpoint>"``: what the answers depend on besides the prompt (never the key)."""
        return f"openai:{self.model}@{self._endpoint_url()}"

    def connect(self, cache_dir="auto"):
        """A live connection to the endpoint (an :class:`Endpoint`), caching answers under ``cache_dir``."""
        self._check_params()
        try:
            import openai
        except ImportError as exc:
            raise MissingDependencyError(
                "openai", "Prompting an OpenAI-compatible endpoint", "pip install 'skllm-toolkit[api]'"
            ) from exc
        from ._cache import ResponseCache, resolve_cache_dir

        url = self._endpoint_url()
        key = self._resolve_key(url)
        # Retries are ours (backoff with jitter, Retry-After, a count in the error); the client's are off.
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=float(self.timeout))
        root = resolve_cache_dir(cache_dir)
        cache = ResponseCache(root) if root is not None else None
        return Endpoint(self, client, url, cache, secret=key)


def _check_url(url, name):
    """Raise a ``ValueError`` naming ``name`` unless ``url`` is an http(s) URL with a host."""
    from urllib.parse import urlsplit

    if isinstance(url, str):
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
        except ValueError:  # e.g. a malformed port or IPv6 address
            parts, host = None, None
        if parts is not None and parts.scheme in ("http", "https") and host:
            return
    shown = f"{url!r}" if isinstance(url, str) else f"a {type(url).__name__} {url!r:.60}"
    raise ValueError(
        f"{name} must be an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:8000/v1', "
        f"or None ($OPENAI_BASE_URL, else OpenAI's endpoint); got {shown}."
    )


# -- the connection ----------------------------------------------------------------------


def backoff_delay(attempt, backoff, rng, retry_after=None):
    """Seconds to wait before retry ``attempt`` (0 for the first retry).

    ``backoff * 2**attempt``, of which the second half is random (so that
    clients that failed together do not retry together), at most
    ``MAX_DELAY``, and never less than the endpoint's ``retry_after`` (which
    :func:`_retryable` keeps under ``MAX_RETRY_AFTER``).
    """
    base = min(MAX_DELAY, backoff * 2.0**attempt)
    delay = base / 2 + rng.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_after_seconds(headers):
    """The wait a response asks for (``Retry-After`` in seconds or as a date, or ``retry-after-ms``), or None."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _retryable(exc):
    """``(retry, Retry-After)`` for an exception of the openai client."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, MalformedResponse)):
        return True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        # A spent quota is a 429 too, but waiting does not refill it.
        retry = (status in (408, 409, 429) or status >= 500) and getattr(exc, "code", None) != "insufficient_quota"
        retry_after = retry_after_seconds(getattr(exc.response, "headers", None))
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return False, retry_after
        return retry, retry_after
    return False, None


class Endpoint:
    """A live connection to a chat endpoint: the client, the response cache and the request loop.

    ``model_`` of an estimator prompting an :class:`OpenAIChat`; rebuilt from
    the :class:`OpenAIChat` after unpickling, never pickled itself.
    """

    def __init__(self, chat, client, url, cache, secret):
        self.chat = chat
        self.client = client
        self.url = url
        self.cache = cache
        self._secret = secret
        self._timeout = float(chat.timeout)

    def follow(self, chat, cache_dir):
        """Ask with ``chat``'s settings (the key, timeout...) and cache under ``cache_dir``, both settable after fit."""
        from ._cache import ResponseCache, resolve_cache_dir

        self.chat = chat
        root = resolve_cache_dir(cache_dir)
        if root != (None if self.cache is None else self.cache.root):
            self.cache = ResponseCache(root) if root is not None else None

    def _refresh(self):
        """Check the settings again and rebuild the client where the key or timeout changed (``set_params``).

        Only a key given as ``api_key`` counts: one read from the environment at connect stays.
        """
        self.chat._check_params()
        given, timeout = _key_value(self.chat.api_key), float(self.chat.timeout)
        key = given if given is not None else self._secret
        if key != self._secret or timeout != self._timeout:
            self.client = self.client.with_options(api_key=key, timeout=timeout)
            self._secret, self._timeout = key, timeout

    def __getstate__(self):
        raise TypeError("An Endpoint is a live connection; pickle the estimator, which reconnects by itself.")

    def __repr__(self):
        return f"Endpoint({self.chat.identity()!r})"

    def _said(self, exc):
        """``exc`` in one line without the key, should the endpoint have echoed it (removed before the cut)."""
        return error_text(exc, self._secret if self._secret != NO_KEY else None)

    def _request(self, conversation, max_tokens, logprobs):
        chat = self.chat
        params = {"max_tokens": int(max_tokens), "temperature": float(chat.temperature)}
        if logprobs:
            params.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
        return {"endpoint": self.url, "model": chat.model, "messages": conversation, "params": params}

    def _send(self, request, stop, rng, counts, lock):
        """The answer to one request, retried as documented; raises the last error (or None when stopped)."""
        chat = self.chat
        for attempt in range(chat.max_retries + 1):
            if stop.is_set():
                return None
            try:
                try:
                    response = self.client.chat.completions.create(
                        model=request["model"], messages=request["messages"], **request["params"]
                    )
                except json.JSONDecodeError as exc:  # a body sent as JSON that is not
                    raise MalformedResponse(f"the response is not valid JSON ({exc})") from None
                return answer_of(response)
            except Exception as exc:
                retry, retry_after = _retryable(exc)
                if not retry or attempt == chat.max_retries:
                    raise
                delay = backoff_delay(attempt, chat.backoff, rng, retry_after)
                with lock:
                    counts["retries"] += 1
                logger.info(
                    "%s: %s; retry %d of %d in %.1f s",
                    self.url,
                    self._said(exc),
                    attempt + 1,
                    chat.max_retries,
                    delay,
                )
                if stop.wait(delay):
                    return None
        return None

    def ask(self, conversations, *, max_tokens, logprobs=None, desc="requests", part_of=None):
        """The answer to each conversation (a list of chat messages), and the usage of this call.

        ``part_of``: ``(first, total, what)``: the conversations are those from ``first`` on of ``total``
        prompts that ``what`` describes, for an error to name the failed one (default: the rows of X).

        An answer is a dict: ``text``, ``top_logprobs`` (the first token's
        ``(token, logprob)`` alternatives, or None) and the request's
        ``prompt_tokens`` and ``completion_tokens``. Usage counts the requests
        sent (``requests``), answered from the cache (``cached``), retried
        (``retries``) and the tokens of the requests sent.
        """
        from tqdm.auto import tqdm

        from ._cache import request_key

        self._refresh()
        chat = self.chat
        logprobs = chat.logprobs if logprobs is None else logprobs
        requests = [self._request(c, max_tokens, logprobs) for c in conversations]
        keys = [request_key(r) for r in requests]
        cacheable = self.cache is not None and float(chat.temperature) == 0.0
        found = self.cache.get(list(set(keys))) if cacheable else {}
        answers = [found.get(k) for k in keys]
        usage = {"requests": 0, "cached": sum(a is not None for a in answers), "retries": 0}
        usage.update(prompt_tokens=0, completion_tokens=0)
        # A prompt asked twice in one call is sent once, unless answers are sampled: each row draws its own.
        todo = {}
        for i, key in enumerate(keys):
            if answers[i] is None:
                todo.setdefault(key if float(chat.temperature) == 0.0 else (key, i), []).append(i)
        if not todo:
            return answers, usage
        stop, lock = threading.Event(), threading.Lock()
        failure = []

        def run(key, rows, rng):
            try:
                answer = self._send(requests[rows[0]], stop, rng, usage, lock)
            except BaseException:
                stop.set()  # before this worker takes the next prompt
                raise
            if answer is None:
                return
            # An empty answer (a refusal, a content filter, a reasoning model out of tokens) is a glitch
            # more often than the model's answer: not kept, so that the next call asks again.
            if cacheable and (answer["text"].strip() or answer["top_logprobs"]):
                self.cache.put(key, answer)
            with lock:
                usage["requests"] += 1
                usage["prompt_tokens"] += answer["prompt_tokens"]
                usage["completion_tokens"] += answer["completion_tokens"]
                for i in rows:
                    answers[i] = answer

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(chat.max_concurrency, len(todo)))
        try:
            with tqdm(total=len(todo), desc=desc, unit="request", disable=not chat.verbose) as progress:
                # Jitter from the system's entropy: processes asking the same prompts must not wait alike.
                futures = {pool.submit(run, key, rows, random.Random()): rows for key, rows in todo.items()}
                for future in concurrent.futures.as_completed(futures):
                    exc = future.exception()
                    if exc is not None and not failure:
                        failure.append((exc, futures[future]))
                        stop.set()
                    progress.update()
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        if failure:
            exc, rows = failure[0]
            raise self._failure(exc, rows, conversations, usage, len(todo), cacheable, part_of) from None
        return answers, usage

    def _failure(self, exc, rows, conversations, usage, n_todo, cached, part_of=None):
        done = usage["requests"]
        retry, retry_after = _retryable(exc)
        if retry:
            after = f"after {self.chat.max_retries} retries"
        elif retry_after is not None and retry_after > MAX_RETRY_AFTER:
            after = f"(not retried: it asked for a wait of {retry_after:.0f} s)"
        else:
            after = "(not retried)"
        kept = f" They are cached in {self.cache.path}: the same call continues from there." if cached and done else ""
        earlier = f" ({usage['cached']} more came from the cache)" if usage["cached"] else ""
        hint = ""
        body = getattr(exc, "body", None)
        unknown_model = isinstance(body, dict) and "model_not_found" in (body.get("code"), body.get("type"))
        if getattr(exc, "status_code", None) == 404 and not unknown_model and not self.url.rstrip("/").endswith("/v1"):
            hint = (
                f" The request went to {self.url}/chat/completions: an OpenAI-compatible base_url usually ends "
                f"in /v1 (e.g. 'http://127.0.0.1:8000/v1'), without /chat/completions."
            )
        try:
            content = str(conversations[rows[0]][-1].get("content", ""))
        except (IndexError, AttributeError, TypeError):  # not a list of message dicts: shown as it is
            content = str(conversations[rows[0]])
        shown = " ".join(content.split())
        shown = shown if len(shown) <= 80 else "..." + shown[-77:]
        first, total, what = part_of or (0, len(conversations), "this call (in the order given: the row of X)")
        rows = [first + r for r in rows]
        which = f"prompt {rows[0]}" if len(rows) == 1 else f"prompts {rows[:10]} (the same prompt)"
        return APIRequestError(
            f"The chat endpoint {self.url} (model {self.chat.model!r}) failed {after}: {self._said(exc)}, "
            f"on {which} of the {total} of {what}, which ends {shown!r}.{hint} {done} of {n_todo} prompts were "
            f"answered before it stopped{earlier}.{kept}",
            n_done=done,
            n_total=n_todo,
            usage=usage,
            rows=rows,
        )


def add_usage(total, usage):
    """Add the counts of ``usage`` into ``total`` (a dict of the same counts)."""
    for name, value in usage.items():
        total[name] = total.get(name, 0) + value
    return total


def as_messages(content):
    """Chat messages of a prompt's content (a user message, or the messages themselves)."""
    if isinstance(content, list):
        return content
    return [{"role": "user", "content": content}]
