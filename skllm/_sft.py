"""FineTuneGenerator: supervised fine-tuning of a causal LM to produce target texts."""

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._architecture import positions
from ._cache import resolve_cache_dir
from ._causal import (
    IGNORE,
    build_example,
    check_generative_method,
    mean_token_loss,
    pad_examples,
    sequence_loss,
    warn_long_targets,
)
from ._device import autocast, resolve_device, resolve_dtype, restore_placement
from ._live import LiveStateMixin, check_saved_state, put_back_trained_state
from ._lm import check_template
from ._methods import NamedMethodParamsMixin, resolve_method, same_method
from ._models import DEFAULT_CAUSAL_LM, check_fitted_files, load_backbone, model_identity, resolve_model
from ._prompting import MIN_TEMPERATURE, decode_answer, encode, end_ids, fit_text, generate, prompt_budget, wrap
from ._scoring import SCORERS, check_lengths, chrf  # noqa: F401 (chrf: skllm._sft.chrf stays importable)
from ._seen_rows import seen_rows
from ._splits import validation_split
from ._tokens import pad_token_id, user_stacklevel
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
from ._validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_random_state_param,
    check_target_texts,
    check_texts,
)
from .exceptions import SkllmWarning, TruncationWarning

logger = logging.getLogger(__name__)

METRICS = tuple(SCORERS)


