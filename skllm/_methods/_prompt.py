"""Soft prompt tuning through peft."""

import warnings

from ..exceptions import MissingDependencyError
from ._base import FineTuningMethod, check_bool, check_int


class PromptTuning(FineTuningMethod):
    """Trainable virtual-token embeddings put before the input ("prompt"), via peft.

    The backbone is frozen; only ``n_virtual_tokens`` embedding vectors (and the
    output layer) are trained. The hidden states of the virtual tokens are left
    out of the pooling.

    Parameters
    ----------
    n_virtual_tokens : int, default=20
        Number of virtual tokens. They take positions, so ``max_length`` is
        capped at the model's positions minus this number; ``fit`` refuses a
        number that leaves the text fewer than 8 positions.
    backbone_dropout : bool, default=False
        Keep the frozen backbone's own dropout (MiniLM's 0.1 on its hidden states and
        attention) while training. Off by default, as for ``LoRA``: fits of MiniLM ran
        1.15x and 1.23x faster on Rotten Tomatoes and the 2016 debates, at a mean test
        accuracy 0.009 higher and 0.006 lower (seeds 0-5; docs/benchmarks.md). Prediction
        is the same either way. Models saved before this parameter existed load with ``True``.

    Examples
    --------
    >>> from skllm import PromptTuning
    >>> method = PromptTuning(n_virtual_tokens=8)
    >>> method.get_params(), method.extra_positions()
    ({'backbone_dropout': False, 'n_virtual_tokens': 8}, 8)
    """

    name = "prompt"
    default_learning_rate = 3e-2
    # One epoch over 1,000 Rotten Tomatoes texts (a 3-epoch fit less a 1-epoch fit, halved), without
    # the backbone's dropout: 9.56 s against 11.91 s for full fine-tuning (benchmarks/bench_finetune.py,
    # docs/benchmarks.md); the 20 virtual tokens lengthen every text.
    relative_cost = 0.80
    supports_generation = True
    extra_positions_parameter = "n_virtual_tokens"
    _value_before_added = (("backbone_dropout", True),)

    def __init__(self, n_virtual_tokens=20, backbone_dropout=False):
        self.n_virtual_tokens = n_virtual_tokens
        self.backbone_dropout = backbone_dropout

    def validate(self):
        check_int(self.n_virtual_tokens, "n_virtual_tokens")
        check_bool(self.backbone_dropout, "backbone_dropout")

    def extra_positions(self):
        return self.n_virtual_tokens

    def build(self, backbone):
        try:
            from peft import PromptTuningConfig, TaskType, get_peft_model
        except ImportError as exc:
            raise MissingDependencyError("peft", "Prompt tuning", "pip install 'peft>=0.18'") from exc

        from ._encoders import VirtualTokenEncoder

        # The widths given, not left to peft: it reads them from the config's dict, where DistilBERT names
        # them otherwise, and takes the hidden size for the token width, which ALBERT's and ELECTRA-small's
        # smaller input embeddings are not.
        config = PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            num_virtual_tokens=self.n_virtual_tokens,
            token_dim=backbone.get_input_embeddings().embedding_dim,
            num_transformer_submodules=1,
            num_layers=backbone.config.num_hidden_layers,
            num_attention_heads=backbone.config.num_attention_heads,
        )
        with warnings.catch_warnings():
            # peft calls a transformers API that transformers 5 deprecated.
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(backbone, config)
        return VirtualTokenEncoder(model, self.n_virtual_tokens)
