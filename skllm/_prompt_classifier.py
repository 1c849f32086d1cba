"""Classification by the LM's log-likelihood of each class's wording, shared by the zero- and few-shot classifiers.

No weights change. Every class is scored by the LM's log-likelihood of its
verbalisation after the prompt, so an answer is always one of the classes:
nothing is parsed from free text. The prompt is computed once per text; the
continuations of all classes reuse its key/value cache.
"""

import numbers
import re
import warnings

import numpy as np
from scipy.special import log_softmax, logsumexp
from sklearn.base import ClassifierMixin
from sklearn.utils.extmath import softmax
from sklearn.utils.validation import check_is_fitted

from ._answers import MIN_LEFT, class_logprobs, normalize, parse_label, starts_like
from ._api import CLASSIFIER_MAX_TOKENS, UNPARSED_CHOICES
from ._device import autocast
from ._lm import LMEstimator, cache_kwarg, check_template, output_cache
from ._prefix_tree import last_logits_kwargs, prefix_tree, repeat_cache
from ._tokens import pad_batch, pad_token_id
from ._validation import (
    check_bool,
    check_choice,
    check_texts,
    class_wordings,
    label_kind,
)
from .exceptions import SkllmWarning, TruncationWarning, UnparsedAnswerError, UnparsedAnswerWarning

DEFAULT_TEMPLATE = "{examples}Text: {text}\n\nWhich category fits the text: {labels}? Answer with one word."
# The default of skllm 0.1, kept for the estimators it pickled.
LEGACY_TEMPLATE = "Classify the text into one of these categories: {labels}.\n\n{examples}Text: {text}\nCategory:"
# Inputs that carry no content (Zhao et al., 2021): what the model answers for
# them, in the same prompt, is its prior over the class wordings.
CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
CALIBRATIONS = ("batch", "contextual", "domain", None)
# Labelled texts of fit whose mean class probabilities estimate the prior ("batch").
CALIBRATION_TEXTS = 32
# The least class probability "batch" and "contextual" calibration divide by. Far below
# what a model gives a wording it can say at all (a two-token wording of a 2-layer test
# model: 2e-8), it only keeps a class that no calibration prompt gives any probability
# (an endpoint's -inf) from an infinite prior, whose subtraction makes scores inf and NaN.
CALIBRATION_PRIOR_FLOOR = np.log(1e-30)
# Calibration prompts sent one at a time to an endpoint before concluding that it returns
# no log-probabilities: one refused or filtered answer must not turn calibration off.
LOGPROBS_PROBES = 3


