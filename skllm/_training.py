"""The training engine: the one loop that every estimator of skllm trains a network with.

:class:`~skllm.FineTuneClassifier`, :class:`~skllm.FineTuneRegressor`,
:class:`~skllm.RewardModel`, :class:`~skllm.FineTuneGenerator` and
:class:`~skllm.PreferenceTuner` (DPO and RLOO) differ only in their batches and
their loss. Everything else lives here, once:

* :func:`training_context`: the per-process lock and the forked, seeded random
  generator, so that fits in threads of one process stay reproducible;
* :class:`Optimisation`: AdamW with weight-decay groups, the linear warm-up and
  decay schedule, float16 loss scaling, gradient clipping and the guard that
  stops training on a non-finite loss or gradient;
* :func:`train_epochs`: epochs of batches with a progress bar, the loss curve,
  early stopping on a validation score (keeping the best epoch's weights);
* :func:`keep_state_on_error`: a failed fit leaves the estimator as it was;
* :func:`~skllm._dropout.fast_cpu_dropout`: dropout masks on the CPU drawn from
  16-bit random numbers, more cheaply than torch's;
* :class:`~skllm._split_step.SplitSteps`: a parameter-efficient step on the CPU in
  two halves of its batch, on two threads at once;
* :func:`~skllm._seen_rows.seen_rows`: a fit that trains the token embedding trains
  only the rows its texts use (callers open it around the optimiser and the epochs);
* :func:`~skllm._device.frozen_weights_in`: under reduced precision, the frozen linear
  weights cast once per fit rather than by autocast at every call;
* :func:`~skllm._splits.validation_split`: the rows held out for early stopping;
* :func:`length_grouped_batches`, :func:`draw_seed`, :func:`check_training_params`
  and :func:`release_memory`: batches of texts of similar length, seeds drawn from the
  fit's generator, the checks of the training parameters, and the memory a fit leaves.

A new estimator supplies ``batches(epoch)`` and either ``step_loss(batch)`` or
``forward(batch)`` and ``output_loss(outputs, batch)`` (with ``splittable=True`` where
``forward`` gives one output row per row, so that its steps may run in two halves), and
gets the rest. (Hugging Face's ``Trainer`` would give much of this too, but it wants a
``datasets``-style dataset, an output folder, its own seeding and its own
device placement, and RLOO's step is not a supervised batch: a loop of our own,
this small, keeps one reproducible scheme for every estimator.)
"""

import contextlib
import gc
import logging
import math
import threading

import numpy as np

from ._attention import training_attention
from ._device import frozen_weights_in
from ._dropout import fast_cpu_dropout
from ._seen_rows import token_embedding
from ._split_step import SplitSteps, WholeSteps, splits
from ._validation import check_int, check_number
from .exceptions import NonFiniteLossError

logger = logging.getLogger(__name__)


# torch's random generator belongs to the process: fits running at once in threads of
# one process (a Dask worker with several threads, joblib's threading backend) would
# draw from each other's seeds and differ from run to run. They train one at a time.
_TRAINING_LOCK = threading.RLock()

# Batches are formed from texts of similar length within groups of this many
# batches, then the batches are shuffled: little padding, still random order.
_GROUP = 50


def check_training_params(estimator):
    """Validate the training parameters every training estimator shares (those it has).

    ``epochs``: ``None`` (the method's default) or at least 1, for every estimator.
    """
    check_int(estimator.epochs, "epochs", 1, allow_none=True)
    check_int(estimator.batch_size, "batch_size", 1)
    check_number(estimator.learning_rate, "learning_rate", 0, allow_none=True, low_inclusive=False)
    check_number(getattr(estimator, "weight_decay", 0.0), "weight_decay", 0)
    check_number(getattr(estimator, "warmup_ratio", 0.0), "warmup_ratio", 0, 1)
    check_number(estimator.max_grad_norm, "max_grad_norm", 0, allow_none=True, low_inclusive=False)
    if not isinstance(estimator.verbose, bool):  # True/False as scikit-learn's verbose takes them
        check_int(estimator.verbose, "verbose", 0)


