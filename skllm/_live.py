"""Fitted attributes holding live objects (models, tokenizers): never pickled, loaded explicitly."""

import copy
import math
import numbers
import warnings

import numpy as np

from ._training import first_non_finite
from ._version import __version__
from .exceptions import InconsistentVersionWarning


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
    #: Parameters that choose what ``fit`` loads (or settles, such as the demonstrations or the
    #: fine-tuning method). Set after fit, they would take effect only where a copy loads the
    #: model again (after unpickling), or not at all: refused until the next fit.
    _load_params = ("model_name", "revision")

    def _record_load_params(self):
        """Note the values of ``_load_params`` that this fit loaded the model with."""
        self._loaded_with = {name: _snapshot(getattr(self, name)) for name in self._load_params}
        vars(self).pop("_fitted_dtype", None)  # a new fit's precision is its dtype_ (see restore_placement)

    def _check_load_params(self):
        loaded = getattr(self, "_loaded_with", None)  # None: pickled before this was recorded
        current = {n: _snapshot(getattr(self, n, None)) for n in loaded or {}}
        changed = [
            n
            for n, v in (loaded or {}).items()
            if not same_value(self._comparable(n, current[n]), self._comparable(n, v))
        ]
        if changed and set(changed) <= {"model_name", "revision"} and self._same_files_at(self.model_name):
            # The fitted files, at a new place (a moved folder) or pinned (the Hub commit fitted on).
            loaded.update({n: current[n] for n in changed})
            changed = []
        if changed:
            was = ", ".join(f"{n}={_shown(loaded[n])}" for n in changed)
            now = ", ".join(f"{n}={_shown(current[n])}" for n in changed)
            raise ValueError(
                f"This {type(self).__name__} was fitted with {was}, set to {now} since. These parameters are read "
                f"by fit (the model it loads and how), and take effect at the next fit: call fit again, or set them "
                f"back."
            )

    def _comparable(self, name, recorded):
        """A recorded value of ``name`` as it compares with another (a subclass may equate two forms of one value)."""
        if name == "device" and type(recorded).__name__ == "device":  # torch.device("cpu") is "cpu"
            return str(recorded)
        return recorded

    def _fitted_on(self, source):
        """Whether this estimator was fitted on the files of ``source`` (a warm start may continue)."""
        from ._models import names_the_files

        return names_the_files(getattr(self, "model_identity_", None), source)

    def _same_files_at(self, name):
        """Whether ``name`` (at ``revision``) holds the files this estimator was fitted with.

        A local folder holding the fitted files, or the Hub commit that the fit loaded, in the cache.
        """
        import os

        from ._models import names_the_files, resolve_model

        fitted, revision = getattr(self, "model_identity_", None), getattr(self, "revision", None)
        if not (isinstance(fitted, str) and isinstance(name, (str, os.PathLike))):
            return False
        if fitted.startswith("files:") and (revision is not None or not os.path.isdir(os.path.expanduser(name))):
            return False
        try:
            source = resolve_model(name, revision, cache_dir=getattr(self, "cache_dir", "auto"))
        except (OSError, ValueError):
            return False
        return names_the_files(fitted, source)

    def __getstate__(self):
        # A copy: object.__getstate__ may return the instance's own __dict__.
        state = dict(super().__getstate__())
        for name in self._live_attributes:
            state.pop(name, None)
        state["_skllm_version"] = __version__  # as scikit-learn records its own
        return {name: _encode_bool_keys(value) for name, value in state.items()}

    def __setstate__(self, state):
        saved = state.pop("_skllm_version", None)  # None: saved before versions were recorded
        if saved is not None and saved != __version__:
            warnings.warn(
                f"Trying to load {type(self).__name__} from skllm version {saved} when using version "
                f"{__version__}. Its fitted state may not mean the same in this version: check its predictions, "
                f"or fit it again.",
                InconsistentVersionWarning,
                stacklevel=2,
            )
        super().__setstate__({name: _decode_bool_keys(value) for name, value in state.items()})

    def _ensure_live(self):
        """Load the live attributes if this fitted estimator was unpickled (or copied without them)."""
        self._check_load_params()
        if any(not hasattr(self, name) for name in self._live_attributes):
            self._restore_live()

    def _restore_live(self):
        raise NotImplementedError


# A dict with a bool key is saved as its items under this one key: skops (0.16) loads a saved
# ``False`` key as ``True`` (``bool("False")``), so ``label_words={False: "ham", True: "spam"}``
# would come back as ``{True: "spam"}``. Pickles take the same way, and read back either form.
_BOOL_KEYED = "__skllm_bool_keyed_dict__"


def _encode_bool_keys(value):
    if type(value) is not dict:
        return value
    items = [(key, _encode_bool_keys(v)) for key, v in value.items()]
    if any(isinstance(key, (bool, np.bool_)) for key in value):
        return {_BOOL_KEYED: items}
    return dict(items)


def _decode_bool_keys(value):
    if type(value) is not dict:
        return value
    if list(value) == [_BOOL_KEYED]:
        return {key: _decode_bool_keys(v) for key, v in value[_BOOL_KEYED]}
    return {key: _decode_bool_keys(v) for key, v in value.items()}


