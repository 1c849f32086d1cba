"""Fitted attributes holding live objects (models, tokenizers): never pickled, loaded explicitly."""


class LiveStateMixin:
    """Drop ``_live_attributes`` from pickles; ``_ensure_live()`` loads them again.

    Subclasses name the live attributes and implement ``_restore_live()``,
    which sets them (reloading the model by name and revision). Loading is an
    explicit step: every method that needs the model calls ``_ensure_live()``
    after ``check_is_fitted``. Reading an attribute never loads anything, so
    ``hasattr(est, "model_")`` is False on an unpickled estimator until it is
    first used.
    """

    _live_attributes = ()

    def __getstate__(self):
        # A copy: object.__getstate__ may return the instance's own __dict__.
        state = dict(super().__getstate__())
        for name in self._live_attributes:
            state.pop(name, None)
        return state

    def _ensure_live(self):
        """Load the live attributes if this fitted estimator was unpickled (or copied without them)."""
        if any(not hasattr(self, name) for name in self._live_attributes):
            self._restore_live()

    def _restore_live(self):
        raise NotImplementedError
