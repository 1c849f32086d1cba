"""Fine-tuning II: every layer trained."""

from ._base import FineTuningMethod


class FullFineTuning(FineTuningMethod):
    """Train every parameter of the backbone and the output layer ("full").

    The most expressive and the most expensive method; a saved model holds all
    the backbone's weights.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, FullFineTuning
    >>> FullFineTuning().get_params()
    {}
    >>> FineTuneClassifier(method=FullFineTuning(), learning_rate=2e-5).get_params()["method"]
    FullFineTuning()
    """

    name = "full"
    default_learning_rate = 5e-5
    relative_cost = 1.0
    supports_generation = True

    def build(self, backbone):
        from ._encoders import PlainEncoder

        for p in backbone.parameters():
            p.requires_grad_(True)
        return PlainEncoder(backbone)
