"""FineTuneClassifier and FineTuneRegressor: adapting the backbone itself behind fit/predict."""

import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import softmax

from ._finetune_base import _FineTuneBase
from ._methods import same_method
from ._models import DEFAULT_ENCODER
from ._targets import _encode_labels, _multilabel_indicator, _numeric_targets
from ._validation import check_number, check_texts
from .exceptions import SkllmWarning


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
        AdamW weight decay, applied to weight matrices only; not to the token
        embedding, whose rows of tokens the texts never hold it would only shrink.
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
        2022). It costs one forward pass over the training texts; for the
        methods that start as the frozen backbone (LoRA, adapters, full, and
        partial with ``cache_frozen=False``) it is read from the embedding
        cache (``cache_dir``), so a cross-validation or grid search runs it
        once for all its fits.
        ``"random"``: PyTorch's default initialisation.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss; a dict maps labels of ``y`` to
        finite numbers > 0 (a class left out weighs 1). With a multi-label ``y``, only
        ``"balanced"``: each label is weighted as its own binary problem (its
        positive and negative texts as ``compute_class_weight`` would), as
        ``OneVsRestClassifier(LogisticRegression(class_weight="balanced"))`` does.
    threshold : float, default=0.5
        Multi-label ``y`` only: a label is predicted when its probability is
        above ``threshold`` (in (0, 1)). Read by ``predict`` (and the early
        stopping score), so it can be changed after fitting.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified; at random for
        a multi-label ``y``; a class of one text is trained on where the others
        leave enough texts to hold out), score
        it after each epoch (accuracy; micro-averaged F1 at ``threshold`` for a
        multi-label ``y``), stop after
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
        Embedding cache (:class:`TransformerEmbedder`'s) of the ``"head"``
        method's features and of the linear probe's; ``None``: none, the
        probe runs the network over the training texts at every fit.
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
    best_validation_score_ : float or None
        The best of ``validation_scores_`` (with early stopping; else None).
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
        weighting = self.class_weight
        if not (
            weighting is None or isinstance(weighting, dict) or (isinstance(weighting, str) and weighting == "balanced")
        ):
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
                # scikit-learn's rule: keys of labels y lacks (a fold's missing class) are fine where every
                # label of y has a weight; a class without one then counts 1, unless a key matched no label.
                unknown = set(self.class_weight) - set(classes.tolist())
                missing = [c for c in classes.tolist() if c not in self.class_weight]
                if unknown and missing:
                    raise ValueError(
                        f"class_weight names labels that are not in y ({', '.join(sorted(map(repr, unknown)))}) "
                        f"and gives no weight to labels of y ({', '.join(map(repr, missing))}): its keys must be "
                        f"the labels themselves, of their type."
                    )
                for label, weight in self.class_weight.items():
                    check_number(weight, f"class_weight[{label!r}]", 0, low_inclusive=False)
            weights = compute_class_weight(self.class_weight, classes=classes, y=np.asarray(classes)[encoded])
            # The loss scales them to a mean of 1 over the training texts; one that float32 then holds as 0
            # would leave its class no weight at all.
            small = np.flatnonzero(weights / weights.max() < np.finfo(np.float32).tiny)
            if small.size:
                label = classes.tolist()[small[0]]
                raise ValueError(
                    f"class_weight[{label!r}]={weights[small[0]]:g} is too small next to the largest weight "
                    f"({weights.max():g}) to be computed with: weights may differ by a factor of up to 1e37."
                )
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

    def _same_model(self, method):
        previous = getattr(self, "classes_", None)
        new = self._new_targets["classes_"]
        return (
            same_method(method, self.method_)
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
        if weights is None:
            return torch.nn.functional.cross_entropy(output, target)
        # Each text's loss times its class's weight, over the texts, as scikit-learn weighs samples: torch's
        # weighted mean (over the weights) cancels the weight of a batch of one class, which grouping by length
        # makes common where length goes with the class. The weights come scaled to a mean of 1 over the
        # training texts (_train), so the loss keeps the unweighted scale.
        return (torch.nn.functional.cross_entropy(output, target, reduction="none") * weights[target]).mean()

    def _train(self, network, inputs, targets, train_idx, valid_idx, loss_weights, rng, device):
        if loss_weights is not None and not getattr(self, "multilabel_", False):
            loss_weights = np.asarray(loss_weights, dtype=float) / np.mean(np.asarray(loss_weights)[targets[train_idx]])
        return super()._train(network, inputs, targets, train_idx, valid_idx, loss_weights, rng, device)

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
        logits = self._raw_outputs(X).astype(np.float64)  # as scikit-learn's classifiers return them
        if getattr(self, "multilabel_", False):
            return logits
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        For a multi-label ``y``: the probability of each label, shape (n_samples, n_labels);
        a row need not sum to one.
        """
        logits = self._raw_outputs(X).astype(np.float64)  # as scikit-learn's classifiers return them
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
    ``class_weight`` and ``threshold``), trained with the mean squared error on standardised
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
    _min_validation = 2  # R² of one row is undefined
    _held_out_targets_vary = True  # R² of equal targets is 0 whatever the predictions

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
        if unit_std > 0:
            scale = unit_std * bound
            targets = ((unit - unit_mean) / unit_std).astype(np.float32)
        else:
            scale = 1.0
            targets = np.zeros(len(y), dtype=np.float32)
        # Staged: a fit that fails keeps the previous model's scale with its weights.
        # _constant_targets: a y of one value has no scale, and a warm start must not keep the stand-in 1.0.
        self._new_targets = {
            "target_mean_": unit_mean * bound,
            "target_scale_": scale,
            "_constant_targets": not unit_std,
        }
        self._new_y = y
        try:
            return self._fit(method, texts, targets)
        finally:
            vars(self).pop("_new_targets", None)
            vars(self).pop("_new_y", None)

    def _commit_targets(self, keep, targets):
        if not (keep and hasattr(self, "target_scale_")) or getattr(self, "_constant_targets", False):
            # (after a fit on one value, the new y is standardised anew: there was no scale to continue)
            return super()._commit_targets(keep, targets)
        # A warm start continues the same function: the kept weights' outputs mean values at the kept
        # scale, so the new y is expressed at that scale rather than standardised anew.
        mean, scale = self.target_mean_, self.target_scale_
        with np.errstate(over="ignore"):
            kept = self._new_y / scale - mean / scale
        # Trained in float32: the squared errors of a batch must stay finite there too (a bound with room).
        if not (np.abs(kept) < np.sqrt(np.finfo(np.float32).max) / 1e3).all():
            raise ValueError(
                f"warm_start=True keeps the previous fit's target scale ({scale:.3g} around {mean:.3g}), at which "
                f"these targets overflow; fit with warm_start=False."
            )
        return kept.astype(np.float32)

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
