"""Warnings and errors raised by skllm."""

__all__ = [
    "CacheWarning",
    "MissingDependencyError",
    "PrecisionWarning",
    "SkllmWarning",
    "TruncationWarning",
]


class SkllmWarning(UserWarning):
    """Base class of every warning skllm emits."""


class TruncationWarning(SkllmWarning):
    """Some texts were longer than ``max_length`` tokens and were truncated."""


class CacheWarning(SkllmWarning):
    """The embedding cache could not be used as asked (corrupt or unwritable)."""


class PrecisionWarning(SkllmWarning):
    """The requested ``dtype`` is not supported on the device; float32 is used."""


class MissingDependencyError(ImportError):
    """An optional dependency needed for the requested feature is missing."""

    def __init__(self, package, feature, install):
        self.package = package
        self.install = install
        super().__init__(f"{feature} needs the package {package!r}, which is not installed. Install it with: {install}")
