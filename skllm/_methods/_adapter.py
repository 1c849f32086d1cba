"""Bottleneck adapters (Houlsby et al., 2019).

AdapterHub's ``adapters`` package pins transformers ~=4.57 and so cannot be
installed beside transformers 5, and peft has no bottleneck adapter. The method
is small: after the output projection of the attention sublayer and of the
feed-forward sublayer, before the residual sum, ``h + up(act(down(h)))`` with
``up`` initialised to zero so that training starts from the unchanged model.
It is implemented here by wrapping those projections.
"""

import re

from ._base import FineTuningMethod, check_choice, check_int

# Output projections of the attention and feed-forward sublayers, by architecture.
_TARGETS = {
    "bert-like": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
    "llama-like": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
}


class BottleneckAdapter(FineTuningMethod):
    """Houlsby bottleneck adapters after attention and feed-forward ("adapter").

    The backbone is frozen; each adapter projects the sublayer output down to
    ``hidden_size // reduction_factor``, applies a non-linearity, projects back
    up and adds the result.

    Parameters
    ----------
    reduction_factor : int, default=16
        Hidden size divided by the bottleneck size.
    activation : {"relu", "gelu"}, default="relu"
        Non-linearity inside the bottleneck.
    target_modules : tuple of str, default=None
        Regular expressions for the linear layers to follow with an adapter.
        ``None`` picks the attention and feed-forward output projections of
        BERT-like and Llama-like models.

    Examples
    --------
    >>> from skllm import BottleneckAdapter, FineTuneClassifier
    >>> from sklearn.model_selection import GridSearchCV
    >>> BottleneckAdapter(reduction_factor=8).get_params()
    {'activation': 'relu', 'reduction_factor': 8, 'target_modules': None}
    >>> grid = {"method__reduction_factor": [8, 16]}
    >>> search = GridSearchCV(FineTuneClassifier(method=BottleneckAdapter()), grid)
    """

    name = "adapter"
    default_learning_rate = 1e-3

    def __init__(self, reduction_factor=16, activation="relu", target_modules=None):
        self.reduction_factor = reduction_factor
        self.activation = activation
        self.target_modules = target_modules

    def validate(self):
        check_int(self.reduction_factor, "reduction_factor")
        check_choice(self.activation, "activation", ("relu", "gelu"))
        if self.target_modules is not None and not isinstance(self.target_modules, (tuple, list, str)):
            raise ValueError(f"target_modules must be None, a str or a tuple of str, got {self.target_modules!r}.")

    def _targets(self, names):
        if self.target_modules is not None:
            patterns = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
            return [n for n in names if any(re.search(p, n) for p in patterns)]
        for patterns in _TARGETS.values():
            found = [n for n in names if any(re.search(p, n) for p in patterns)]
            if found:
                return found
        return []

    def build(self, backbone):
        from torch import nn

        from ._encoders import AdaptedLinear, PlainEncoder

        linear = {n: m for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
        targets = self._targets(list(linear))
        if not targets:
            raise ValueError(
                f"BottleneckAdapter found no layer to adapt in {type(backbone).__name__}; pass "
                f"target_modules, regular expressions matching names of its linear layers."
            )
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name)
            size = max(1, linear[name].out_features // self.reduction_factor)
            setattr(parent, child, AdaptedLinear(linear[name], size, self.activation))
        return PlainEncoder(backbone)
