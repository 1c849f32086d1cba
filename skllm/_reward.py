"""RewardModel: a scalar reward learned from human preferences (Bradley-Terry)."""

import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._finetune_base import _FineTuneBase
from ._pairs import preference_pairs, prompt_response_items, where_pairs
from ._scoring import pairwise_accuracy
from ._training import keep_state_on_error
from .exceptions import TruncationWarning


class _PairTexts:
    """The two responses of each preference pair, with their prompt.

    ``sources`` (pairs to learn from): each pair's rows in ``X``, for errors (:func:`where_pairs`).
    """

    def __init__(self, prompts, chosen, rejected, sources=None):
        self.prompts, self.chosen, self.rejected = prompts, chosen, rejected
        self.sources = sources
        self.training = sources is not None

    def __len__(self):
        return len(self.chosen)


class _PairInputs:
    """Network inputs of ``n`` pairs: rows ``0..n-1`` of ``inner`` are the chosen, ``n..2n-1`` the rejected.

    A batch of pair rows gives the chosen then the rejected: ``2 * len(rows)`` outputs, in two halves.
    """

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __len__(self):
        return self.n

    def _both(self, rows):
        rows = np.asarray(rows)
        return np.concatenate([rows, rows + self.n])

    def lengths(self):
        lengths = self.inner.lengths()
        return np.maximum(lengths[: self.n], lengths[self.n :])

    def subset(self, rows):
        return _PairInputs(self.inner.subset(self._both(rows)), len(rows))

    def token_ids(self):
        return self.inner.token_ids()

    def tensors(self, rows, device):
        return self.inner.tensors(self._both(rows), device)


def _token_starts(tokenizer, text):
    """Character offset at which each token of ``text`` starts (without special tokens)."""
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [start for start, _ in offsets]
    except NotImplementedError:  # a slow tokenizer: its tokens' texts, found in turn
        starts, at = [], 0
        for token in tokenizer.tokenize(text):
            piece = tokenizer.convert_tokens_to_string([token]).strip()
            found = text.find(piece, at) if piece else -1
            starts.append(found if found >= 0 else at)
            at = max(at, starts[-1] + len(piece))
        return starts


_PREFERENCES_IN_X = (
    "the preferences are in X itself, in its 'chosen' and 'rejected' columns (one pair per row) or its 'rank' "
    "column (ranked lists, lower is better)"
)


def _refuse_y(y, who, in_x=_PREFERENCES_IN_X):
    if y is not None:
        raise ValueError(f"{who} takes no y: {in_x}. Got y of type {type(y).__name__}; pass X alone.")


def _summary(rewards):
    quantiles = np.quantile(rewards, [0.05, 0.25, 0.5, 0.75, 0.95])
    std = float(np.std(rewards, ddof=1)) if len(rewards) > 1 else float("nan")
    return {
        "count": len(rewards),
        "mean": float(np.mean(rewards)),
        "std": std,
        "min": float(np.min(rewards)),
        **{f"q{int(q * 100):02d}": float(v) for q, v in zip((0.05, 0.25, 0.5, 0.75, 0.95), quantiles)},
        "max": float(np.max(rewards)),
    }


def bradley_terry_loss(chosen, rejected):
    """Mean ``-log sigmoid(r_chosen - r_rejected)``: the negative log-likelihood of the preferences."""
    import torch

    return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


