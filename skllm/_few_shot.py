"""FewShotClassifier: classify texts by prompting a local causal LM with labelled demonstrations."""

import warnings

from ._lm import check_examples_field, check_template
from ._models import DEFAULT_CAUSAL_LM
from ._prompt_classifier import CLASSIFIER_DOC_PARAMS, PromptClassifier
from ._selection import BalancedSelection, NearestSelection, RandomSelection, resolve_embedder, resolve_selection
from ._targets import plain_labels, unique_labels
from ._training import keep_state_on_error
from ._validation import check_bool, check_int, check_random_state_param, check_texts

# The earlier default (estimators pickled with it keep it): demonstrations rendered
# inline into {examples}. The default now renders them like the text itself.
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nCategory: {label}\n\n"


class FewShotClassifier(PromptClassifier):
    __doc__ = (
        """Classify texts by prompting a local causal LM with labelled demonstrations.

    ``fit(X, y)`` records the classes and the pool of demonstrations; no weight
    changes. For each text, ``n_examples`` demonstrations are rendered with
    ``example_template`` into ``{examples}`` of the prompt, and every class is
    scored by the LM's log-likelihood of its wording.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder); see :class:`ZeroShotClassifier`.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    n_examples : int, default=8
        Demonstrations per prompt (all of the pool when it has fewer). 8
        balanced demonstrations scored above 4 and 16 on the tuning samples of
        two datasets (see the in-context learning docs).
    example_selection : str or selection object, default="balanced"
        How the demonstrations are chosen: ``"balanced"``
        (:class:`~skllm.BalancedSelection`, the same for every text, drawn in
        turn from each class), ``"random"`` (:class:`~skllm.RandomSelection`),
        ``"nearest"`` (:class:`~skllm.NearestSelection`, for each text the most
        similar pool texts), ``"first"`` (:class:`~skllm.FirstSelection`), or
        such an object with its own parameters (cloned in ``fit``; tune them
        as ``example_selection__<name>``).
    balance_nearest : bool, default=False
        With ``"nearest"``, take the nearest examples of each class in turn.
    example_template : str or None, default=None
        How one demonstration is rendered. ``None``: exactly like the text to
        classify, followed by its answer, so the model sees the same question
        answered ``n_examples`` times before its own: with a chat model each
        demonstration is an earlier turn of the conversation (the user's
        message is ``template`` with the demonstration's text, the assistant's
        reply its wording), without one it is ``template`` with its text, a
        space and its wording. A string with ``{text}`` and ``{label}`` (e.g.
        ``"Text: {text}\\nCategory: {label}\\n\\n"``, the earlier default)
        is rendered into ``{examples}`` of the one prompt, for chat
        models too.
    embedder : str, TransformerEmbedder or None, default=None
        Encoder for ``"nearest"``: a model name, or a
        :class:`~skllm.TransformerEmbedder` (which carries its own
        ``revision``, pooling and length); ``None``: the default encoder
        (all-MiniLM-L6-v2). The name matches ``DocumentIndex(embedder=...)``
        and ``NearestSelection(embedder=...)``.
    embedder_model : str, default="deprecated"
        Former name of ``embedder``; still honoured, with a ``FutureWarning``,
        and removed in the next release.
    random_state : int, RandomState or None, default=None
        Makes the sampling of demonstrations reproducible."""
        + CLASSIFIER_DOC_PARAMS
        + """

    Attributes
    ----------
    classes_, label_words_, model_, tokenizer_, uses_chat_template_, template_ :
        As for :class:`ZeroShotClassifier`.
    label_prior_, calibrated_on_ :
        As for :class:`ZeroShotClassifier`: the prior is estimated with these
        demonstrations, on pool texts that are not among them.
    examples_ : list of (str, label)
        The pool of demonstrations.
    example_selection_ : selection object
        The fitted strategy (for ``"nearest"``, its embedder: no weights pickled).

    Examples
    --------
    >>> from skllm import FewShotClassifier
    >>> clf = FewShotClassifier(n_examples=2, random_state=0)
    >>> clf = clf.fit(["great fun", "dreadful", "a delight", "boring"], ["pos", "neg", "pos", "neg"])
    >>> clf.classes_.tolist()
    ['neg', 'pos']
    >>> clf.predict(["what a delightful film"]).tolist()
    ['...']
    """
    )

    def __init__(
        self,
        model_name=DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        template=None,
        n_examples=8,
        example_selection="balanced",
        balance_nearest=False,
        example_template=None,
        label_words=None,
        length_normalize=True,
        calibration="batch",
        embedder=None,
        embedder_model="deprecated",
        random_state=None,
        max_length=1024,
        batch_size=8,
        use_chat_template=True,
        device="auto",
        dtype="float32",
        cache_dir="auto",
    ):
        self.model_name = model_name
        self.revision = revision
        self.template = template
        self.n_examples = n_examples
        self.example_selection = example_selection
        self.balance_nearest = balance_nearest
        self.example_template = example_template
        self.label_words = label_words
        self.length_normalize = length_normalize
        self.calibration = calibration
        self.embedder = embedder
        self.embedder_model = embedder_model
        self.random_state = random_state
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir

    def set_params(self, **params):
        selection = params.get("example_selection", getattr(self, "example_selection", None))
        nested = sorted(k for k in params if k.startswith("example_selection__"))
        if nested and not hasattr(selection, "set_params"):
            # A name's strategy is built in fit ("nearest" from embedder and balance_nearest): nothing to set yet.
            raise ValueError(
                f"{', '.join(nested)} sets a parameter of a selection object, but example_selection={selection!r}. "
                f"Pass the object, e.g. example_selection=NearestSelection(balance=True), to tune its parameters "
                f"(with the name 'nearest', balance_nearest and embedder are its settings)."
            )
        return super().set_params(**params)

    def __setstate__(self, state):
        # Saved before ``embedder`` replaced ``embedder_model``: the name is kept as given.
        state.setdefault("embedder", None)
        # skllm 0.1 kept the choice in fixed_examples_ (or embedder_ and
        # pool_embeddings_ for "nearest"): rebuild the fitted strategy.
        if "examples_" in state and "example_selection_" not in state:
            fixed = state.pop("fixed_examples_", None)
            if fixed is not None:
                selection = (RandomSelection if state.get("example_selection") == "random" else BalancedSelection)()
                selection.indices_ = list(fixed)
            else:
                selection = NearestSelection(balance=state.get("balance_nearest", False))
                selection.embedder_ = state.pop("embedder_")
                selection.embeddings_ = state.pop("pool_embeddings_")
                selection.labels_ = [label for _, label in state["examples_"]]
                selection.n_examples_ = min(state["n_examples"], len(state["examples_"]))
            state["example_selection_"] = selection
        super().__setstate__(state)

    def _nearest(self):
        embedder = self.embedder
        if self.embedder_model != "deprecated":
            warnings.warn(
                "embedder_model was renamed embedder (as in DocumentIndex and NearestSelection); "
                "embedder_model will be removed in the next release.",
                FutureWarning,
                stacklevel=4,
            )
            if embedder is None:
                embedder = self.embedder_model
        embedder = resolve_embedder(embedder, cache_dir=self.cache_dir, device=self.device)
        return NearestSelection(embedder, balance=self.balance_nearest)

    # The demonstrations' settings too: fit chooses the pool, and the calibration prior is computed with them.
    _load_params = (
        *PromptClassifier._load_params,
        "n_examples",
        "example_selection",
        "balance_nearest",
        "example_template",
        "embedder",
        "embedder_model",
        "random_state",
    )

    def fit(self, X, y):
        """Record the classes and the pool of demonstrations, choose them if fixed, load the model."""
        template = self._check_classifier_params()
        check_int(self.n_examples, "n_examples", 0)
        check_random_state_param(self.random_state)
        check_bool(self.balance_nearest, "balance_nearest")
        selection = resolve_selection(self.example_selection, nearest=self._nearest)
        if self.example_template is not None:
            check_template(self.example_template, "example_template", {"text", "label"}, {"text", "label"})
        texts = check_texts(X, estimator=self)
        y = plain_labels(y, "y")
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} texts but y has {len(y)} labels; they must match row for row.")
        classes = unique_labels(y)
        with keep_state_on_error(self):  # a refused refit leaves the previous fit whole
            self._load()
            self._record_prompt_settings(template)
            self._example_template = self.example_template
            if self.example_template is not None or not self.uses_chat_template_:  # else chat turns hold them
                check_examples_field(self.template_, self.n_examples)
            self._set_classes(classes, y)
            self.examples_ = list(zip(texts, y))
            self.example_selection_ = selection.fit(
                texts, y, n_examples=self.n_examples, random_state=self.random_state
            )
            # A demonstration would see its own answer in its prompt, and so would a copy of it.
            shown = {texts[i] for i in getattr(self.example_selection_, "indices_", ())}
            rest = [i for i in range(len(texts)) if texts[i] not in shown]
            self._fit_calibration([texts[i] for i in rest], [y[i] for i in rest], self.random_state, pool_indices=rest)
        return self

    def _render(self, indices, k, text):
        """Prompt content (a string, or chat messages) with the last ``k`` demonstrations of ``indices``."""
        words = dict(zip(self.classes_.tolist(), self.label_words_))
        shown = [(self.examples_[i][0], words[self.examples_[i][1]]) for i in indices[len(indices) - k :]]
        # As fit checked it and computed the calibration prior with it (refused after fit: _load_params).
        example_template = getattr(self, "_example_template", self.example_template)
        if example_template is not None:
            return self._content(text, "".join(example_template.format(text=t, label=w) for t, w in shown))
        if self.uses_chat_template_:
            # Each demonstration is the same question as the text's, asked and answered earlier.
            messages = []
            for t, w in shown:
                messages += [{"role": "user", "content": self._content(t, "")}, {"role": "assistant", "content": w}]
            return [*messages, {"role": "user", "content": self._content(text, "")}]
        # Answered as the scored wording follows the prompt.
        return self._content(text, "".join(f"{self._content(t, '')}{self._answer_sep}{w}\n\n" for t, w in shown))

    def _prompts(self, texts, exclude=None):
        return self._fit_prompts(texts, self.example_selection_.select(texts, exclude=exclude), self._render)
