"""Fine-tuning I: frozen backbone, new output layers."""

from ._base import FineTuningMethod, check_float, check_int


class HeadTuning(FineTuningMethod):
    """Train new output layers on a frozen backbone ("head").

    The backbone never changes, so its pooled features are computed once through
    the :class:`~skllm.TransformerEmbedder` cache, and the output layers train
    all their epochs on those features: a fit costs about one forward pass over
    the data, and refitting (another fold, another candidate) costs nothing more.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
        Sizes of the hidden layers (ReLU) before the output layer; ``()`` gives
        a linear head.
    dropout : float, default=0.1
        Dropout before each layer, in [0, 1).
    """

    name = "head"
    default_learning_rate = 1e-3
    trains_backbone = False
    modifies_backbone = False

    def __init__(self, hidden_layer_sizes=(256,), dropout=0.1):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout

    def validate(self):
        if not isinstance(self.hidden_layer_sizes, (tuple, list)):
            raise ValueError(f"hidden_layer_sizes must be a tuple of ints, got {self.hidden_layer_sizes!r}.")
        for size in self.hidden_layer_sizes:
            check_int(size, "hidden_layer_sizes entries")
        check_float(self.dropout, "dropout", 0.0, 1.0)
