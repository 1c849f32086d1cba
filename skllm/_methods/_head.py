"""Fine-tuning I: frozen backbone, new output layers."""

from .._architecture import output_width
from ._base import FineTuningMethod, check_bool, check_int, check_number


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
        Dropout before each layer of the hidden branch, in [0, 1).
    residual : bool, default=True
        Add a linear layer from the features straight to the outputs, beside the
        hidden layers, whose last layer then starts at zero: the head starts as a
        linear model (with ``head_init="linear_probe"``, the logistic regression
        a frozen-embedding pipeline would fit) and training adds what the hidden
        layers find. No effect on a linear head.
    normalize : bool, default=True
        Scale the pooled features to unit L2 norm first, as
        ``TransformerEmbedder(normalize=True)`` does for a frozen-embedding
        pipeline.

    Notes
    -----
    Models pickled before ``residual`` and ``normalize`` existed keep the head
    they were trained with (both off).

    Examples
    --------
    >>> from skllm import FineTuneClassifier, HeadTuning
    >>> HeadTuning(hidden_layer_sizes=(64,)).get_params()
    {'dropout': 0.1, 'hidden_layer_sizes': (64,), 'normalize': True, 'residual': True}
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 2
    >>> y = ["pos", "pos", "neg", "neg"] * 2
    >>> clf = FineTuneClassifier(method=HeadTuning(), epochs=1, max_length=16, random_state=0).fit(X, y)
    >>> clf.predict_proba(["a great film"]).shape
    (1, 2)
    """

    name = "head"
    default_learning_rate = 1e-3
    # An epoch runs on cached features and costs milliseconds; more of them measured
    # better (docs/benchmarks.md, "The head against the logistic regression").
    default_epochs = 10
    modifies_backbone = False
    # Its epochs run on cached features: a fit costs the embeddings (shared) and milliseconds.
    relative_cost = 0.0
    caches_features = True
    fitted_attributes = ("embedder_",)
    _value_before_added = (("residual", False), ("normalize", False))

    def __init__(self, hidden_layer_sizes=(256,), dropout=0.1, residual=True, normalize=True):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.residual = residual
        self.normalize = normalize

    def validate(self):
        if not isinstance(self.hidden_layer_sizes, (tuple, list)):
            raise ValueError(f"hidden_layer_sizes must be a tuple of ints, got {self.hidden_layer_sizes!r}.")
        for size in self.hidden_layer_sizes:
            check_int(size, "hidden_layer_sizes entries")
        check_number(self.dropout, "dropout", 0.0, 1.0)
        check_bool(self.residual, "residual")
        check_bool(self.normalize, "normalize")

    def prepare(self, estimator):
        """The embedder (``embedder_``) whose cached, pooled features the head trains on."""
        from .._embed import TransformerEmbedder

        embedder = TransformerEmbedder(
            estimator.model_name,
            revision=estimator.revision,
            pooling=estimator.pooling_,
            normalize=False,
            max_length=estimator.max_length_,
            batch_size=max(estimator.batch_size, 32),
            device=estimator.device_,
            dtype=estimator.dtype_,
            cache_dir=estimator.cache_dir,
        )
        return {"embedder_": embedder.fit()}

    def inputs(self, estimator, texts, *, warn=True):
        """Pooled features of ``texts`` from ``estimator.embedder_`` (and its cache)."""
        import warnings

        from ._inputs import FeatureInputs

        embedder = estimator.embedder_
        # The folder moved, or the Hub commit was pinned: the estimator took the files' new name.
        if (embedder.model_name, embedder.revision) != (estimator.model_name, estimator.revision):
            embedder.set_params(model_name=estimator.model_name, revision=estimator.revision)
        with warnings.catch_warnings(record=not warn):
            return FeatureInputs(embedder.transform(texts))

    def build_network(self, backbone, n_outputs, pooling):
        """The output layers alone: the backbone's features come from the cache."""
        from ._encoders import Head

        return Head(
            output_width(backbone.config),
            n_outputs,
            tuple(self.hidden_layer_sizes),
            self.dropout,
            residual=self.residual,
            normalize=self.normalize,
        )
