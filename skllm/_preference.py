"""PreferenceTuner: tune a generator towards a reward (RLOO, PPO) or towards preferences directly (DPO).

The algorithms are written here (DPO) and in ``_online.py`` (RLOO, PPO), on
the network, prompts and generation of FineTuneGenerator, rather than through
TRL's RLOOTrainer and DPOTrainer. Tried
with TRL 1.16: RLOOTrainer trains the LoRA network, but fails on the
prompt-tuning one (the virtual tokens lengthen the sequence it aligns
completions with), and with a peft model takes the base model with adapters
off as the reference, so a LoRA SFT model could not be its own reference. It
also wants a ``datasets.Dataset``, an output folder and a seed of its own. The
losses are a few lines each (``_rl.py``); written on the same network they
give one generation path, one pickling scheme and runs reproducible from
``random_state`` in a forked RNG. (TRL 1.x has no PPO trainer any more.)
"""

import pickle

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._attention import training_attention
from ._causal import pad_examples, token_logprobs
from ._device import autocast
from ._methods import NamedMethodParamsMixin
from ._methods._base import frozen_copy
from ._online import OnlineRun
from ._pairs import preference_pairs, where_pairs
from ._prompting import MIN_TEMPERATURE
from ._reward import RewardModel, _refuse_y
from ._rl import check_scorer, dpo_loss, read_rewards, unfreeze
from ._scoring import pairwise_accuracy
from ._sft import FineTuneGenerator
from ._tokens import pad_token_id
from ._training import Optimisation, check_training_params, draw_seed, release_memory, train_epochs, training_context
from ._validation import check_choice, check_int, check_number, check_random_state_param, check_texts

ALGORITHMS = ("rloo", "ppo", "dpo")
# The default learning rate of each algorithm, as a multiple of the method's own default.
# Measured with LoRA (docs/benchmarks.md, "PreferenceTuner's defaults"): at the method's rate
# RLOO's one step per batch of answers left the policy within one nat of the reference after
# 20 steps; five times that takes it to the KL target within about 10 steps. PPO takes
# ppo_epochs steps on each batch and ran to four times the target at that rate, so it keeps
# the method's. DPO's pairs are not the policy's own answers: a tenth.
LEARNING_RATE_SCALE = {"rloo": 5.0, "ppo": 1.0, "dpo": 0.1}
# Passes over the prompts (or pairs) with epochs=None. Measured with LoRA on 80 prompts
# (docs/benchmarks.md, "PreferenceTuner's defaults"): in one pass (20 steps) the training KL of
# PPO's last steps stayed below the target in all four runs, once near 1.4 nats; two passes reached it
# and raised the judged gain, the KL on held-out prompts staying at 4.04 nats or less in all 29 runs
# of two passes (17 on 80 prompts, one of them with the guard; 12 on 156 or 160).
# RLOO with two passes ran past 5 nats.
EPOCHS = {"rloo": 1, "ppo": 2, "dpo": 1}


