"""Reading a chat-completions response: the answer's text, its first token's alternatives, the usage.

Servers that speak the OpenAI API differ in the shapes they send (log-probabilities
as a list of entries, a mapping or pairs; content as a string or a list of parts);
each is read here, and a body that is no chat completion is a :class:`MalformedResponse`.
"""


class MalformedResponse(ValueError):
    """A response that is not a chat completion (a proxy's HTML page, no choices...); retried like a 5xx."""


def answer_of(response):
    """The JSON-able answer kept from a chat-completions response."""
    if isinstance(response, (str, bytes)):  # the client hands back a body that is not JSON as text
        body = response.decode(errors="replace") if isinstance(response, bytes) else response
        raise MalformedResponse(f"the response is not JSON: {' '.join(body.split())[:120]!r}")
    choices = getattr(response, "choices", None)
    if choices and not isinstance(choices, (list, tuple)):
        raise MalformedResponse(f"the response holds choices that are not a list: {choices!r:.120}")
    if not choices:
        error = getattr(response, "error", None)  # some servers answer 200 with an error object
        said = f"an error instead: {error!r:.200}" if error else f"choices={choices!r}"
        raise MalformedResponse(f"the response holds no choices ({said})")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None:
        raise MalformedResponse("the response's first choice holds no message")
    top = None
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content and isinstance(content, (list, tuple)):  # another shape: read as text, as below
        first = content[0]
        pairs = _token_pairs(_field(first, "top_logprobs")) or _token_pairs([first])
        # A token without a number is left out; none left: the answer is read as text.
        top = [[token, float(lp)] for token, lp in pairs if isinstance(lp, (int, float))] or None
    usage = getattr(response, "usage", None)
    return {
        "text": _text(getattr(message, "content", None)),
        "top_logprobs": top,
        "prompt_tokens": _count(getattr(usage, "prompt_tokens", 0)),
        "completion_tokens": _count(getattr(usage, "completion_tokens", 0)),
    }


def _field(item, name):
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _token_pairs(top):
    """``(token, logprob)`` pairs of a token's alternatives, in the shapes servers send.

    OpenAI's (a list of ``{"token", "logprob"}`` entries), the legacy completions'
    (a mapping of token to logprob), or ``[token, logprob]`` pairs; entries of
    any other shape are left out (with none left, the answer is read as text).
    """
    if isinstance(top, dict):
        return list(top.items())
    pairs = []
    for entry in top or ():
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str):
            pairs.append(tuple(entry))
        elif isinstance(_field(entry, "token"), str):
            pairs.append((_field(entry, "token"), _field(entry, "logprob")))
    return pairs


def _text(content):
    """The answer's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, list):
        parts = [_field(part, "text") for part in content]
        return "".join(part for part in parts if isinstance(part, str))
    return content if isinstance(content, str) else ""


def _count(value):
    """A token count of ``usage``, 0 where the server sent none or no number."""
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def error_text(exc, secret=None):
    """A failed request's error in one line: its type, status, message, what the server said, the cause.

    The client's message holds only an OpenAI-shaped error's ``message``: a body in another shape
    (``{"error": "..."}``, FastAPI's ``{"detail": ...}``, plain text) and the cause of a lost
    connection (refused, DNS, TLS) are added where it lacks them. ``secret`` (the key, should the
    endpoint have echoed it) is removed before the cut at 400 characters.
    """
    import json

    text = " ".join(str(exc).split()).rstrip(".")
    body = getattr(exc, "body", None)
    if body is not None:
        said = " ".join((body if isinstance(body, str) else json.dumps(body, default=str)).split())
        message = body.get("message") if isinstance(body, dict) else None  # OpenAI's shape: already in text
        if said and said not in text and (message is None or " ".join(str(message).split()).rstrip(".") not in text):
            text = f"{text} (the server said: {said})"
    status = getattr(exc, "status_code", None)
    cause = None if status else exc.__cause__ or exc.__context__  # a status error's cause repeats its status
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} (cause: {type(cause).__name__}: {' '.join(str(cause).split())})"
    if secret:
        text = text.replace(secret, "***")
    if len(text) > 400:
        text = text[:400] + "..."
    return f"{type(exc).__name__}" + (f" {status}" if status else "") + (f": {text}" if text else "")
