"""FineTuneClassifier and FineTuneRegressor: adapting the backbone itself behind fit/predict."""

import logging
import numbers
import warnings
from collections.abc import Hashable

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import softmax
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from . import _cache, _models
from ._device import autocast, device_for_loading, resolve_device, resolve_dtype
from ._live import LiveStateMixin
from ._methods import resolve_method
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
from ._validation import check_bool, check_choice, check_int, check_number, check_texts
from .exceptions import SkllmWarning

logger = logging.getLogger(__name__)


def _label_kind(value):
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    return type(value).__name__


def _encode_labels(y, n_texts, who):
    """``(classes, index of each label in classes)``, or a ValueError saying what is wrong with ``y``."""
    if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__iter__"):
        raise ValueError(f"y must be a sequence of labels, one per text, got {y!r:.60}.")
    values = y if hasattr(y, "__array__") else list(y)
    labels = np.asarray(values, dtype=object)
    if labels.ndim == 0:
        raise ValueError(f"y must be a sequence of labels, one per text, got {y!r:.60}.")
    if labels.ndim != 1:  # 2-D: _multilabel_indicator says what is allowed
        raise ValueError(f"{who} takes one label per text (1-D y), but y has shape {labels.shape}.")
    if len(labels) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(labels)} labels; they must match row for row.")
    missing = [i for i, v in enumerate(labels) if v is None or (isinstance(v, numbers.Real) and v != v)]
    if missing:
        raise ValueError(f"y has {len(missing)} missing label(s) (None or NaN) at positions {missing[:10]}.")
    unhashable = [i for i, v in enumerate(labels) if not isinstance(v, Hashable)]
    if unhashable:
        i = unhashable[0]
        raise ValueError(
            f"y must hold one hashable label per text; {len(unhashable)} are not, e.g. at position {i}: "
            f"{type(labels[i]).__name__} {labels[i]!r:.40}. For several labels per text, pass a 0/1 indicator "
            f"matrix: sklearn.preprocessing.MultiLabelBinarizer().fit_transform(y)."
        )
    kinds = {}
    for v in labels:
        kinds.setdefault(_label_kind(v), v)
    if len(kinds) > 1:
        examples = ", ".join(f"{kind} {v!r}" for kind, v in sorted(kinds.items()))
        raise ValueError(f"y mixes label types ({examples}); use one type for every label, e.g. all str or all int.")
    kind = next(iter(kinds))
    if kind in ("number", "bool"):
        plain = np.asarray(labels.tolist())
        if type_of_target(plain) == "continuous":
            fractional = plain[plain != np.round(plain)][0].item()
            raise ValueError(
                f"y holds continuous values (e.g. {fractional!r}) but {who} needs discrete classes. For a "
                f"numeric target use FineTuneRegressor; to classify, bin y first (e.g. numpy.digitize)."
            )
        check_classification_targets(plain)
    elif kind == "str":
        check_classification_targets(labels)
    try:
        classes, encoded = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"The labels in y cannot be ordered: {exc}") from exc
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2.")
    if kind in ("str", "number", "bool"):
        classes = np.asarray(classes.tolist())  # a plain dtype (str, int, float, bool)
    return classes, encoded.ravel()


def _is_zero_or_one(value):
    return isinstance(value, (bool, np.bool_, numbers.Real)) and (value == 0 or value == 1)


