"""The objectives and estimates of learning from a reward, apart from the estimator that runs them.

RLOO's leave-one-out baseline, DPO's loss, PPO's clipped surrogate with GAE and a
value head, the running reward moments and Ziegler et al.'s adaptive KL
controller, and the guard that watches a validation score against the training
reward. ``PreferenceTuner`` (``_preference.py``, and ``_online.py`` for RLOO and PPO) puts them together.
"""

import itertools
import math
import warnings

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._architecture import output_width
from ._causal import IGNORE, token_logprobs
from .exceptions import RewardHackingWarning

# Ziegler et al. (2019)'s adaptive KL controller: once the KL has first reached the target
# (``OnlineRun.finish``), each step moves the coefficient by
# clip(KL / target - 1, -KL_ERROR_FLOOR, KL_ERROR_LIMIT) * (answers of the step) / KL_HORIZON of itself.
# Their horizon (10,000 answers) suits runs of a million answers; runs of a few
# hundred answers need one of their own size to move the coefficient at all.
# The error is clipped alike both ways, as they did: a floor of 0.6 (the coefficient
# falling up to 3x as fast as it rises, after an overshoot) was measured and gained
# nothing on average (docs/benchmarks.md).
KL_ERROR_LIMIT = 0.2
KL_ERROR_FLOOR = 0.2
KL_HORIZON = 64
# PPO's constants, as in the InstructGPT recipe: no discount over an answer's tokens,
# and the value loss weighted by 0.1 against the policy's.
PPO_GAMMA = 1.0
PPO_VALUE_COEF = 0.1


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


def adaptive_kl_coef(coef, kl, target, n_answers):
    """The next KL coefficient of Ziegler et al. (2019)'s controller, after a step of ``n_answers`` answers.

    A step of ``KL_HORIZON`` answers or more moves it by the whole clipped error
    at most: the factor stays within [1 - KL_ERROR_FLOOR, 1 + KL_ERROR_LIMIT],
    never 0 or below however many answers a step samples.
    """
    error = min(max(kl / target - 1.0, -KL_ERROR_FLOOR), KL_ERROR_LIMIT)
    return coef * (1.0 + error * min(n_answers / KL_HORIZON, 1.0))


