"""One online fit of PreferenceTuner (RLOO or PPO): sample answers, score them, update the policy.

The tuner (``_preference.py``) checks its parameters, builds the policy and its
frozen reference and keeps the result; this object holds what lives only during
the fit (the prompts' token ids, the optimiser, the reward moments, the KL
coefficient, PPO's samples between its updates) and runs the steps through the
training engine (``train_epochs``), so locking, the non-finite guard and the
schedule are the classifiers'.
"""

import math

import numpy as np

from ._causal import build_example, pad_examples, token_logprobs
from ._device import autocast
from ._prompting import answer_tokens
from ._rl import (
    RunningMoments,
    _HackingGuard,
    adaptive_kl_coef,
    logprobs_and_values,
    ppo_loss,
    ppo_targets,
    rloo_advantages,
    value_head,
)
from ._tokens import pad_token_id
from ._training import draw_seed, train_epochs


def prompt_budget(policy, max_new):
    """The tokens left to a prompt next to an answer of ``max_new`` tokens (a ValueError naming it if none)."""
    budget = policy.max_length_ - max_new
    if budget < 1:
        raise ValueError(
            f"max_new_tokens={max_new} leaves no room for the prompt: the policy's max_length is "
            f"{policy.max_length_} tokens. Use max_new_tokens < {policy.max_length_}."
        )
    return budget


def split_prompts(prompts, fraction, rng):
    """The rows of the training and of the validation prompts: ``fraction`` of the distinct prompts, at least one.

    A prompt given several times is on one side with all its copies: validation then scores
    prompts the policy was not trained on.
    """
    if fraction is None:
        return list(range(len(prompts))), []
    distinct = list(dict.fromkeys(prompts))
    n_val = max(1, round(fraction * len(distinct)))
    if n_val >= len(distinct):
        raise ValueError(
            f"validation_fraction={fraction} of {len(distinct)} distinct prompts leaves none to train on; "
            f"give more prompts or a smaller validation_fraction."
        )
    held_out = {distinct[i] for i in rng.permutation(len(distinct))[:n_val]}
    return [i for i, p in enumerate(prompts) if p not in held_out], [i for i, p in enumerate(prompts) if p in held_out]