def _multilabel_indicator(y, n_texts, who, *, multioutput_hint=True):
    """``(indicator, sparse)`` for a 2-D ``y``: float32 0/1 matrix (n_texts, n_labels), and whether ``y`` was sparse.

    ``None`` for anything that is not 2-D (one label per text: ``_encode_labels`` checks it).
    A 2-D ``y`` that is not a 0/1 indicator with two or more columns is a ValueError saying
    what is allowed (and, with ``multioutput_hint``, how to predict several other outputs).
    """
    allowed = (
        f"{who} takes one label per text (a 1-D y) or, for several labels per text, a 0/1 indicator matrix "
        f"of shape (n_texts, n_labels) with 2 or more columns, dense or sparse"
    )
    sparse = sp.issparse(y)
    if sparse:
        shape = y.shape
    else:
        if y is None or isinstance(y, (str, bytes)) or not hasattr(y, "__iter__"):
            return None
        values = y if hasattr(y, "__array__") else list(y)
        try:
            shape = np.shape(values)
        except ValueError:  # rows of unequal length: not a matrix
            return None
        if len(shape) < 2:
            return None
    if len(shape) != 2:
        raise ValueError(f"{allowed}; y has shape {shape}.")
    if shape[1] < 2:
        single = ", a single column. For one label per text, pass it as 1-D (e.g. y.ravel() or frame['label'])"
        raise ValueError(f"{allowed}; y has shape {shape}{single if shape[1] == 1 else ''}.")
    if shape[0] != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {shape[0]} rows; they must match row for row.")
    if sparse:
        coo = y.tocoo()
        rows, columns, cells = coo.row, coo.col, coo.data
    else:
        cells = np.asarray(values)
        if cells.dtype.kind not in "biuf":  # keep each value's own type (str, None...) for the message
            cells = np.asarray(values, dtype=object)
        rows, columns = np.indices(shape).reshape(2, -1)
        cells = cells.ravel()
    if cells.dtype.kind in "biuf":
        bad = np.flatnonzero((cells != 0) & (cells != 1))
    else:
        bad = np.flatnonzero([not _is_zero_or_one(v) for v in cells])
    if bad.size:
        i, j, v = rows[bad[0]], columns[bad[0]], cells[bad[0]]
        v = v.item() if isinstance(v, np.generic) else v
        try:
            kind = type_of_target(y)
        except ValueError:
            kind = None
        # scikit-learn calls any two integers an indicator ("multilabel-indicator" for 0 and 2).
        kind = f" ({kind})" if kind not in (None, "multilabel-indicator") else ""
        hint = (
            "; for several outputs of other values per text, wrap the classifier in "
            "sklearn.multioutput.MultiOutputClassifier"
            if multioutput_hint
            else ""
        )
        raise ValueError(
            f"{allowed}; y has shape {shape}{kind} with {v!r} at row {i}, column {j}. To turn lists of labels "
            f"into an indicator matrix, use sklearn.preprocessing.MultiLabelBinarizer{hint}."
        )
    indicator = y.toarray() if sparse else np.asarray(values)
    return indicator.astype(np.float32), sparse


def _numeric_targets(y, n_texts, who):
    """``y`` as a 1-D float64 array of finite values, or a ValueError saying what is wrong."""
    if y is None or isinstance(y, (str, bytes)):
        raise ValueError(f"y must be a sequence of numbers, one per text, got {y!r:.60}.")
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y must be numeric for a regressor: {exc}") from exc
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"{who} predicts one number per text, but y has shape {y.shape}. For several targets per "
            f"text, wrap it in sklearn.multioutput.MultiOutputRegressor."
        )
    if len(y) != n_texts:
        raise ValueError(f"X has {n_texts} texts but y has {len(y)} values; they must match row for row.")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise ValueError(f"y has {bad.size} missing or infinite value(s) at positions {bad[:10].tolist()}.")
    return y


