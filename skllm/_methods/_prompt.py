"""Soft prompt tuning through peft."""

import warnings

from ..exceptions import MissingDependencyError
from ._base import FineTuningMethod, check_int


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

    Examples
    --------
    >>> from skllm import PromptTuning
    >>> method = PromptTuning(n_virtual_tokens=8)
    >>> method.get_params(), method.extra_positions()
    ({'n_virtual_tokens': 8}, 8)
    """

    name = "prompt"
    default_learning_rate = 3e-2
    # One epoch over 1,000 Rotten Tomatoes texts (a 3-epoch fit less a 1-epoch fit, halved):
    # 13.9 s against 12.9 s for full fine-tuning (benchmarks/bench_finetune.py, docs/benchmarks.md);
    # the 20 virtual tokens lengthen every text.
    relative_cost = 1.08
    supports_generation = True
    extra_positions_parameter = "n_virtual_tokens"

    def __init__(self, n_virtual_tokens=20):
        self.n_virtual_tokens = n_virtual_tokens

    def validate(self):
        check_int(self.n_virtual_tokens, "n_virtual_tokens")

    def extra_positions(self):
        return self.n_virtual_tokens

    def build(self, backbone):
        try:
            from peft import PromptTuningConfig, TaskType, get_peft_model
        except ImportError as exc:
            raise MissingDependencyError("peft", "Prompt tuning", "pip install 'peft>=0.18'") from exc

        from ._encoders import VirtualTokenEncoder

        config = PromptTuningConfig(task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=self.n_virtual_tokens)
        with warnings.catch_warnings():
            # peft calls a transformers API that transformers 5 deprecated.
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(backbone, config)
        return VirtualTokenEncoder(model, self.n_virtual_tokens)
