"""Bottleneck adapters (Houlsby et al., 2019).

AdapterHub's ``adapters`` package pins transformers ~=4.57 and so cannot be
installed beside transformers 5, and peft has no bottleneck adapter. The method
is small: after the attention sublayer and the feed-forward sublayer, before the
residual sum, ``h + up(act(down(h)))`` with ``up`` initialised to zero so that
training starts from the unchanged model. It is implemented here by wrapping
the layer the adapter follows.
"""

import re

from ._base import FineTuningMethod, check_bool, check_choice, check_int, check_target_modules

VARIANTS = ("houlsby", "projection")
# The layer each adapter follows, by variant and architecture. Houlsby et al. put it
# after the sublayer's output projection and its dropout; Llama has no dropout there.
_TARGETS = {
    "houlsby": {
        "bert-like": (r"attention\.output\.dropout$", r"layer\.\d+\.output\.dropout$"),
        "llama-like": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    },
    "projection": {
        "bert-like": (r"attention\.output\.dense$", r"layer\.\d+\.output\.dense$"),
        "llama-like": (r"self_attn\.o_proj$", r"mlp\.down_proj$"),
    },
}


class BottleneckAdapter(FineTuningMethod):
    """Houlsby bottleneck adapters after attention and feed-forward ("adapter").

    The backbone is frozen; each adapter projects the sublayer output down to
    ``hidden_size // reduction_factor``, applies a non-linearity, projects back
    up and adds the result.

    ``variant="houlsby"`` is the method of Houlsby et al. (2019): the adapter
    follows the sublayer's output projection and its dropout, before the
    residual sum and the layer normalisation, and the layer normalisations are
    trained too. ``variant="projection"`` wraps the output projection itself,
    before its dropout, and trains the adapters only (models saved before
    ``variant`` existed use it). ``"houlsby"`` is the default: it is the
    published method and was never clearly behind on MiniLM (500 training and
    500 test texts, 3 seeds; docs/benchmarks.md). With the output layer
    started from a linear probe (the default) the two were within a standard
    deviation: Rotten Tomatoes accuracy 0.779 against 0.785 for
    ``"projection"``, SMS spam macro-F1 0.964 against 0.956. With a random
    output layer Houlsby's was ahead on both (0.780 against 0.771; SMS spam
    macro-F1 0.940 against 0.841). It trains 4% more parameters (the norms).

    Parameters
    ----------
    reduction_factor : int, default=16
        Hidden size divided by the bottleneck size.
    activation : {"relu", "gelu"}, default="relu"
        Non-linearity inside the bottleneck.
    target_modules : tuple of str, default=None
        Regular expressions for the layers (linear or dropout) to follow with
        an adapter. ``None`` picks, per ``variant``, the places above in
        BERT-like and Llama-like models.
    variant : {"houlsby", "projection"}, default="houlsby"
        Where the adapters go and whether the layer normalisations train.
    backbone_dropout : bool, default=False
        Keep the frozen backbone's own dropout (MiniLM's 0.1 on its hidden states and
        attention) while training. Off by default, as for ``LoRA``: fits of MiniLM ran
        1.19-1.21x faster at the same test accuracy on Rotten Tomatoes and the 2016
        debates (seeds 0-2; docs/benchmarks.md). Prediction is the same either way.
        Models saved before this parameter existed load with ``True``.

    Examples
    --------
    >>> from skllm import BottleneckAdapter, FineTuneClassifier
    >>> from sklearn.model_selection import GridSearchCV
    >>> sorted(BottleneckAdapter(reduction_factor=8).get_params().items())  # doctest: +NORMALIZE_WHITESPACE
    [('activation', 'relu'), ('backbone_dropout', False), ('reduction_factor', 8), ('target_modules', None),
     ('variant', 'houlsby')]
    >>> grid = {"method__variant": ["houlsby", "projection"], "method__reduction_factor": [8, 16]}
    >>> search = GridSearchCV(FineTuneClassifier(method=BottleneckAdapter()), grid)
    """

    name = "adapter"
    default_learning_rate = 1e-3
    # One epoch over 1,000 Rotten Tomatoes texts (a 3-epoch fit less a 1-epoch fit, halved), without
    # dropout: 7.65 s against 13.05 s for full fine-tuning (benchmarks/bench_finetune.py, docs/benchmarks.md).
    relative_cost = 0.59
    supports_generation = True
    # Models saved before the variants existed used the adapters on the projections.
    _value_before_added = (("variant", "projection"), ("backbone_dropout", True))

    def __init__(
        self, reduction_factor=16, activation="relu", target_modules=None, variant="houlsby", backbone_dropout=False
    ):
        self.reduction_factor = reduction_factor
        self.activation = activation
        self.target_modules = target_modules
        self.variant = variant
        self.backbone_dropout = backbone_dropout

    def validate(self):
        check_int(self.reduction_factor, "reduction_factor")
        check_choice(self.activation, "activation", ("relu", "gelu"))
        check_choice(self.variant, "variant", VARIANTS)
        check_target_modules(self.target_modules, regex_in_list=True)
        check_bool(self.backbone_dropout, "backbone_dropout")

    def _targets(self, names):
        if self.target_modules is not None:
            patterns = [self.target_modules] if isinstance(self.target_modules, str) else self.target_modules
            return [n for n in names if any(re.search(p, n) for p in patterns)]
        for patterns in _TARGETS[self.variant].values():
            found = [n for n in names if any(re.search(p, n) for p in patterns)]
            if found:
                return found
        return []

    def build(self, backbone):
        from torch import nn
        from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers (weights stored transposed)

        from ._encoders import Adapted, PlainEncoder, is_norm

        layers = {n: m for n, m in backbone.named_modules() if isinstance(m, (nn.Linear, Conv1D, nn.Dropout))}
        targets = self._targets(list(layers))
        if not targets:
            other = self._targets([n for n, _ in backbone.named_modules()]) if self.target_modules is not None else []
            kinds = sorted({type(backbone.get_submodule(n)).__name__ for n in other})
            said = f"target_modules={self.target_modules!r} matches {other[:5]}, {kinds} layers: " if other else ""
            raise ValueError(
                f"BottleneckAdapter found no layer to adapt in {type(backbone).__name__}; {said}pass "
                f"target_modules, regular expressions matching names of its linear or dropout layers."
            )
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name)
            layer = layers[name]
            if isinstance(layer, (nn.Linear, Conv1D)):
                features = layer.out_features if isinstance(layer, nn.Linear) else layer.nf
            else:
                features = backbone.config.hidden_size
            bottleneck = max(1, features // self.reduction_factor)
            setattr(parent, child, Adapted(layer, features, bottleneck, self.activation))
        if self.target_modules is not None:
            self._check_runs(backbone, targets)
        if self.variant == "houlsby":
            for module in backbone.modules():
                if is_norm(module):
                    for p in module.parameters(recurse=False):
                        p.requires_grad_(True)
        return PlainEncoder(backbone)

    def _check_runs(self, backbone, targets):
        """One forward pass of 4 tokens, in training mode, with the adapters of the given ``target_modules``.

        An adapter adds a vector of the hidden size to its layer's output: one on a layer whose output is
        something else (an attention dropout, over the attention weights) breaks the model deep inside.
        """
        import torch

        device = next(backbone.parameters()).device
        was_training = backbone.training
        try:
            with torch.no_grad():
                backbone.train()(input_ids=torch.ones(1, 4, dtype=torch.long, device=device))
        except Exception as exc:  # whatever the model raises, the cause is the adapted layers
            raise ValueError(
                f"BottleneckAdapter(target_modules={self.target_modules!r}) adapts {targets[:5]}, and the model no "
                f"longer runs ({type(exc).__name__}: {str(exc)[:200]}). Adapt layers whose output is the hidden "
                f"state: linear layers of the hidden size, or the dropout right after one."
            ) from exc
        finally:
            backbone.train(was_training)