class RewardModel(_FineTuneBase):
    """A scalar reward for a response to a prompt, learned from human preferences.

    Trained with the Bradley-Terry pairwise loss, ``-log sigmoid(r(chosen) -
    r(rejected))``: the model learns a score whose differences give the
    probability that one response is preferred to the other. The backbone is
    adapted with any fine-tuning method, as in :class:`FineTuneClassifier`,
    with a linear layer giving one number; prompt and response are read
    together as one text, joined by the tokenizer's separator token (its
    segment ids are all the first's, unlike a tokenizer's sentence pair), or
    on two lines for models without one.

    ``fit`` takes the preferences in either form a user has them:

    * a DataFrame with columns ``prompt``, ``chosen``, ``rejected`` (one row per
      pair; ``prompt`` may be left out);
    * ranked lists: columns ``prompt``, ``response``, ``rank`` (several rows per
      prompt, lower rank better), expanded into every pair of a better and a
      worse response of the same prompt. Responses of equal rank are not
      paired (a tie states no preference).

    A pair whose chosen and rejected texts are equal raises a ``ValueError``.

    Parameters
    ----------
    model_name : str, default="sentence-transformers/all-MiniLM-L6-v2"
        Encoder or decoder backbone.
    method : str or FineTuningMethod, default="lora"
        Any method of :class:`FineTuneClassifier`.
    max_length : int, default=128
        Tokens of prompt plus response; longer ones lose the start of their
        prompt (the response is kept), with a :class:`~skllm.exceptions.TruncationWarning`.
    batch_size : int, default=16
        Pairs per optimisation step.
    early_stopping : bool, default=False
        Hold out whole prompts with all their pairs, at most
        ``validation_fraction`` of the pairs (the pairs themselves when they
        share one prompt, or no prompt fits: see ``_split``), score their
        pairwise accuracy after each epoch and keep the best epoch.
    head_init : {"linear_probe", "random"}, default="linear_probe"
        ``"linear_probe"`` starts the reward layer from a Bradley-Terry
        logistic regression on the differences of the untrained network's
        features (chosen minus rejected, no intercept); ``"random"``: PyTorch's
        default initialisation.
    revision, pooling, epochs, learning_rate, weight_decay, warmup_ratio, max_grad_norm :
        As for :class:`FineTuneClassifier`.
    validation_fraction, n_iter_no_change, warm_start, random_state, device, dtype, cache_dir, verbose :
        As for :class:`FineTuneClassifier`.

    Attributes
    ----------
    n_pairs_ : int
        Preference pairs given (after expanding ranked lists), the held-out ones included.
    loss_curve_ : list of float
        Mean Bradley-Terry loss of each epoch.
    validation_accuracy_ : float or None
        With ``early_stopping``: the pairwise accuracy of the kept epoch on
        the held-out pairs (``validation_scores_`` has each epoch's); None
        without.
    training_rewards_ : ndarray of shape (n_responses,)
        Reward of every distinct prompt and response of the training pairs,
        after training: the reference of :meth:`reward_distribution`.
    method_, trainable_state_, n_trainable_params_, validation_scores_, n_iter_ :
        As for :class:`FineTuneClassifier` (validation scores are pairwise
        accuracies).
    network_, tokenizer_, model_identity_, pooling_, max_length_, device_, dtype_, embedding_dim_ :
        As for :class:`FineTuneClassifier`.

    Examples
    --------
    >>> import pandas as pd
    >>> from skllm import RewardModel
    >>> pairs = pd.DataFrame({
    ...     "prompt": ["a review"] * 4,
    ...     "chosen": ["a wonderful film", "moving and funny", "superb acting", "a delight"],
    ...     "rejected": ["a dull mess", "boring and long", "awful acting", "a chore"],
    ... })
    >>> rm = RewardModel(epochs=3, random_state=0).fit(pairs)
    >>> rm.predict([("a review", "a wonderful film")]).shape
    (1,)
    """

    _n_outputs = 1
    _rows_are = "pairs"
    _one_output_per_row = False  # a batch of pairs gives its chosen responses' outputs, then its rejected ones'

    def fit(self, X, y=None):
        """Learn the reward from preference pairs ``X`` (pairs DataFrame or ranked lists).

        Parameters
        ----------
        X : DataFrame
            Columns ``prompt``, ``chosen``, ``rejected``, or ``prompt``,
            ``response``, ``rank`` (not both).
        y : None
            The preferences are in ``X``; any other value raises a ``ValueError``.

        Returns
        -------
        self : RewardModel
        """
        _refuse_y(y, f"{type(self).__name__}.fit")
        method = self._validate_params()
        prompts, chosen, rejected, sources = preference_pairs(X, "X", sources=True)
        codes, groups = {}, prompts if len(set(prompts)) >= 2 else list(zip(chosen, rejected))
        self._pair_groups = [codes.setdefault(g, len(codes)) for g in groups]  # _split holds out whole groups
        try:
            with keep_state_on_error(self):
                pairs = _PairTexts(prompts, chosen, rejected, sources)
                self._fit(method, pairs, np.zeros(len(chosen), dtype=np.float32))
                self.n_pairs_ = len(chosen)
                scores = self.validation_scores_
                self.validation_accuracy_ = max(scores) if scores else None
                responses = list(dict.fromkeys([*zip(prompts, chosen), *zip(prompts, rejected)]))
                self.training_rewards_ = self._rewards(responses, warn=False)
        finally:
            vars(self).pop("_pair_groups", None)
        return self

    def _split(self, n, seed, stratify, targets):
        """Training and validation pairs; with two prompts or more, every pair of a prompt on one side.

        Pairs of one prompt share their responses (ranked lists pair each with several others): holding
        out whole prompts keeps the validation accuracy an estimate on prompts the model has not seen.
        The prompts held out hold at most ``validation_fraction`` of the pairs, or the smallest prompt at most
        twice it (:func:`group_split`). With one prompt, or where none fits, the copies of a pair stay on one side.
        """
        groups = getattr(self, "_pair_groups", None)
        if self.early_stopping and groups is not None and len(set(groups)) >= 2:
            from ._splits import group_split

            split = group_split(groups, self.validation_fraction, seed)
            if split is not None:  # else no prompt's pairs fit within twice the fraction: split the pairs
                return split
        return super()._split(n, seed, stratify, targets)

    def _rewards(self, items, *, warn=True):
        """Rewards of ``(prompt, response)`` items, float64, in their order."""
        prompts, responses = zip(*items) if items else ((), ())
        texts = self._joined(list(prompts), list(responses), warn=warn)
        return self._outputs(self._inputs(texts, warn=warn))[:, 0].astype(np.float64)

    def _join(self, prompt, response):
        if not prompt:
            return response
        sep = getattr(self.tokenizer_, "sep_token", None)
        return f"{prompt} {sep} {response}" if sep else f"{prompt}\n{response}"

    def _joined(self, prompts, responses, *, warn=True):
        """Each prompt and response joined as the model reads them.

        Where a pair exceeds ``max_length_`` tokens, its prompt loses its
        start (the end, next to the response, is kept): cutting the joined
        text at the end, as for any long text, would cut the response, which
        is what the reward scores, and give every response of a long prompt
        the same reward.
        """
        tokenizer, limit = self.tokenizer_, self.max_length_
        texts = [self._join(p, r) for p, r in zip(prompts, responses)]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
        cut = 0
        for i, n in enumerate(lengths):
            if n <= limit or not prompts[i]:
                continue
            prompt, cut = prompts[i], cut + 1
            starts = _token_starts(tokenizer, prompt)
            # Drop the tokens over the limit, then one more at a time where the shorter prompt tokenizes longer.
            first = min(n - limit, len(starts))
            while True:
                kept = prompt[starts[first] :] if first < len(starts) else ""
                texts[i] = self._join(kept, responses[i])
                if not kept or len(tokenizer(texts[i], add_special_tokens=True)["input_ids"]) <= limit:
                    break
                first += 1
        if cut and warn:
            warnings.warn(
                f"{cut} of {len(texts)} (prompt, response) texts were longer than max_length={limit} tokens: their "
                f"prompts lost their start so that the responses fit (a response too long alone is cut at its end).",
                TruncationWarning,
                stacklevel=4,
            )
        return texts

    def _inputs(self, texts, *, warn=True):
        if isinstance(texts, _PairTexts):
            prompts = list(texts.prompts) * 2
            joined = self._joined(prompts, list(texts.chosen) + list(texts.rejected), warn=warn)
            if texts.training:  # scored, such a pair is a tie (half a pair), as score says
                self._refuse_pairs_made_identical(joined, texts.sources)
            return _PairInputs(self.method_.inputs(self, joined, warn=warn), len(texts))
        return self.method_.inputs(self, texts, warn=warn)

    def _refuse_pairs_made_identical(self, joined, sources):
        """Refuse pairs whose two joined texts are the same tokens once cut to ``max_length_``.

        Their responses differ only past what the model reads: the pair has no gradient and
        counts as a tie, a preference the data states and the model never sees.
        """
        n = len(sources)
        ids = self.tokenizer_(joined, truncation=True, max_length=self.max_length_, verbose=False)["input_ids"]
        same = [i for i in range(n) if ids[i] == ids[i + n]]
        if same:
            raise ValueError(
                f"{len(same)} preference pair(s), at {where_pairs(sources, same)}, are the same once cut to max_length="
                f"{self.max_length_} tokens: their responses differ only past what the model reads, so they express "
                f"no preference it can learn. Raise max_length, or shorten those responses."
            )

    def _outputs(self, inputs):
        if isinstance(inputs, _PairInputs):
            rewards = super()._outputs(inputs.inner)
            return rewards[: inputs.n] - rewards[inputs.n :]
        return super()._outputs(inputs)

    def _probe_output_layer(self, network, inputs, texts, targets, rows, class_weights, device):
        """The Bradley-Terry linear probe: a logistic regression on feature differences (chosen - rejected)."""
        from sklearn.linear_model import LogisticRegressionCV

        from ._probe import PROBE_CS, fit_probe, layer_inputs, output_layer, set_layer

        layer = output_layer(network, 1)
        if layer is None or len(rows) < 3:
            return
        pairs = np.concatenate([rows, rows + inputs.n])
        features = layer_inputs(network, layer, inputs.inner, pairs, device, self.dtype_, self.batch_size * 2)
        diff = features[: len(rows)] - features[len(rows) :]
        # Each pair once in each order: P(chosen over rejected) = sigmoid(w . (x_c - x_r)), no intercept.
        model = LogisticRegressionCV(
            Cs=list(PROBE_CS), cv=3, scoring="neg_log_loss", fit_intercept=False, max_iter=2000
        )
        fit_probe(model, np.vstack([diff, -diff]), np.r_[np.ones(len(rows)), np.zeros(len(rows))])
        set_layer(layer, model.coef_, np.zeros(1))

    @staticmethod
    def _loss(output, target, weights):
        n = len(target)
        return bradley_terry_loss(output[:n, 0], output[n:, 0])

    @staticmethod
    def _validation_score(outputs, targets):
        return pairwise_accuracy(outputs[:, 0])

    def predict(self, X):
        """Reward of each response: ``X`` holds texts, ``(prompt, response)`` tuples, or a DataFrame.

        A DataFrame needs a ``response`` column (and optionally ``prompt``);
        one without it raises a ``ValueError``. Returns an array of shape
        (n_samples,); only differences between rewards are meaningful.
        """
        check_is_fitted(self, "trainable_state_")
        prompts, responses = prompt_response_items(X)
        self._ensure_live()
        return self._rewards(zip(prompts, responses))

    def score(self, X, y=None):
        """Pairwise accuracy on preference pairs ``X``: share of pairs whose chosen response gets the higher reward.

        ``X`` is a pairs DataFrame or ranked lists, as for ``fit``; a tie
        counts as half a pair. ``y`` must be None (the preferences are in ``X``).
        """
        check_is_fitted(self, "trainable_state_")
        _refuse_y(y, f"{type(self).__name__}.score")
        prompts, chosen, rejected = preference_pairs(X, "X")
        self._ensure_live()
        return pairwise_accuracy(self._outputs(self._inputs(_PairTexts(prompts, chosen, rejected)))[:, 0])

    def reward_distribution(self, X):
        """Summarise the rewards of ``X`` next to those of the training responses, to see a shift.

        A reward model is reliable on responses like those it was trained on.
        Responses from elsewhere (a policy tuned against the reward, another
        model) whose rewards sit far from the training ones, often above
        them, are where its scores stop meaning what people prefer. The
        summary puts both distributions side by side.

        Parameters
        ----------
        X : list of str, list of (prompt, response) tuples, or DataFrame
            Responses to score, as for :meth:`predict` (e.g. a policy's own
            samples for its prompts).

        Returns
        -------
        pandas.DataFrame
            Two rows, ``"training"`` (every distinct prompt and response of
            the pairs ``fit`` saw, from :attr:`training_rewards_`) and
            ``"given"`` (``X``), with the columns ``count``, ``mean``,
            ``std``, ``min``, ``q05``, ``q25``, ``q50``, ``q75``, ``q95``,
            ``max``, ``shift`` (the standardised mean difference: ``(mean -
            training mean) / training std``, 0 for the training row) and
            ``outside_training_range`` (the share of rewards below the
            lowest or above the highest training reward).

        Examples
        --------
        >>> import pandas as pd
        >>> from skllm import RewardModel
        >>> pairs = pd.DataFrame({
        ...     "prompt": ["a review"] * 4,
        ...     "chosen": ["a wonderful film", "moving and funny", "superb acting", "a delight"],
        ...     "rejected": ["a dull mess", "boring and long", "awful acting", "a chore"],
        ... })
        >>> rm = RewardModel(epochs=3, random_state=0).fit(pairs)
        >>> summary = rm.reward_distribution([("a review", "great great great great")])
        >>> summary.index.tolist()
        ['training', 'given']
        >>> int(summary.loc["training", "count"]), int(summary.loc["given", "count"])
        (8, 1)
        """
        import pandas as pd

        check_is_fitted(self, "trainable_state_")
        if not hasattr(self, "training_rewards_"):
            raise ValueError(
                "This RewardModel was fitted by an earlier version of skllm, which did not keep the rewards of its "
                "training responses; fit it again to compare distributions."
            )
        given = self.predict(X)
        training = np.asarray(self.training_rewards_, dtype=np.float64)
        rows = {"training": _summary(training), "given": _summary(given)}
        low, high = training.min(), training.max()
        scale = rows["training"]["std"]
        for name, rewards in (("training", training), ("given", given)):
            difference = rows[name]["mean"] - rows["training"]["mean"]
            rows[name]["shift"] = difference / scale if scale > 0 else (0.0 if difference == 0 else float("nan"))
            rows[name]["outside_training_range"] = float(np.mean((rewards < low) | (rewards > high)))
        return pd.DataFrame.from_dict(rows, orient="index")