class _FineTuneBase(LiveStateMixin, BaseEstimator):
    """Training machinery shared by the classifier and the regressor."""

    _live_attributes = ("network_", "tokenizer_")
    _n_outputs = None  # set per task in fit

    def __init__(
        self,
        model_name=_models.DEFAULT_ENCODER,
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
        check_number(self.validation_fraction, "validation_fraction", 0, 1, low_inclusive=False)
        check_bool(self.early_stopping, "early_stopping")
        check_bool(self.warm_start, "warm_start")
        # Every method checks it, even those that never cache: a bad value must
        # not pass with one method and fail with another.
        _cache.resolve_cache_dir(self.cache_dir)
        method = resolve_method(self.method)
        method.validate()
        return clone(method)

    # -- building the network -------------------------------------------------------
    def _backbone(self, device):
        source = _models.resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)
        model, tokenizer = _models.load_backbone(source, device)
        return source, model, tokenizer

    def _build_network(self, backbone):
        import torch

        network = self.method_.build_network(backbone, self._n_outputs, self.pooling_)
        return network.to(torch.device(self.device_))

    def _rebuild_network(self, backbone):
        """The network in its stored form (``method.compact``) with ``trainable_state_`` put back."""
        import torch

        network = self.method_.compact(self._build_network(backbone))
        trained = {n for n, p in network.named_parameters() if p.requires_grad}
        missing = sorted(trained - set(self.trainable_state_))
        unexpected = sorted(set(self.trainable_state_) - trained)
        if missing or unexpected:
            raise RuntimeError(
                f"The saved weights do not fit model {self.model_name!r} with method {self.method_.name!r}: "
                f"{len(missing)} trained tensor(s) missing {missing[:5]}, {len(unexpected)} unexpected "
                f"{unexpected[:5]}. Was the model or the package changed since fitting?"
            )
        state = {k: torch.from_numpy(np.array(v)) for k, v in self.trainable_state_.items()}
        network.load_state_dict(state, strict=False)  # the frozen rest comes from the backbone
        return network.to(torch.device(self.device_))

    def _restore_live(self):
        """Rebuild the trained network from hyperparameters and ``trainable_state_``."""

        device = device_for_loading(self.device_)
        self.device_ = str(device)
        source, backbone, tokenizer = self._backbone(device)
        identity = _models.model_identity(source)
        if identity != self.model_identity_:
            warnings.warn(
                f"The files of model {self.model_name!r} changed since this model was fitted "
                f"({self.model_identity_} -> {identity}); its frozen weights now come from the new files.",
                UserWarning,
                stacklevel=3,
            )
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
        pooling = self.pooling if self.pooling != "auto" else ("last" if _models.is_decoder(backbone) else "mean")
        max_length = int(min(self.max_length, _models.positions(backbone, tokenizer) - method.extra_positions()))
        keep = (
            self.warm_start
            and hasattr(self, "trainable_state_")
            and getattr(self, "model_identity_", None) == _models.model_identity(source)
            and (getattr(self, "pooling_", None), getattr(self, "max_length_", None)) == (pooling, max_length)
            and self._same_model(method)
        )
        self._commit_targets()
        for name in getattr(getattr(self, "method_", None), "fitted_attributes", ()):
            vars(self).pop(name, None)  # set by the previous fit's method
        self.method_ = method
        self.device_, self.dtype_ = str(device), dtype
        self.tokenizer_ = tokenizer
        self.model_identity_ = _models.model_identity(source)
        self.pooling_, self.max_length_ = pooling, max_length
        for name, value in method.prepare(self).items():
            setattr(self, name, value)
        inputs = self._inputs(texts)
        self.embedding_dim_ = int(backbone.config.hidden_size)
        train_idx, valid_idx = self._split(len(texts), seed, stratify)

        with training_context(seed, device):
            if keep:
                # From the stored form: the live network may be changed for inference (merged LoRA).
                vars(self).pop("network_", None)
                network = self._rebuild_network(backbone)
            else:
                vars(self).pop("network_", None)
                network = self._build_network(backbone)
                if self.head_init == "linear_probe":
                    self._probe_output_layer(network, inputs, targets, train_idx, class_weights, device)
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

    def _split(self, n, seed, stratify):
        """Training and validation rows (``None`` without early stopping)."""
        train_idx = np.arange(n)
        if not self.early_stopping:
            return train_idx, None
        try:
            return train_test_split(train_idx, test_size=self.validation_fraction, random_state=seed, stratify=stratify)
        except ValueError:  # a class too small to stratify
            return train_test_split(train_idx, test_size=self.validation_fraction, random_state=seed)

    def _probe_output_layer(self, network, inputs, targets, rows, class_weights, device):
        """Start the output layer from a regularised linear model on the network's initial features."""
        from . import _probe

        layer = _probe.output_layer(network, self._n_outputs)
        if layer is None:  # outputs made otherwise: the method's own initialisation stays
            return
        features = _probe.layer_inputs(network, layer, inputs, rows, device, self.dtype_, self.batch_size * 2)
        fitted = self._probe(features, targets[rows], class_weights)
        if fitted is not None:
            _probe.set_layer(layer, *fitted)

    def _same_model(self, method):
        """Whether warm_start may continue from the fitted weights."""
        return repr(method) == repr(self.method_)

    def _commit_targets(self):
        """Record what the targets define (the classes) once the warm-start decision is made."""

    def _train(self, network, inputs, targets, train_idx, valid_idx, loss_weights, rng, device):
        import torch

        train_lengths = inputs.lengths()[train_idx]
        epochs = self.epochs if self.epochs is not None else self.method_.default_epochs
        optimisation = Optimisation(
            network,
            learning_rate=self.learning_rate if self.learning_rate is not None else self.method_.default_learning_rate,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            max_grad_norm=self.max_grad_norm,
            total_steps=-(-len(train_idx) // self.batch_size) * epochs,
            device=device,
            dtype=self.dtype_,
            who=type(self).__name__,
            hint="targets of extreme magnitude, or texts that make the backbone overflow.",
        )
        targets_t = torch.as_tensor(targets).to(device)
        weights_t = None if loss_weights is None else torch.as_tensor(loss_weights, dtype=torch.float32).to(device)

        def step_loss(rows):
            with autocast(device, self.dtype_):
                output = network(*inputs.tensors(rows, device)).float()
            return self._loss(output, targets_t[torch.from_numpy(rows).to(device)], weights_t), len(rows)

        def validate():
            return self._validation_score(self._outputs(inputs.subset(valid_idx)), targets[valid_idx])

        result = train_epochs(
            optimisation,
            network,
            epochs=epochs,
            batches=lambda epoch: [train_idx[b] for b in length_grouped_batches(train_lengths, self.batch_size, rng)],
            step_loss=step_loss,
            validate=validate if valid_idx is not None else None,
            n_iter_no_change=self.n_iter_no_change,
            verbose=self.verbose,
        )
        self.loss_curve_, self.n_iter_ = result.loss_curve, result.n_iter
        self.validation_scores_ = result.validation_scores
        if result.best_validation_score is not None:
            self.best_validation_score_ = result.best_validation_score

    # -- prediction -----------------------------------------------------------------------
    def _raw_outputs(self, X):
        check_is_fitted(self, "trainable_state_")
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        return self._outputs(self._inputs(texts))


class FineTuneClassifier(ClassifierMixin, _FineTuneBase):
    """Classify texts by adapting a pretrained transformer, with any fine-tuning method.

    One estimator for every way of adapting the model itself: fine-tuning I
    (``"head"``: frozen backbone, new output layers, features cached), fine-tuning
    II (``"full"``: all layers), the parameter-efficient methods ``"lora"``,
    ``"prefix"``, ``"prompt"`` and ``"adapter"``, and ``"partial"`` (the last
    transformer blocks). Methods are small objects with
    their own hyperparameters (:class:`~skllm.LoRA`, ...), tunable in
    ``GridSearchCV`` as ``method__<name>``.

    Parameters
    ----------
    model_name : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Hub id or local folder of an encoder (BERT family) or decoder (Llama
        family) backbone.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    method : str or FineTuningMethod, default="lora"
        ``"head"``, ``"full"``, ``"lora"``, ``"prefix"``, ``"prompt"``,
        ``"adapter"``, ``"partial"``, or a method object such as ``LoRA(r=4)``.
    pooling : {"auto", "mean", "cls", "last"}, default="auto"
        How token states become one vector; ``"auto"`` is ``"last"`` for
        decoders and ``"mean"`` for encoders.
    max_length : int, default=128
        Tokens per text; longer texts are truncated with a warning. Capped at
        the model's positions (less the prompt tokens of ``"prompt"``).
    epochs : int, default=None
        Passes over the training data (the maximum with early stopping);
        ``None`` uses the method's default: 10 for head (its epochs run on
        cached features), 3 for the others.
    batch_size : int, default=16
        Texts per optimisation step.
    learning_rate : float, default=None
        AdamW learning rate; ``None`` uses the method's default (head 1e-3,
        full 5e-5, lora 1e-3, prefix 5e-3, prompt 3e-2, adapter 1e-3, partial
        1e-4).
    weight_decay : float, default=0.01
        AdamW weight decay, applied to weight matrices only.
    warmup_ratio : float, default=0.06
        Fraction of the steps with a linearly rising learning rate (from 0);
        it then decays linearly to zero.
    max_grad_norm : float, default=1.0
        Gradient clipping threshold; ``None`` disables clipping.
    head_init : {"linear_probe", "random"}, default="linear_probe"
        How the output layer starts. ``"linear_probe"`` fits a logistic
        regression (a ridge regression for :class:`FineTuneRegressor`;
        regularisation chosen by 3-fold cross-validation) on the
        features the output layer receives from the untrained network, and
        starts from its weights: training begins where a linear model on
        frozen features ends (linear probing then fine-tuning, Kumar et al.,
        2022). It costs one forward pass over the training texts.
        ``"random"``: PyTorch's default initialisation.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss. With a multi-label ``y``, only
        ``"balanced"``: each label is weighted as its own binary problem (its
        positive and negative texts as ``compute_class_weight`` would), as
        ``OneVsRestClassifier(LogisticRegression(class_weight="balanced"))`` does.
    threshold : float, default=0.5
        Multi-label ``y`` only: a label is predicted when its probability is
        above ``threshold`` (in (0, 1)). Read by ``predict`` (and the early
        stopping score), so it can be changed after fitting.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified; at random for
        a multi-label ``y``), score it after each epoch (accuracy; micro-averaged
        F1 at ``threshold`` for a multi-label ``y``), stop after
        ``n_iter_no_change`` epochs without improvement and keep the best
        epoch's weights.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    warm_start : bool, default=False
        Continue training the fitted weights on the next ``fit`` (same
        method, model and classes, or number of labels) instead of starting
        anew.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, dropout, shuffling and the validation split;
        the global random states are not touched. The same int gives the same
        model on the CPU.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Compute precision under autocast (weights stay float32). float16 on
        CUDA trains with loss scaling (``torch.amp.GradScaler``); on the CPU
        it falls back to float32 with a warning.
    cache_dir : str, "auto" or None, default="auto"
        Embedding cache used by the ``"head"`` method (validated for every
        method).
    verbose : int, default=0
        ``1`` prints a progress bar per epoch over its batches, and the loss.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns; for a
        multi-label ``y``, the column indices ``0 .. n_labels - 1`` of the
        indicator matrix (as scikit-learn's multi-label estimators have them).
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix: sigmoid outputs, one
        per label, trained with binary cross-entropy.
    sparse_output_ : bool
        Whether ``predict`` returns a SciPy sparse matrix (multi-label ``y``
        given as one).
    method_ : FineTuningMethod
        The method used (a fresh copy of ``method``).
    n_trainable_params_ : int
        Number of parameters training changed (head included).
    trainable_state_ : dict of str to ndarray
        The trained parameters (float32 NumPy arrays): all that a pickle holds
        besides hyperparameters.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float or None
        Validation accuracy (multi-label: micro-averaged F1) after each epoch
        (with early stopping).
    best_validation_score_ : float
        The best of ``validation_scores_`` (with early stopping).
    n_iter_ : int
        Epochs run.
    network_ : torch.nn.Module
        The trained network; rebuilt from the backbone and ``trainable_state_``
        after unpickling.
    tokenizer_ : transformers tokenizer
        The backbone's tokenizer.
    embedder_ : TransformerEmbedder
        For ``"head"`` only (set by ``HeadTuning.prepare``): the embedder
        giving the (cached) features.
    model_identity_ : str
        Identifies the backbone weights.
    pooling_, max_length_, device_, dtype_ : str, int, str, str
        The values really used.
    embedding_dim_ : int
        Width of the pooled representation (the name
        :class:`TransformerEmbedder` uses; ``n_features_`` is its former name,
        deprecated).

    Examples
    --------
    >>> from skllm import FineTuneClassifier, LoRA
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 4
    >>> y = ["pos", "pos", "neg", "neg"] * 4
    >>> clf = FineTuneClassifier(method=LoRA(r=4), epochs=2, random_state=0).fit(X, y)
    >>> clf.predict(["what a great film"]).tolist()
    ['pos']

    Several labels per text: a 0/1 indicator matrix, e.g. from ``MultiLabelBinarizer``.

    >>> from sklearn.preprocessing import MultiLabelBinarizer
    >>> tags = [{"film", "pos"}, {"pos"}, {"neg"}, {"neg", "slow"}] * 4
    >>> binarizer = MultiLabelBinarizer()
    >>> Y = binarizer.fit_transform(tags)
    >>> binarizer.classes_.tolist()
    ['film', 'neg', 'pos', 'slow']
    >>> multi = FineTuneClassifier(method="head", epochs=20, random_state=0).fit(X, Y)
    >>> multi.predict(["loved it", "so dull"]).shape, multi.predict_proba(["loved it"]).shape
    ((2, 4), (1, 4))
    """

    def __init__(
        self,
        model_name=_models.DEFAULT_ENCODER,
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
        class_weight=None,
        threshold=0.5,
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
        super().__init__(
            model_name,
            revision=revision,
            method=method,
            pooling=pooling,
            max_length=max_length,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            max_grad_norm=max_grad_norm,
            head_init=head_init,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change,
            warm_start=warm_start,
            random_state=random_state,
            device=device,
            dtype=dtype,
            cache_dir=cache_dir,
            verbose=verbose,
        )
        self.class_weight = class_weight
        self.threshold = threshold

    def __setstate__(self, state):
        # Models pickled before multi-label support had no threshold.
        state.setdefault("threshold", 0.5)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    @property
    def _n_outputs(self):
        return len(self.classes_)

    def fit(self, X, y):
        """Fit the model to texts ``X`` and labels ``y``.

        ``y`` holds one label per text (hashable values of one type, e.g. str or
        int) or, for several labels per text, is a 0/1 indicator matrix of shape
        (n_texts, n_labels), dense or SciPy sparse (e.g. from
        ``sklearn.preprocessing.MultiLabelBinarizer``).

        Returns
        -------
        self : FineTuneClassifier
        """
        method = self._validate_params()
        self._check_threshold()
        if not (self.class_weight is None or isinstance(self.class_weight, dict) or self.class_weight == "balanced"):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
        texts = check_texts(X, estimator=self)
        indicator = _multilabel_indicator(y, len(texts), type(self).__name__)
        if indicator is not None:
            targets, sparse = indicator
            weights = self._label_weights(targets)
            self._new_targets = {"classes_": np.arange(targets.shape[1]), "multilabel_": True, "sparse_output_": sparse}
            try:
                return self._fit(method, texts, targets, class_weights=weights)
            finally:
                vars(self).pop("_new_targets", None)
        classes, encoded = _encode_labels(y, len(texts), type(self).__name__)
        weights = None
        if self.class_weight is not None:
            if isinstance(self.class_weight, dict):
                unknown = set(self.class_weight) - set(classes.tolist())
                if unknown:
                    raise ValueError(f"class_weight names labels that are not in y: {sorted(map(repr, unknown))}.")
            weights = compute_class_weight(self.class_weight, classes=classes, y=np.asarray(classes)[encoded])
        self._new_targets = {"classes_": classes, "multilabel_": False, "sparse_output_": False}
        try:
            return self._fit(method, texts, encoded.astype(np.int64), stratify=encoded, class_weights=weights)
        finally:
            vars(self).pop("_new_targets", None)

    def _check_threshold(self):
        check_number(self.threshold, "threshold", 0, 1, low_inclusive=False)

    def _label_weights(self, targets):
        """Loss weights of a multi-label ``y``: rows (negative, positive) by label, or None."""
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, dict):
            raise ValueError(
                "class_weight as a dict maps class labels to weights, but a multi-label y has no class labels; "
                "use class_weight='balanced' (each label weighted as its own binary problem) or None."
            )
        positives = targets.sum(axis=0)
        counts = np.stack([len(targets) - positives, positives])
        # compute_class_weight("balanced") per label; a label without positives (or negatives) keeps 1.
        with np.errstate(divide="ignore"):
            weights = len(targets) / (2 * counts)
        return np.where(counts.min(axis=0) > 0, weights, 1.0).astype(np.float32)

    def _commit_targets(self):
        for name, value in self._new_targets.items():
            setattr(self, name, value)

    def _same_model(self, method):
        previous = getattr(self, "classes_", None)
        new = self._new_targets["classes_"]
        return (
            repr(method) == repr(self.method_)
            and previous is not None
            and getattr(self, "multilabel_", False) == self._new_targets["multilabel_"]
            and len(previous) == len(new)
            and np.array_equal(new, previous)
        )

    def _probe(self, features, targets, class_weights):
        from ._probe import probe_classifier, probe_labels

        if getattr(self, "multilabel_", False):
            return probe_labels(features, targets, class_weights)
        n_classes = len(self.classes_)
        if len(np.unique(targets)) < n_classes:  # a class absent from the training rows
            return None
        weights = None if class_weights is None else dict(enumerate(np.asarray(class_weights, dtype=float)))
        return probe_classifier(features, targets, n_classes, weights)

    def _loss(self, output, target, weights):
        import torch

        if getattr(self, "multilabel_", False):
            weight = None if weights is None else torch.where(target > 0.5, weights[1], weights[0])
            return torch.nn.functional.binary_cross_entropy_with_logits(output, target, weight=weight)
        return torch.nn.functional.cross_entropy(output, target, weight=weights)

    def _validation_score(self, outputs, targets):
        if getattr(self, "multilabel_", False):
            from sklearn.metrics import f1_score

            return float(f1_score(targets.astype(np.int64), self._labels(outputs), average="micro", zero_division=0))
        return float((outputs.argmax(axis=1) == targets).mean())

    def _labels(self, logits):
        """The 0/1 indicator of the labels whose probability is above ``threshold``."""
        self._check_threshold()
        return (expit(logits) > self.threshold).astype(np.int64)

    def decision_function(self, X):
        """Logits: shape (n_samples,) for two classes (positive class minus negative), else (n, n_classes).

        For a multi-label ``y``: one logit per label, shape (n_samples, n_labels).
        """
        logits = self._raw_outputs(X)
        if getattr(self, "multilabel_", False):
            return logits
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        For a multi-label ``y``: the probability of each label, shape (n_samples, n_labels);
        a row need not sum to one.
        """
        logits = self._raw_outputs(X)
        return expit(logits) if getattr(self, "multilabel_", False) else softmax(logits)

    def predict(self, X):
        """The most probable class of each text; always one of ``classes_``.

        For a multi-label ``y``: the 0/1 indicator matrix (n_samples, n_labels) of the labels
        whose probability is above ``threshold``, as int64; a SciPy CSR matrix when ``y``
        was sparse.
        """
        outputs = self._raw_outputs(X)
        if getattr(self, "multilabel_", False):
            labels = self._labels(outputs)
            return sp.csr_matrix(labels) if self.sparse_output_ else labels
        return self.classes_[outputs.argmax(axis=1)]


class FineTuneRegressor(RegressorMixin, _FineTuneBase):
    """Predict a number from text by adapting a pretrained transformer.

    The same machinery and parameters as :class:`FineTuneClassifier` (without
    ``class_weight``), trained with the mean squared error on standardised
    targets. Early stopping scores the validation split by R².

    Attributes
    ----------
    target_mean_, target_scale_ : float
        Standardisation of ``y`` (predictions are mapped back).
    n_trainable_params_, trainable_state_, loss_curve_, validation_scores_, n_iter_, method_ :
        As for :class:`FineTuneClassifier`.

    Examples
    --------
    >>> from skllm import FineTuneRegressor
    >>> X = ["terrible", "bad", "fine", "good", "excellent"] * 3
    >>> y = [1.0, 2.0, 3.0, 4.0, 5.0] * 3
    >>> reg = FineTuneRegressor(method="head", epochs=30, random_state=0).fit(X, y)
    >>> reg.predict(["excellent"]).shape
    (1,)
    """

    _n_outputs = 1

    def fit(self, X, y):
        """Fit the model to texts ``X`` and numeric targets ``y``.

        Returns
        -------
        self : FineTuneRegressor
        """
        method = self._validate_params()
        texts = check_texts(X, estimator=self)
        y = _numeric_targets(y, len(texts), type(self).__name__)
        # Standardise through y / max|y|, in [-1, 1]: y's mean and spread never
        # overflow, even for values near float64's limits.
        bound = float(np.abs(y).max()) or 1.0
        unit = y / bound
        unit_mean, unit_std = float(unit.mean()), float(unit.std())
        self.target_mean_ = unit_mean * bound
        if unit_std > 0:
            self.target_scale_ = unit_std * bound
            targets = ((unit - unit_mean) / unit_std).astype(np.float32)
        else:
            self.target_scale_ = 1.0
            targets = np.zeros(len(y), dtype=np.float32)
        return self._fit(method, texts, targets)

    @staticmethod
    def _probe(features, targets, class_weights):
        from ._probe import probe_regressor

        return probe_regressor(features, targets)

    @staticmethod
    def _loss(output, target, weights):
        import torch

        return torch.nn.functional.mse_loss(output[:, 0], target)

    @staticmethod
    def _validation_score(outputs, targets):
        from sklearn.metrics import r2_score

        return float(r2_score(targets, outputs[:, 0]))

    def predict(self, X):
        """Predicted values, shape (n_samples,)."""
        outputs = self._raw_outputs(X)[:, 0].astype(np.float64)
        with np.errstate(over="ignore"):
            pred = outputs * self.target_scale_ + self.target_mean_
        if not np.isfinite(pred).all():
            warnings.warn(
                f"{int((~np.isfinite(pred)).sum())} prediction(s) exceed float64's range and are returned as "
                f"inf: the targets were fitted at a scale of {self.target_scale_:.3g}. Rescale y (e.g. divide "
                f"it by 1e300) before fitting.",
                SkllmWarning,
                stacklevel=2,
            )
        return pred