class PromptClassifier(ClassifierMixin, LMEstimator):
    """Scoring of class verbalisations, shared by the zero- and few-shot classifiers."""

    _load_params = (*LMEstimator._load_params, "template", "label_words", "length_normalize", "calibration")

    def __setstate__(self, state):
        # Estimators pickled before calibration existed predict as they did:
        # uncalibrated, with the template that was the default then.
        if "classes_" in state and "template_" not in state:
            state.setdefault("calibration", None)
            state["label_prior_"] = state["calibrated_on_"] = None
            state["template_"] = state.get("template") or LEGACY_TEMPLATE
        prior, classes = state.get("label_prior_"), state.get("classes_")
        if prior is not None and classes is not None:
            # An altered file: a NaN prior predicts one class for every row, another length broadcasts.
            try:
                prior = np.asarray(prior, dtype=np.float64)
            except (TypeError, ValueError):  # not numbers at all
                prior = np.full(0, np.nan)
            if prior.shape != (len(classes),) or not np.all(np.isfinite(prior)):
                raise ValueError(
                    f"The saved label_prior_ must hold one finite number per class ({len(classes)}), got shape "
                    f"{prior.shape} with {int(np.sum(~np.isfinite(prior)))} not finite: the file was altered or "
                    f"damaged. Fit the model again."
                )
        super().__setstate__(state)

    def _check_classifier_params(self):
        self._check_common()
        allowed = {"text", "labels", "examples"}
        template = self.template if self.template is not None else DEFAULT_TEMPLATE
        check_template(template, "template", {"text"}, allowed)
        if self.label_words is not None and not isinstance(self.label_words, dict):
            raise ValueError(f"label_words must be a dict mapping each class to its wording, got {self.label_words!r}.")
        bad = {k: w for k, w in (self.label_words or {}).items() if not isinstance(w, str) or not w.strip()}
        if bad:
            raise ValueError(
                f"label_words must map each class to a non-empty string (the wording the model answers), got {bad!r}."
            )
        check_bool(self.length_normalize, "length_normalize")
        check_choice(self.calibration, "calibration", CALIBRATIONS)
        return template

    def _record_prompt_settings(self, template):
        """What this fit's prompts and calibration prior are made with; predict reads these (call where a refused
        fit is undone): the scores and the prior come from one prompt, whatever is set after fit (refused)."""
        self.template_ = template
        self._length_normalize = self.length_normalize

    def _set_classes(self, classes, y=None):
        classes = list(classes)
        self.label_words_ = class_wordings(classes, self.label_words or {}, "{labels}" in self.template_)
        self.classes_ = np.asarray(classes) if all(isinstance(c, (str, numbers.Number)) for c in classes) else None
        if self.classes_ is None:
            self.classes_ = np.empty(len(classes), dtype=object)
            self.classes_[:] = classes
        if self._prompts_api:
            # Answers are read as text, compared after normalize(): wordings must differ there too.
            norms = [normalize(w) for w in self.label_words_]
            clash = [w for w, n in zip(self.label_words_, norms) if not n or norms.count(n) > 1]
            if clash:
                raise ValueError(
                    f"The class wordings {clash!r} cannot be told apart in an endpoint's answers, which are "
                    f"compared in lower case without punctuation or symbols ({[normalize(w) for w in clash]!r}); "
                    f"give label_words in words, e.g. {{{self.classes_[self.label_words_.index(clash[0])]!r}: ...}}."
                )
            self._set_fallback(classes, y)
            self.prompt_budget_ = self.max_length_
            return
        # The continuation that is scored: the wording, after a space when the
        # prompt ends in plain text ("Category:"), as the model would write it.
        sep = "" if self.uses_chat_template_ else self._answer_sep
        self.label_ids_ = [self.tokenizer_(sep + w, add_special_tokens=False)["input_ids"] for w in self.label_words_]
        if any(len(ids) == 0 for ids in self.label_ids_):
            raise ValueError(f"A label wording encodes to no token: {self.label_words_!r}.")
        same = [w for w, ids in zip(self.label_words_, self.label_ids_) if self.label_ids_.count(ids) > 1]
        if same:
            # A tokenizer that normalises (NFC, lower case) can give two strings one encoding: equal scores.
            raise ValueError(
                f"The class wordings {same!r} encode to the same tokens for this model's tokenizer, so the model "
                f"cannot tell them apart; set label_words."
            )
        self.prompt_budget_ = self.max_length_ - max(len(ids) for ids in self.label_ids_)

    def _set_fallback(self, classes, y):
        """The class of answers that name none (``fallback_``: an index into ``classes_``, or None to raise)."""
        unparsed = self.model_name.unparsed
        if isinstance(unparsed, str) and unparsed in UNPARSED_CHOICES:
            if unparsed == "error":
                self.fallback_ = None
            else:
                counts = [0] * len(classes) if y is None else [list(y).count(c) for c in classes]
                self.fallback_ = int(np.argmax(counts))
            return
        # Compared with the kind of label, as fit compares y with the classes: True is not the class 1.
        matches = [i for i, c in enumerate(classes) if (label_kind(c), c) == (label_kind(unparsed), unparsed)]
        if not matches:
            raise ValueError(
                f"OpenAIChat(unparsed={unparsed!r}) must be one of {list(UNPARSED_CHOICES)} or one of the classes "
                f"{classes!r}."
            )
        self.fallback_ = matches[0]

    @property
    def _answer_sep(self):
        """What goes between a plain-text prompt and its answer: a space, none after a template ending in whitespace."""
        return "" if self.template_[-1:].isspace() else " "

    def _content(self, text, examples):
        return self.template_.format(text=text, labels=", ".join(self.label_words_), examples=examples)

    def _fit_calibration(self, texts=None, y=None, random_state=0, pool_indices=None):
        """Estimate the model's prior over the class wordings in this prompt (a few passes, once per fit).

        ``"batch"`` (Zhou et al., 2024): the class probabilities of up to
        ``CALIBRATION_TEXTS`` texts of ``fit``, as many of each class, averaged
        within each class and then over the classes;
        without texts, ``"contextual"`` is used. ``"contextual"`` (Zhao et
        al., 2021): the same for the content-free texts. ``"domain"``: the
        log-likelihood of each wording after the prompt with an empty text
        (domain-conditional PMI). ``decision_function`` subtracts the log of
        the prior. Every estimate uses the same prompt as a real text.
        ``pool_indices`` maps ``texts`` to the pool of demonstrations, so that
        a calibration text is never its own demonstration.
        """
        self.calibrated_on_ = None
        if self.calibration is None:
            self.label_prior_ = None
            return
        method = self.calibration
        if method == "batch" and texts is not None and not len(texts):
            warnings.warn(
                "calibration='batch' has no text of fit left to calibrate on (a FewShotClassifier leaves out its "
                "fixed demonstrations and their copies, here every text): calibrated on content-free texts instead "
                "(calibrated_on_='contextual'). Give more texts, or fewer n_examples.",
                SkllmWarning,
                stacklevel=3,
            )
        if method == "batch" and texts:
            # A prior averaged over some of the classes only would divide their signal out of the others.
            kinds = {(label_kind(v), v) for v in y}
            missing = [c for c in self.classes_.tolist() if (label_kind(c), c) not in kinds]
            if missing:
                warnings.warn(
                    f"calibration='batch' has no text of fit for the class(es) {missing!r} (a FewShotClassifier "
                    f"leaves out its fixed demonstrations and their copies): calibrated on content-free texts "
                    f"instead (calibrated_on_='contextual'). Give more texts of each class, or fewer n_examples.",
                    SkllmWarning,
                    stacklevel=3,
                )
                texts = None
        if method == "batch" and texts:
            from sklearn.utils import check_random_state

            from ._selection import balanced_order

            # Which texts estimate the prior must not change the model between fits.
            rng = check_random_state(0 if random_state is None else random_state)
            chosen = balanced_order(np.arange(len(texts)), [repr(v) for v in y], CALIBRATION_TEXTS, rng)
            sample = [texts[i] for i in sorted(chosen)]
            groups = np.array([repr(y[i]) for i in sorted(chosen)])
            exclude = None if pool_indices is None else self._copies([pool_indices[i] for i in sorted(chosen)])
        else:
            method = "contextual" if method == "batch" else method
            sample = list(CONTENT_FREE_TEXTS) if method == "contextual" else [""]
            groups, exclude = np.zeros(len(sample)), None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)
            try:
                prompts = self._prompts(sample, exclude=exclude)
            except ValueError as exc:
                if "leaves no room for the text" not in str(exc):
                    raise
                # The template's problem, found on a calibration prompt: "Row i" would name a row of X.
                where = f"A calibration prompt of fit (calibration={self.calibration!r}, no row of X): "
                raise ValueError(re.sub(r"^Row \d+: ", where, str(exc))) from None
            if self._prompts_api:
                scores, kept = self._api_prior_scores(prompts)
                if scores is None:
                    self.label_prior_ = None
                    return
                lost = sorted(set(groups) - set(groups[kept]))
                if method == "batch" and lost:  # every answer of a class read from its text
                    warnings.warn(
                        f"calibration='batch': the endpoint answered every calibration text of the class(es) "
                        f"{', '.join(lost)} without log-probabilities of a class (in a sentence, or refused), and a "
                        f"prior of the other classes alone would divide their signal out: calibrated on content-free "
                        f"texts instead (calibrated_on_='contextual').",
                        SkllmWarning,
                        stacklevel=3,
                    )
                    return self._fit_calibration()
                groups = groups[kept]
            else:
                scores = self._score_prompts(prompts)
        self.calibrated_on_ = method
        if method == "domain":
            self.label_prior_ = scores[0]
        else:
            # The mean class probabilities, in log space (no underflow to 0): within each class of y, then
            # over the classes, so that a class short of texts weighs as much as the others.
            log_p = log_softmax(scores, axis=1)
            means = [logsumexp(log_p[groups == g], axis=0) - np.log((groups == g).sum()) for g in np.unique(groups)]
            prior = logsumexp(means, axis=0) - np.log(len(means))
            self.label_prior_ = np.maximum(prior, CALIBRATION_PRIOR_FLOOR)

    # -- scoring ---------------------------------------------------------------------------
    def _api_scores(self, prompts, part_of=None):
        """The endpoint's answers as class scores: ``(scores, from_logprobs, unparsed rows, answer texts, returned)``.

        ``returned``: whether each answer came with log-probabilities at all.

        A row is the classes' log-probabilities when the answer came with
        them (:func:`~skllm._api.class_logprobs`), else 0 for the class its
        text names (:func:`~skllm._api.parse_label`) and log(1e-12) for the
        others: finite, so that a binary ``decision_function`` stays finite
        for ranking scorers (``"roc_auc"``). An unparsed row is all log(1e-12).
        """
        answers = self._ask(prompts, max_tokens=CLASSIFIER_MAX_TOKENS, part_of=part_of)
        scores = np.full((len(prompts), len(self.label_words_)), np.log(MIN_LEFT))
        from_logprobs = np.zeros(len(prompts), dtype=bool)
        unparsed = []
        for i, answer in enumerate(answers):
            row = class_logprobs(answer["top_logprobs"], self.label_words_) if answer["top_logprobs"] else None
            k = parse_label(answer["text"], self.label_words_)
            # The text decides where it names a class: the first token's alternatives can favour another
            # one ("pos" starts "pos" and "positive" alike, and counts for neither). Where it names none,
            # they count only if the answer could begin the class they favour ("Neutral" is not "ne...gative").
            best = None if row is None else int(np.argmax(row))
            if row is not None and (best == k or (k is None and starts_like(answer["text"], self.label_words_[best]))):
                scores[i], from_logprobs[i] = row, True
                continue
            if k is None:
                unparsed.append(i)
            else:
                scores[i, k] = 0.0
        returned = np.array([bool(a["top_logprobs"]) for a in answers], dtype=bool)
        return scores, from_logprobs, unparsed, [a["text"] for a in answers], returned

    def _api_prior_scores(self, prompts):
        """Class log-probabilities of the calibration prompts and which prompts they are, or ``(None, None)``.

        ``(None, None)`` when the endpoint returns no log-probabilities.

        Prompts are sent one at a time until an answer carries log-probabilities, up to
        :data:`LOGPROBS_PROBES`: an endpoint that answers them without (``transformers serve``,
        or ``logprobs=False``) is not asked the rest, while one answer without them (a refusal,
        a content filter) does not decide it alone. Then every answer whose log-probabilities
        name a class counts, whichever rows they are: one answer read by its text ("The text
        is negative") does not turn calibration off.
        """
        if not self.model_name.logprobs or not prompts:
            return None, None
        # An error names the failed prompt among these, which are no rows of X.
        what = f"the calibration prompts of fit (calibration={self.calibration!r}; no rows of X)"
        parts, returned = [], False
        while not returned and len(parts) < min(LOGPROBS_PROBES, len(prompts)):
            i = len(parts)
            parts.append(self._api_scores(prompts[i : i + 1], part_of=(i, len(prompts), what)))
            returned = bool(parts[-1][4][0])
        if not returned:
            return None, None
        if len(parts) < len(prompts):
            parts.append(self._api_scores(prompts[len(parts) :], part_of=(len(parts), len(prompts), what)))
        scores, from_logprobs = np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return (scores[from_logprobs], from_logprobs) if from_logprobs.any() else (None, None)

    def _answer_scores(self, prompts):
        """Class scores of the endpoint's answers, the unparsed ones given the fallback class (or an error).

        Also which rows are log-probabilities (the others were read from their text).
        """
        scores, from_logprobs, unparsed, texts, _ = self._api_scores(prompts)
        self.n_unparsed_, self.unparsed_rows_ = len(unparsed), unparsed
        if not unparsed:
            return scores, from_logprobs
        shown = ", ".join(f"{i}: {texts[i][:40]!r}" for i in unparsed[:10]) + (", ..." if len(unparsed) > 10 else "")
        if self.fallback_ is None:
            raise UnparsedAnswerError(
                f"{len(unparsed)} of {len(prompts)} answers name none of the classes {self.label_words_!r} "
                f"(rows {shown}). Choose what they predict with OpenAIChat(unparsed=...).",
                rows=unparsed,
                answers=[texts[i] for i in unparsed],
            )
        fallback = self.classes_[self.fallback_ : self.fallback_ + 1].tolist()[0]  # shown as 1, not np.int64(1)
        warnings.warn(
            f"{len(unparsed)} of {len(prompts)} answers name none of the classes {self.label_words_!r} and predict "
            f"{fallback!r} (OpenAIChat(unparsed={self.model_name.unparsed!r})); rows {shown}.",
            UnparsedAnswerWarning,
            stacklevel=4,
        )
        scores[unparsed, self.fallback_] = 0.0
        return scores, from_logprobs

    def _label_tensors(self, device):
        """The labels' token ids, right-padded with 0 to the longest, and their mask: two (n_labels, width) tensors."""
        import torch

        width = max(len(ids) for ids in self.label_ids_)
        label_ids = torch.zeros((len(self.label_ids_), width), dtype=torch.long)
        label_mask = torch.zeros((len(self.label_ids_), width), dtype=torch.long)
        for i, ids in enumerate(self.label_ids_):
            label_ids[i, : len(ids)] = torch.tensor(ids)
            label_mask[i, : len(ids)] = 1
        return label_ids.to(device), label_mask.to(device)

    def _score_prompts(self, prompts):
        """Log-likelihood of each class's wording after each prompt: (n_prompts, n_classes).

        Leading tokens that several prompts have in common (the chat
        preamble, fixed demonstrations, the first demonstrations of texts
        that share them) are computed once (:func:`prefix_tree`) and their
        key/value cache shared by those prompts; the rest of each prompt is
        left-padded after them. Only the last position's logits are computed.
        """
        import torch

        model, device = self.model_, torch.device(self.device_)
        n_labels = len(self.label_ids_)
        labels = self._label_tensors(device)
        pad = pad_token_id(self.tokenizer_)
        scores = np.empty((len(prompts), n_labels), dtype=np.float64)
        kwarg, last_only = cache_kwarg(model), last_logits_kwargs(model)
        # A sliding window counts the padding between a shared prefix and a prompt's rest as tokens:
        # past the window, a prompt would see fewer of its own tokens batched than alone. Not shared then.
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        window = getattr(config, "sliding_window", None)
        if getattr(config, "use_sliding_window", True) is False:  # Qwen2 names a window it does not use
            window = None
        longest = max((len(p) for p in prompts), default=0)
        span = longest + labels[0].shape[1] - 1  # the wordings' tokens look back over the prompt too
        nodes = prefix_tree(prompts, **({"min_shared": longest + 1} if window and span > window else {}))
        caches = [None] * len(nodes)
        # A node's cache is dropped once its leaves are scored and its children have their own.
        waiting = np.bincount([node.parent for node in nodes[1:]], minlength=len(nodes))
        with torch.inference_mode(), autocast(device, self.dtype_):
            for k, node in enumerate(nodes):
                if k:
                    parent = caches[node.parent]
                    ids = torch.tensor([prompts[node.first][node.start : node.end]], device=device)
                    positions = torch.arange(node.start, node.end, device=device).unsqueeze(0)
                    extra = {} if parent is None else {kwarg: repeat_cache(parent, 1)}
                    out = model(input_ids=ids, position_ids=positions, use_cache=True, **extra, **last_only)
                    caches[k] = output_cache(out)
                    waiting[node.parent] -= 1
                    if not waiting[node.parent]:
                        caches[node.parent] = None
                rest = {i: prompts[i][node.end :] for i in node.leaves}
                order = sorted(node.leaves, key=lambda i: -len(rest[i]))
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    # Left padding: every prompt ends at the same position, where the
                    # label continuations start.
                    ids, mask = pad_batch(rest, batch, pad, device, side="left")
                    scores[batch] = self._score_batch(ids, mask, caches[k], node.end, labels, kwarg, last_only)
                if not waiting[k]:
                    caches[k] = None
        return scores

    def _score_batch(self, ids, mask, shared, n_shared, labels, kwarg, last_only):
        """The class scores of a left-padded batch that continues ``n_shared`` tokens cached in ``shared``."""
        import torch

        model, device = self.model_, ids.device
        label_ids, label_mask = labels
        n, (n_labels, width) = len(ids), label_ids.shape
        positions = (mask.cumsum(1) - 1).clamp(min=0) + n_shared
        extra = {}
        if shared is not None:
            mask = torch.cat([torch.ones((n, n_shared), dtype=mask.dtype, device=device), mask], 1)
            extra[kwarg] = repeat_cache(shared, n)
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=width > 1, **extra, **last_only
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
        logp = first[:, label_ids[:, 0]].unsqueeze(-1)  # (B, L, 1)
        if width > 1:
            # One pass over all continuations, reusing the prompt's cache.
            cache = output_cache(out)
            cache.batch_repeat_interleave(n_labels)
            cont = label_ids[:, :-1].repeat(n, 1)  # (B*L, width-1)
            cont_mask = label_mask[:, :-1].repeat(n, 1)
            full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), cont_mask], dim=1)
            start_pos = positions[:, -1:].repeat_interleave(n_labels, 0) + 1
            cont_pos = start_pos + torch.arange(width - 1, device=device)
            logits = model(input_ids=cont, attention_mask=full_mask, position_ids=cont_pos, **{kwarg: cache}).logits
            rest = torch.log_softmax(logits.float(), dim=-1)
            targets = label_ids[:, 1:].repeat(n, 1)
            rest = rest.gather(-1, targets.unsqueeze(-1)).squeeze(-1).view(n, n_labels, width - 1)
            logp = torch.cat([logp, rest], dim=-1)
        logp = (logp * label_mask.unsqueeze(0)).sum(-1)
        if getattr(self, "_length_normalize", self.length_normalize):  # fitted before it was recorded: as set
            logp = logp / label_mask.sum(-1).unsqueeze(0)
        return logp.cpu().numpy()

    def _prompts(self, texts, exclude=None):
        """Token ids of the prompt of every text (demonstrations chosen per text; ``exclude``: see ``select``)."""
        raise NotImplementedError

    def _copies(self, pool_indices):
        """For each pool index, every pool index holding the same text (the index itself among them)."""
        where = {}
        for j, (text, _) in enumerate(self.examples_):
            where.setdefault(text, []).append(j)
        return [where[self.examples_[i][0]] for i in pool_indices]

    def decision_function(self, X):
        """Log-likelihood of each class's wording (length-normalised if asked), (n_samples, n_classes).

        With two classes, as scikit-learn's binary classifiers, ``(n_samples,)``:
        the second class's score less the first's, positive for ``classes_[1]``
        (so that scorers such as ``"roc_auc"`` read it).

        With ``calibration``, minus the log of the model's prior over the wordings (``label_prior_``).
        With an :class:`~skllm.OpenAIChat`, the log-probability of the
        answer's first token for each class when the endpoint returns them;
        for an answer read as text, 0 for the class it names (or the fallback
        class of ``unparsed``) and log(1e-12) = -27.6 for the others, not calibrated.
        """
        scores = self._class_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def _class_scores(self, X):
        """``decision_function`` with a column per class, two classes included."""
        check_is_fitted(self, "classes_")
        self._check_common()  # batch_size and the rest may have been set after fit
        texts = check_texts(X, estimator=self)
        self._ensure_live()
        prompts = self._prompts(texts)
        if not self._prompts_api:
            scores = self._score_prompts(prompts)
            return scores if self.label_prior_ is None else scores - self.label_prior_
        scores, from_logprobs = self._answer_scores(prompts)
        if self.label_prior_ is not None:
            # Only probabilities are divided by the prior: an answer read from its text (or given the
            # fallback class) predicts the class it names, whatever the prior of the others.
            scores[from_logprobs] -= self.label_prior_
        return scores

    def predict_proba(self, X):
        """The class scores normalised over the classes: a softmax of ``decision_function``'s columns.

        For two classes, a sigmoid of ``decision_function`` (the second class's probability).

        Calibrated like ``decision_function``; rows sum to 1 and ``predict`` is their argmax.
        With an :class:`~skllm.OpenAIChat` that returns no log-probabilities
        (``transformers serve``, ``logprobs=False``), one-hot: 1 for the class
        the answer names.
        """
        return softmax(self._class_scores(X))

    def predict(self, X):
        """The most likely class of each text; always one of ``classes_``."""
        scores = self._class_scores(X)
        return self.classes_[scores.argmax(axis=1)]


