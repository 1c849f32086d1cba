"""FineTuneClassifier and FineTuneRegressor: adapting the backbone itself behind fit/predict."""

import copy
import logging
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import softmax
from sklearn.utils.validation import check_is_fitted

from . import _models
from ._device import autocast, device_for_loading, resolve_device, resolve_dtype
from ._embed import pad_batch, pad_token_id, tokenize, truncation_warning
from ._live import LiveStateMixin
from ._methods import resolve_method
from ._validation import check_int, check_texts

logger = logging.getLogger(__name__)

# Batches are formed from texts of similar length within groups of this many
# batches, then the batches are shuffled: little padding, still random order.
_GROUP = 50


def _check_number(value, name, low, high=None, *, allow_none=False, strict_low=False):
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > low if strict_low else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"{'>' if strict_low else '>='} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name} must be a number {bound}{' or None' if allow_none else ''}, got {value!r}.")


def _length_grouped_batches(lengths, batch_size, rng):
    order = rng.permutation(len(lengths))
    batches = []
    step = batch_size * _GROUP
    for start in range(0, len(order), step):
        group = order[start : start + step]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


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
        epochs=3,
        batch_size=16,
        learning_rate=None,
        weight_decay=0.01,
        warmup_ratio=0.06,
        max_grad_norm=1.0,
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
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # -- validation ---------------------------------------------------------------
    def _validate_params(self):
        if self.pooling not in ("auto", "mean", "cls", "last"):
            raise ValueError(f"pooling={self.pooling!r} is not supported; use 'auto', 'mean', 'cls' or 'last'.")
        check_int(self.max_length, "max_length", 2)
        check_int(self.epochs, "epochs", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        check_int(self.verbose, "verbose", 0)
        _check_number(self.learning_rate, "learning_rate", 0, allow_none=True, strict_low=True)
        _check_number(self.weight_decay, "weight_decay", 0)
        _check_number(self.warmup_ratio, "warmup_ratio", 0, 1)
        _check_number(self.max_grad_norm, "max_grad_norm", 0, allow_none=True, strict_low=True)
        _check_number(self.validation_fraction, "validation_fraction", 0, 1, strict_low=True)
        for name in ("early_stopping", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        method = resolve_method(self.method)
        method.validate()
        return clone(method)

    def _check_y_length(self, texts, y):
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} texts but y has {len(y)} values; they must match row for row.")

    # -- building the network -------------------------------------------------------
    def _backbone(self, device):
        source = _models.resolve_model(self.model_name, self.revision)
        model, tokenizer = _models.load_backbone(source, device)
        return source, model, tokenizer

    def _build_network(self, backbone, n_features):
        import torch

        from ._methods._encoders import MLP, Network

        method = self.method_
        if not method.trains_backbone:
            head = MLP(n_features, self._n_outputs, tuple(method.hidden_layer_sizes), method.dropout)
            return head.to(torch.device(self.device_))
        if method.modifies_backbone:
            # peft and the adapters change the model in place; the shared,
            # loaded backbone must stay as it is for every other fit.
            backbone = copy.deepcopy(backbone)
        for p in backbone.parameters():
            p.requires_grad_(False)
        encoder = method.build(backbone)
        head = MLP(backbone.config.hidden_size, self._n_outputs, (), 0.1)
        network = Network(encoder, head, self.pooling_)
        network.to(torch.device(self.device_))
        return network

    def _restore_live(self):
        """Rebuild the trained network from hyperparameters and ``trainable_state_``."""
        import torch

        device = device_for_loading(self.device_)
        self.device_ = str(device)
        source, backbone, tokenizer = self._backbone(device)
        identity = _models.model_identity(source)
        if identity != self.model_identity_:
            import warnings

            warnings.warn(
                f"The files of model {self.model_name!r} changed since this model was fitted "
                f"({self.model_identity_} -> {identity}); its frozen weights now come from the new files.",
                UserWarning,
                stacklevel=3,
            )
        network = self._build_network(backbone, self.n_features_)
        state = {k: torch.from_numpy(np.array(v)) for k, v in self.trainable_state_.items()}
        result = network.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(
                f"The saved weights do not fit model {self.model_name!r} with method {self.method_.name!r}: "
                f"unexpected {result.unexpected_keys[:5]}. Was the model changed since fitting?"
            )
        network.to(device).eval()
        self.network_, self.tokenizer_ = network, tokenizer

    # -- inputs -----------------------------------------------------------------------
    def _head_embedder(self):
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
        )

    def _inputs(self, texts, *, warn=True):
        """Token ids (or cached features for the head method) for ``texts``."""
        import warnings

        if not self.method_.trains_backbone:
            with warnings.catch_warnings(record=not warn):
                return self.embedder_.transform(texts)
        ids, n_tokens = tokenize(self.tokenizer_, texts, self.max_length_)
        if warn:
            truncation_warning(int((np.asarray(n_tokens) > self.max_length_).sum()), len(texts), self.max_length_, 3)
        return ids

    def _batch_tensors(self, inputs, batch, device):
        import torch

        if isinstance(inputs, np.ndarray):
            return (torch.from_numpy(inputs[batch]).to(device),)
        return pad_batch(inputs, batch, self._pad_id, device)

    @property
    def _pad_id(self):
        return pad_token_id(self.tokenizer_)

    def _outputs(self, inputs):
        """Raw network outputs for all rows of ``inputs``, in input order."""
        import torch

        device = torch.device(self.device_)
        network = self.network_
        network.eval()
        n = len(inputs)
        if isinstance(inputs, np.ndarray):
            order = np.arange(n)
        else:
            order = np.argsort([-len(row) for row in inputs], kind="stable")
        out = np.empty((n, self._n_outputs), dtype=np.float32)
        step = self.batch_size * 2
        with torch.inference_mode(), autocast(device, self.dtype_):
            for start in range(0, n, step):
                batch = order[start : start + step]
                out[batch] = network(*self._batch_tensors(inputs, batch, device)).float().cpu().numpy()
        return out

    # -- training -------------------------------------------------------------------------
    def _fit(self, X, targets, *, stratify=None, class_weights=None):
        """Shared fit: ``targets`` are class indices (int64) or scaled floats."""
        import torch

        method = self._validate_params()
        texts = check_texts(X, estimator=self)
        self._check_y_length(texts, targets)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

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
        self.method_ = method
        self.device_, self.dtype_ = str(device), dtype
        self.tokenizer_ = tokenizer
        self.model_identity_ = _models.model_identity(source)
        self.pooling_, self.max_length_ = pooling, max_length
        if not method.trains_backbone:
            self.embedder_ = self._head_embedder().fit()
        inputs = self._inputs(texts)
        self.n_features_ = inputs.shape[1] if isinstance(inputs, np.ndarray) else backbone.config.hidden_size

        train_idx, valid_idx = np.arange(len(texts)), None
        if self.early_stopping:
            try:
                train_idx, valid_idx = train_test_split(
                    train_idx, test_size=self.validation_fraction, random_state=seed, stratify=stratify
                )
            except ValueError:  # a class too small to stratify
                train_idx, valid_idx = train_test_split(
                    train_idx, test_size=self.validation_fraction, random_state=seed
                )

        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if keep:
                network = self.network_
            else:
                vars(self).pop("network_", None)
                network = self._build_network(backbone, self.n_features_)
            self.network_ = network
            self._train(network, inputs, targets, train_idx, valid_idx, class_weights, rng, device)
        network.eval()
        trainable = {n for n, p in network.named_parameters() if p.requires_grad}
        self.trainable_state_ = {
            n: t.detach().float().cpu().numpy().copy() for n, t in network.state_dict().items() if n in trainable
        }
        self.n_trainable_params_ = int(sum(v.size for v in self.trainable_state_.values()))
        return self

    def _same_model(self, method):
        """Whether warm_start may continue from the fitted weights."""
        return repr(method) == repr(self.method_)

    def _commit_targets(self):
        """Record what the targets define (the classes) once the warm-start decision is made."""

    def _train(self, network, inputs, targets, train_idx, valid_idx, loss_weights, rng, device):
        import torch
        from tqdm.auto import tqdm

        params = [p for p in network.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        lr = self.learning_rate if self.learning_rate is not None else self.method_.default_learning_rate
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
        )
        lengths = (
            np.ones(len(inputs), dtype=np.int64)
            if isinstance(inputs, np.ndarray)
            else np.fromiter((len(r) for r in inputs), dtype=np.int64, count=len(inputs))
        )
        steps_per_epoch = -(-len(train_idx) // self.batch_size)
        total = steps_per_epoch * self.epochs
        warmup = int(self.warmup_ratio * total)

        def schedule(step):
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        targets_t = torch.as_tensor(targets)
        weights_t = None if loss_weights is None else torch.as_tensor(loss_weights, dtype=torch.float32).to(device)

        self.loss_curve_ = []
        self.validation_scores_ = [] if valid_idx is not None else None
        best_score, best_state, stale = -np.inf, None, 0
        self.n_iter_ = 0
        for epoch in range(self.epochs):
            network.train()
            batches = _length_grouped_batches(lengths[train_idx], self.batch_size, rng)
            running, seen = 0.0, 0
            with tqdm(
                total=len(batches), desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch", disable=not self.verbose
            ) as bar:
                for batch in batches:
                    rows = train_idx[batch]
                    with autocast(device, self.dtype_):
                        output = network(*self._batch_tensors(inputs, rows, device)).float()
                    loss = self._loss(output, targets_t[rows].to(device), weights_t)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    running += float(loss.detach()) * len(rows)
                    seen += len(rows)
                    bar.update(1)
                    bar.set_postfix(loss=f"{running / seen:.4f}")
            self.loss_curve_.append(running / seen)
            self.n_iter_ = epoch + 1
            message = f"epoch {epoch + 1}/{self.epochs}: loss {running / seen:.4f}"
            if valid_idx is not None:
                score = self._validation_score(self._outputs_of(network, inputs, valid_idx), targets[valid_idx])
                self.validation_scores_.append(score)
                message += f", validation score {score:.4f}"
                if score > best_score:
                    best_score, stale = score, 0
                    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                else:
                    stale += 1
            if self.verbose:
                print(message, flush=True)
            logger.info(message)
            if valid_idx is not None and stale >= self.n_iter_no_change:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
            self.best_validation_score_ = best_score

    def _outputs_of(self, network, inputs, rows):
        subset = inputs[rows] if isinstance(inputs, np.ndarray) else [inputs[i] for i in rows]
        return self._outputs(subset)

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
    II (``"full"``: all layers), and the parameter-efficient methods ``"lora"``,
    ``"prefix"``, ``"prompt"`` and ``"adapter"``. Methods are small objects with
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
        ``"adapter"``, or a method object such as ``LoRA(r=4)``.
    pooling : {"auto", "mean", "cls", "last"}, default="auto"
        How token states become one vector; ``"auto"`` is ``"last"`` for
        decoders and ``"mean"`` for encoders.
    max_length : int, default=128
        Tokens per text; longer texts are truncated with a warning. Capped at
        the model's positions (less the prompt tokens of ``"prompt"``).
    epochs : int, default=3
        Passes over the training data (the maximum with early stopping).
    batch_size : int, default=16
        Texts per optimisation step.
    learning_rate : float, default=None
        AdamW learning rate; ``None`` uses the method's default (head 1e-3,
        full 5e-5, lora 1e-3, prefix 5e-3, prompt 3e-2, adapter 1e-3).
    weight_decay : float, default=0.01
        AdamW weight decay, applied to weight matrices only.
    warmup_ratio : float, default=0.06
        Fraction of the steps with a linearly rising learning rate; it then
        decays linearly to zero.
    max_grad_norm : float, default=1.0
        Gradient clipping threshold; ``None`` disables clipping.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified), score it
        after each epoch, stop after ``n_iter_no_change`` epochs without
        improvement and keep the best epoch's weights.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    warm_start : bool, default=False
        Continue training the fitted weights on the next ``fit`` (same
        method, model and classes) instead of starting anew.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, dropout, shuffling and the validation split;
        the global random states are not touched. The same int gives the same
        model on the CPU.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Compute precision under autocast (weights stay float32).
    cache_dir : str, "auto" or None, default="auto"
        Embedding cache used by the ``"head"`` method.
    verbose : int, default=0
        ``1`` prints a progress bar per epoch over its batches, and the loss.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns.
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
        Validation accuracy after each epoch (with early stopping).
    best_validation_score_ : float
        Best validation accuracy (with early stopping).
    n_iter_ : int
        Epochs run.
    network_ : torch.nn.Module
        The trained network; rebuilt from the backbone and ``trainable_state_``
        after unpickling.
    tokenizer_ : transformers tokenizer
        The backbone's tokenizer.
    embedder_ : TransformerEmbedder
        For ``"head"`` only: the embedder giving the (cached) features.
    model_identity_ : str
        Identifies the backbone weights.
    pooling_, max_length_, device_, dtype_ : str, int, str, str
        The values really used.
    n_features_ : int
        Width of the pooled representation.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, LoRA
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 4
    >>> y = ["pos", "pos", "neg", "neg"] * 4
    >>> clf = FineTuneClassifier(method=LoRA(r=4), epochs=2, random_state=0).fit(X, y)
    >>> clf.predict(["what a great film"]).tolist()
    ['pos']
    """

    def __init__(
        self,
        model_name=_models.DEFAULT_ENCODER,
        *,
        revision=None,
        method="lora",
        pooling="auto",
        max_length=128,
        epochs=3,
        batch_size=16,
        learning_rate=None,
        weight_decay=0.01,
        warmup_ratio=0.06,
        max_grad_norm=1.0,
        class_weight=None,
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

    @property
    def _n_outputs(self):
        return len(self.classes_)

    def fit(self, X, y):
        """Fit the model to texts ``X`` and labels ``y`` (any hashable values).

        Returns
        -------
        self : FineTuneClassifier
        """
        y = np.asarray(list(y) if not hasattr(y, "__array__") else y, dtype=object).ravel()
        bad = [i for i, v in enumerate(y) if v is None or (isinstance(v, float) and v != v)]
        if bad:
            raise ValueError(f"y has {len(bad)} missing label(s) (None or NaN) at positions {bad[:10]}.")
        try:
            classes, encoded = np.unique(y, return_inverse=True)
        except TypeError as exc:
            raise ValueError(f"The labels in y cannot be ordered (mixed types?): {exc}") from exc
        if len(classes) < 2:
            raise ValueError(f"y has a single class ({classes[0]!r}); a classifier needs at least 2.")
        if all(isinstance(c, (str, numbers.Number)) for c in classes):
            classes = np.asarray(classes.tolist())  # a plain dtype (str, int, float) where possible
        self._new_classes = classes
        weights = None
        if self.class_weight is not None:
            if self.class_weight != "balanced" and not isinstance(self.class_weight, dict):
                raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}.")
            if isinstance(self.class_weight, dict):
                unknown = set(self.class_weight) - set(classes.tolist())
                if unknown:
                    raise ValueError(f"class_weight names labels that are not in y: {sorted(map(repr, unknown))}.")
            weights = compute_class_weight(self.class_weight, classes=classes, y=np.asarray(classes)[encoded])
        try:
            return self._fit(X, encoded.astype(np.int64), stratify=encoded, class_weights=weights)
        finally:
            vars(self).pop("_new_classes", None)

    def _commit_targets(self):
        self.classes_ = self._new_classes

    def _same_model(self, method):
        previous = getattr(self, "classes_", None)
        return (
            repr(method) == repr(self.method_)
            and previous is not None
            and len(previous) == len(self._new_classes)
            and np.array_equal(self._new_classes, previous)
        )

    @staticmethod
    def _loss(output, target, weights):
        import torch

        return torch.nn.functional.cross_entropy(output, target, weight=weights)

    @staticmethod
    def _validation_score(outputs, targets):
        return float((outputs.argmax(axis=1) == targets).mean())

    def decision_function(self, X):
        """Logits: shape (n_samples,) for two classes (positive class minus negative), else (n, n_classes)."""
        logits = self._raw_outputs(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        return softmax(self._raw_outputs(X))

    def predict(self, X):
        """The most probable class of each text; always one of ``classes_``."""
        outputs = self._raw_outputs(X)
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
        try:
            y = np.asarray(y, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"y must be numeric for a regressor: {exc}") from exc
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise ValueError(f"y has {bad.size} missing or infinite value(s) at positions {bad[:10].tolist()}.")
        self.target_mean_ = float(y.mean())
        self.target_scale_ = float(y.std()) or 1.0
        targets = ((y - self.target_mean_) / self.target_scale_).astype(np.float32)
        return self._fit(X, targets)

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
        return self._raw_outputs(X)[:, 0] * self.target_scale_ + self.target_mean_