class OnlineRun:
    """RLOO or PPO on ``prompts`` for ``tuner``; ``run()`` gives the records, the best step and the KL coefficient."""

    def __init__(self, tuner, policy, reference, prompts, rng):
        import torch

        self.tuner, self.policy, self.reference, self.rng = tuner, policy, reference, rng
        self.network = policy.network_
        self.device, self.pad = torch.device(policy.device_), pad_token_id(policy.tokenizer_)
        self.k = tuner.n_generations
        self.max_new = tuner.max_new_tokens or policy.max_new_tokens
        budget = prompt_budget(policy, self.max_new)
        train_rows, validation_rows = split_prompts(prompts, tuner.validation_fraction, rng)
        self.prompts = [prompts[i] for i in train_rows]
        self.validation = [prompts[i] for i in validation_rows]
        self.prompt_ids = policy._prompt_ids(self.prompts, [budget] * len(self.prompts), train_rows)
        # The held-out prompts are answered as predict answers them: the generator's max_new_tokens.
        self.validation_max_new = policy.max_new_tokens
        validation_budget = prompt_budget(policy, self.validation_max_new)
        self.validation_ids = (
            policy._prompt_ids(self.validation, [validation_budget] * len(self.validation), validation_rows)
            if self.validation
            else []
        )
        self.ppo = tuner.algorithm == "ppo"
        self.head = value_head(self.network).to(self.device) if self.ppo else None
        self.module = torch.nn.ModuleDict({"policy": self.network, "value": self.head}) if self.ppo else self.network
        self.steps = [batch for epoch in tuner._batches(len(self.prompts), rng) for batch in epoch]
        self.updates = tuner.ppo_epochs if self.ppo else 1
        self.optimisation = tuner._optimisation(policy, self.module, len(self.steps) * self.updates)
        self.moments, self.records = RunningMoments(), []
        self.kl_coef, self.kl_reached, self.samples = float(tuner.kl_coef), False, None
        self.guard = _HackingGuard(self.records)

    def sample(self, batch):
        """Answers to the batch's prompts, their rewards, and the reference's token log-probs."""
        import torch

        tuner, policy = self.tuner, self.policy
        rows = np.repeat(batch, self.k)
        answers = policy._generate_ids(
            [self.prompt_ids[i] for i in rows],
            do_sample=True,
            seed=draw_seed(self.rng),
            max_new_tokens=self.max_new,
            temperature=tuner.temperature,
            # The whole distribution at that temperature, which token_logprobs reads: the generator's
            # top_p (for predict) would draw from a truncated one, and narrow the answers RLOO compares.
            top_p=1.0,
            keep_eos=True,
        )
        # With stop_at_newline the reward reads the first line: the tokens after it are neither
        # rewarded nor trained, nor counted in the KL.
        answers = [answer_tokens(policy.tokenizer_, a, policy.stop_at_newline) for a in answers]
        texts = [policy._decode(a) for a in answers]
        batch_prompts = [self.prompts[i] for i in rows]
        rewards = tuner._rewards(batch_prompts, texts)
        self.optimisation.hint = (
            f"rewards of extreme magnitude (this step's range from {rewards.min():.3g} to {rewards.max():.3g})."
        )
        pairs = [build_example(self.prompt_ids[i], a) for i, a in zip(rows, answers)]
        ids, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        inputs = pad_examples(ids, labels, np.arange(len(ids)), self.pad, self.device)
        with torch.no_grad(), autocast(self.device, policy.dtype_):
            ref_logp, _ = token_logprobs(self.reference, *inputs, tuner.temperature)
        record = {"step": len(self.records), "reward": float(rewards.mean())}
        if tuner.eval_reward is not None:
            record["eval_reward"] = float(tuner._rewards(batch_prompts, texts, tuner.eval_reward, "eval_reward").mean())
        return inputs, rewards, ref_logp.float(), record

    def finish(self, record, kl, scored, loss):
        """The step's record, and the KL controller's update for the next step."""
        extra = {"eval_reward": record.pop("eval_reward")} if "eval_reward" in record else {}
        record.update(
            kl=float(kl.mean()), kl_coef=self.kl_coef, loss=loss, length=float(scored.sum(dim=1).float().mean())
        )
        record.update(extra)
        target = self.tuner.target_kl
        # Ziegler et al.'s controller lowers the coefficient while the KL is below the target.
        # A fit starts at the reference, where the KL is 0 by construction: lowering it then
        # only lets the policy run past the target later (measured: 2-4 nats past it in 20
        # steps), so the coefficient is held until the KL first reaches the target.
        self.kl_reached = self.kl_reached or (target is not None and float(kl.mean()) >= target)
        if self.kl_reached:
            self.kl_coef = adaptive_kl_coef(self.kl_coef, float(kl.mean()), target, len(kl))
        self.records.append(record)

    def rloo_step(self, batch):
        import torch

        inputs, rewards, ref_logp, record = self.sample(batch)
        with autocast(self.device, self.policy.dtype_):
            logp, scored = token_logprobs(self.network, *inputs, self.tuner.temperature)
        kl = (logp.detach().float() - ref_logp).sum(dim=1).double().cpu().numpy()
        advantages = rloo_advantages(self.moments.normalise(rewards) - self.kl_coef * kl, self.k)
        weights = torch.as_tensor(advantages, dtype=torch.float32, device=self.device)
        loss = -(weights * logp.float().sum(dim=1)).mean()
        self.finish(record, kl, scored, float(loss.detach()))
        return loss, 1

    def ppo_step(self, item):
        """One of ``ppo_epochs`` updates on a batch of samples; the first draws and scores them."""
        batch, update = item
        if update == 0:
            inputs, rewards, ref_logp, record = self.sample(batch)
            with autocast(self.device, self.policy.dtype_):
                logp, values, scored = logprobs_and_values(self.network, self.head, *inputs, self.tuner.temperature)
            logp, values = logp.float(), values.float()
            old_logp, old_values = logp.detach(), values.detach()
            per_token_kl = (old_logp - ref_logp) * scored
            kl = per_token_kl.sum(dim=1).double().cpu().numpy()
            advantages, returns = ppo_targets(
                per_token_kl, scored, self.moments.normalise(rewards), old_values, self.kl_coef, self.tuner.gae_lambda
            )
            self.samples = (inputs, old_logp, old_values, advantages, returns, scored)
            self.finish(record, kl, scored, 0.0)
        else:
            inputs, old_logp, old_values, advantages, returns, scored = self.samples
            with autocast(self.device, self.policy.dtype_):
                logp, values, _ = logprobs_and_values(self.network, self.head, *inputs, self.tuner.temperature)
            logp, values = logp.float(), values.float()
        loss, _, _ = ppo_loss(logp, old_logp, advantages, values, old_values, returns, scored, self.tuner.clip_range)
        self.records[-1]["loss"] += float(loss.detach()) / self.updates
        if update == self.updates - 1:
            self.samples = None
        return loss, 1

    def validation_score(self):
        """Greedy answers to the validation prompts, scored into the last record; the score the guard watches."""
        tuner, policy, record = self.tuner, self.policy, self.records[-1]
        answers = policy._generate_ids(self.validation_ids, do_sample=False, max_new_tokens=self.validation_max_new)
        texts = [policy._decode(a) for a in answers]
        record["val_reward"] = float(tuner._rewards(self.validation, texts).mean())
        if tuner.eval_reward is None:
            return record["val_reward"]
        record["val_eval_reward"] = float(
            tuner._rewards(self.validation, texts, tuner.eval_reward, "eval_reward").mean()
        )
        return record["val_eval_reward"]

    def validate(self):
        score = self.validation_score()
        self.guard.check(score)
        return score

    def run(self):
        """Train: rounds of ``eval_every`` steps with validation, else epochs; returns (records, best step, kl_coef)."""
        tuner, steps, updates = self.tuner, self.steps, self.updates
        items = [(batch, u) for batch in steps for u in range(updates)] if self.ppo else steps
        per_round = (tuner.eval_every if self.validation else math.ceil(len(steps) / tuner._epochs())) * updates
        rounds = [items[i : i + per_round] for i in range(0, len(items), per_round)]
        train_epochs(
            self.optimisation,
            self.module,
            epochs=len(rounds),
            batches=lambda r: rounds[r],
            step_loss=self.ppo_step if self.ppo else self.rloo_step,
            validate=self.validate if self.validation else None,
            n_iter_no_change=len(rounds) + 1,
            dropout=False,
            verbose=tuner.verbose,
            desc=f"{tuner.algorithm} {'evaluation round' if self.validation else 'epoch'}",
        )
        best = self.guard.best_step() if self.validation else None
        return self.records, best, self.kl_coef
