"""Fitted attributes holding live objects (models, tokenizers): never pickled, rebuilt on first use."""

import numpy as np


class LiveStateMixin:
    """Drop ``_live_attributes`` from pickles and rebuild them by name when first read.

    Subclasses name the live attributes, the attribute that marks them fitted,
    and implement ``_restore_live()``, which puts the live attributes back in
    ``self.__dict__`` (reloading the model by name and revision).
    """

    _live_attributes = ()
    _fitted_marker = ""

    def __getstate__(self):
        # A copy: object.__getstate__ may return the instance's own __dict__.
        state = dict(super().__getstate__())
        for name in self._live_attributes:
            state.pop(name, None)
        return state

    def __getattr__(self, name):
        # Called only when normal lookup fails, e.g. for a live attribute after unpickling.
        cls = type(self)
        if name in cls._live_attributes and cls._fitted_marker in self.__dict__:
            self._restore_live()
            return self.__dict__[name]
        raise AttributeError(f"{cls.__name__!r} object has no attribute {name!r}")

    def _restore_live(self):
        raise NotImplementedError


def softmax(scores):
    """Row-wise softmax of a 2-D array, computed stably."""
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    return probs / probs.sum(axis=1, keepdims=True)