class RunningMoments:
    """Mean and standard deviation of every reward seen so far in a fit (merged batch by batch)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def normalise(self, values):
        """Add ``values`` to the moments, then give them standardised by the moments."""
        values = np.asarray(values, dtype=np.float64)
        # Rewards of extreme magnitude overflow here; the training guard then stops on the
        # non-finite loss with an error naming the rewards' range, so numpy's warnings add nothing.
        with np.errstate(over="ignore", invalid="ignore"):
            mean, m2, n = values.mean(), ((values - values.mean()) ** 2).sum(), values.size
            delta, total = mean - self.mean, self.n + n
            self.mean += delta * n / total
            self.m2 += m2 + delta**2 * self.n * n / total
            self.n = total
            std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 and self.m2 >= 0 else 0.0
            return (values - self.mean) / (std if std > 1e-8 else 1.0)


def gae_advantages(rewards, values, mask, lam, gamma=PPO_GAMMA):
    """Generalised advantage estimates (Schulman et al., 2016) and returns, per answer token.

    ``rewards``, ``values`` and ``mask`` are ``(answers, columns)``; each row's
    answer tokens are the contiguous columns where ``mask`` holds. The value after
    an answer's last token is 0.
    """
    import torch

    mask = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        following = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * following - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, advantages + values * mask


def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values, mask):
    """``values`` standardised over the positions of ``mask`` (0 elsewhere)."""
    mean = masked_mean(values, mask)
    std = masked_mean((values - mean) ** 2, mask).sqrt()
    return (values - mean) / (std + 1e-8) * mask


def ppo_loss(logp, old_logp, advantages, values, old_values, returns, mask, clip_range):
    """The clipped surrogate objective and clipped value loss (Schulman et al., 2017), per answer token.

    Returns ``(loss, policy loss, value loss)``; the loss weights the value loss by ``PPO_VALUE_COEF``.
    """
    import torch

    mask = mask.to(logp.dtype)
    ratio = torch.exp((logp - old_logp) * mask)
    clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy = masked_mean(torch.maximum(-advantages * ratio, -advantages * clipped), mask)
    values_clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    value = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
    return policy + PPO_VALUE_COEF * value, policy, value


def ppo_targets(per_token_kl, scored, rewards, values, kl_coef, lam):
    """PPO's advantages (GAE, whitened) and returns for a batch of answers.

    Each answer token is rewarded minus ``kl_coef`` times its log-ratio to the
    reference; the answer's (standardised) reward is added at its last token.
    """
    import torch

    token_rewards = -kl_coef * per_token_kl
    device = token_rewards.device
    last = scored.shape[1] - 1 - scored.flip(dims=[1]).int().argmax(dim=1)
    score = torch.as_tensor(rewards, dtype=token_rewards.dtype, device=device)
    token_rewards[torch.arange(len(last), device=device), last] += score * scored.any(dim=1)
    advantages, returns = gae_advantages(token_rewards, values, scored, lam)
    return whiten(advantages, scored.to(advantages.dtype)), returns


def value_head(network):
    """A linear value head, zero at the start, on the last hidden state of ``network``'s model."""
    import torch

    head = torch.nn.Linear(output_width(network._base().config), 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def logprobs_and_values(network, head, input_ids, mask, labels, temperature=1.0):
    """``token_logprobs`` of the policy and the value head's estimate at the same positions.

    The last hidden state is read by a hook on the transformer body, so that the
    policy's forward pass (the method's, virtual tokens included) serves both.
    """
    captured = {}

    def keep_hidden(module, inputs, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    # The transformer body that returns the last hidden state: OPT's causal LM calls its decoder directly,
    # past the base model (get_decoder finds it, and a multimodal model's language model).
    handle = network._base().get_decoder().register_forward_hook(keep_hidden)
    try:
        logp, scored = token_logprobs(network, input_ids, mask, labels, temperature)
    finally:
        handle.remove()
    targets = labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)
    hidden = captured["hidden"][:, network.n_virtual + keep]
    values = head(hidden.to(head.weight.dtype)).squeeze(-1) * scored
    return logp, values, scored


class _HackingGuard:
    """Watches the validation score against the training reward, and warns when they part."""

    def __init__(self, records):
        self.records, self.scores, self.ends, self.warned = records, [], [], False

    def _training_reward(self, i):
        start = self.ends[i - 1] if i else 0
        return float(np.mean([r["reward"] for r in self.records[start : self.ends[i]]]))

    def check(self, score):
        self.scores.append(score)
        self.ends.append(len(self.records))
        best = int(np.argmax(self.scores))
        last = len(self.scores) - 1
        if self.warned or last - best < 2:
            return
        rewards = [self._training_reward(i) for i in range(best, last + 1)]
        if all(b > a for a, b in itertools.pairwise(rewards)):
            self.warned = True
            warnings.warn(
                f"The training reward rose from {rewards[0]:.3g} to {rewards[-1]:.3g} over the last {last - best} "
                f"evaluations while the validation score stayed below its best ({self.scores[best]:.3g}, at step "
                f"{self.ends[best] - 1}): the policy may be exploiting the reward's blind spots. The weights of step "
                f"{self.ends[best] - 1} are kept; a larger kl_coef or a smaller target_kl hold it closer to the "
                f"reference.",
                RewardHackingWarning,
                stacklevel=6,  # check, validate, train_epochs, OnlineRun.run, fit: the caller of fit
            )

    def best_step(self):
        return self.ends[int(np.argmax(self.scores))] - 1


def unfreeze(estimator):
    """The estimator inside scikit-learn's ``FrozenEstimator``, or ``estimator`` itself."""
    if type(estimator).__name__ == "FrozenEstimator" and hasattr(estimator, "estimator"):
        return estimator.estimator
    return estimator


def check_scorer(scorer, name):
    """``scorer`` is None, a callable or a fitted estimator with ``predict``; else a ValueError naming it."""
    if scorer is None:
        return
    if not (callable(scorer) or hasattr(scorer, "predict")):
        raise ValueError(f"{name} must be a fitted RewardModel or a callable, got {type(scorer).__name__}.")
    from ._reward import RewardModel

    owner = getattr(scorer, "__self__", None)
    if isinstance(unfreeze(owner), RewardModel) and getattr(scorer, "__name__", "") == "predict":
        raise ValueError(
            f"{name} is the predict method of a {type(owner).__name__}, which takes (prompt, completion) pairs: "
            f"pass the {type(owner).__name__} itself, or a callable of (prompts, completions)."
        )
    if not hasattr(scorer, "predict"):
        import inspect

        try:
            inspect.signature(scorer).bind(["prompt"], ["completion"])
        except TypeError as exc:
            raise ValueError(
                f"{name} is called as {name}(prompts, completions), two lists of strings; {scorer!r:.80} cannot "
                f"take them: {exc}."
            ) from None
        except ValueError:  # no signature to read (some builtins): found out at the first call
            pass
    if hasattr(scorer, "get_params") and hasattr(scorer, "predict"):
        from sklearn.exceptions import NotFittedError

        try:
            check_is_fitted(scorer)
        except NotFittedError:
            raise ValueError(
                f"{name} is an unfitted {type(unfreeze(scorer)).__name__}: fit it first. clone (and so GridSearchCV) "
                f"unfits the estimators among the parameters: wrap a fitted reward model in "
                f"sklearn.frozen.FrozenEstimator to keep it fitted."
            ) from None


def _numpy_ready(tensor):
    """A torch tensor detached on the CPU; bfloat16 (a bfloat16 reward model's output) as float32, as NumPy lacks it."""
    tensor = tensor.detach().cpu()
    return tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor


def _by_position(series, n, name):
    """A reward's pandas Series as one value per completion, read by its index (0 to n-1, in any order)."""
    if len(series) == n and series.index.is_unique and set(series.index) == set(range(n)):
        return series.sort_index().to_numpy()
    raise ValueError(
        f"The {name} returned a pandas Series indexed {series.index[:5].tolist()!r}...; its index must be the "
        f"completions' positions 0 to {n - 1} (in any order), or return a list or array in their order."
    )


def read_rewards(values, prompts, completions, name):
    """What a reward returned for ``completions`` (of ``prompts``), as float64, one finite number each.

    A pandas Series is read by its index, torch tensors (one, or a list) are detached; text, a
    wrong count or shape and NaN or infinite values are a ValueError naming ``name``.
    """
    if hasattr(values, "index") and hasattr(values, "to_numpy"):  # a pandas Series: read by its index
        values = _by_position(values, len(completions), name)
    if hasattr(values, "detach"):  # a torch tensor, perhaps one that requires grad
        values = _numpy_ready(values)
    elif isinstance(values, (list, tuple)):  # ... or a list of them
        values = [_numpy_ready(v) if hasattr(v, "detach") else v for v in values]
    raw = np.asarray(values, dtype=object) if isinstance(values, (list, tuple)) else np.asarray(values)
    if raw.dtype.kind in "USO" and any(isinstance(v, (str, bytes)) for v in raw.ravel()):
        raise ValueError(f"The {name} must return numbers, one per completion; it returned text: {raw[:3]!r}.")
    if raw.dtype.kind in "cmM" or (
        raw.dtype.kind == "O" and any(np.asarray(v).dtype.kind in "cmM" for v in raw.ravel())
    ):
        # NumPy would drop an imaginary part, or read dates as nanosecond counts
        raise ValueError(f"The {name} must return real numbers, one per completion; it returned {raw[:3]!r}.")
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"The {name} must return numbers, one per completion: {exc}") from exc
    if values.shape != (len(completions),):
        raise ValueError(
            f"The {name} returned {values.shape} values for {len(completions)} completions; it must return "
            f"one number per completion."
        )
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(
            f"The {name} returned {bad.size} NaN or infinite value(s), e.g. for completion "
            f"{completions[bad[0]]!r:.60} of prompt {prompts[bad[0]]!r:.60}; it must return finite numbers."
        )
    return values
