"""FewShotGenerator: generate text from text by prompting a local causal LM with example pairs."""

import uuid
import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._causal import warn_long_targets
from ._lm import LMEstimator, check_examples_field, check_template
from ._models import DEFAULT_CAUSAL_LM
from ._prompting import clean_answer, decode_answer, end_ids, generate, line_end_stop, prompt_budget
from ._scoring import check_lengths, exact_match
from ._selection import FirstSelection, RandomSelection, resolve_selection
from ._tokens import pad_token_id
from ._training import keep_state_on_error
from ._validation import check_bool, check_int, check_random_state_param, check_target_texts, check_texts
from .exceptions import SkllmWarning

DEFAULT_GENERATION_TEMPLATE = "{examples}Input: {text}\nOutput:"
DEFAULT_GENERATION_EXAMPLE_TEMPLATE = "Input: {text}\nOutput: {label}\n\n"


class FewShotGenerator(LMEstimator):
    """Generate text from text by prompting a local causal LM with example pairs.

    For tasks whose output is text (translation, rewriting, extraction):
    ``fit(X, y)`` stores demonstration pairs; ``predict(X)`` renders
    ``n_examples`` of them and the input into the prompt and generates the
    answer greedily (deterministic), up to ``max_new_tokens`` or the end of the
    line.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder); see :class:`ZeroShotClassifier`.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    template : str, default=None
        Prompt with ``{text}`` and ``{examples}``; ``None`` uses
        ``"{examples}Input: {text}\\nOutput:"``.
    example_template : str, default="Input: {text}\\nOutput: {label}\\n\\n"
        How one pair is rendered. With a chat model each pair is a turn of the
        conversation: the user says the part before ``{label}`` (rendered,
        trailing whitespace stripped) and the assistant answers the output
        (what follows ``{label}`` is not used); ``{text}`` must come before
        ``{label}``. The text itself is the last user turn, rendered with
        ``template``, so keep the two alike.
    n_examples : int, default=4
        Pairs per prompt.
    example_selection : str, selection object or None, default=None
        How the pairs are chosen, as for :class:`FewShotClassifier`
        (``"first"``, ``"random"``, ``"balanced"``, ``"nearest"`` or an
        object). ``None``: the first ``n_examples`` pairs when ``random_state``
        is None, else a random draw (``"random"``).
    max_new_tokens : int, default=64
        Longest answer, in tokens.
    stop_at_newline : bool, default=True
        End each answer at its first line break.
    random_state : int, RandomState or None, default=None
        Makes the choice of pairs reproducible.
    max_length, batch_size, use_chat_template, device, dtype, cache_dir :
        As for :class:`ZeroShotClassifier`.

    Attributes
    ----------
    examples_ : list of (str, str)
        The stored pairs.
    example_selection_ : selection object
        The fitted strategy that chooses the pairs of each prompt.
    model_, tokenizer_, uses_chat_template_, max_length_, device_, dtype_ :
        As for :class:`ZeroShotClassifier`.

    Examples
    --------
    >>> from skllm import FewShotGenerator
    >>> gen = FewShotGenerator(n_examples=3, max_new_tokens=10)
    >>> gen = gen.fit(["Hund", "Katze", "Haus"], ["dog", "cat", "house"])
    >>> answers = gen.predict(["Baum"])
    >>> answers.shape, type(answers[0])
    ((1,), <class 'str'>)
    """

    def __init__(
        self,
        model_name=DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        template=None,
        example_template=DEFAULT_GENERATION_EXAMPLE_TEMPLATE,
        n_examples=4,
        example_selection=None,
        max_new_tokens=64,
        stop_at_newline=True,
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
        self.example_template = example_template
        self.n_examples = n_examples
        self.example_selection = example_selection
        self.max_new_tokens = max_new_tokens
        self.stop_at_newline = stop_at_newline
        self.random_state = random_state
        self.max_length = max_length
        self.batch_size = batch_size
        self.use_chat_template = use_chat_template
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir

    # Read by fit (the model, and the demonstrations it chooses): refused after fit until the next.
    _load_params = (*LMEstimator._load_params, "n_examples", "example_selection", "random_state")

    def __setstate__(self, state):
        # skllm 0.1 had no example_selection: the pairs were in fixed_examples_.
        state.setdefault("example_selection", None)
        if "fixed_examples_" in state:
            selection = (FirstSelection if state.get("random_state") is None else RandomSelection)()
            selection.indices_ = list(state.pop("fixed_examples_"))
            state["example_selection_"] = selection
        super().__setstate__(state)

    def _nearest(self):
        from ._embed import TransformerEmbedder
        from ._selection import NearestSelection

        return NearestSelection(TransformerEmbedder(cache_dir=self.cache_dir, device=self.device))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True  # the answers to show (and check) even with n_examples=0
        return tags

    def fit(self, X, y):
        """Store the demonstration pairs, choose them if fixed, and load the model."""
        template = self._check_prompt_params()
        check_int(self.n_examples, "n_examples", 0)
        check_random_state_param(self.random_state)
        selection = self.example_selection
        if selection is None:
            selection = "first" if self.random_state is None else "random"
        selection = resolve_selection(selection, nearest=self._nearest)
        texts = check_texts(X, estimator=self)
        outputs = check_target_texts(y, len(texts), estimator=self, stop_at_newline=self.stop_at_newline)
        with keep_state_on_error(self):  # a refused refit leaves the previous fit whole
            self._load()
            if not self.uses_chat_template_:  # else chat turns hold the demonstrations
                check_examples_field(template, self.n_examples)
            self._check_example_template()
            self._check_budget()
            if self.n_examples and not self._prompts_api:  # answers imitate them (an endpoint counts its own tokens)
                ids = self.tokenizer_(outputs, add_special_tokens=False)["input_ids"]
                warn_long_targets(ids, self.max_new_tokens, ends_with_eos=False)
            self.examples_ = list(zip(texts, outputs))
            self.example_selection_ = selection.fit(
                texts, outputs, n_examples=self.n_examples, random_state=self.random_state
            )
        return self

    @property
    def prompt_budget_(self):
        """Tokens a prompt may take: ``max_length_`` less ``max_new_tokens``, which may be set after fit."""
        return self.max_length_ - self.max_new_tokens

    def _check_budget(self):
        # An endpoint tokenizes and limits lengths itself: max_length does not apply to it.
        if not self._prompts_api:
            prompt_budget(self.max_length_, self.max_new_tokens)

    def _check_prompt_params(self):
        """Check what prompting reads (fit, and predict: it may be set after fit); return the template."""
        self._check_common()
        template = self.template if self.template is not None else DEFAULT_GENERATION_TEMPLATE
        check_template(template, "template", {"text"}, {"text", "examples"})
        check_template(self.example_template, "example_template", {"text", "label"}, {"text", "label"})
        check_int(self.max_new_tokens, "max_new_tokens")
        check_bool(self.stop_at_newline, "stop_at_newline")
        return template

    def _question(self, text):
        """``example_template`` up to its ``{label}`` field, filled with ``text``: a chat demonstration's user turn.

        Cut where the field is, not at the first ``"{label}"`` of the string (``{{label}}`` is literal text).
        """
        cut = f"\x00{uuid.uuid4().hex}\x00"
        return self.example_template.format(text=text, label=cut).split(cut)[0].rstrip()

    def _check_example_template(self):
        """With a chat model, ``{text}`` must come before ``{label}`` (fit, and predict: it may be set after fit)."""
        mark = f"\x00{uuid.uuid4().hex}\x00"
        if self.uses_chat_template_ and mark not in self._question(mark):
            raise ValueError(
                f"example_template={self.example_template!r} must put {{text}} before {{label}} with a chat "
                f"model: the part before {{label}} is the user's turn of each pair, the output the assistant's."
            )

    def _fits(self, text):
        """Whether the prompt of ``text`` without demonstrations fits ``prompt_budget_`` (a chat endpoint's: yes)."""
        if self.tokenizer_ is None:
            return True
        return len(self._encode(self._wrap(self._render([], 0, text)))) <= self.prompt_budget_

    def _render(self, indices, k, text):
        """Prompt content with the last ``k`` of the pairs ``indices``."""
        template = self.template if self.template is not None else DEFAULT_GENERATION_TEMPLATE
        chosen = indices[len(indices) - k :] if k else []
        if self.uses_chat_template_:
            # A chat model follows demonstrations given as earlier turns of the
            # conversation; inside one message it tends to answer conversationally.
            # Each pair is the example template cut at {label}: the part before
            # it is the user's turn, the output the assistant's.
            messages = []
            for i in chosen:
                messages.append({"role": "user", "content": self._question(self.examples_[i][0])})
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
        template = self._check_prompt_params()
        if not self.uses_chat_template_:
            check_examples_field(template, self.n_examples)
        self._check_example_template()
        self._check_budget()
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        prompts = self._fit_prompts(texts, self.example_selection_.select(texts), self._render)
        if self._prompts_api:
            answers = self._ask(prompts, max_tokens=self.max_new_tokens, logprobs=False)
            empty = [i for i, a in enumerate(answers) if not a["text"].strip()]
            if empty:
                warnings.warn(
                    f"The endpoint answered {len(empty)} of {len(prompts)} prompts with nothing (rows {empty[:10]}): "
                    f"a refusal, a content filter or a model out of tokens. Their answers are empty strings; they "
                    f"are not cached, so predicting again asks again.",
                    SkllmWarning,
                    stacklevel=2,
                )
            return np.asarray([clean_answer(a["text"], self.stop_at_newline) for a in answers], dtype=object)
        pad, eos = pad_token_id(self.tokenizer_), end_ids(self.model_, self.tokenizer_)

        def new_tokens(ids, mask):
            # Greedy; an answer ends at the tokenizer's end-of-sequence token or the generation config's, whichever
            # comes first: a chat model's config may name another token than the end of its turn.
            out = self.model_.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                **({"eos_token_id": eos} if eos else {}),
                **line_end_stop(self.tokenizer_, self.stop_at_newline),
            )
            return out[:, ids.shape[1] :]

        generated = generate(
            new_tokens,
            prompts,
            pad_id=pad,
            device=torch.device(self.device_),
            dtype=self.dtype_,
            batch_size=self.batch_size,
            eos_ids=eos,
        )
        answers = [decode_answer(self.tokenizer_, tokens, self.stop_at_newline) for tokens in generated]
        return np.asarray(answers, dtype=object)

    def score(self, X, y):
        """Exact-match accuracy of the generated answers against ``y`` (both stripped).

        Makes ``GridSearchCV`` work out of the box; pass ``scoring=`` for other metrics.
        """
        texts = check_texts(X, estimator=self)
        expected = check_texts(y, name="y", estimator=self)
        check_lengths(texts, expected)
        return exact_match(self.predict(texts), expected)
