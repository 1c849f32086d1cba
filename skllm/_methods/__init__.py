"""Fine-tuning methods: each a small estimator-like object in its own file.

Adding a method: one new file with a :class:`FineTuningMethod` subclass (the
contract is in its docstring), its import here and one line in ``METHODS``, the
only list of method names.
"""

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


def resolve_method(method):
    """A fresh method object for a name, or the given object."""
    if isinstance(method, FineTuningMethod):
        return method
    if isinstance(method, str) and method in METHODS:
        return METHODS[method]()
    raise ValueError(
        f"method={method!r} is not supported; use one of {sorted(METHODS)} or a method object such as LoRA(r=4)."
    )


__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "FineTuningMethod",
    "FullFineTuning",
    "HeadTuning",
    "LoRA",
    "PartialFineTuning",
    "PrefixTuning",
    "PromptTuning",
    "resolve_method",
]
