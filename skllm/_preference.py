"""PreferenceTuner: tune a generator towards a reward (RLOO) or towards preferences directly (DPO).

Both algorithms are written here, on the network, prompts and generation of
FineTuneGenerator, rather than through TRL's RLOOTrainer and DPOTrainer. Tried
with TRL 1.16: RLOOTrainer trains the LoRA network, but fails on the
prompt-tuning one (the virtual tokens lengthen the sequence it aligns
completions with), and with a peft model takes the base model with adapters
off as the reference, so a LoRA SFT model could not be its own reference. It
also wants a ``datasets.Dataset``, an output folder and a seed of its own. The
two losses are a few lines each (below); written on the same network they
give one generation path, one pickling scheme and runs reproducible from
``random_state`` in a forked RNG.
"""

import copy
import pickle

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._causal import build_example, pad_examples, token_logprobs
from ._device import autocast
from ._reward import preference_pairs
from ._sft import FineTuneGenerator
from ._tokens import pad_token_id
from ._training import Optimisation, check_training_params, draw_seed, release_memory, train_epochs, training_context
from ._validation import check_choice, check_int, check_number, check_texts

ALGORITHMS = ("rloo", "dpo")


def rloo_advantages(rewards, k):
    """Leave-one-out advantages: each reward minus the mean of the other ``k - 1`` of its prompt.

    ``rewards`` holds ``k`` consecutive values per prompt.
    """
    grouped = np.asarray(rewards, dtype=np.float64).reshape(-1, k)
    baseline = (grouped.sum(axis=1, keepdims=True) - grouped) / (k - 1)
    return (grouped - baseline).ravel()


def dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    """Mean ``-log sigmoid(beta * (chosen log-ratio - rejected log-ratio))`` (Rafailov et al., 2023)."""
    import torch

    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()