def _snapshot(value):
    """``value`` as recorded for :meth:`LiveStateMixin._check_load_params`.

    An estimator passed as a parameter (an :class:`~skllm.OpenAIChat`) can change in place
    (``set_params(model_name__model=...)``): it is recorded by its class and the parameters that
    change its answers (not ``_runtime_params``, such as the key, which never enters the record).
    """
    if hasattr(value, "get_params") and hasattr(value, "set_params"):
        skip = getattr(value, "_runtime_params", ())
        params = ", ".join(
            f"{k}={_stable_repr(v)}" for k, v in sorted(value.get_params(deep=False).items()) if k not in skip
        )
        return (type(value).__name__, params)  # plain data: what a saved model may hold
    # A copy: the caller's dict (label_words) edited in place after fit is a change, not the record's too.
    return copy.deepcopy(value) if isinstance(value, (dict, list, set)) else value


def _stable_repr(value):
    """``repr(value)``, but the same in every process: a function by its name, an object whose repr
    holds its memory address by its type (a loaded copy of the estimator would otherwise differ)."""
    if callable(value) and hasattr(value, "__qualname__") and not isinstance(value, type):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    from sklearn import config_context

    # An estimator's repr follows scikit-learn's display settings: recorded and compared under the default.
    with config_context(print_changed_only=True):
        shown = repr(value)
    return f"<{type(value).__qualname__}>" if " at 0x" in shown else shown


def _shown(value):
    return f"{value[0]}({value[1]})" if isinstance(value, tuple) else repr(value)


def same_value(a, b):
    """``a == b`` as one bool; False where that comparison is not one (arrays compare elementwise)."""
    try:
        return a is b or bool(a == b)
    except (TypeError, ValueError):  # e.g. arrays, whose == is elementwise
        return False


def check_saved_state(state):
    """Refuse, while loading, a ``trainable_state_`` that does not hold ``n_trainable_params_`` numbers.

    The cheap check that can run before any model is loaded: a file whose
    arrays were replaced (by hand, or by a format that keeps only some of them)
    fails here, naming the attribute, instead of predicting with other weights.
    The shapes, and that the values are finite, are checked tensor by tensor
    when the network is rebuilt (:func:`put_back_trained_state`).
    """
    for name in ("target_mean_", "target_scale_"):  # a regressor's: NaN would predict NaN for every row
        value = state.get(name, 1.0)
        if not (isinstance(value, numbers.Real) and math.isfinite(value)) or (name == "target_scale_" and value <= 0):
            raise ValueError(f"The saved {name} must be a finite number (a scale > 0), got {value!r}: the file was "
                             f"altered or damaged.")  # fmt: skip
    trained, n_params = state.get("trainable_state_"), state.get("n_trainable_params_")
    if trained is None or n_params is None:
        return
    if not isinstance(trained, dict):
        raise ValueError(f"The saved trainable_state_ must be a dict of arrays, got {type(trained).__name__}.")
    sizes = {name: int(np.size(value)) for name, value in trained.items()}
    if sum(sizes.values()) != n_params:
        raise ValueError(
            f"The saved trainable_state_ holds {sum(sizes.values())} numbers but n_trainable_params_ is {n_params}: "
            f"the file was altered or damaged. Tensors and sizes: {_listed(sizes)}."
        )


def put_back_trained_state(network, trainable_state, what):
    """Load ``trainable_state_`` into ``network``'s trained parameters, checking names, shapes and values first.

    ``what`` names the model in the errors (model name and method). The frozen
    rest of the network comes from the backbone.
    """
    import torch

    expected = {n: tuple(p.shape) for n, p in network.named_parameters() if p.requires_grad}
    missing = sorted(set(expected) - set(trainable_state))
    unexpected = sorted(set(trainable_state) - set(expected))
    if missing or unexpected:
        raise RuntimeError(
            f"The saved weights do not fit {what}: {len(missing)} trained tensor(s) missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}. Was the model or the package changed since fitting?"
        )
    for name, shape in expected.items():
        saved = tuple(np.shape(trainable_state[name]))
        if saved != shape:
            raise RuntimeError(
                f"The saved weights do not fit {what}: trainable_state_[{name!r}] has shape {saved}, the network "
                f"expects {shape}. Was the file altered, or the model changed since fitting?"
            )
    state = {k: torch.from_numpy(np.array(v)) for k, v in trainable_state.items()}
    # Training stops before it stores a NaN or an infinity (NonFiniteLossError): one here
    # comes from a damaged file, and would predict one class for every row.
    position = first_non_finite(state.values())
    if position is not None:
        name = list(state)[position]
        raise ValueError(
            f"The saved weights of {what} are damaged: trainable_state_[{name!r}] holds NaN or infinite values, "
            f"which training never stores. Was the file altered? Load an intact copy, or fit again."
        )
    network.load_state_dict(state, strict=False)
    return network


def _listed(sizes, limit=5):
    items = [f"{name}: {size}" for name, size in list(sizes.items())[:limit]]
    return ", ".join(items) + (f" and {len(sizes) - limit} more" if len(sizes) > limit else "")
