"""A training step on the CPU in two halves of its batch, on two threads at once.

torch runs one step's operations one after the other, each spread over its threads. For
a parameter-efficient method that spreading pays poorly: LoRA's step on MiniLM is made of
many small products (the rank-8 adapters) and elementwise operations, and 2 threads ran it
only 1.6x faster than 1. Here each half of the batch goes forward and backward on a
thread of its own, with torch's threads shared out between them; the loss is the
estimator's own, on the two halves' outputs joined in the batch's order, and the two
halves' gradients are summed. It is the same update up to rounding and other dropout
draws (a half is padded to its own longest text). ``benchmarks/bench_step_bound.py``
measures the step both ways (docs/benchmarks.md).

Where it applies: the engine (:func:`skllm._training.train_epochs`) splits the steps of a
training with dropout whose estimator passes ``forward(rows)``, which must give one output
row per row in order, ``output_loss(outputs, rows)`` and ``splittable=True``
(``FineTuneClassifier`` and ``FineTuneRegressor``; not the reward model, whose batches
are pairs, nor ``FineTuneGenerator`` or ``PreferenceTuner``); batches are arrays of rows.
It does so on the CPU in float32 (not under bfloat16, see :func:`splits`), when some and at
most :data:`MAX_TRAINABLE_SHARE` of the network's weights are trained: full fine-tuning
gained nothing (its weight gradients, large products that torch's threads share well,
must then be summed). A batch of one row steps whole. With one torch thread the halves run
one after the other, so that a ``random_state`` gives the same model whatever the thread
count (up to rounding).

The engine takes its steps from a :class:`SplitSteps` or a :class:`WholeSteps`, which
answer the same three calls: ``decided(batches)`` (the steps to take for an epoch),
``running()`` (the block its steps run in) and ``step_loss(batch)`` (``(loss, weight,
backward)``, ``backward`` ``None`` where the engine runs the loss's backward pass itself).

Reproducibility: each half draws its dropout masks from a generator of its own, seeded
from torch's (forked and seeded for the fit) at every step, so a ``random_state`` gives
the same model whichever thread runs first. For this, nn.Dropout masks come from
:mod:`skllm._dropout`, ``torch.nn.functional.dropout`` is routed there while the halves
run, and a model with attention dropout whose attention runs through PyTorch's SDPA
kernel (which draws its mask from torch's generator) runs transformers' eager attention
instead (the same computation: SDPA on the CPU with dropout materialises the attention
as eager does). Before the first step one half goes forward once, without gradient and
on a copy of torch's random state: if the model still draws from torch's generator
(dropout of its own making), or gives other than one output row per row, steps stay whole.
"""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from ._attention import eager_attention
from ._device import autocast_state
from ._dropout import thread_functional_dropout, thread_generator
from ._seen_rows import weights_as_trained

#: Split a step only when the trained weights are at most this share of the network's:
#: LoRA's steps (0.3% of MiniLM's weights trained) ran 1.2-1.3x faster split, prefix
#: tuning's (5.4%: its reparametrisation network) 1.14x in a fit, full fine-tuning's
#: 0.99-1.03x (``benchmarks/bench_step_bound.py``).
MAX_TRAINABLE_SHARE = 0.1


def splits(network, device, dtype):
    """Whether :class:`SplitSteps` applies to ``network`` training on ``device`` in ``dtype``.

    Not under bfloat16: LoRA fits with whole steps were 1.13x faster than split ones on two
    datasets (4 seeds each, alternating in one process; ``benchmarks/bench_step_bound.py
    --fits rt --dtype bfloat16``, docs/benchmarks.md), although the same steps timed again
    and again inside a fit were 1.08-1.11x faster split: what the fits pay besides (each
    half, padded to its own longest text, meets more shapes, and a bfloat16 product's first
    of a shape cost 10-30 ms in a scratch timing) was not measured apart.
    """
    if device.type != "cpu" or dtype != "float32":
        return False
    total = trained = 0
    for size, is_trained in weights_as_trained(network):  # an embedding's seen rows count as its table
        total += size
        trained += size if is_trained else 0
    return 0 < trained <= MAX_TRAINABLE_SHARE * total


def _on_a_new_thread(function):
    """``function()`` on a thread started for it: one that takes torch's process-wide thread count."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def _set_own_threads(count):
    """torch computes with ``count`` threads on the calling thread; the process-wide count may change too."""
    import torch

    torch.get_num_threads()  # first, the count a thread takes from the process-wide one, which would replace this
    torch.set_num_threads(count)


@contextlib.contextmanager
def _own_threads(count):
    """Within the block, torch computes with ``count`` threads on the calling thread, and only there.

    torch keeps a thread count per thread, which a thread takes from a process-wide one
    when it first computes, and ``torch.set_num_threads`` sets both the calling thread's
    and the process-wide one. So the process-wide count is put back at once, from a
    thread started for that: only a thread that first computes in that instant takes
    ``count``. (Where torch's threads are one pool for the process rather than OpenMP's,
    the count does not change: slower halves, the same results.)
    """
    import torch

    own, process_wide = torch.get_num_threads(), _on_a_new_thread(torch.get_num_threads)
    _set_own_threads(count)
    _on_a_new_thread(lambda: _set_own_threads(process_wide))
    try:
        yield
    finally:
        torch.set_num_threads(own)
        _on_a_new_thread(lambda: _set_own_threads(process_wide))


@contextlib.contextmanager
def _pool_of_two(count):
    """Two threads on which torch computes with ``count`` threads each (see :func:`_own_threads`)."""
    import torch

    process_wide = _on_a_new_thread(torch.get_num_threads)
    started = threading.Barrier(2, timeout=60)
    pool = ThreadPoolExecutor(2, initializer=_set_own_threads, initargs=(count,), thread_name_prefix="skllm-half")
    with pool:
        try:
            list(pool.map(lambda _: started.wait(), (0, 1)))  # both threads started (neither can take both tasks)
        finally:
            _on_a_new_thread(lambda: _set_own_threads(process_wide))
        yield pool


class WholeSteps:
    """The engine's steps as they come: ``step_loss(batch)`` on the whole batch, on every torch thread."""

    def __init__(self, step_loss):
        self._step_loss = step_loss

    def decided(self, batches):
        """The steps to take for an epoch of ``batches``: these."""
        return self

    def running(self):
        """The block an epoch's steps run in: nothing to set."""
        return contextlib.nullcontext()

    def step_loss(self, batch):
        """``(loss, weight, None)``: no ``backward`` of its own, the engine runs the loss's backward pass."""
        loss, weight = self._step_loss(batch)
        return loss, weight, None


