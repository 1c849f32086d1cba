"""Partial fine-tuning: the last transformer blocks trained, the ones before frozen."""

import numpy as np

from .._architecture import output_width
from ._base import FineTuningMethod, check_bool, check_int


class PartialFineTuning(FineTuningMethod):
    """Train the last ``n_last_layers`` transformer blocks and the output layer ("partial").

    Every block before them, and the embeddings, stay frozen. Since the frozen
    part never changes, the hidden states entering the first trained block are
    computed once per ``fit`` (with their attention mask) and each epoch runs
    only the trained blocks. Where a model ends with a normalisation layer
    after its blocks (Llama), that layer trains too. A saved model holds the
    trained blocks; the network copies only them (and the small embedding
    layers that give the model its masks and positions), not the frozen blocks.

    Parameters
    ----------
    n_last_layers : int, default=2
        Number of blocks trained, counted from the last; between 1 and the
        model's number of blocks (6 for MiniLM, 30 for SmolLM2-135M).
    cache_frozen : bool, default=True
        Compute the frozen blocks' outputs once per ``fit`` and keep them in
        memory (float32: ``4 x tokens x hidden_size`` bytes, about 46 MB for
        1,000 texts of 30 tokens on MiniLM). ``False`` runs the frozen blocks
        again in every training step, for data too large to hold. Both give
        the same model: the frozen blocks run without dropout either way.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, PartialFineTuning
    >>> from sklearn.model_selection import GridSearchCV
    >>> PartialFineTuning(n_last_layers=1).get_params()
    {'cache_frozen': True, 'n_last_layers': 1}
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 2
    >>> y = ["pos", "pos", "neg", "neg"] * 2
    >>> clf = FineTuneClassifier(method=PartialFineTuning(n_last_layers=1), epochs=1, max_length=16, random_state=0)
    >>> clf.fit(X, y).n_trainable_params_  # MiniLM's last block and the output layer
    1775234
    >>> search = GridSearchCV(clf, {"method__n_last_layers": [1, 2]}, cv=2)
    """

    name = "partial"
    # Chosen on a validation split of Rotten Tomatoes, n_last_layers=2 (docs/benchmarks.md).
    default_learning_rate = 1e-4
    # Two of six blocks trained, the rest run once per fit: an epoch over 1,000 Rotten Tomatoes
    # texts (a 3-epoch fit less a 1-epoch fit, halved) takes 3.9 s against 12.9 s for full
    # fine-tuning (benchmarks/bench_finetune.py).
    relative_cost = 0.30
    modifies_backbone = False  # it copies the blocks it trains itself

    def __init__(self, n_last_layers=2, cache_frozen=True):
        self.n_last_layers = n_last_layers
        self.cache_frozen = cache_frozen

    def validate(self):
        check_int(self.n_last_layers, "n_last_layers")
        check_bool(self.cache_frozen, "cache_frozen")

    def _split(self, backbone):
        """Name of the backbone's list of blocks, and the index of the first one trained."""
        from ._encoders import transformer_blocks

        blocks = transformer_blocks(backbone)
        if blocks is None:
            raise ValueError(
                f"PartialFineTuning found no list of config.num_hidden_layers transformer blocks in "
                f"{type(backbone).__name__}; use another method, e.g. 'lora' or 'full'."
            )
        n = len(backbone.get_submodule(blocks))
        if self.n_last_layers > n:
            raise ValueError(
                f"n_last_layers must be between 1 and {n}, the number of transformer blocks of this "
                f"{type(backbone).__name__}, got {self.n_last_layers}."
            )
        return blocks, n - self.n_last_layers

    def inputs(self, estimator, texts, *, warn=True):
        """The hidden states entering the first trained block (or token ids, without ``cache_frozen``)."""
        tokens = super().inputs(estimator, texts, warn=warn)
        if not self.cache_frozen:
            return tokens
        import torch

        from .._device import autocast
        from .._models import check_fitted_files, load_backbone, resolve_model
        from ._encoders import FrozenLayers
        from ._inputs import HiddenInputs

        check_int(estimator.batch_size, "batch_size", 1)  # may have been set after fit
        device = torch.device(estimator.device_)
        source = resolve_model(estimator.model_name, estimator.revision, cache_dir=estimator.cache_dir)
        # The frozen blocks are run from the files at every call (fit names them first): files
        # saved again since fit would feed the trained blocks states they were not trained on.
        consequence = "the frozen blocks now run from the new files, and the trained blocks get other states."
        check_fitted_files(estimator.model_identity_, source, estimator.model_name, consequence)
        backbone = load_backbone(source, device)[0]  # shared, loaded once per process
        frozen = FrozenLayers(backbone, *self._split(backbone))
        lengths = tokens.lengths()
        order = np.argsort(-lengths, kind="stable")  # little padding
        states = [None] * len(tokens)
        step = max(2 * estimator.batch_size, 32)
        with torch.inference_mode(), autocast(device, estimator.dtype_):
            for start in range(0, len(order), step):
                rows = order[start : start + step]
                hidden = frozen(*tokens.tensors(rows, device)).float().cpu().numpy()
                for row, i in enumerate(rows):
                    states[i] = hidden[row, : lengths[i]].copy()
        return HiddenInputs(states)

    def build_network(self, backbone, n_outputs, pooling):
        """The trained blocks (a copy) fed the frozen part's states, pooling and a linear output layer."""
        from ._encoders import MLP, FrozenLayers, Network, PartialEncoder

        blocks, index = self._split(backbone)
        frozen = None if self.cache_frozen else FrozenLayers(backbone, blocks, index)
        encoder = PartialEncoder(backbone, blocks, index, frozen, as_whole=self.builds_as(2))
        head = MLP(output_width(backbone.config), n_outputs, (), 0.1)
        return Network(encoder, head, pooling)
