"""What the in-context estimators share: loading the causal LM, templates, fitting prompts."""

import inspect
import os
import string
import warnings

from sklearn.base import BaseEstimator

from ._api import OpenAIChat, add_usage, as_messages
from ._architecture import positions
from ._cache import resolve_cache_dir
from ._device import resolve_device, resolve_dtype, restore_placement
from ._live import LiveStateMixin
from ._models import check_fitted_files, load_backbone, model_identity, resolve_model
from ._prompting import encode, fit_text, wrap
from ._tokens import user_stacklevel
from ._validation import _describe_positions, check_bool, check_int
from .exceptions import APIRequestError, TruncationWarning


def template_fields(template, name):
    if not isinstance(template, str):
        raise ValueError(f"{name} must be a format string, got {template!r}.")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid format string: {exc}") from exc
    return fields


def check_examples_field(template, n_examples):
    """Refuse a ``template`` without ``{examples}`` where the ``n_examples`` demonstrations go into it.

    Call only where they do (no chat turns for them): the prompts would silently be zero-shot.
    """
    if n_examples and "examples" not in template_fields(template, "template"):
        raise ValueError(
            f"template={template!r} has no {{examples}} field, so the n_examples={n_examples} demonstrations "
            f"would be left out of every prompt. Put {{examples}} where they go (e.g. at the start), or use "
            f"n_examples=0 for zero-shot prompts."
        )


def check_template(template, name, required, allowed):
    """Raise a ``ValueError`` unless ``template`` has every ``required`` field and only ``allowed`` ones."""
    fields = template_fields(template, name)
    missing = required - fields
    unknown = fields - allowed
    if missing or unknown:
        # A field that is no plain name is most likely literal text in braces (JSON, code) meant as such.
        literal = any(not f.isidentifier() for f in unknown)
        hint = " Literal braces (JSON, code) are written doubled: {{ and }}." if literal else ""
        raise ValueError(
            f"{name}={template!r} must contain {sorted('{' + f + '}' for f in required)} and may contain "
            f"{sorted('{' + f + '}' for f in allowed)}; "
            + (f"missing {sorted(missing)}" if missing else f"unknown fields {sorted(unknown)}")
            + "."
            + hint
        )
    try:  # a format spec or conversion that text cannot take ("{text:d}", "{text!x}", "{label:{width}}")
        template.format(**dict.fromkeys(fields, "text"))
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"{name}={template!r} cannot be filled with text: {exc!r}. Its fields are filled with strings: "
            f"write them plainly, e.g. {{text}}."
        ) from None