CLASSIFIER_DOC_PARAMS = """
    template : str, default=None
        Format string of the prompt with ``{text}`` and optionally ``{labels}``
        (the class wordings, comma-separated) and ``{examples}`` (the rendered
        demonstrations). ``None`` uses ``skllm._prompt_classifier.DEFAULT_TEMPLATE``:
        ``"{examples}Text: {text}\\n\\nWhich category fits the text: {labels}?
        Answer with one word."`` (the text first, then the question: chosen by
        measurement, see ``docs/benchmarks.md``). Models with a chat template
        get it as the user message. Tune it with GridSearchCV (hard prompt
        tuning).
    label_words : dict, default=None
        Wording of each class in the prompt and in the scored answer; classes
        not named use ``str(class)``. Multi-token wordings are scored in full.
    length_normalize : bool, default=True
        Divide each class's log-likelihood by its number of tokens, so that a
        wording of several tokens is not penalised for its length.
    calibration : {"batch", "contextual", "domain"} or None, default="batch"
        Divide out the model's prior over the class wordings, which small LMs
        let dominate (one class for every text). The prior is estimated once,
        in ``fit``, in the same prompt as a real text (same template,
        demonstrations chosen as for a real text), and stored as ``label_prior_``. ``"batch"`` (Zhou et
        al., 2024, "Batch Calibration"): the mean class probabilities of up to
        32 texts given to ``fit``, as many of each class, averaged within each
        class and then over the classes (so that the classes' frequencies are
        not divided out); when ``fit`` gets no texts,
        ``"contextual"``. ``"contextual"`` (Zhao et al., 2021, "Calibrate
        Before Use"): the same for the content-free texts ``"N/A"``, ``""``
        and ``"[MASK]"``. ``"domain"`` (domain-conditional PMI, Holtzman et
        al., 2021): the log-likelihood of each wording after the prompt with
        an empty text. ``None`` scores the raw log-likelihoods. A class
        probability below 1e-30 in the ``"batch"`` or ``"contextual"`` prior
        counts as 1e-30 (a class never named does not get an infinite boost). See
        ``docs/benchmarks.md`` for the measurements behind the default.
    max_length : int, default=1024
        Token budget of prompt plus answer (capped at the model's positions).
        Longer prompts lose demonstrations first, never the text, with a warning.
    batch_size : int, default=8
        Prompts per forward pass.
    use_chat_template : bool, default=True
        Prompt through the tokenizer's chat template when it has one.
    device, dtype : str, default="auto", "float32"
        As for :class:`~skllm.TransformerEmbedder`.
    cache_dir : str, path or "auto", default="auto"
        skllm cache folder: where the packaged default LM is de-quantised
        (``<cache_dir>/models/``, about 540 MB once) and, for nearest
        demonstrations, where embeddings are cached. ``"auto"`` and ``None``
        use :func:`~skllm.default_cache_dir` for the model (``None`` turns off
        the embedding cache only)."""