class FineTuneGenerator(NamedMethodParamsMixin, LiveStateMixin, BaseEstimator):
    """Teach a causal LM to produce target texts (supervised fine-tuning), with any method.

    ``fit(X, y)`` trains the model to answer each input text of ``X`` with its
    target text in ``y``: the input is put in the prompt (through the model's
    chat template when it has one) and the loss covers the target tokens and
    the end-of-sequence token only, never the prompt's. ``predict(X)``
    generates the answers, batched with left padding, greedily by default.

    The methods are those of :class:`FineTuneClassifier` that apply to a
    causal LM: ``"lora"``, ``"full"``, ``"prompt"`` and ``"adapter"`` (names or
    objects such as ``LoRA(r=4)``, tunable as ``method__r``). ``"head"``
    (a classifier on frozen features) and ``"prefix"`` are refused with a
    ``ValueError``.

    Parameters
    ----------
    model_name : str, default="HuggingFaceTB/SmolLM2-135M-Instruct"
        A causal LM (Hub id or local folder); the default is the packaged
        SmolLM2-135M-Instruct.
    revision : str, default=None
        Branch, tag or commit of a Hub model.
    method : str or FineTuningMethod, default="lora"
        ``"lora"``, ``"full"``, ``"prompt"``, ``"adapter"`` or a method object.
    template : str, default="{text}"
        How an input becomes the prompt (the user's message with a chat
        model); must contain ``{text}``. Without a chat template the prompt is
        the rendered template followed by a line break.
    use_chat_template : bool, default=True
        Wrap the prompt in the model's chat template, when it has one.
    max_length : int, default=256
        Tokens of prompt plus target in training, of prompt plus answer in
        prediction. An input too long for it is cut (its end dropped) with a
        :class:`~skllm.exceptions.TruncationWarning`; a target too long is cut
        likewise (and then trained without its end-of-sequence token).
    max_new_tokens : int, default=32
        Longest generated answer, in tokens.
    stop_at_newline : bool, default=False
        Cut each answer at its first line break (generation stops at the
        end-of-sequence token in any case).
    do_sample : bool, default=False
        Sample the answers (with ``temperature`` and ``top_p``) instead of
        greedy decoding; reproducible with an int ``random_state``.
    temperature : float, default=1.0
        Sampling temperature.
    top_p : float, default=1.0
        Nucleus sampling: sample from the smallest set of tokens whose
        probabilities sum to ``top_p``.
    metric : {"exact_match", "chrf"}, default="exact_match"
        What ``score`` returns (and so what ``GridSearchCV`` maximises):
        the share of answers equal to their reference (both stripped), or the
        mean character n-gram F-score (chrF, for translation and rewriting).
    epochs : int, default=None
        Passes over the training pairs (the maximum with early stopping);
        ``None`` uses the method's default (3).
    batch_size : int, default=8
        Pairs per optimisation step (and prompts per generation batch).
    learning_rate : float, default=None
        AdamW learning rate; ``None`` uses the method's default (lora 1e-3,
        full 5e-5, prompt 3e-2, adapter 1e-3).
    weight_decay : float, default=0.01
        AdamW weight decay, on weight matrices only, the token embedding
        excepted where it is not also the output layer (as for
        :class:`FineTuneClassifier`; models saved before it was the default
        keep the 0.0 they were fitted with).
    warmup_ratio : float, default=0.06
        Fraction of the steps with a linearly rising learning rate; it then
        decays linearly to zero.
    max_grad_norm : float, default=1.0
        Gradient clipping threshold; ``None`` disables clipping.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the pairs, compute their mean loss
        per target token after each epoch, stop after ``n_iter_no_change``
        epochs without a lower one and keep the best epoch's weights.
    validation_fraction : float, default=0.1
        Share of the pairs held out for early stopping.
    n_iter_no_change : int, default=2
        Patience of early stopping, in epochs.
    warm_start : bool, default=False
        Continue training the fitted weights on the next ``fit`` (same
        method and model) instead of starting anew.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, dropout, shuffling and sampling; the global
        random states are not touched. The same int gives the same model on
        the CPU.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Compute precision under autocast (weights stay float32).
    cache_dir : str, "auto" or None, default="auto"
        Where the de-quantised packaged LM is kept.
    verbose : int, default=0
        ``1`` prints a progress bar per epoch and the loss.

    Attributes
    ----------
    method_ : FineTuningMethod
        The method used (a fresh copy of ``method``).
    trainable_state_ : dict of str to ndarray
        The trained parameters (float32 arrays): with LoRA the adapter only,
        all that a pickle holds besides hyperparameters.
    n_trainable_params_ : int
        Number of parameters training changed.
    loss_curve_ : list of float
        Mean loss per target token, for each epoch.
    validation_scores_ : list of float or None
        With early stopping: minus the mean loss per target token of the
        held-out pairs, after each epoch (higher is better).
    best_validation_score_ : float or None
        The best of ``validation_scores_`` (with early stopping; else None).
    n_iter_ : int
        Epochs run.
    uses_chat_template_ : bool
        Whether prompts went through the chat template.
    network_ : torch.nn.Module
        The adapted LM; rebuilt from the backbone and ``trainable_state_``
        after unpickling.
    tokenizer_ : transformers tokenizer
        The model's tokenizer.
    model_identity_, max_length_, device_, dtype_ : str, int, str, str
        The weights' identity and the values really used.

    Examples
    --------
    >>> from skllm import FineTuneGenerator, LoRA
    >>> X = ["Hund", "Katze", "Haus", "Baum"] * 2
    >>> y = ["dog", "cat", "house", "tree"] * 2
    >>> gen = FineTuneGenerator(method=LoRA(r=4), epochs=2, max_new_tokens=4, random_state=0)
    >>> gen = gen.fit(X, y)
    >>> answers = gen.predict(["Katze"])
    >>> answers.shape, type(answers[0])
    ((1,), <class 'str'>)
    """

    _live_attributes = ("network_", "tokenizer_")
    _load_params = ("model_name", "revision", "method", "max_length", "use_chat_template", "dtype", "device")

    def __init__(
        self,
        model_name=DEFAULT_CAUSAL_LM,
        *,
        revision=None,
        method="lora",
        template="{text}",
        use_chat_template=True,
        max_length=256,
        max_new_tokens=32,
        stop_at_newline=False,
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        metric="exact_match",
        epochs=None,
        batch_size=8,
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
        self.template = template
        self.use_chat_template = use_chat_template
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.stop_at_newline = stop_at_newline
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.metric = metric
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

    def __setstate__(self, state):
        # Models pickled before these parameters existed: what their fit did.
        for name, value in (
            ("early_stopping", False),
            ("validation_fraction", 0.1),
            ("n_iter_no_change", 2),
            ("warm_start", False),
        ):
            state.setdefault(name, value)
        check_saved_state(state)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        tags.target_tags.required = True  # the target texts
        return tags

    # -- validation -------------------------------------------------------------------
    def _check_answer_params(self):
        """The parameters that prompting and generation read: checked by fit and again by predict and score,
        as they may be set after fit."""
        check_template(self.template, "template", {"text"}, {"text"})
        check_int(self.batch_size, "batch_size")
        check_int(self.max_new_tokens, "max_new_tokens")
        check_bool(self.stop_at_newline, "stop_at_newline")
        check_bool(self.do_sample, "do_sample")
        check_number(self.temperature, "temperature", MIN_TEMPERATURE)
        check_number(self.top_p, "top_p", 0, 1, low_inclusive=False, high_inclusive=True)
        check_choice(self.metric, "metric", METRICS)

    def _validate_params(self):
        self._check_answer_params()
        check_bool(self.use_chat_template, "use_chat_template")
        check_int(self.max_length, "max_length", 8)
        resolve_cache_dir(self.cache_dir)  # refused before any work, as for the other estimators
        if self.epochs == 0 and not isinstance(self.epochs, bool):
            raise ValueError(
                "epochs must be an integer >= 1 or None, got 0: fit always trains. For the pretrained model's answers, "
                "use FewShotGenerator(model_name, template=..., n_examples=0) (no chat template: end it with '\\n')."
            )
        check_training_params(self)
        check_bool(self.early_stopping, "early_stopping")
        check_number(self.validation_fraction, "validation_fraction", 0, 1, low_inclusive=False)
        check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        check_random_state_param(self.random_state)
        check_bool(self.warm_start, "warm_start")
        method = clone(resolve_method(self.method))
        check_generative_method(method)
        method.validate()
        return method

    # -- model ------------------------------------------------------------------------
    def _source(self):
        return resolve_model(self.model_name, self.revision, cache_dir=self.cache_dir)

    def _setup(self, method, seed):
        """Load the LM, set the fitted attributes that describe it and build a fresh network."""

        from ._causal import CausalNetwork

        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, device)
        source = self._source()
        lm, tokenizer = load_backbone(source, device, kind="causal-lm")
        keep = (
            self.warm_start
            and hasattr(self, "trainable_state_")
            and self._fitted_on(source)
            and same_method(method, getattr(self, "method_", None))
        )
        if tokenizer.eos_token_id is None:
            warnings.warn(
                f"The tokenizer of {self.model_name!r} has no end-of-sequence token: the model cannot learn where an "
                f"answer ends, and every answer runs to max_new_tokens={self.max_new_tokens}. Set "
                f"tokenizer.eos_token, or use stop_at_newline=True with one-line targets.",
                SkllmWarning,
                stacklevel=3,
            )
        self.method_ = method
        self.device_, self.dtype_ = str(device), dtype
        self.tokenizer_ = tokenizer
        self.model_identity_ = model_identity(source)
        self._record_load_params()
        self.max_length_ = int(min(self.max_length, method.text_positions(positions(lm, tokenizer))))
        self.uses_chat_template_ = bool(self.use_chat_template and getattr(tokenizer, "chat_template", None))
        prompt_budget(self.max_length_, self.max_new_tokens)
        vars(self).pop("network_", None)
        if keep:
            network = self._network_from_state(lm, device)
        else:
            with training_context(seed, device):
                network = CausalNetwork.build(method, lm).to(device)
        network.eval()
        self.network_ = network
        self._record_state()
        return network

    def _record_state(self):
        self.trainable_state_ = {
            n: p.detach().float().cpu().numpy().copy() for n, p in self.network_.named_parameters() if p.requires_grad
        }
        self.n_trainable_params_ = int(sum(v.size for v in self.trainable_state_.values()))

    def _restore_live(self):
        device = restore_placement(self)
        source = self._source()
        consequence = "its frozen weights now come from the new files."
        check_fitted_files(self.model_identity_, source, self.model_name, consequence)
        lm, tokenizer = load_backbone(source, device, kind="causal-lm")
        with training_context(0, device):  # initial weights (then replaced) drawn apart from the user's generator
            network = self._network_from_state(lm, device)
        network.eval()
        self.network_, self.tokenizer_ = network, tokenizer

    def _network_from_state(self, lm, device):
        """The adapted LM rebuilt on ``lm`` with ``trainable_state_`` put back."""
        from ._causal import CausalNetwork

        network = CausalNetwork.build(self.method_, lm)
        what = f"model {self.model_name!r} with method {self.method_.name!r}"
        return put_back_trained_state(network, self.trainable_state_, what).to(device)

    # -- prompts and targets ------------------------------------------------------------------
    def _render(self, text):
        # Without a chat template, a line break ends the prompt: the answer is the next line.
        return wrap(self.tokenizer_, self.template.format(text=text), self.uses_chat_template_, plain_end="\n")

    def _encode_prompt(self, text):
        return encode(self.tokenizer_, self._render(text), self.uses_chat_template_)

    def _prompt_ids(self, texts, budgets, rows=None):
        """Token ids of each text's prompt, the text cut (with one warning) where it exceeds its budget."""
        prompts, cut = [], []
        for i, (text, budget) in enumerate(zip(texts, budgets)):
            ids, was_cut = fit_text(
                self.tokenizer_,
                self._encode_prompt,
                text,
                budget,
                max_length=self.max_length_,
                row=i,
                reserved="the answer (or target)",
            )
            if was_cut:
                cut.append(i)
            prompts.append(ids)
        if cut:
            # ``rows``: the caller's row of each text (DPO passes every prompt twice; a split passes its rows).
            rows = range(len(texts)) if rows is None else rows
            named = sorted({rows[i] for i in cut})
            warnings.warn(
                f"{len(named)} of {len(set(rows))} input texts (rows {named[:10]}) did not fit in max_length="
                f"{self.max_length_} tokens with their answer and were truncated (their end dropped).",
                TruncationWarning,
                stacklevel=user_stacklevel(),  # fit's caller or predict's, through paths of different depths
            )
        return prompts

    def _target_ids(self, targets):
        eos = self.tokenizer_.eos_token_id
        # A target's text is text: "<s>" or "</s>" in it (HTML, say) must not become the model's control tokens,
        # or the model would learn to end its answer there.
        ids = self.tokenizer_(targets, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return [row + ([eos] if eos is not None else []) for row in ids]

    def _examples(self, texts, targets, rows=None):
        """``(ids, labels)`` lists of the training pairs; prompts masked in the labels.

        ``rows``: the row of each pair that warnings name (default: its position). Pairs of
        one row (DPO's chosen and rejected answers to a prompt) share one cut of the prompt, the
        one that fits the longest of their targets: their answers are scored after the same text.
        """
        target_ids = self._target_ids(targets)
        base = len(self._encode_prompt(""))
        room = self.max_length_ - base - 1  # at least one token of input text
        long_targets = [i for i, t in enumerate(target_ids) if len(t) > room]
        if long_targets:
            if room < 1:
                raise ValueError(f"max_length={self.max_length_} leaves no room for a target after the template.")
            named = sorted({(range(len(targets)) if rows is None else rows)[i] for i in long_targets})
            warnings.warn(
                f"{len(long_targets)} of {len(targets)} targets (rows {named[:10]}) are longer than the "
                f"{room} tokens max_length={self.max_length_} leaves them and were cut: the model learns their "
                f"start only, without the end of the answer.",
                TruncationWarning,
                stacklevel=3,
            )
            for i in long_targets:
                target_ids[i] = target_ids[i][:room]
        budgets = [self.max_length_ - len(t) for t in target_ids]
        if rows is not None:
            least = {}
            for row, budget in zip(rows, budgets):
                least[row] = min(least.get(row, budget), budget)
            budgets = [least[row] for row in rows]
        prompts = self._prompt_ids(texts, budgets, rows)
        pairs = [build_example(p, t) for p, t in zip(prompts, target_ids)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    # -- fit ----------------------------------------------------------------------------
    def fit(self, X, y):
        """Train the model to answer each text of ``X`` with the text of ``y`` in the same row.

        Returns
        -------
        self : FineTuneGenerator
        """
        method = self._validate_params()
        texts = check_texts(X, estimator=self)
        targets = check_target_texts(y, len(texts), estimator=self, stop_at_newline=self.stop_at_newline)
        import torch

        with keep_state_on_error(self):
            rng = check_random_state(self.random_state)
            seed = draw_seed(rng)
            network = self._setup(method, seed)
            ids, labels = self._examples(texts, targets)
            warn_long_targets(self._target_ids(targets), self.max_new_tokens, self.tokenizer_.eos_token_id is not None)
            device = torch.device(self.device_)
            with training_context(seed, device):
                self._train(network, ids, labels, rng, seed, device)
            network.eval()
            self._record_state()
            release_memory(device)
        return self

    def _train(self, network, ids, labels, rng, seed, device):
        rows = np.arange(len(ids))
        train_rows, valid_rows = rows, None
        if self.early_stopping:
            train_rows, valid_rows = validation_split(rows, self.validation_fraction, seed, what="pairs")
        epochs = self.epochs if self.epochs is not None else self.method_.default_epochs
        lengths = np.fromiter((len(ids[i]) for i in train_rows), dtype=np.int64, count=len(train_rows))
        pad = pad_token_id(self.tokenizer_)

        def step_loss(batch):
            input_ids, mask, batch_labels = pad_examples(ids, labels, batch, pad, device)
            with autocast(device, self.dtype_):  # weighed by its target tokens: loss_curve_ is per target token
                return sequence_loss(network, input_ids, mask, batch_labels), int((batch_labels[:, 1:] != IGNORE).sum())

        def validate():
            return -mean_token_loss(network, ids, labels, valid_rows, pad, device, self.dtype_, self.batch_size)

        with seen_rows(network, [*ids, [pad]]):  # see _seen_rows.py
            steps = -(-len(train_rows) // self.batch_size) * epochs
            optimisation = Optimisation.of(self, network, total_steps=steps, device=device)
            result = train_epochs(
                optimisation,
                network,
                epochs=epochs,
                batches=lambda epoch: [train_rows[b] for b in length_grouped_batches(lengths, self.batch_size, rng)],
                step_loss=step_loss,
                validate=validate if valid_rows is not None else None,
                n_iter_no_change=self.n_iter_no_change,
                verbose=self.verbose,
            )
        self.loss_curve_, self.n_iter_ = result.loss_curve, result.n_iter
        self.validation_scores_ = result.validation_scores
        # None without early stopping, not a previous fit's score.
        self.best_validation_score_ = result.best_validation_score

    # -- generation -------------------------------------------------------------------------
    def _generate_ids(
        self,
        prompts,
        *,
        network=None,
        do_sample=None,
        seed=None,
        max_new_tokens=None,
        temperature=None,
        top_p=None,
        keep_eos=False,
    ):
        """The generated token ids of each prompt (a list of id lists), cut at end-of-sequence.

        ``keep_eos`` keeps the end-of-sequence token where the answer ended with one;
        ``temperature`` and ``top_p``, where given, replace the estimator's for this call.
        """
        import torch

        from ._prompting import line_end_stop

        network = self.network_ if network is None else network
        do_sample = self.do_sample if do_sample is None else do_sample
        max_new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        tokenizer, device = self.tokenizer_, torch.device(self.device_)
        pad, eos = pad_token_id(tokenizer), end_ids(network._base(), tokenizer)
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": pad}
        if eos:
            options["eos_token_id"] = eos
        if do_sample:
            temperature = self.temperature if temperature is None else temperature
            top_p = self.top_p if top_p is None else top_p
            options.update(temperature=float(temperature), top_p=float(top_p), top_k=0)
        else:
            # The model's generation config may hold sampling settings; greedy ignores them.
            options.update(temperature=None, top_p=None, top_k=None)
        was_training = network.training
        network.eval()
        out = generate(
            lambda ids, mask: network.generate(ids, mask, **options, **line_end_stop(tokenizer, self.stop_at_newline)),
            prompts,
            pad_id=pad,
            device=device,
            dtype=self.dtype_,
            batch_size=self.batch_size,
            eos_ids=eos,
            keep_eos=keep_eos,
            seed=seed,
        )
        network.train(was_training)
        return out

    def _decode(self, tokens):
        return decode_answer(self.tokenizer_, tokens, self.stop_at_newline)

    def _seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)) if self.do_sample else None

    def predict(self, X):
        """The generated answer to each text, as a 1-D array of str."""
        check_is_fitted(self, "trainable_state_")
        self._check_answer_params()
        budget = prompt_budget(self.max_length_, self.max_new_tokens)
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        prompts = self._prompt_ids(texts, [budget] * len(texts))
        generated = self._generate_ids(prompts, seed=self._seed())
        return np.asarray([self._decode(t) for t in generated], dtype=object)

    def score(self, X, y):
        """``metric`` of the answers to ``X`` against the references ``y``: exact match (default) or chrF.

        Both are in [0, 1], higher is better; this is what ``GridSearchCV``
        uses unless given ``scoring=``.
        """
        check_is_fitted(self, "trainable_state_")
        self._check_answer_params()  # metric is read before predict runs
        texts = check_texts(X, estimator=self)
        expected = check_texts(y, name="y", estimator=self)
        check_lengths(texts, expected)
        return SCORERS[self.metric](self.predict(texts), expected)