class PreferenceTuner(BaseEstimator):
    """Tune a text generator to please a reward model, or directly from preference pairs.

    The reinforcement-learning step of RLHF. The policy is a
    :class:`FineTuneGenerator` (a fitted one, such as the result of supervised
    fine-tuning, or a fresh one on a model name); the frozen copy it starts
    from is the reference model, and a penalty ``kl_coef`` times the
    log-ratio of the two keeps the tuned model close to it.

    * ``algorithm="rloo"`` (online): ``fit(prompts)``. At each step,
      ``n_generations`` answers are sampled for each of ``batch_size``
      prompts and scored by ``reward``; each answer's reward, less ``kl_coef``
      times its log-ratio to the reference (the per-sequence KL estimate),
      minus the mean of the other answers to the same prompt is its
      advantage, and the policy gradient raises the log-probability of the
      answers with a positive one (REINFORCE Leave-One-Out, Ahmadian et al.,
      2024). It takes the place of the PPO of the original RLHF recipe:
      the same objective (reward with a KL penalty to the reference), with
      the leave-one-out baseline instead of a learned value network and
      clipping, which halves the models held in memory.
    * ``algorithm="dpo"`` (offline): ``fit(pairs)`` with a DataFrame
      ``prompt, chosen, rejected`` (or ranked lists, as for
      :class:`RewardModel`); no reward model is needed. ``kl_coef`` is DPO's
      ``beta`` (Rafailov et al., 2023).

    Parameters
    ----------
    reward : RewardModel, callable or None, default=None
        What RLOO maximises: a fitted :class:`RewardModel` (or any fitted
        estimator whose ``predict`` takes ``(prompt, answer)`` tuples), or a
        function ``reward(prompts, completions) -> floats``. It must return
        one finite number per answer (else ``ValueError``). Not used by DPO,
        except by ``score``.
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
    algorithm : {"rloo", "dpo"}, default="rloo"
        Online policy gradient against ``reward``, or direct preference
        optimisation on pairs.
    kl_coef : float, default=0.05
        Weight of the penalty for drifting from the reference (DPO's beta).
    epochs : int, default=1
        Passes over the prompts (RLOO) or pairs (DPO).
    batch_size : int, default=4
        Prompts (RLOO) or pairs (DPO) per optimisation step.
    n_generations : int, default=4
        Answers sampled per prompt (RLOO); at least 2 for the baseline.
    temperature : float, default=1.0
        Sampling temperature of the RLOO answers.
    max_new_tokens : int, default=None
        Longest answer sampled in training; ``None``: the generator's.
    learning_rate : float, default=None
        AdamW learning rate; ``None``: the method's default divided by 10.
    weight_decay : float, default=0.01
        AdamW weight decay, on weight matrices only.
    warmup_ratio : float, default=0.06
        Fraction of the steps with a linearly rising learning rate; it then
        decays linearly to zero (as in the other estimators).
    max_grad_norm : float, default=1.0
        Gradient clipping threshold; ``None`` disables clipping.
    random_state : int, RandomState or None, default=None
        Seeds the prompt order and the sampling; the same int gives the same
        model on the CPU.
    verbose : int, default=0
        ``1`` prints a progress bar with the reward and the KL.

    Attributes
    ----------
    generator_ : FineTuneGenerator
        The tuned generator; ``predict`` uses it (greedy, unless it samples).
    history_ : pandas.DataFrame
        One row per optimisation step: ``step``, ``reward`` (mean reward of
        the sampled answers for RLOO; mean implicit reward margin
        ``beta * (chosen log-ratio - rejected log-ratio)`` for DPO), ``kl``
        (mean per-answer log-ratio of policy to reference, summed over the
        answer's tokens: for RLOO the estimate of the KL divergence on
        sampled answers; for DPO on the pairs' responses), ``loss``, and
        ``length`` (mean answer tokens, RLOO) or ``accuracy`` (share of pairs
        ranked right by the implicit reward, DPO).
    n_steps_ : int
        Optimisation steps run.

    Examples
    --------
    >>> from skllm import FineTuneGenerator, PreferenceTuner
    >>> def brevity(prompts, completions):
    ...     return [-len(c) for c in completions]
    >>> gen = FineTuneGenerator(max_new_tokens=8, random_state=0)
    >>> tuner = PreferenceTuner(brevity, gen, batch_size=2, n_generations=2, random_state=0)
    >>> tuner = tuner.fit(["Say hello.", "Name a colour."])
    >>> list(tuner.history_.columns)
    ['step', 'reward', 'kl', 'loss', 'length']
    >>> float(tuner.history_["kl"].iloc[0])
    0.0
    """

    def __init__(
        self,
        reward=None,
        generator=None,
        *,
        method=None,
        algorithm="rloo",
        kl_coef=0.05,
        epochs=1,
        batch_size=4,
        n_generations=4,
        temperature=1.0,
        max_new_tokens=None,
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
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_generations = n_generations
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
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
        check_int(self.epochs, "epochs")
        check_training_params(self)
        check_int(self.n_generations, "n_generations", 2)
        check_number(self.temperature, "temperature", 0, low_inclusive=False)
        check_int(self.max_new_tokens, "max_new_tokens", allow_none=True)
        if self.algorithm == "rloo" and self.reward is None:
            raise ValueError(
                "algorithm='rloo' needs a reward: a fitted RewardModel or a function reward(prompts, completions)."
            )
        if self.reward is not None and not (callable(self.reward) or hasattr(self.reward, "predict")):
            raise ValueError(f"reward must be a fitted RewardModel or a callable, got {type(self.reward).__name__}.")

    def _policy(self, seed):
        """A fitted FineTuneGenerator of our own to train: the generator's copy, or a fresh model."""
        generator = self.generator
        if hasattr(generator, "estimator") and type(generator).__name__ == "FrozenEstimator":
            generator = generator.estimator
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

    def _rewards(self, prompts, completions):
        if hasattr(self.reward, "predict"):
            values = self.reward.predict(list(zip(prompts, completions)))
        else:
            values = self.reward(list(prompts), list(completions))
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"The reward must return numbers, one per completion: {exc}") from exc
        if values.shape != (len(completions),):
            raise ValueError(
                f"The reward returned {values.shape} values for {len(completions)} completions; it must return "
                f"one number per completion."
            )
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(
                f"The reward returned {bad.size} NaN or infinite value(s), e.g. for completion "
                f"{completions[bad[0]]!r:.60} of prompt {prompts[bad[0]]!r:.60}; it must return finite numbers."
            )
        return values

    def _optimisation(self, policy, total_steps, hint=""):
        import torch

        lr = self.learning_rate if self.learning_rate is not None else policy.method_.default_learning_rate / 10
        return Optimisation(
            policy.network_,
            learning_rate=lr,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            max_grad_norm=self.max_grad_norm,
            total_steps=total_steps,
            device=torch.device(policy.device_),
            dtype=policy.dtype_,
            who=f"{type(self).__name__}({self.algorithm!r})",
            hint=hint,
        )

    def _batches(self, n, rng):
        """The rows of each step, per epoch: every epoch's order is drawn before the first step."""
        return [
            [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
            for order in [rng.permutation(n) for _ in range(self.epochs)]
        ]

    # -- fit ----------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Tune the generator: ``X`` are prompts (RLOO) or preference pairs (DPO); ``y`` is ignored.

        Returns
        -------
        self : PreferenceTuner
        """
        import pandas as pd
        import torch

        self._validate_params()
        if self.algorithm == "dpo":
            data = preference_pairs(X, "X")
        else:
            data = check_texts(X, estimator=self)
        rng = check_random_state(self.random_state)
        seed = draw_seed(rng)
        policy = self._policy(seed)
        device = torch.device(policy.device_)
        reference = copy.deepcopy(policy.network_).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        # The tuner's own attributes are set only once training has succeeded: a failed
        # fit leaves them (and the given generator, of which the policy is a copy) as they were.
        with training_context(seed, device):
            if self.algorithm == "dpo":
                records = self._fit_dpo(policy, reference, *data, rng)
            else:
                records = self._fit_rloo(policy, reference, data, rng)
        policy.network_.eval()
        policy._record_state()
        del reference
        release_memory(device)
        self.generator_ = policy
        self.history_ = pd.DataFrame.from_records(records)
        self.n_steps_ = len(records)
        return self

    def _fit_rloo(self, policy, reference, prompts, rng):
        import torch

        network = policy.network_
        device, pad, k = torch.device(policy.device_), pad_token_id(policy.tokenizer_), self.n_generations
        max_new = self.max_new_tokens or policy.max_new_tokens
        budget = policy.max_length_ - max_new
        prompt_ids = policy._prompt_ids(prompts, [budget] * len(prompts))
        plan = self._batches(len(prompts), rng)
        optimisation = self._optimisation(policy, sum(map(len, plan)))
        records = []

        def step_loss(batch):
            rows = np.repeat(batch, k)
            answers = policy._generate_ids(
                [prompt_ids[i] for i in rows],
                do_sample=True,
                seed=draw_seed(rng),
                max_new_tokens=max_new,
                temperature=self.temperature,
                keep_eos=True,
            )
            texts = [policy._decode(a) for a in answers]
            rewards = self._rewards([prompts[i] for i in rows], texts)
            optimisation.hint = (
                f"rewards of extreme magnitude (this step's range from {rewards.min():.3g} to {rewards.max():.3g}); "
                f"scale the reward to a few units."
            )
            pairs = [build_example(prompt_ids[i], a) for i, a in zip(rows, answers)]
            ids, labels = [p[0] for p in pairs], [p[1] for p in pairs]
            input_ids, mask, batch_labels = pad_examples(ids, labels, np.arange(len(ids)), pad, device)
            with autocast(device, policy.dtype_):
                logp, scored = token_logprobs(network, input_ids, mask, batch_labels)
                with torch.no_grad():
                    ref_logp, _ = token_logprobs(reference, input_ids, mask, batch_labels)
            sequence_logp = logp.sum(dim=1)
            kl = (logp.detach() - ref_logp).sum(dim=1).double().cpu().numpy()
            advantages = rloo_advantages(rewards - self.kl_coef * kl, k)
            loss = -(torch.as_tensor(advantages, dtype=torch.float32, device=device) * sequence_logp).mean()
            records.append(
                {
                    "step": len(records),
                    "reward": float(rewards.mean()),
                    "kl": float(kl.mean()),
                    "loss": float(loss.detach()),
                    "length": float(scored.sum(dim=1).float().mean()),
                }
            )
            return loss, 1

        self._run_steps(optimisation, network, plan, step_loss)
        return records

    def _fit_dpo(self, policy, reference, prompts, chosen, rejected, rng):
        import torch

        network = policy.network_
        network.eval()
        device, pad, n = torch.device(policy.device_), pad_token_id(policy.tokenizer_), len(chosen)
        ids, labels = policy._examples(prompts + prompts, chosen + rejected)

        def logps(net, rows):
            input_ids, mask, batch_labels = pad_examples(ids, labels, rows, pad, device)
            with autocast(device, policy.dtype_):
                return token_logprobs(net, input_ids, mask, batch_labels)[0].sum(dim=1).float()

        with torch.no_grad():
            ref = torch.cat(
                [
                    logps(reference, np.arange(i, min(i + 2 * self.batch_size, 2 * n)))
                    for i in range(0, 2 * n, 2 * self.batch_size)
                ]
            )
        plan = self._batches(n, rng)
        optimisation = self._optimisation(policy, sum(map(len, plan)))
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
                    "accuracy": float((margin > 0).float().mean()),
                }
            )
            return loss, 1

        self._run_steps(optimisation, network, plan, step_loss)
        return records

    def _run_steps(self, optimisation, network, plan, step_loss):
        """The engine's loop over the planned steps, dropout off.

        Without dropout the log-ratio to the reference is exactly 0 before the first
        step, and RLOO's sampled answers are scored by the model that produced them.
        """
        train_epochs(
            optimisation,
            network,
            epochs=self.epochs,
            batches=lambda epoch: plan[epoch],
            step_loss=step_loss,
            dropout=False,
            verbose=self.verbose,
            desc=f"{self.algorithm} epoch",
        )

    # -- prediction -------------------------------------------------------------------------
    def predict(self, X):
        """The tuned generator's answer to each prompt, as a 1-D array of str."""
        check_is_fitted(self, "generator_")
        return self.generator_.predict(X)

    def score(self, X, y=None):
        """Mean reward of the answers to the prompts ``X`` (needs ``reward``); ``y`` is ignored."""
        check_is_fitted(self, "generator_")
        if self.reward is None:
            raise ValueError("score needs a reward: this PreferenceTuner has reward=None.")
        prompts = check_texts(X, estimator=self)
        return float(self._rewards(prompts, list(self.predict(prompts))).mean())