class SplitSteps:
    """Steps of ``network`` in two halves, on two threads where torch has two (see the module's docstring).

    It offers what :class:`WholeSteps` does, to the engine: :meth:`decided`, :meth:`running`
    and :meth:`step_loss`.

    Parameters
    ----------
    forward : callable
        ``forward(rows)``: the network's outputs for ``rows`` (a tensor, one row each, in order).
    output_loss : callable
        ``output_loss(outputs, rows)``: ``(loss, weight)`` as the engine's ``step_loss`` gives.
    params : list of torch.nn.Parameter
        The trained parameters, which get the summed gradients.
    """

    def __init__(self, network, forward, output_loss, params):
        import torch

        self.network, self.forward, self.output_loss, self.params = network, forward, output_loss, params
        self.concurrent = torch.get_num_threads() >= 2
        self.usable = None  # decided by check()
        self._pool = None
        self.whole = WholeSteps(lambda rows: output_loss(forward(rows), rows))  # where a step cannot split

    def decided(self, batches):
        """The steps to take for an epoch of ``batches``: these, or whole ones where :meth:`check` refuses.

        The first batch of the first epoch with a batch of two rows or more decides, once; an
        epoch without such a batch steps whole.
        """
        if not any(len(batch) >= 2 for batch in batches):
            return self.whole  # nothing to split: keep every thread
        if self.usable is None:
            self.check(batches[0])
        return self.whole if self.usable is False else self

    def _routed(self):
        """Eager attention and ``torch.nn.functional.dropout`` routed to the threads' generators."""
        stack = contextlib.ExitStack()
        stack.enter_context(eager_attention(self.network))
        stack.enter_context(thread_functional_dropout())
        return stack

    def check(self, rows):
        """Decide whether steps split: one forward pass of half of ``rows``, on a copy of torch's random state.

        They do not where it draws from torch's generator (dropout the halves cannot
        draw from their own) or gives other than one output row per row.
        """
        import torch

        part = rows[: max(1, len(rows) // 2)]
        with self._routed(), torch.random.fork_rng(devices=[]), torch.no_grad():
            with thread_generator(torch.Generator()):
                before = torch.get_rng_state()
                output = self.forward(part)
            self.usable = torch.equal(before, torch.get_rng_state()) and output.shape[0] == len(part)
        return self.usable

    @contextlib.contextmanager
    def running(self):
        """The block that split steps run in: routed dropout, and the calling thread's torch threads shared out
        between the two of a pool; its own count is halved too, so that its idle threads do not spin meanwhile."""
        import torch

        with self._routed():
            if not self.concurrent:
                yield
                return
            half = max(1, torch.get_num_threads() // 2)
            try:
                # innermost: its threads have finished before anything above is put back
                with _own_threads(half), _pool_of_two(half) as self._pool:
                    yield
            finally:
                self._pool = None

    def _map(self, function):
        if self._pool is None:
            return [function(0), function(1)]
        return list(self._pool.map(function, (0, 1)))

    def step_loss(self, rows):
        """``(loss, weight, backward)`` for a split step on ``rows``; a whole step's for a single row."""
        import torch

        if len(rows) < 2:
            return self.whole.step_loss(rows)
        half = len(rows) // 2
        parts = (rows[:half], rows[half:])
        seeds = torch.randint(0, 1 << 62, (2,)).tolist()  # from torch's generator: the fit's seed decides them
        enabled, dtype = autocast_state("cpu")

        def forward(i):
            # one autocast per thread (the object keeps the state it puts back), where the caller has one
            autocast = torch.autocast("cpu", dtype=dtype) if enabled else contextlib.nullcontext()
            with thread_generator(torch.Generator().manual_seed(seeds[i])), autocast:
                return self.forward(parts[i])

        outputs = self._map(forward)
        loss, weight = self.output_loss(torch.cat(outputs), rows)

        def backward():
            # the loss's gradient for each half's outputs, then each half's backward pass on its thread
            upstream = torch.autograd.grad(loss, outputs)

            def half_backward(i):
                return torch.autograd.grad(outputs[i], self.params, upstream[i], allow_unused=True)

            first, second = self._map(half_backward)
            for p, a, b in zip(self.params, first, second):
                p.grad = a if b is None else b if a is None else a + b

        return loss, weight, backward