def length_grouped_batches(lengths, batch_size, rng):
    """Row indices per batch: similar lengths together (little padding), batches in random order."""
    order = rng.permutation(len(lengths))
    batches = []
    step = batch_size * _GROUP
    for start in range(0, len(order), step):
        group = order[start : start + step]
        group = group[np.argsort(-lengths[group], kind="stable")]
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def draw_seed(rng):
    """A 31-bit seed for torch, drawn from a NumPy ``RandomState``."""
    return int(rng.randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def training_context(seed, device):
    """Hold the training lock and run with torch's generator forked and seeded with ``seed``.

    The global random state is untouched: it is restored when the block ends.
    """
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with _TRAINING_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def keep_state_on_error(estimator):
    """On an exception, put back the estimator's attributes as they were before the block.

    A fit builds new objects (network, state dicts) rather than changing the old
    ones in place, so a shallow copy of the attributes is the previous state.
    """
    saved = dict(vars(estimator))
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(saved)
        raise


def release_memory(device):
    """Give ``device`` back what a finished fit left behind (the optimiser's moments, gradients).

    Reference counting frees them when the fit's optimisation goes out of scope: no cycle
    holds it (tests/test_training.py). On the CPU nothing more is done; a full
    ``gc.collect()`` took 0.2 s a fit with transformers and torch imported, a twentieth of
    each fit of a grid search over 300 texts, and found no tensor to free. CUDA's caching
    allocator keeps freed blocks for the process: cycles are collected, then the cache
    emptied, so that other processes and models get the memory.
    """
    if device.type == "cuda":
        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _fused(params):
    """``True`` where ``torch.optim.AdamW(fused=True)`` takes these parameters, else ``None``.

    The devices come from torch itself (the CPU since torch 2.4, CUDA, MPS...); ``None``
    leaves torch its own choice (its foreach loop where it can), as ``fused=False`` would not.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # a private helper: without it, torch chooses
        return None
    devices = _get_fused_kernels_supported_devices()
    return True if all(p.is_floating_point() and p.device.type in devices for p in params) else None


class Optimisation:
    """AdamW, its schedule, loss scaling and clipping for the trainable parameters of ``network``.

    Parameters
    ----------
    network : torch.nn.Module
        Trained parameters are those with ``requires_grad``; weight matrices
        (2-D and up) get ``weight_decay``; biases, norms and the token embedding
        none (:func:`~skllm._seen_rows.token_embedding`; minGPT's convention): decay
        alone would shrink the rows of tokens the training texts never hold.
    learning_rate, weight_decay, warmup_ratio, max_grad_norm : float
        As the estimators document them; ``max_grad_norm=None``: no clipping.
    total_steps : int
        Steps of the linear schedule (warm-up over ``warmup_ratio`` of them,
        then linear decay to zero).
    device : torch.device
    dtype : str
        float16 on CUDA scales the loss (``torch.amp.GradScaler``); bfloat16
        has float32's range and needs none.
    who : str
        The estimator's name, for error messages.
    hint : str
        The likely causes of a non-finite loss, for the error message.
    """

    def __init__(
        self,
        network,
        *,
        learning_rate,
        weight_decay,
        warmup_ratio,
        max_grad_norm,
        total_steps,
        device,
        dtype,
        who,
        hint="",
    ):
        import torch
        from transformers import get_linear_schedule_with_warmup

        self.params = [p for p in network.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(
                f"{who} has nothing to train: the method leaves no parameter of this model trainable (for "
                f"example a method that trains bias terms, on a model without any)."
            )
        embedding = token_embedding(network)
        undecayed = set() if embedding is None else {id(p) for p in embedding.parameters()}
        decays = [p.ndim >= 2 and id(p) not in undecayed for p in self.params]
        groups = [
            {"params": [p for p, d in zip(self.params, decays) if d], "weight_decay": weight_decay},
            {"params": [p for p, d in zip(self.params, decays) if not d], "weight_decay": 0.0},
        ]
        # The fused kernel (one pass over each tensor; the Trainer's default, "adamw_torch_fused"),
        # not torch's default on the CPU, a loop of elementwise ops per tensor: full fine-tuning
        # of MiniLM (22.7M parameters) took 71.6 s unfused and 58.5 s fused (docs/benchmarks.md).
        self.optimizer = torch.optim.AdamW(groups, lr=learning_rate, fused=_fused(self.params))
        total_steps = max(int(total_steps), 1)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(warmup_ratio * total_steps), total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and dtype == "float16")
        self.device, self.dtype = device, dtype
        self.max_grad_norm = max_grad_norm
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.who, self.hint = who, hint
        self.n_steps = 0

    @classmethod
    def of(cls, estimator, network, *, total_steps, device, learning_rate=None, dtype=None, who=None, hint=""):
        """The optimisation ``estimator``'s parameters ask for, over ``total_steps``.

        The learning rate is ``learning_rate`` where given, else the estimator's, else its
        method's default; the estimator gives ``weight_decay``, ``warmup_ratio`` and
        ``max_grad_norm``, and ``dtype_`` and its class name where ``dtype`` and ``who`` are not given.
        """
        if learning_rate is None:
            learning_rate = estimator.learning_rate
        if learning_rate is None:
            learning_rate = estimator.method_.default_learning_rate
        return cls(
            network,
            learning_rate=learning_rate,
            weight_decay=estimator.weight_decay,
            warmup_ratio=estimator.warmup_ratio,
            max_grad_norm=estimator.max_grad_norm,
            total_steps=total_steps,
            device=device,
            dtype=estimator.dtype_ if dtype is None else dtype,
            who=type(estimator).__name__ if who is None else who,
            hint=hint,
        )

    def _stop(self, what, value, where):
        hint = f" Likely causes: {self.hint}" if self.hint else ""
        raise NonFiniteLossError(
            f"{self.who} stopped training at step {self.n_steps + 1}{where}: the {what} is {value}. The estimator "
            f"keeps the state it had before this fit.{hint} A learning rate or weight decay too high for the "
            f"method (learning_rate={self.learning_rate:g}, weight_decay={self.weight_decay:g} here) or float16 "
            f"overflow (dtype='bfloat16' or 'float32' avoid it) also cause this."
        )

    def _check_parameters(self, where):
        """Raise when the step just taken left a trainable parameter NaN or infinite.

        A finite loss and gradient do not rule it out: a huge step or a huge
        decoupled weight decay (``p -= lr * weight_decay * p``) overflows the
        weights themselves.
        """
        if first_non_finite(self.params) is None:
            return
        raise NonFiniteLossError(
            f"{self.who} stopped training at step {self.n_steps + 1}{where}: the optimiser step made trainable "
            f"weights NaN or infinite, although the loss and the gradient were finite. The learning rate or the "
            f"weight decay is too large (learning_rate={self.learning_rate:g}, weight_decay={self.weight_decay:g} "
            f"here; AdamW multiplies the weights by 1 - learning_rate * weight_decay each step). The estimator "
            f"keeps the state it had before this fit."
        )

    def step(self, loss, where="", backward=None):
        """One optimisation step on ``loss``; returns its value.

        A non-finite loss, or a non-finite gradient outside float16 loss
        scaling (which skips such a step by design), raises
        :class:`~skllm.exceptions.NonFiniteLossError` before any parameter
        changes; so do trainable weights left non-finite by the step itself.
        ``where`` completes the message (e.g. ``" (epoch 2)"``). ``backward``: what
        sets the gradients instead of ``loss.backward()`` (a split step's, without loss scaling).
        """
        import torch

        value = float(loss.detach())
        if not math.isfinite(value):
            self._stop("loss", value, where)
        self.optimizer.zero_grad(set_to_none=True)
        if backward is None:
            self.scaler.scale(loss).backward()
        else:
            backward()
        self.scaler.unscale_(self.optimizer)
        limit = self.max_grad_norm if self.max_grad_norm is not None else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, limit))
        if not self.scaler.is_enabled() and not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._stop("gradient norm", norm, where)
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._check_parameters(where)
        if scale is None or self.scaler.get_scale() >= scale:
            self.scheduler.step()  # not after a step the scaler skipped (inf/NaN gradients)
        self.n_steps += 1
        return value


class TrainingResult:
    """What :func:`train_epochs` measured: the estimators copy it into their fitted attributes."""

    def __init__(self):
        self.loss_curve = []
        self.validation_scores = None
        self.best_validation_score = None
        self.n_iter = 0


def train_epochs(
    optimisation,
    network,
    *,
    epochs,
    batches,
    step_loss=None,
    validate=None,
    n_iter_no_change=2,
    dropout=True,
    verbose=0,
    desc="epoch",
    forward=None,
    output_loss=None,
    splittable=False,
):
    """Train ``network`` for ``epochs`` passes; the one loop of every estimator.

    Parameters
    ----------
    batches : callable
        ``batches(epoch)`` gives the list of batches of that epoch (any objects
        ``step_loss`` takes); called at the start of the epoch.
    step_loss : callable or None
        ``step_loss(batch)`` gives ``(loss, weight)``: the loss tensor to
        minimise and the weight of its value in the epoch's mean (e.g. texts).
        ``None``: ``output_loss(forward(batch), batch)``.
    validate : callable or None
        ``validate()`` gives a score (higher is better) after each epoch:
        training stops after ``n_iter_no_change`` epochs without a better one,
        and the best epoch's trainable weights are put back.
    dropout : bool
        Train in ``train()`` mode (dropout on); ``False`` keeps ``eval()`` mode,
        as the policy-gradient steps need (the sampled answers are scored by
        the model that produced them).
    forward, output_loss : callable or None
        The network's outputs for a batch, and ``(loss, weight)`` from them.
    splittable : bool
        ``forward`` gives one output row per row of a batch (an array of rows), so
        that a step of a parameter-efficient network on the CPU may run in two
        halves on two threads (:mod:`skllm._split_step`).

    Each step checks its loss, its gradient and the weights it leaves; the
    weights of the last step, which no later loss sees, are checked once
    more with a forward pass of the last batch (without gradient), and with
    ``validate`` so are those of every epoch's end, before they are scored;
    not with ``dropout=False``, where ``step_loss`` samples answers.
    """
    import torch
    from tqdm.auto import tqdm

    result = TrainingResult()
    result.validation_scores = [] if validate is not None else None
    best_score, best_state, stale = -np.inf, None, 0
    last_batch = None
    if step_loss is None:

        def step_loss(batch):
            return output_loss(forward(batch), batch)

    steps = WholeSteps(step_loss)
    if dropout and splittable and splits(network, optimisation.device, optimisation.dtype):
        steps = SplitSteps(network, forward, output_loss, optimisation.params)
    attention = training_attention(network, optimisation.device, optimisation.dtype)
    frozen = frozen_weights_in(network, optimisation.device, optimisation.dtype)  # autocast's casts, done once
    # nn.Dropout's and the thread's functional dropout's CPU masks drawn more cheaply than torch's (see _dropout.py)
    with fast_cpu_dropout(network) if dropout else contextlib.nullcontext(), attention, frozen:
        for epoch in range(epochs):
            network.train(dropout)
            epoch_batches = batches(epoch)
            epoch_steps = steps.decided(epoch_batches)  # per epoch: one of single rows does not decide the next
            running, seen = 0.0, 0.0
            label = f"{desc} {epoch + 1}/{epochs}"
            with (
                tqdm(total=len(epoch_batches), desc=label, unit="batch", disable=not verbose) as bar,
                epoch_steps.running(),
            ):
                for i, batch in enumerate(epoch_batches):
                    loss, weight, backward = epoch_steps.step_loss(batch)
                    where = f" (epoch {epoch + 1}, batch {i + 1} of {len(epoch_batches)})"
                    running += optimisation.step(loss, where, backward) * weight
                    last_batch = batch
                    seen += weight
                    bar.update(1)
                    bar.set_postfix(loss=f"{running / seen:.4f}")
            result.loss_curve.append(running / seen if seen else float("nan"))
            result.n_iter = epoch + 1
            message = f"{label}: loss {result.loss_curve[-1]:.4f}"
            if validate is not None:
                if dropout and last_batch is not None:
                    # The epoch's weights are a candidate for the best: a score read from NaN outputs (an argmax of
                    # NaN is class 0) must not keep them, so they are checked as the last step's are.
                    _check_final_weights(optimisation, network, step_loss, last_batch)
                score = float(validate())
                result.validation_scores.append(score)
                message += f", validation score {score:.4f}"
                if score > best_score:
                    best_score, stale = score, 0
                    # Only what training changes: the frozen backbone needs no copy.
                    best_state = {n: p.detach().clone() for n, p in network.named_parameters() if p.requires_grad}
                else:
                    stale += 1
            if verbose:
                print(message, flush=True)
            logger.info(message)
            if validate is not None and stale >= n_iter_no_change:
                break
        if best_state is None and dropout and last_batch is not None:
            _check_final_weights(optimisation, network, step_loss, last_batch)
    if best_state is not None:
        with torch.no_grad():
            for name, param in network.named_parameters():
                if name in best_state:
                    param.copy_(best_state[name])
        result.best_validation_score = best_score
    return result


def first_non_finite(tensors):
    """The position of the first of ``tensors`` (torch) holding a NaN or an infinity; None if there is none.

    A NaN or an infinity makes its tensor's sum non-finite, so one sum per
    tensor (a scalar each) and one synchronisation clear them all; ``isfinite``
    over the elements, which allocates a mask as large as the tensor (61 ms a
    training step for MiniLM's 22.7M parameters, against 3.5 ms), only rechecks
    a tensor whose finite values overflowed their sum.
    """
    import torch

    tensors = list(tensors)
    if not tensors:
        return None
    with torch.no_grad():
        finite_sums = torch.isfinite(torch.stack([t.sum() for t in tensors])).tolist()
        for position, (tensor, finite_sum) in enumerate(zip(tensors, finite_sums)):
            if not finite_sum and not bool(torch.isfinite(tensor).all()):
                return position
    return None


def _check_final_weights(optimisation, network, step_loss, batch):
    """Raise when the weights the last step left give a non-finite loss on its batch.

    Huge but finite weights (a huge learning rate, or a weight decay that
    flips and grows them) pass every per-step check and predict NaN.
    """
    import torch

    network.train(False)
    try:
        with torch.no_grad():
            value = float(step_loss(batch)[0])
    finally:
        network.train(True)
    if math.isfinite(value):
        return
    o = optimisation
    raise NonFiniteLossError(
        f"{o.who} stopped training after step {o.n_steps}: the weights it left give a loss of "
        f"{value} on the last batch. The learning rate or the weight decay is too large (learning_rate="
        f"{o.learning_rate:g}, weight_decay={o.weight_decay:g} here; AdamW multiplies the weights by "
        f"1 - learning_rate * weight_decay each step). The estimator keeps the state it had before this fit."
    )
