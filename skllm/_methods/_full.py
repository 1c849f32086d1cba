"""Fine-tuning II: every layer trained."""

from ._base import FineTuningMethod, check_bool


class FullFineTuning(FineTuningMethod):
    """Train every parameter of the backbone and the output layer ("full").

    The most expressive and the most expensive method; a saved model holds all
    the backbone's weights.

    Parameters
    ----------
    backbone_dropout : bool, default=True
        Keep the backbone's own dropout (MiniLM's 0.1 on its hidden states and attention)
        while training. ``False`` trains without it: fits of MiniLM ran 1.12x and 1.25x
        faster on Rotten Tomatoes and the 2016 debates, but at a mean test accuracy 0.003
        and 0.006 lower (seeds 0-2; docs/benchmarks.md), so it stays on by default.
        Prediction is the same either way.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, FullFineTuning
    >>> FullFineTuning().get_params()
    {'backbone_dropout': True}
    >>> FineTuneClassifier(method=FullFineTuning(), learning_rate=2e-5).get_params()["method"]
    FullFineTuning()
    >>> grid = {"method__backbone_dropout": [True, False]}  # for GridSearchCV
    """

    name = "full"
    default_learning_rate = 5e-5
    relative_cost = 1.0
    supports_generation = True

    def __init__(self, backbone_dropout=True):
        self.backbone_dropout = backbone_dropout

    def validate(self):
        check_bool(self.backbone_dropout, "backbone_dropout")

    def build(self, backbone):
        from ._encoders import PlainEncoder

        for p in backbone.parameters():
            p.requires_grad_(True)
        return PlainEncoder(backbone)
