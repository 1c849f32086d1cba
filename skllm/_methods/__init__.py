"""Fine-tuning methods: each a small estimator-like object in its own file.

Adding a method: one new file with a :class:`FineTuningMethod` subclass (the
contract is in its docstring), its import here and one line in ``METHODS``, the
only list of method names.
"""

from .._live import _snapshot, same_value
from ._adapter import BottleneckAdapter
from ._base import FineTuningMethod
from ._full import FullFineTuning
from ._head import HeadTuning
from ._lora import LoRA
from ._partial import PartialFineTuning
from ._prefix import PrefixTuning
from ._prompt import PromptTuning

METHODS = {
    cls.name: cls
    for cls in (
        HeadTuning,
        FullFineTuning,
        LoRA,
        PrefixTuning,
        PromptTuning,
        BottleneckAdapter,
        PartialFineTuning,
    )
}


def same_method(a, b):
    """Whether two method objects hold the same settings and build alike (warm_start continues only then).

    By their parameters, not their reprs: scikit-learn's repr elides long lists
    (``target_modules``) and anything past 700 characters.
    """

    def plain(params):  # a list of names is the same setting as a tuple of them (target_modules)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}

    same = type(a) is type(b) and same_value(plain(a.get_params()), plain(b.get_params()))
    return same and a.build_version == b.build_version  # a network built as before is another model


def resolve_method(method):
    """A fresh method object for a name, or the given object."""
    if isinstance(method, FineTuningMethod):
        return method
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]()
    raise ValueError(
        f"method={method!r} is not supported; use one of {sorted(METHODS)} or a method object such as LoRA(r=4)."
    )


class NamedMethodParamsMixin:
    """Nested parameters of a method given by name: ``method__r`` works with ``method="lora"``.

    For the estimators with a ``method`` parameter (mixed in before
    ``BaseEstimator``). ``set_params(method__r=4)`` on an estimator whose
    ``method`` is a name first replaces the name by its method object with its
    defaults (``"lora"`` becomes ``LoRA()``), then sets ``r``: the estimator
    then holds ``method=LoRA(r=4)``. ``get_params(deep=True)`` lists a named
    method's parameters as ``method__<name>`` the same way. So ``clone`` and
    ``GridSearchCV`` take nested parameters whether the method is a name or an
    object; a name without that parameter (``"prompt"`` with ``method__r``) is
    an error of the method's own ``set_params``, which names the parameter.
    """

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        method = params.get("method")
        if deep and isinstance(method, str) and method in METHODS:
            params.update({f"method__{name}": value for name, value in METHODS[method]().get_params().items()})
        return params

    def _comparable(self, name, recorded):
        # "lora" is LoRA() with its defaults: set_params(method__r=8) on it changes nothing.
        if name == "method" and isinstance(recorded, str) and recorded in METHODS:
            return _snapshot(METHODS[recorded]())
        return super()._comparable(name, recorded)

    def set_params(self, **params):
        if any(key.startswith("method__") for key in params):
            method = params.get("method", getattr(self, "method", None))
            if not isinstance(method, FineTuningMethod):
                params["method"] = resolve_method(method)  # names the method when it is no method's name
        return super().set_params(**params)


__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "FineTuningMethod",
    "FullFineTuning",
    "HeadTuning",
    "LoRA",
    "NamedMethodParamsMixin",
    "PartialFineTuning",
    "PrefixTuning",
    "PromptTuning",
    "resolve_method",
]
