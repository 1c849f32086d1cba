"""What every fine-tuning method provides."""

from sklearn.base import BaseEstimator

from .._validation import check_int  # noqa: F401  (re-exported for the methods)


class FineTuningMethod(BaseEstimator):
    """A way of adapting a backbone: a small object holding its own hyperparameters.

    Being a scikit-learn estimator, it is cloned with the model that uses it,
    and ``GridSearchCV`` tunes its parameters as ``method__<name>``.

    A method turns a private copy of the backbone into an *encoder*: a
    ``torch.nn.Module`` whose ``forward(input_ids, attention_mask)`` returns the
    last hidden states aligned with ``attention_mask``, with exactly the
    parameters it trains set to ``requires_grad=True``.
    """

    #: name accepted by ``FineTuneClassifier(method=...)``
    name = ""
    #: AdamW learning rate used when ``learning_rate=None``
    default_learning_rate = 1e-4
    #: False when the backbone stays frozen and its features can be cached
    trains_backbone = True
    #: True when the method changes the backbone in place (it gets a copy)
    modifies_backbone = True

    def extra_positions(self):
        """Positions the method adds in front of the input (prompt tokens)."""
        return 0

    def validate(self):
        """Raise ``ValueError`` naming a bad hyperparameter."""

    def build(self, backbone):
        """Return the encoder built on ``backbone`` (a copy the method may modify)."""
        raise NotImplementedError


def check_float(value, name, low=0.0, high=None, low_inclusive=True):
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = value >= low if low_inclusive else value > low
        if high is not None:
            ok = ok and value < high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
        raise ValueError(f"{name} must be a number {bound}, got {value!r}.")
