"""A fine-tuning method written as a user would add one: BitFit (Ben Zaken et al., 2021).

The whole method is this file; registering it is one line
(``METHODS[BitFit.name] = BitFit``). tests/test_methods_extra.py then runs it
through every place a method reaches.
"""

from skllm._methods._base import FineTuningMethod


class BitFit(FineTuningMethod):
    """Train the backbone's bias terms and normalisation weights only (and the output layer).

    Llama-style models have no bias terms; their RMSNorm weights play the part.
    """

    name = "bitfit"
    default_learning_rate = 1e-3
    relative_cost = 0.8
    supports_generation = True

    def build(self, backbone):
        from skllm._methods._encoders import PlainEncoder

        for name, p in backbone.named_parameters():
            p.requires_grad_(name.endswith(".bias") or "norm" in name.lower())
        return PlainEncoder(backbone)
