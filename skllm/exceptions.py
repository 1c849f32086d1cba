"""Warnings and errors raised by skllm."""

__all__ = [
    "APIKeyMissingError",
    "APIRequestError",
    "CacheWarning",
    "InconsistentVersionWarning",
    "MissingDependencyError",
    "NonFiniteLossError",
    "PrecisionWarning",
    "QuantizedModelWarning",
    "RewardHackingWarning",
    "SkllmWarning",
    "TruncationWarning",
    "UnknownTokensWarning",
    "UnparsedAnswerError",
    "UnparsedAnswerWarning",
]


class SkllmWarning(UserWarning):
    """Base class of every warning skllm emits."""


class TruncationWarning(SkllmWarning):
    """Some texts were longer than ``max_length`` tokens and were truncated."""


class UnknownTokensWarning(SkllmWarning):
    """Texts mostly made of the tokenizer's unknown token: a script or symbols its vocabulary lacks."""


class CacheWarning(SkllmWarning):
    """The embedding cache could not be used as asked (corrupt or unwritable)."""


class PrecisionWarning(SkllmWarning):
    """The requested ``dtype`` is not supported on the device; float32 is used."""


class InconsistentVersionWarning(SkllmWarning):
    """A model saved by another version of skllm was loaded.

    Its fitted state may not mean the same in this version: check its predictions,
    or fit it again. As scikit-learn's warning of the same name, for skllm's version.
    """


class QuantizedModelWarning(SkllmWarning):
    """A Hub model id was resolved to a de-quantised copy of packaged GGUF weights, not the Hub's own.

    The same ``model_name`` then means different weights on machines that have
    the Hub copy: predictions (and ``model_identity_``) differ between them.
    """


class RewardHackingWarning(SkllmWarning):
    """While a PreferenceTuner trained, the training reward kept rising and the validation score did not.

    The policy may be raising the reward without the behaviour it stands for
    (a blind spot of a learned reward model). The best validated step is kept.
    """


class MissingDependencyError(ImportError):
    """An optional dependency needed for the requested feature is missing."""

    def __init__(self, package, feature, install):
        self.package = package
        self.install = install
        super().__init__(f"{feature} needs the package {package!r}, which is not installed. Install it with: {install}")


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss (or gradient) and stopped.

    The message names the step and the likely causes; the estimator keeps the
    state it had before the failed ``fit``.
    """


class UnparsedAnswerWarning(SkllmWarning):
    """Some answers of a chat endpoint named no class; they got the fallback of ``OpenAIChat(unparsed=...)``."""


class UnparsedAnswerError(ValueError):
    """Answers of a chat endpoint named no class and ``OpenAIChat(unparsed="error")`` was asked.

    ``rows`` holds their positions in ``X``, ``answers`` what the endpoint said.
    """

    def __init__(self, message, rows=(), answers=()):
        super().__init__(message)
        self.rows = list(rows)
        self.answers = list(answers)


class APIRequestError(RuntimeError):
    """A chat endpoint kept failing after the retries (or refused a request outright).

    ``n_done`` of ``n_total`` prompts were answered; with a cache they are
    kept, so that running the same call again continues where it stopped.
    ``usage`` counts the requests and tokens of those answered (billed all the same).
    ``rows`` are the positions, in the call's prompts, of the request that failed
    first (several where the same prompt was asked more than once).
    """

    def __init__(self, message, n_done=0, n_total=0, usage=None, rows=None):
        super().__init__(message)
        self.n_done = n_done
        self.n_total = n_total
        self.usage = dict(usage or {})
        self.rows = list(rows or [])


class APIKeyMissingError(RuntimeError):
    """No API key for an endpoint that needs one (keys are never pickled: set it in the environment)."""
