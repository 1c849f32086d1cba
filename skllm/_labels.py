"""LabelEncodedClassifier: any classifier that needs labels 0..n-1, with any labels."""

import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._validation import check_no_missing, check_one_label_type, check_ordered


def _estimator_has(attr):
    def check(self):
        est = getattr(self, "estimator_", self.estimator)
        return hasattr(est, attr)

    return check


class LabelEncodedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit a classifier on labels encoded as 0..n_classes-1 and decode its predictions.

    XGBoost's ``XGBClassifier`` (and some other libraries) accept only integer
    labels ``0..n_classes-1``. scikit-learn's ``TransformedTargetRegressor``
    covers regressors only, so this small wrapper does the same for
    classifiers: string or any other hashable labels go in, and ``predict``
    returns them, with ``classes_`` in sorted order like every scikit-learn
    classifier.

    Parameters
    ----------
    estimator : classifier
        Cloned and fitted on the encoded labels. Its parameters are tunable as
        ``estimator__<name>``. A ``class_weight`` dict among them (its own, or
        a nested one's) is keyed by the original labels: the clone gets it
        keyed by their codes.

    Attributes
    ----------
    estimator_ : classifier
        The fitted clone.
    classes_ : ndarray of shape (n_classes,)
        The original labels; column ``i`` of ``predict_proba`` is ``classes_[i]``.
    label_encoder_ : sklearn.preprocessing.LabelEncoder
        Maps ``classes_`` to ``0..n_classes-1``.
    n_features_in_ : int
        Number of features seen in ``fit`` (when the estimator records it).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skllm import LabelEncodedClassifier
    >>> X = np.array([[0.0], [0.1], [0.9], [1.0]])
    >>> clf = LabelEncodedClassifier(LogisticRegression()).fit(X, ["ham", "ham", "spam", "spam"])
    >>> clf.predict([[0.95]]).tolist()
    ['spam']
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.input_tags = inner.input_tags
        tags.non_deterministic = inner.non_deterministic
        return tags

    def fit(self, X, y, **fit_params):
        """Encode ``y``, then fit a clone of ``estimator`` on ``(X, encoded y)``.

        ``None`` or NaN in ``y`` is a ``ValueError`` naming its positions, not a class.
        """
        check_ordered(y, "y", "LabelEncodedClassifier ")
        if y is not None:  # scikit-learn's own message for a missing y
            labels = np.asarray(y, dtype=object).ravel()
            check_no_missing(labels, "y")
            check_one_label_type(labels)  # NumPy would turn 1 and "1" into one class "1"
        check_classification_targets(y)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        if get_config()["enable_metadata_routing"]:
            # As scikit-learn's meta-estimators: each parameter goes where the estimator requested it.
            fit_params = process_routing(self, "fit", **fit_params).estimator.fit
        self.estimator_ = self._encoded_weights(clone(self.estimator)).fit(
            X, self.label_encoder_.transform(y), **fit_params
        )
        for name in ("n_features_in_", "feature_names_in_"):  # as the fitted estimator has them, none from before
            if hasattr(self.estimator_, name):
                setattr(self, name, getattr(self.estimator_, name))
            elif name in vars(self):
                delattr(self, name)
        return self

    def get_metadata_routing(self):
        """Where metadata goes under ``sklearn.set_config(enable_metadata_routing=True)``: ``fit``'s to the
        estimator's ``fit``, as it requested; ``score``'s ``sample_weight`` to this estimator's own ``score``."""
        return (
            MetadataRouter(owner=type(self).__name__)
            .add_self_request(self)
            .add(estimator=self.estimator, method_mapping=MethodMapping().add(caller="fit", callee="fit"))
        )

    def _encoded_weights(self, estimator):
        """``estimator`` with each ``class_weight`` dict keyed by the codes of its labels, not the labels."""
        codes = {label: i for i, label in enumerate(self.classes_.tolist())}
        encoded = {}
        for name, weights in estimator.get_params(deep=True).items():
            if name.rpartition("__")[2] != "class_weight" or not isinstance(weights, dict):
                continue
            keys = [k.item() if isinstance(k, np.generic) else k for k in weights]
            unknown = [k for k in keys if k not in codes]
            unweighted = [label for label in codes if label not in keys]
            # As scikit-learn: a key of a class this y lacks (a fold without a rare class) is fine where every
            # class of y has a weight.
            if unknown and unweighted:
                raise ValueError(
                    f"estimator__{name} names labels that are not classes of y, {unknown!r}, and leaves the classes "
                    f"{unweighted!r} without a weight. Its keys are the labels of y, which LabelEncodedClassifier "
                    f"encodes for the estimator."
                )
            encoded[name] = {codes[k]: w for k, w in zip(keys, weights.values()) if k in codes}
        return estimator.set_params(**encoded)

    def predict(self, X):
        """Predict original labels."""
        check_is_fitted(self)
        codes = self.estimator_.predict(X)
        return self.label_encoder_.inverse_transform(codes.astype(int).ravel())

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision scores of the wrapped estimator."""
        check_is_fitted(self)
        return self.estimator_.decision_function(X)