class PreferenceTuner(NamedMethodParamsMixin, BaseEstimator):
    """Tune a text generator to please a reward model, or directly from preference pairs.

    The reinforcement-learning step of RLHF. The policy is a
    :class:`FineTuneGenerator` (a fitted one, such as the result of supervised
    fine-tuning, or a fresh one on a model name); the frozen copy it starts
    from is the reference model, and a penalty of a coefficient times the
    log-ratio of the two keeps the tuned model close to it.

    * ``algorithm="rloo"`` (online): ``fit(prompts)``. At each
      step, ``n_generations`` answers are sampled for each of ``batch_size``
      prompts and scored by ``reward``; each answer's standardised reward,
      less the KL coefficient times its log-ratio to the reference (the
      per-answer KL estimate), minus the mean of the other answers to the
      same prompt is its advantage, and the policy gradient raises the
      log-probability of the answers with a positive one (REINFORCE
      Leave-One-Out, Ahmadian et al., 2024): no value network, one
      optimisation step per batch of answers.
    * ``algorithm="ppo"`` (online, the default): the InstructGPT recipe (Ouyang et al.,
      2022). A linear value head on the policy's last hidden state estimates
      each token's return; the KL penalty is paid token by token and the
      standardised reward at the answer's last token; generalised advantage
      estimates (``gae_lambda``, no discount) drive ``ppo_epochs`` steps of
      the clipped surrogate objective (``clip_range``) on each batch of
      answers, with the clipped value loss (weight 0.1). The value head is
      dropped after ``fit``.
    * ``algorithm="dpo"`` (offline): ``fit(pairs)`` with a DataFrame
      ``prompt, chosen, rejected`` (or ranked lists, as for
      :class:`RewardModel`); no reward model: passing ``reward`` is an
      error. ``kl_coef`` is DPO's ``beta`` (Rafailov et al., 2023).

    KL control (RLOO and PPO). Rewards are standardised by the running mean
    and standard deviation of every reward of the fit so far, so that the KL
    coefficient means the same on any reward's scale: a coefficient ``c``
    trades one standard deviation of reward for ``1 / c`` nats of KL. With
    ``target_kl`` the coefficient is held at ``kl_coef`` until a step's mean
    KL first reaches ``target_kl`` (a fit starts at the reference, where the
    KL is 0), then follows the adaptive controller of Ziegler et al. (2019),
    as InstructGPT used it: after each step it is multiplied by
    ``1 + e * min(n / 64, 1)``, where
    ``e = clip(KL / target_kl - 1, -0.2, 0.2)``, ``KL`` is the step's mean
    per-answer KL and ``n`` its number of answers. ``target_kl=None`` keeps
    ``kl_coef`` fixed.

    Guarding against a gamed reward (RLOO and PPO). A policy can raise a
    learned reward without the behaviour it stands for (the reward model's
    blind spots). ``eval_reward``, a second scorer trained apart from
    ``reward`` (see the user guide), scores every step's answers too; with
    ``validation_fraction``, that share of the prompts is held out, the
    greedy answers to them are scored every ``eval_every`` steps and the
    weights of the best evaluation (by ``eval_reward`` if given, else by
    ``reward``) are kept, as early stopping keeps the best epoch's. A
    :class:`~skllm.exceptions.RewardHackingWarning` is raised when the
    training reward rose over the last two evaluations while the validation
    score stayed below its best.

    Parameters
    ----------
    reward : RewardModel, callable or None, default=None
        What RLOO and PPO maximise: a fitted :class:`RewardModel` (or any
        fitted estimator whose ``predict`` takes ``(prompt, answer)`` tuples),
        or a function ``reward(prompts, completions) -> floats``. It must
        return one finite number per answer (else ``ValueError``). ``clone``
        (and so ``GridSearchCV``) unfits a fitted reward model: wrap it in
        ``sklearn.frozen.FrozenEstimator`` to keep it. Must be ``None`` for
        DPO.
    generator : FineTuneGenerator, str or None, default=None
        The policy's starting point. A fitted generator is tuned further with
        its own method (and is itself the reference); an unfitted one, or a
        model name, starts from the pretrained model. ``None``: a
        ``FineTuneGenerator()`` on the packaged SmolLM2. ``clone`` (and so
        ``GridSearchCV``) unfits a fitted generator: wrap it in
        ``sklearn.frozen.FrozenEstimator`` to keep it.
    method : str, FineTuningMethod or None, default=None
        Method of an unfitted generator (``None``: the generator's own,
        LoRA by default). Must be ``None`` with a fitted generator.
    algorithm : {"rloo", "ppo", "dpo"}, default="ppo"
        Online policy gradient against ``reward`` (leave-one-out baseline, or
        PPO with a value head), or direct preference optimisation on pairs.
        PPO is the default: on four control tasks it gained on average as
        much as RLOO or more in the judge's eyes (on one, 0.006 less), and
        its KL stayed at 3.3 nats per answer or less where RLOO's reached
        5.3 (80 prompts; 4.04 or less in every run of the defaults, 160
        prompts included), at about three times RLOO's time (see the user
        guide).
    kl_coef : float, default=0.1
        Weight of the penalty for drifting from the reference, per nat of KL
        and standard deviation of reward; with ``target_kl``, its value until
        the KL first reaches the target. DPO's beta.
    target_kl : float or None, default=3.0
        KL per answer (nats, summed over its tokens) that the adaptive
        controller holds (RLOO and PPO); ``None``: ``kl_coef`` stays fixed.
    epochs : int or None, default=None
        Passes over the prompts (RLOO, PPO) or pairs (DPO); ``None``: 2 for
        PPO, 1 for RLOO and DPO (measured, see the user guide).
    batch_size : int, default=4
        Prompts (RLOO, PPO) or pairs (DPO) per step.
    n_generations : int, default=4
        Answers sampled per prompt (RLOO: at least 2, for the baseline).
    temperature : float, default=1.0
        Sampling temperature of the training answers (at least 1e-6). The policy gradient, PPO's
        ratios and the KL read the log-probabilities at this temperature, those
        the answers were drawn with (as TRL's online trainers do): they are drawn
        from the whole distribution, whatever the generator's ``top_p`` (which
        ``predict`` uses).
    max_new_tokens : int, default=None
        Longest answer sampled in training; ``None``: the generator's.
    ppo_epochs : int, default=4
        PPO's optimisation steps on each batch of answers.
    clip_range : float, default=0.2
        PPO's clipping of the probability ratio (and of the value change).
    gae_lambda : float, default=0.95
        PPO's GAE parameter: 1 gives the Monte-Carlo return, 0 the one-step
        estimate of the value head.
    eval_reward : RewardModel, callable or None, default=None
        A second scorer, of the same forms as ``reward``, recorded on every
        step's answers and on the validation answers; it chooses the best
        step. Not trained on.
    validation_fraction : float or None, default=None
        Share of the prompts held out to choose the best step (RLOO, PPO);
        ``None``: no validation, the last step's weights are kept.
    eval_every : int, default=5
        Steps between two evaluations on the validation prompts.
    learning_rate : float, default=None
        AdamW learning rate; ``None``: the method's default times 5 (RLOO),
        times 1 (PPO, which takes ``ppo_epochs`` steps per batch) or divided
        by 10 (DPO): 5e-3, 1e-3 and 1e-4 with LoRA, where these scales were
        measured; other methods get the same scales, unmeasured.
    weight_decay : float, default=0.01
        AdamW weight decay, on weight matrices only (not on a token embedding
        that is not also the output layer, as for :class:`FineTuneClassifier`).
    warmup_ratio : float, default=0.06
        Fraction of the optimisation steps with a linearly rising learning
        rate; it then decays linearly to zero (as in the other estimators).
    max_grad_norm : float, default=1.0
        Gradient clipping threshold; ``None`` disables clipping.
    random_state : int, RandomState or None, default=None
        Seeds the prompt order, the validation split and the sampling; the
        same int gives the same model on the CPU.
    verbose : int, default=0
        ``1`` prints a progress bar with the loss.

    Attributes
    ----------
    generator_ : FineTuneGenerator
        The tuned generator; ``predict`` uses it (greedy, unless it samples).
    history_ : pandas.DataFrame
        One row per step (a batch of sampled answers for RLOO and PPO, of
        pairs for DPO): ``step``, ``reward`` (mean raw reward of the sampled
        answers; for DPO the mean implicit reward margin
        ``beta * (chosen log-ratio - rejected log-ratio)``), ``kl`` (mean
        per-answer log-ratio of policy to reference, summed over the answer's
        tokens, before the step's update: the estimate of the KL divergence
        on sampled answers; for DPO on the pairs' responses, which the policy
        did not sample: no KL estimate, and it can be negative), ``loss`` (mean
        over the step's updates) and, for RLOO and PPO, ``kl_coef`` (the
        coefficient the step used), ``length`` (mean answer tokens),
        ``eval_reward`` (mean ``eval_reward`` of the answers, with one), and,
        with validation, ``val_reward`` and ``val_eval_reward`` (means on the
        greedy answers to the validation prompts, after the step's update;
        every ``eval_every`` steps and at the last, NaN elsewhere); for DPO
        ``accuracy`` (share of pairs ranked right by the implicit reward, a tie
        counting half, as in :meth:`RewardModel.score`).
    n_steps_ : int
        Steps run.
    best_step_ : int or None
        The step whose weights were kept, chosen on the validation prompts;
        ``None`` without validation (the last step's are kept).
    kl_coef_ : float
        The KL coefficient at the end of training (RLOO, PPO; ``kl_coef``
        for DPO).

    Examples
    --------
    >>> from skllm import FineTuneGenerator, PreferenceTuner
    >>> def brevity(prompts, completions):
    ...     return [-len(c) for c in completions]
    >>> gen = FineTuneGenerator(max_new_tokens=8, random_state=0)
    >>> tuner = PreferenceTuner(brevity, gen, batch_size=2, n_generations=2, random_state=0)
    >>> tuner = tuner.fit(["Say hello.", "Name a colour."])
    >>> list(tuner.history_.columns)
    ['step', 'reward', 'kl', 'kl_coef', 'loss', 'length']
    >>> float(tuner.history_["kl"].iloc[0])
    0.0
    """

    def __init__(
        self,
        reward=None,
        generator=None,
        *,
        method=None,
        algorithm="ppo",
        kl_coef=0.1,
        target_kl=3.0,
        epochs=None,
        batch_size=4,
        n_generations=4,
        temperature=1.0,
        max_new_tokens=None,
        ppo_epochs=4,
        clip_range=0.2,
        gae_lambda=0.95,
        eval_reward=None,
        validation_fraction=None,
        eval_every=5,
        learning_rate=None,
        weight_decay=0.01,
        warmup_ratio=0.06,
        max_grad_norm=1.0,
        random_state=None,
        verbose=0,
    ):
        self.reward = reward
        self.generator = generator
        self.method = method
        self.algorithm = algorithm
        self.kl_coef = kl_coef
        self.target_kl = target_kl
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_generations = n_generations
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.ppo_epochs = ppo_epochs
        self.clip_range = clip_range
        self.gae_lambda = gae_lambda
        self.eval_reward = eval_reward
        self.validation_fraction = validation_fraction
        self.eval_every = eval_every
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.max_grad_norm = max_grad_norm
        self.random_state = random_state
        self.verbose = verbose

    def __getstate__(self):
        state = dict(super().__getstate__())
        if "history_" in state:
            # Plain columns rather than a DataFrame, whose internals skops cannot store as data.
            state["history_"] = {name: column.to_numpy() for name, column in state["history_"].items()}
        return state

    def __setstate__(self, state):
        # Tuners pickled before these parameters existed trained with neither.
        state.setdefault("weight_decay", 0.0)
        state.setdefault("warmup_ratio", 0.0)
        # ... and with a fixed KL coefficient on raw rewards, without PPO or validation.
        for name, value in (
            ("target_kl", None),
            ("ppo_epochs", 4),
            ("clip_range", 0.2),
            ("gae_lambda", 0.95),
            ("eval_reward", None),
            ("validation_fraction", None),
            ("eval_every", 5),
        ):
            state.setdefault(name, value)
        if "generator_" in state:
            state.setdefault("best_step_", None)
            state.setdefault("kl_coef_", state.get("kl_coef"))
        if isinstance(state.get("history_"), dict):
            import pandas as pd

            state["history_"] = pd.DataFrame(state["history_"])
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # -- set-up -----------------------------------------------------------------------
    def _validate_params(self):
        check_choice(self.algorithm, "algorithm", ALGORITHMS)
        check_number(self.kl_coef, "kl_coef", 0)
        check_number(self.target_kl, "target_kl", 0, allow_none=True, low_inclusive=False)
        if self.kl_coef == 0 and (self.algorithm == "dpo" or self.target_kl is not None):
            raise ValueError(
                "kl_coef=0 is DPO's beta=0, a loss without gradient: DPO needs kl_coef > 0."
                if self.algorithm == "dpo"
                else f"kl_coef=0 with target_kl={self.target_kl}: the controller scales the coefficient, which would "
                f"stay 0 and leave the KL unbounded. Give kl_coef > 0 (its start), or target_kl=None for a fixed "
                f"coefficient of 0 (no KL penalty)."
            )
        check_int(self.epochs, "epochs", allow_none=True)
        check_training_params(self)
        check_int(self.n_generations, "n_generations", 2 if self.algorithm == "rloo" else 1)
        check_number(self.temperature, "temperature", MIN_TEMPERATURE)
        check_int(self.max_new_tokens, "max_new_tokens", allow_none=True)
        check_int(self.ppo_epochs, "ppo_epochs")
        check_number(self.clip_range, "clip_range", 0, low_inclusive=False)
        check_number(self.gae_lambda, "gae_lambda", 0, 1, high_inclusive=True)
        check_number(self.validation_fraction, "validation_fraction", 0, 1, allow_none=True, low_inclusive=False)
        check_int(self.eval_every, "eval_every")
        check_random_state_param(self.random_state)
        if self.algorithm == "dpo":
            given = [n for n in ("reward", "eval_reward", "validation_fraction") if getattr(self, n) is not None]
            if given:
                raise ValueError(
                    f"algorithm='dpo' learns from the preference pairs alone and does not use {given}: set "
                    f"{given[0]}=None. To tune against a reward model, use algorithm='rloo' or 'ppo'; to score a DPO "
                    f"model, call the reward model on its answers."
                )
        elif self.reward is None:
            raise ValueError(
                f"algorithm={self.algorithm!r} needs a reward: a fitted RewardModel or a function "
                f"reward(prompts, completions)."
            )
        for name in ("reward", "eval_reward"):
            check_scorer(getattr(self, name), name)

    def _policy(self, seed):
        """A fitted FineTuneGenerator of our own to train: the generator's copy, or a fresh model."""
        generator = unfreeze(self.generator)
        if generator is None:
            generator = FineTuneGenerator()
        elif isinstance(generator, str):
            generator = FineTuneGenerator(generator)
        elif not isinstance(generator, FineTuneGenerator):
            raise ValueError(
                f"generator must be a FineTuneGenerator, a model name or None, got {type(generator).__name__}."
            )
        if hasattr(generator, "trainable_state_"):
            if self.method is not None:
                raise ValueError(
                    "method must be None with a fitted generator: it is tuned further with its own method "
                    f"({generator.method_!r}). Pass an unfitted generator to choose another method."
                )
            # What generation reads may have been set since its fit: checked as its predict checks it.
            generator._check_answer_params()
            # A copy through pickle: the given generator stays as it is, and the
            # copy rebuilds its network from the trained state.
            policy = pickle.loads(pickle.dumps(generator))
            policy._ensure_live()
            return policy
        policy = clone(generator)
        if self.method is not None:
            policy.set_params(method=self.method)
        policy._setup(policy._validate_params(), seed)
        return policy

    def _rewards(self, prompts, completions, scorer=None, name="reward"):
        scorer = self.reward if scorer is None else scorer
        if hasattr(scorer, "predict"):
            try:
                values = scorer.predict(list(zip(prompts, completions)))
            except (TypeError, AttributeError, ValueError) as exc:  # e.g. a classifier of texts
                if isinstance(unfreeze(scorer), RewardModel):  # it reads pairs: its own error says what is wrong
                    raise
                raise ValueError(
                    f"The {name}, a {type(scorer).__name__}, is called as {name}.predict(pairs), with (prompt, "
                    f"completion) pairs as a RewardModel takes them, and failed on them: {exc!r:.200}. For a "
                    f"classifier of texts, pass a callable of (prompts, completions) (the user guide's Judge)."
                ) from exc
        else:
            values = scorer(list(prompts), list(completions))
        return read_rewards(values, prompts, completions, name)

    def _optimisation(self, policy, module, total_steps, hint=""):
        import torch

        lr = self.learning_rate
        if lr is None:
            lr = policy.method_.default_learning_rate * LEARNING_RATE_SCALE[self.algorithm]
        return Optimisation.of(
            self,
            module,
            total_steps=total_steps,
            device=torch.device(policy.device_),
            learning_rate=lr,
            dtype=policy.dtype_,
            who=f"{type(self).__name__}({self.algorithm!r})",
            hint=hint,
        )

    def _batches(self, n, rng):
        """The rows of each step, per epoch: every epoch's order is drawn before the first step."""
        return [
            [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
            for order in [rng.permutation(n) for _ in range(self._epochs())]
        ]

    def _epochs(self):
        return EPOCHS[self.algorithm] if self.epochs is None else self.epochs

    # -- fit ----------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Tune the generator: ``X`` are prompts (RLOO, PPO) or preference pairs (DPO); ``y`` must be None.

        Returns
        -------
        self : PreferenceTuner
        """
        import pandas as pd
        import torch

        self._validate_params()
        # A y (labels such as "first preferred") would otherwise be dropped without a word.
        in_x = "X holds all it trains on: the prompts (RLOO, PPO) or the preference pairs (DPO)"
        _refuse_y(y, f"{type(self).__name__}.fit", in_x)
        if self.algorithm == "dpo":
            data = preference_pairs(X, "X", sources=True)
            empty = [i for i, text in enumerate(data[1]) if not text.strip()]
            if empty:
                raise ValueError(
                    f"X has {len(empty)} empty chosen response(s), at {where_pairs(data[3], empty)}: DPO would "
                    f"raise the probability of answering nothing. Drop these pairs or give the preferred answer's text."
                )
        else:
            if {"chosen", "rejected"} <= set(getattr(X, "columns", ())):
                raise ValueError(
                    f"X holds preference pairs (columns 'chosen' and 'rejected'), and algorithm={self.algorithm!r} "
                    f"learns from prompts: set algorithm='dpo' to learn from the pairs, or pass X['prompt']."
                )
            data = check_texts(X, estimator=self)
        rng = check_random_state(self.random_state)
        seed = draw_seed(rng)
        policy = self._policy(seed)
        device = torch.device(policy.device_)
        # The policy's frozen weights are never written (frozen_copy): the reference shares them, and copies
        # only what the policy trains (for LoRA, the adapters, not the model).
        reference = frozen_copy(policy.network_, shares=lambda p: not p.requires_grad).eval()
        # The tuner's own attributes are set only once training has succeeded: a failed
        # fit leaves them (and the given generator, of which the policy is a copy) as they were.
        # the reference computes as the policy trains (its log-probs and the policy's agree at the start)
        with training_context(seed, device), training_attention(reference, device, policy.dtype_):
            if self.algorithm == "dpo":
                records = self._fit_dpo(policy, reference, *data, rng)
                best_step, kl_coef = None, self.kl_coef
            else:
                records, best_step, kl_coef = OnlineRun(self, policy, reference, data, rng).run()
        policy.network_.eval()
        policy._record_state()
        del reference
        release_memory(device)
        self.generator_ = policy
        self.history_ = pd.DataFrame.from_records(records)
        self.n_steps_ = len(records)
        self.best_step_ = best_step
        self.kl_coef_ = float(kl_coef)
        return self

    def _fit_dpo(self, policy, reference, prompts, chosen, rejected, sources, rng):
        import torch

        network = policy.network_
        network.eval()
        device, pad, n = torch.device(policy.device_), pad_token_id(policy.tokenizer_), len(chosen)
        ids, labels = policy._examples(prompts + prompts, chosen + rejected, rows=[*range(n), *range(n)])
        same = [i for i in range(n) if ids[i] == ids[i + n] and labels[i] == labels[i + n]]
        if same:
            raise ValueError(
                f"{len(same)} preference pair(s), at {where_pairs(sources, same)}, are the same once cut to the "
                f"policy's max_length={policy.max_length_} tokens: their responses differ only past what the model "
                f"reads, so they express no preference to learn. Raise max_length, or shorten those prompts or "
                f"responses."
            )

        def logps(net, rows):
            input_ids, mask, batch_labels = pad_examples(ids, labels, rows, pad, device)
            with autocast(device, policy.dtype_):
                return token_logprobs(net, input_ids, mask, batch_labels)[0].sum(dim=1).float()

        plan = self._batches(n, rng)
        ref = torch.empty(2 * n, device=device)
        with torch.no_grad():  # in the first epoch's batches: its first step computes the policy's the same way
            for rows in (np.concatenate([batch, batch + n]) for batch in plan[0]):
                ref[torch.as_tensor(rows)] = logps(reference, rows)
        optimisation = self._optimisation(policy, network, sum(map(len, plan)))
        records = []

        def step_loss(batch):
            out = logps(network, np.concatenate([batch, batch + n]))
            pc, pr = out[: len(batch)], out[len(batch) :]
            rc, rr = ref[torch.as_tensor(batch)], ref[torch.as_tensor(batch + n)]
            loss = dpo_loss(pc, pr, rc, rr, self.kl_coef)
            pc, pr = pc.detach(), pr.detach()
            margin = self.kl_coef * ((pc - rc) - (pr - rr))
            records.append(
                {
                    "step": len(records),
                    "reward": float(margin.mean()),
                    "kl": float(torch.cat([pc - rc, pr - rr]).mean()),
                    "loss": float(loss.detach()),
                    "accuracy": pairwise_accuracy(margin.float().cpu().numpy()),  # a tie, as at the start: half
                }
            )
            return loss, 1

        train_epochs(
            optimisation,
            network,
            epochs=self._epochs(),
            batches=lambda epoch: plan[epoch],
            step_loss=step_loss,
            dropout=False,
            verbose=self.verbose,
            desc="dpo epoch",
        )
        return records

    # -- prediction -------------------------------------------------------------------------
    def predict(self, X):
        """The tuned generator's answer to each prompt, as a 1-D array of str."""
        check_is_fitted(self, "generator_")
        return self.generator_.predict(X)

    def score(self, X, y=None):
        """Mean reward of the answers to the prompts ``X`` (RLOO, PPO); ``y`` is ignored."""
        check_is_fitted(self, "generator_")
        if self.reward is None:
            raise ValueError(
                "score needs a reward: this PreferenceTuner has reward=None (DPO); call a reward model on the answers "
                "of predict instead."
            )
        prompts = check_texts(X, estimator=self)
        return float(self._rewards(prompts, list(self.predict(prompts))).mean())