def cache_kwarg(model):
    """Name of the key/value-cache argument: transformers 5.2x renamed past_key_values to cache."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output):
    """The key/value cache a forward pass returned (``cache`` since transformers 5.2x, ``past_key_values`` before)."""
    return output["cache"] if "cache" in output else output["past_key_values"]


class LMEstimator(LiveStateMixin, BaseEstimator):
    """Loading, prompting and pickling shared by the in-context estimators."""

    # What fit loads and how: set after fit, predict would not read them (refused until the next fit).
    _load_params = ("model_name", "revision", "max_length", "use_chat_template", "dtype", "device")

    _live_attributes = ("model_", "tokenizer_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def __setstate__(self, state):
        # Estimators pickled by skllm 0.1 had no cache_dir (the de-quantised
        # default LM always went to the default cache, which "auto" still means).
        if "cache_dir" in self._get_param_names():
            state.setdefault("cache_dir", "auto")
        super().__setstate__(state)

    def _source(self):
        name = self.model_name
        if isinstance(name, str) and name.startswith("openai:"):  # the command line's --llm form
            model, _, url = name[len("openai:") :].partition("@")
            given = f"{model!r}" + (f", base_url={url!r}" if url else "")
            raise ValueError(
                f"model_name={name!r} is how the command line names an endpoint's model; in Python pass "
                f"model_name=OpenAIChat({given})."
            )
        return resolve_model(name, self.revision, cache_dir=self.cache_dir)

    @property
    def _prompts_api(self):
        """Whether the model is a chat endpoint (an :class:`OpenAIChat`) rather than a local causal LM."""
        return isinstance(self.model_name, OpenAIChat)

    def _load(self):
        if self._prompts_api:
            # The endpoint tokenizes and templates for itself: prompts are chat messages, never cut here.
            self.model_, self.tokenizer_ = self.model_name.connect(self.cache_dir), None
            self.model_identity_ = self.model_name.identity()
            self.device_, self.dtype_ = "api", None
            self.max_length_ = int(self.max_length)
            self.uses_chat_template_ = True
            self.usage_ = {}
            self._record_load_params()
            return
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        source = self._source()
        model, tokenizer = load_backbone(source, device, kind="causal-lm")
        self.model_, self.tokenizer_ = model, tokenizer
        self.model_identity_ = model_identity(source)
        self.device_, self.dtype_ = str(device), dtype
        self.max_length_ = min(int(self.max_length), positions(model, tokenizer))
        self.uses_chat_template_ = bool(self.use_chat_template and getattr(tokenizer, "chat_template", None))
        self._record_load_params()

    def _restore_live(self):
        if self._prompts_api:
            identity = self.model_name.identity()  # base_url=None: the environment's OPENAI_BASE_URL of now
            if identity != self.model_identity_:
                warnings.warn(
                    f"This {type(self).__name__} was fitted on {self.model_identity_} and now prompts {identity} "
                    f"(base_url={self.model_name.base_url!r}, OPENAI_BASE_URL="
                    f"{os.environ.get('OPENAI_BASE_URL')!r}), with what fit computed from the other endpoint's "
                    f"answers (its calibration, where it has one): fit it again, or point it back.",
                    UserWarning,
                    stacklevel=4,
                )
            self.model_, self.tokenizer_ = self.model_name.connect(self.cache_dir), None
            return
        source = self._source()
        consequence = (
            "it now prompts the new model, with what fit computed from the old one (the label wordings' tokens, "
            "the calibration prior): fit it again."
        )
        check_fitted_files(self.model_identity_, source, self.model_name, consequence)
        device = restore_placement(self)
        self.model_, self.tokenizer_ = load_backbone(source, device, kind="causal-lm")

    def _check_common(self):
        check_int(self.max_length, "max_length")
        check_int(self.batch_size, "batch_size")
        check_bool(self.use_chat_template, "use_chat_template")
        # A local model may never reach the cache: an empty or dangling cache_dir is refused before any work.
        resolve_cache_dir(self.cache_dir)

    def _wrap(self, content):
        """The full prompt text for ``content``: through the chat template when the model has one.

        ``content`` is the user message, or a list of chat messages.
        """
        return wrap(self.tokenizer_, content, self.uses_chat_template_)

    def _encode(self, text):
        return encode(self.tokenizer_, text, self.uses_chat_template_)

    def _fit_prompt(self, render, n_examples, query, row=None):
        """Token ids of the prompt, dropping demonstrations (then cutting the query) to fit.

        ``render(k, query)`` returns the prompt content with the last ``k``
        demonstrations. Returns ``(ids, dropped_examples, query_cut)``; for a
        chat endpoint, whose length limit only it knows, the chat messages
        with every demonstration in place of the ids.
        """
        if self.tokenizer_ is None:
            return as_messages(render(n_examples, query)), 0, False
        for k in range(n_examples, 0, -1):
            ids = self._encode(self._wrap(render(k, query)))
            if len(ids) <= self.prompt_budget_:
                return ids, n_examples - k, False
        # Without demonstrations; if the text still does not fit, its start is kept.
        ids, cut = fit_text(
            self.tokenizer_,
            lambda q: self._encode(self._wrap(render(0, q))),
            query,
            self.prompt_budget_,
            max_length=self.max_length_,
            row=row,
        )
        return ids, n_examples, cut

    def _ask(self, prompts, *, max_tokens, logprobs=None, part_of=None):
        """The endpoint's answers to ``prompts`` (chat messages); the usage is added to ``usage_``.

        ``part_of``: what the prompts are, for an error to name the failed one (see ``Endpoint.ask``).
        """
        chat = self.model_name
        # set_params may have swapped it for one with another key or timeout, or changed cache_dir.
        self.model_.follow(chat, self.cache_dir)
        # usage_ is replaced, never updated in place: a shallow copy of the estimator counts its own requests.
        try:
            answers, usage = self.model_.ask(
                prompts, max_tokens=chat.max_tokens or max_tokens, logprobs=logprobs, part_of=part_of
            )
        except APIRequestError as exc:
            self.usage_ = add_usage(dict(self.usage_), exc.usage)  # those answered before the failure are billed
            raise
        self.usage_ = add_usage(dict(self.usage_), usage)
        return answers

    def _fit_prompts(self, texts, selections, render):
        """Token ids of the prompt of every text, with one warning per call for those that were cut.

        ``selections`` holds the demonstrations of each text (least relevant
        first); ``render(indices, k, query)`` renders the last ``k`` of them.
        """
        prompts, dropped, cut = [], [], []
        for row, (text, indices) in enumerate(zip(texts, selections)):
            # With too long a prompt, the demonstrations furthest from the text
            # (the first rendered) go first.
            ids, d, c = self._fit_prompt(lambda k, q, idx=indices: render(idx, k, q), len(indices), text, row)
            prompts.append(ids)
            if c:
                cut.append(row)
            elif d:
                dropped.append(row)
        # What a prompt may take: max_length_, less what is kept for the answer (a generator's max_new_tokens).
        kept = self.max_length_ - self.prompt_budget_
        limit = f"max_length={self.max_length_} tokens" + (f" less the {kept} kept for the answer" if kept else "")
        if dropped:
            warnings.warn(
                f"{len(dropped)} of {len(texts)} prompts were longer than {limit}; "
                f"demonstrations were left out of them to fit, the texts kept whole (at "
                f"{_describe_positions(dropped)}).",
                TruncationWarning,
                stacklevel=user_stacklevel(),  # fit's caller or predict's, through paths of different depths
            )
        if cut:
            warnings.warn(
                f"{len(cut)} of {len(texts)} texts did not fit in {limit} even without "
                f"demonstrations and were truncated (at {_describe_positions(cut)}).",
                TruncationWarning,
                stacklevel=user_stacklevel(),
            )
        return prompts
