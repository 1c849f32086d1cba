"""LoRA through peft."""

import warnings

from ..exceptions import MissingDependencyError
from ._base import FineTuningMethod, check_bool, check_int, check_number, check_target_modules


class LoRA(FineTuningMethod):
    """Low-rank adapters on the attention projections ("lora"), via peft.

    Parameters
    ----------
    r : int, default=8
        Rank of the update matrices.
    alpha : float, default=16
        Scaling: the update is multiplied by ``alpha / r``.
    dropout : float, default=0.0
        Dropout on the adapter's input (peft's ``lora_dropout``; 0, peft's default).
    backbone_dropout : bool, default=False
        Keep the frozen backbone's own dropout (MiniLM's 0.1 on its hidden states
        and attention) while training. Off by default: with both dropouts off, LoRA
        fits of MiniLM ran 1.2-1.3x faster at the same test accuracy on Rotten
        Tomatoes and the 2016 debates (seeds 0-2; see docs/benchmarks.md), as no
        dropout masks are drawn in the backbone and the attention keeps PyTorch's
        SDPA kernel (the output layer keeps its 0.1 dropout on the pooled features).
        Prediction is the same either way (no dropout at prediction). Models
        saved before this parameter existed load with ``True``, as they trained.
    target_modules : tuple of str, default=None
        Names of the linear layers to adapt. ``None`` lets peft choose per
        architecture (``query``/``value`` for BERT, ``q_proj``/``v_proj`` for
        Llama).
    merge_for_inference : bool, default=True
        After training, add the low-rank updates into the adapted weights
        (peft's ``merge_and_unload``), so that prediction runs the plain model
        without the low-rank branch. The saved model still holds the adapter
        only: ``trainable_state_`` is taken before merging, and ``warm_start``
        continues from it. On by default because it changes nothing but the
        speed: on MiniLM the merged model's probabilities were within 5e-7 of
        the branch's, and it predicted 3% faster (one thread; see
        docs/benchmarks.md). Merging took about 30 ms, once per fit or load.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, LoRA
    >>> sorted(LoRA(r=4).get_params().items())  # doctest: +NORMALIZE_WHITESPACE
    [('alpha', 16), ('backbone_dropout', False), ('dropout', 0.0), ('merge_for_inference', True), ('r', 4),
     ('target_modules', None)]
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 2
    >>> y = ["pos", "pos", "neg", "neg"] * 2
    >>> clf = FineTuneClassifier(method=LoRA(r=4), epochs=1, max_length=16, random_state=0).fit(X, y)
    >>> clf.n_trainable_params_ < 100_000
    True
    """

    name = "lora"
    default_learning_rate = 1e-3
    # One epoch over 1,000 Rotten Tomatoes texts (a 3-epoch fit less a 1-epoch fit, halved), without
    # dropout: 7.6 s against 13.1 s for full fine-tuning (benchmarks/bench_finetune.py, docs/benchmarks.md).
    relative_cost = 0.58
    supports_generation = True

    _value_before_added = (("backbone_dropout", True),)

    def __init__(
        self, r=8, alpha=16, dropout=0.0, backbone_dropout=False, target_modules=None, merge_for_inference=True
    ):
        self.r = r
        self.alpha = alpha
        self.dropout = dropout
        self.backbone_dropout = backbone_dropout
        self.target_modules = target_modules
        self.merge_for_inference = merge_for_inference

    def validate(self):
        check_int(self.r, "r")
        check_number(self.alpha, "alpha", 0.0, low_inclusive=False)
        check_number(self.dropout, "dropout", 0.0, 1.0)
        check_bool(self.backbone_dropout, "backbone_dropout")
        check_target_modules(self.target_modules, regex_in_list=False)
        check_bool(self.merge_for_inference, "merge_for_inference")

    def build(self, backbone):
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise MissingDependencyError("peft", "LoRA", "pip install 'peft>=0.18'") from exc

        from ._encoders import PlainEncoder

        targets = self.target_modules
        if isinstance(targets, tuple):
            targets = list(targets)
        config = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets)
        try:
            with warnings.catch_warnings():
                # peft calls a transformers API that transformers 5 deprecated.
                warnings.simplefilter("ignore", FutureWarning)
                model = get_peft_model(backbone, config)
        except ValueError as exc:
            import torch

            linear = sorted(
                {n.rpartition(".")[2] for n, m in backbone.named_modules() if isinstance(m, torch.nn.Linear)}
            )
            raise ValueError(
                f"LoRA cannot be applied to {type(backbone).__name__}: {exc} Pass target_modules: a tuple of the "
                f"names of its linear layers ({', '.join(linear[:10])}), each matching the end of a layer's name, or "
                f"a string, a regular expression that must match a layer's whole name (e.g. r'.*\\.{linear[0]}')."
                if linear
                else f"LoRA cannot be applied to {type(backbone).__name__}: {exc} It has no linear layers to adapt."
            ) from exc
        return PlainEncoder(model)

    def for_inference(self, network):
        """With ``merge_for_inference``: the low-rank updates merged into the weights, peft removed."""
        if self.merge_for_inference:
            import torch
            from peft.tuners.lora import LoraLayer

            # peft merges into the adapted layers' weights in place, and the network's copy of the backbone
            # holds the loaded model's (frozen_copy): the merged layers get their own first.
            for layer in network.encoder.model.modules():
                if isinstance(layer, LoraLayer):
                    base = layer.get_base_layer()
                    base.weight = torch.nn.Parameter(base.weight.detach().clone(), requires_grad=False)
            network.encoder.model = network.encoder.model.merge_and_unload()
        return network
