"""The machinery every estimator that fine-tunes an encoder shares: the network, the fit, prediction.

:class:`FineTuneClassifier`, :class:`FineTuneRegressor` and :class:`RewardModel`
subclass it with their targets, loss and validation score; the training loop
itself is the engine's (``_training.py``).
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._architecture import check_pooling_fits, is_decoder, output_width, positions
from ._cache import resolve_cache_dir
from ._device import autocast, resolve_device, resolve_dtype, restore_placement
from ._live import LiveStateMixin, check_saved_state, put_back_trained_state
from ._methods import NamedMethodParamsMixin, resolve_method, same_method
from ._models import DEFAULT_ENCODER, check_fitted_files, load_backbone, model_identity, resolve_model
from ._probe import probe_rows
from ._seen_rows import seen_rows
from ._splits import validation_split
from ._tokens import check_room_for_text
from ._training import (
    Optimisation,
    check_training_params,
    draw_seed,
    keep_state_on_error,
    length_grouped_batches,
    release_memory,
    train_epochs,
    training_context,
)
from ._validation import check_bool, check_choice, check_int, check_number, check_random_state_param, check_texts


class _FineTuneBase(NamedMethodParamsMixin, LiveStateMixin, BaseEstimator):
    """Training machinery shared by the classifier and the regressor."""

    _live_attributes = ("network_", "tokenizer_")
    # What fit builds the network from: set after fit, predict would ignore it (refused until the next fit).
    _load_params = ("model_name", "revision", "method", "pooling", "max_length", "dtype", "device")
    _rows_are = "texts"  # what one row of the training data is, in messages
    _min_validation = 1  # validation rows the validation score needs
    _held_out_targets_vary = False  # the validation score needs held-out targets of two values (R²)
    _one_output_per_row = True  # the network gives one output row per training row, in order
    _n_outputs = None  # set per task in fit

    def __init__(
        self,
        model_name=DEFAULT_ENCODER,
        *,
        revision=None,
        method="lora",
        pooling="auto",
        max_length=128,
        epochs=None,
        batch_size=16,
        learning_rate=None,
        weight_decay=0.01,
        warmup_ratio=0.06,
        max_grad_norm=1.0,
        head_init="linear_probe",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=2,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype="float32",
        cache_dir="auto",
        verbose=0,
    ):
        self.model_name = model_name
        self.revision = revision
        self.method = method
        self.pooling = pooling
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.max_grad_norm = max_grad_norm
        self.head_init = head_init
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.verbose = verbose

    def __setstate__(self, state):
        # Models pickled before linear probing existed refit as they were fitted.
        state.setdefault("head_init", "random")
        # The pooled width was n_features_ before it took TransformerEmbedder's name.
        if "n_features_" in state:
            state["embedding_dim_"] = state.pop("n_features_")
        check_saved_state(state)
        super().__setstate__(state)

    @property
    def n_features_(self):
        """Former name of ``embedding_dim_``; removed in the next release."""
        dim = self.embedding_dim_  # AttributeError (so hasattr is False) before fit
        warnings.warn(
            "n_features_ was renamed embedding_dim_ (as in TransformerEmbedder); it will be removed in the next "
            "release.",
            FutureWarning,
            stacklevel=2,
        )
        return dim

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # -- validation ---------------------------------------------------------------
    def _validate_params(self):
        check_choice(self.pooling, "pooling", ("auto", "mean", "cls", "last"))
        check_choice(self.head_init, "head_init", ("linear_probe", "random"))
        check_int(self.max_length, "max_length", 2)
        check_training_params(self)
        check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        check_random_state_param(self.random_state)
        check_number(self.validation_fraction, "validation_fraction", 0, 1, low_inclusive=False)
        check_bool(self.early_stopping, "early_stopping")
        check_bool(self.warm_start, "warm_start")
        # Every method checks it, even those that never cache: a bad value must
        # not pass with one method and fail with another.
        resolve_cache_dir(self.cache_dir)
        method = resolve_method(self.method)
        method.validate()
        return clone(method)

    # -- building the network -------------------------------------------------------
    def _backbone(self, device):
        source = resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)
        model, tokenizer = load_backbone(source, device)
        return source, model, tokenizer

    def _build_network(self, backbone):
        import torch

        network = self.method_.build_network(backbone, self._n_outputs, self.pooling_)
        return network.to(torch.device(self.device_))

    def _rebuild_network(self, backbone):
        """The network in its stored form (``method.compact``) with ``trainable_state_`` put back."""
        import torch

        network = self.method_.compact(self._build_network(backbone))
        what = f"model {self.model_name!r} with method {self.method_.name!r}"
        network = put_back_trained_state(network, self.trainable_state_, what)
        return network.to(torch.device(self.device_))

    def _restore_live(self):
        """Rebuild the trained network from hyperparameters and ``trainable_state_``."""

        device = restore_placement(self)
        source = resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)
        consequence = "its frozen weights now come from the new files."
        check_fitted_files(self.model_identity_, source, self.model_name, consequence)
        backbone, tokenizer = load_backbone(source, device)
        # Building draws initial weights (then replaced): from a forked generator, as in fit, not the user's.
        with training_context(0, device):
            network = self._rebuild_network(backbone)
        network = self.method_.for_inference(network)
        network.to(device).eval()
        self.network_, self.tokenizer_ = network, tokenizer

    # -- inputs -----------------------------------------------------------------------
    def _inputs(self, texts, *, warn=True):
        """What the method's network takes for ``texts`` (token ids, cached features...)."""
        return self.method_.inputs(self, texts, warn=warn)

    def _outputs(self, inputs):
        """Raw network outputs for all rows of ``inputs``, in input order."""
        import torch

        # Read here, so checked here too: it may have been set after fit.
        check_int(self.batch_size, "batch_size")
        device = torch.device(self.device_)
        network = self.network_
        network.eval()
        n = len(inputs)
        order = np.argsort(-inputs.lengths(), kind="stable")
        out = np.empty((n, self._n_outputs), dtype=np.float32)
        step = self.batch_size * 2
        with torch.inference_mode(), autocast(device, self.dtype_):
            for start in range(0, n, step):
                batch = order[start : start + step]
                out[batch] = network(*inputs.tensors(batch, device)).float().cpu().numpy()
        return out

    # -- training -------------------------------------------------------------------------
    def _fit(self, method, texts, targets, *, stratify=None, class_weights=None):
        """Shared fit on validated texts: ``targets`` are class indices (int64) or scaled floats.

        A fit that fails (a non-finite loss, an interrupt) leaves the estimator as it was.
        """
        with keep_state_on_error(self):
            return self._fit_network(method, texts, targets, stratify, class_weights)

    def _fit_network(self, method, texts, targets, stratify, class_weights):
        rng = check_random_state(self.random_state)
        seed = draw_seed(rng)

        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        source, backbone, tokenizer = self._backbone(device)
        decoder = is_decoder(backbone)
        pooling = self.pooling if self.pooling != "auto" else ("last" if decoder else "mean")
        check_pooling_fits(pooling, decoder, self.model_name)
        max_length = int(min(self.max_length, method.text_positions(positions(backbone, tokenizer))))
        check_room_for_text(tokenizer, max_length)
        keep = (
            self.warm_start
            and hasattr(self, "trainable_state_")
            and self._fitted_on(source)
            and (getattr(self, "pooling_", None), getattr(self, "max_length_", None)) == (pooling, max_length)
            and self._same_model(method)
        )
        targets = self._commit_targets(keep, targets)
        for name in getattr(getattr(self, "method_", None), "fitted_attributes", ()):
            vars(self).pop(name, None)  # set by the previous fit's method
        self.method_ = method
        self.device_, self.dtype_ = str(device), dtype
        self.tokenizer_ = tokenizer
        self.model_identity_ = model_identity(source)
        self._record_load_params()
        self.pooling_, self.max_length_ = pooling, max_length
        for name, value in method.prepare(self).items():
            setattr(self, name, value)
        inputs = self._inputs(texts)
        self.embedding_dim_ = output_width(backbone.config)
        train_idx, valid_idx = self._split(len(texts), seed, stratify, targets)

        with training_context(seed, device):
            if keep:
                # From the stored form: the live network may be changed for inference (merged LoRA).
                vars(self).pop("network_", None)
                network = self._rebuild_network(backbone)
            else:
                vars(self).pop("network_", None)
                network = self._build_network(backbone)
                if self.head_init == "linear_probe":
                    probed, weights = train_idx, class_weights
                    # A sample where the probe's features cost a forward pass; a multi-label
                    # sample could leave a rare label out, and the probe with it.
                    if not method.caches_features and np.ndim(targets) == 1:
                        strata = None if stratify is None else np.asarray(stratify)[train_idx]
                        probed, weights = probe_rows(train_idx, seed, strata, class_weights)
                    self._probe_output_layer(network, inputs, texts, targets, probed, weights, device)
            self.network_ = network
            self._train(network, inputs, targets, train_idx, valid_idx, class_weights, rng, device)
        network.eval()
        # What is kept: the method's compact form of the trained parameters (prefixes without
        # their reparametrisation MLP...); prediction may then use another form (merged LoRA).
        network = method.compact(network)
        self.trainable_state_ = {
            n: p.detach().float().cpu().numpy().copy() for n, p in network.named_parameters() if p.requires_grad
        }
        self.n_trainable_params_ = int(sum(v.size for v in self.trainable_state_.values()))
        self.network_ = method.for_inference(network).eval()
        release_memory(device)
        return self

    def _split(self, n, seed, stratify, targets):
        """Training and validation rows (``None`` without early stopping)."""
        train_idx = np.arange(n)
        if not self.early_stopping:
            return train_idx, None
        return validation_split(
            train_idx,
            self.validation_fraction,
            seed,
            stratify,
            what=self._rows_are,
            min_valid=self._min_validation,
            varied=targets if self._held_out_targets_vary or np.ndim(targets) == 2 else None,
        )

    def _probe_output_layer(self, network, inputs, texts, targets, rows, class_weights, device):
        """Start the output layer from a regularised linear model on the network's initial features.

        Features that are the frozen backbone's come from the embedding cache (see ``_probe.py``).
        """
        from ._methods._inputs import TokenInputs
        from ._probe import cached_layer_inputs, layer_inputs, output_layer, set_layer

        layer = output_layer(network, self._n_outputs)
        if layer is None:  # outputs made otherwise: the method's own initialisation stays
            return
        features = None
        if isinstance(inputs, TokenInputs) and resolve_cache_dir(self.cache_dir) is not None:
            embedder = self._frozen_embedder()
            features = cached_layer_inputs(
                network,
                layer,
                inputs,
                rows,
                device,
                self.dtype_,
                self.batch_size * 2,
                embedder,
                [texts[i] for i in rows],
            )
        if features is None:
            features = layer_inputs(network, layer, inputs, rows, device, self.dtype_, self.batch_size * 2)
        fitted = self._probe(features, targets[rows], class_weights)
        if fitted is not None:
            set_layer(layer, *fitted)

    def _frozen_embedder(self):
        """A fitted TransformerEmbedder giving the backbone's pooled features as the network pools them."""
        from ._embed import TransformerEmbedder

        return TransformerEmbedder(
            self.model_name,
            revision=self.revision,
            pooling=self.pooling_,
            normalize=False,
            max_length=self.max_length_,
            batch_size=max(self.batch_size, 32),
            device=self.device_,
            dtype=self.dtype_,
            cache_dir=self.cache_dir,
            verbose=self.verbose,
        ).fit()

    def _same_model(self, method):
        """Whether warm_start may continue from the fitted weights."""
        return same_method(method, self.method_)

    def _commit_targets(self, keep, targets):
        """Record what the targets define (the classes, the regressor's scale) once the warm-start decision is made.

        ``fit`` stages them in ``_new_targets``: set before the protected fit, they
        would outlive a fit that fails (see ``keep_state_on_error``). ``keep``:
        the previous weights are kept (a warm start). Returns the training targets.
        """
        for name, value in getattr(self, "_new_targets", {}).items():
            setattr(self, name, value)
        return targets

    def _train(self, network, inputs, targets, train_idx, valid_idx, loss_weights, rng, device):
        import torch

        train_lengths = inputs.lengths()[train_idx]
        epochs = self.epochs if self.epochs is not None else self.method_.default_epochs
        targets_t = torch.as_tensor(targets).to(device)
        weights_t = None if loss_weights is None else torch.as_tensor(loss_weights, dtype=torch.float32).to(device)

        def forward(rows):
            with autocast(device, self.dtype_):
                return network(*inputs.tensors(rows, device)).float()

        def output_loss(output, rows):
            return self._loss(output, targets_t[torch.from_numpy(rows).to(device)], weights_t), len(rows)

        def validate():
            return self._validation_score(self._outputs(inputs.subset(valid_idx)), targets[valid_idx])

        # Embedding rows of tokens no text holds stay as they are: not trained (see _seen_rows.py).
        with seen_rows(network, inputs.token_ids()):
            optimisation = Optimisation.of(
                self,
                network,
                total_steps=-(-len(train_idx) // self.batch_size) * epochs,
                device=device,
                hint="targets of extreme magnitude, or texts that make the backbone overflow.",
            )
            result = train_epochs(
                optimisation,
                network,
                epochs=epochs,
                batches=lambda epoch: [
                    train_idx[b] for b in length_grouped_batches(train_lengths, self.batch_size, rng)
                ],
                forward=forward,
                output_loss=output_loss,
                # a step in two halves joins the halves' outputs: one output row per row
                splittable=self._one_output_per_row,
                validate=validate if valid_idx is not None else None,
                n_iter_no_change=self.n_iter_no_change,
                verbose=self.verbose,
            )
        self.loss_curve_, self.n_iter_ = result.loss_curve, result.n_iter
        self.validation_scores_ = result.validation_scores
        # None without early stopping, not a previous fit's score.
        self.best_validation_score_ = result.best_validation_score

    # -- prediction -----------------------------------------------------------------------
    def _raw_outputs(self, X):
        check_is_fitted(self, "trainable_state_")
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        return self._outputs(self._inputs(texts))
