"""What bounds a fine-tuning step on the CPU: its matrix products, and two ideas measured.

A training step of MiniLM (LoRA as ``FineTuneClassifier`` builds it through peft, and full
fine-tuning), with skllm's dropout masks (``skllm._dropout.fast_cpu_dropout``), on batches
of 16 Rotten Tomatoes snippets (``max_length=64``, 12 batches of texts sorted by length,
as length grouping makes them), on ``--threads`` threads. It prints:

- the profile of 2 x 12 steps under ``torch.profiler`` (``with_flops``): the share of the
  step spent in matrix products (``aten::mm``, ``addmm``, ``bmm``), the floating-point
  operations they do and their rate in GFLOP/s;
- the rate of the same products alone: one ``torch.mm`` of the step's most frequent
  shapes, and a large square one (4096, the rate the CPU reaches at best);
- the step's median time, and three other ways of doing it, alternated with it in one
  process (8 rounds of 12 steps, the median of rounds 2-8): each half of the batch on a
  thread of its own with torch on one thread (the two halves' losses and gradients
  summed: the same update up to rounding and other dropout draws); the same through what
  skllm ships, ``skllm._split_step.SplitSteps`` (its own generators, eager attention, the
  loss on the joined outputs); and the step on one thread (what the second thread buys).

``--fits rt|debates``: what skllm ships (``skllm._split_step``): fits of
``FineTuneClassifier`` (``--method``, default LoRA; ``--epochs``, default 3; batch size
16, model loading inside the clock) with the steps split (as the engine splits them in
float32, forced under bfloat16, where it does not) and whole (``skllm._training.splits``
forced off), for each of ``--seeds``, in one process, the
order alternating from one seed to the next; an untimed fit first puts the probe's
features into the run's embedding cache, so that every timed fit reads them from it. It
prints test accuracy and fit seconds, and the ratio whole / split per seed; ``--dtype``
as below.

``--in-fit rt|debates``: the steps of such a fit (``--method``) themselves, taken from
inside it (the engine's network, batches, ``forward`` and ``output_loss``, and its
``Optimisation.step``): 5 rounds of its first 24 batches, alternating the whole step on
``--threads`` threads, the step through ``SplitSteps``, the whole step on one thread and
the first half of each batch alone on one thread (what each half costs); the median of
rounds 2-5; each under the engine's attention choice, by the width of each forward call
(since 80d9a0b; before, SDPA but for the halves of a model with attention dropout) and, for
a model training with attention dropout, eager at any width (since the engine's
``training_attention`` chose so). Under
bfloat16 the engine does not split: the halves' calls here race to set the choice, which
may change their speed, and for a model with attention dropout may run SDPA, whose
dropout draws from torch's generator (not reproducible; LoRA's default has no dropout).
``--dtype bfloat16`` fits under bfloat16 autocast. The data as
``bench_probe_sample.py`` takes it: Rotten Tomatoes (1,000 / 1,000 snippets,
``max_length=64``) and the 2016 debates (785 / 337 statements, ``max_length=128``).

    python benchmarks/bench_step_bound.py --threads 2
    python benchmarks/bench_step_bound.py --fits rt --seeds 0 1
    python benchmarks/bench_step_bound.py --fits debates --seeds 0 1
    python benchmarks/bench_step_bound.py --fits rt --epochs 1 --seeds 0 1 2 3 4 5
    python benchmarks/bench_step_bound.py --in-fit rt
"""

import argparse
import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GEMMS = ("aten::mm", "aten::addmm", "aten::bmm")


def build(name, path):
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from skllm._dropout import fast_cpu_dropout

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if name == "lora":
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1))
    fast_cpu_dropout(model).__enter__()  # for the life of this process
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params, torch.optim.AdamW(params, lr=1e-4, fused=True)


def gflops(shape_a, shape_b, repeats):
    import torch

    a, b = torch.randn(*shape_a), torch.randn(*shape_b)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    seconds = (time.perf_counter() - start) / repeats
    return 2 * shape_a[0] * shape_a[1] * shape_b[1] / seconds / 1e9


def fits(dataset, seeds, epochs, method, dtype="float32"):
    import tempfile

    from bench_probe_sample import data

    from skllm import FineTuneClassifier, _training

    X, y, X_test, y_test, max_length = data(dataset)
    cache, splits = tempfile.mkdtemp(), _training.splits

    def fit(way, seed, epochs):
        # split: as in float32, where the engine splits, whatever the dtype (it does not under bfloat16)
        _training.splits = (
            (lambda network, device, dtype: splits(network, device, "float32"))
            if way == "split"
            else (lambda *args: False)
        )
        clf = FineTuneClassifier(
            method=method, max_length=max_length, epochs=epochs, batch_size=16, random_state=seed,
            cache_dir=cache, device="cpu", dtype=dtype,
        )  # fmt: skip
        start = time.perf_counter()
        clf.fit(X, y)
        return clf, time.perf_counter() - start

    fit("whole", 0, 1)  # untimed: the probe's features into the cache, so that no timed fit computes them
    print(f"| {dataset}, {method}, {dtype}, {epochs} epochs | seed | steps | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    times = {"split": [], "whole": []}
    for i, seed in enumerate(seeds):
        for way in ("split", "whole") if i % 2 == 0 else ("whole", "split"):
            clf, seconds = fit(way, seed, epochs)
            times[way].append(seconds)
            print(f"| {dataset} | {seed} | {way} | {clf.score(X_test, y_test):.4f} | {seconds:.1f} |", flush=True)
    _training.splits = splits
    ratios = sorted(w / s for w, s in zip(times["whole"], times["split"]))
    print(
        f"fit s, mean: split {np.mean(times['split']):.1f}, whole {np.mean(times['whole']):.1f}; whole / split per "
        f"seed: {', '.join(f'{r:.2f}' for r in ratios)} (median {np.median(ratios):.2f}x)"
    )


def in_fit(dataset, method, threads, dtype="float32"):
    import tempfile

    import torch
    from bench_probe_sample import data

    from skllm import FineTuneClassifier, _finetune_base
    from skllm._attention import training_attention
    from skllm._dropout import fast_cpu_dropout
    from skllm._split_step import SplitSteps

    class Measured(Exception):
        pass

    def measure(optimisation, network, *, batches, forward, output_loss, **_):
        rows = batches(0)[:24]
        shapes = []
        hook = network.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[:2])))
        with torch.no_grad():
            for batch in rows:
                forward(batch)
        hook.remove()
        split = SplitSteps(network, forward, output_loss, optimisation.params)

        def whole(batch):
            optimisation.step(output_loss(forward(batch), batch)[0], "")

        def half(batch):
            whole(batch[: max(1, len(batch) // 2)])

        def halves(batch):
            loss, _, backward = split.step_loss(batch)  # a batch of one row: a whole step, backward None
            optimisation.step(loss, "", backward)

        # way: (torch's threads, the step, the block it runs in)
        ways = {
            "whole": (threads, whole, contextlib.nullcontext),
            "split": (threads, halves, split.running),
            "one thread": (1, whole, contextlib.nullcontext),
            "a half alone, one thread": (1, half, contextlib.nullcontext),
        }
        times = {way: [] for way in ways}
        # the engine's attention (under bfloat16, eager for batches of at most 256 positions)
        with fast_cpu_dropout(network), training_attention(network, optimisation.device, optimisation.dtype):
            network.train()
            assert split.check(rows[0]), "this network's steps do not split"
            for _ in range(5):
                for way, (count, step, block) in ways.items():
                    torch.set_num_threads(count)
                    with block():
                        start = time.perf_counter()
                        for batch in rows:
                            step(batch)
                        times[way].append((time.perf_counter() - start) / len(rows) * 1000)
        torch.set_num_threads(threads)
        tokens = np.mean([n * width for n, width in shapes])
        print(
            f"{dataset}, {method}, {dtype}: the fit's first {len(rows)} batches, {tokens:.0f} tokens per batch with "
            f"padding"
        )
        median = {way: float(np.median(t[1:])) for way, t in times.items()}
        print("| step | ms | ratio to the whole step |\n|---|---|---|")
        for way, ms in median.items():
            print(f"| {way} | {ms:.0f} | {median['whole'] / ms:.2f}x |")
        raise Measured

    X, y, _, _, max_length = data(dataset)
    train_epochs, _finetune_base.train_epochs = _finetune_base.train_epochs, measure
    try:
        settings = dict(max_length=max_length, batch_size=16, random_state=0, device="cpu", dtype=dtype)
        FineTuneClassifier(method=method, cache_dir=tempfile.mkdtemp(), **settings).fit(X, y)
    except Measured:
        pass
    finally:
        _finetune_base.train_epochs = train_epochs


def main():
    from bench_finetune_defaults import start

    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fits", choices=["rt", "debates"])
    parser.add_argument("--in-fit", choices=["rt", "debates"])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--dtype", default="float32", help="the fits' dtype (bfloat16: under autocast)")
    args = parser.parse_args()
    start(args.threads)
    if args.in_fit:
        in_fit(args.in_fit, args.method, args.threads, args.dtype)
    elif args.fits:
        fits(args.fits, args.seeds, args.epochs, args.method, args.dtype)
    else:
        steps(args.threads)


def steps(threads):
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoTokenizer

    from skllm._models import DEFAULT_ENCODER, resolve_model
    from skllm._split_step import SplitSteps
    from skllm.datasets import load_rotten_tomatoes

    path = resolve_model(DEFAULT_ENCODER).location
    tok = AutoTokenizer.from_pretrained(path)
    texts = sorted(load_rotten_tomatoes(return_X_y=True)[0][: 16 * 12], key=len)

    def encode(rows):
        return tok(rows, truncation=True, max_length=64, padding=True, return_tensors="pt")

    batches = [encode(texts[i : i + 16]) for i in range(0, len(texts), 16)]
    halves = [(encode(texts[i : i + 8]), encode(texts[i + 8 : i + 16])) for i in range(0, len(texts), 16)]
    labels = torch.zeros(16, dtype=torch.long)
    tokens = sum(b["input_ids"].numel() for b in batches) / len(batches)
    print(f"{tokens:.0f} tokens per batch of 16, padding included")
    pool = ThreadPoolExecutor(2)

    print("| step | ms per step | in matrix products | their GFLOP/s | GFLOP per step |\n|---|---|---|---|---|")
    runs, shapes = {}, Counter()
    for name in ("lora", "full"):
        model, params, optimiser = build(name, path)

        def whole(model=model, optimiser=optimiser):
            for batch in batches:
                model(**batch, labels=labels).loss.backward()
                optimiser.step()
                optimiser.zero_grad()

        def half(batch, model=model, params=params):
            loss = model(**batch, labels=labels[:8]).loss / 2
            return torch.autograd.grad(loss, params, allow_unused=True)

        def split(params=params, optimiser=optimiser, half=half):
            for pair in halves:
                first, second = pool.map(half, pair)
                for p, a, b in zip(params, first, second):
                    p.grad = None if a is None else a + b
                optimiser.step()
                optimiser.zero_grad()

        everything = encode(texts)  # rows padded to the longest of all; a step trims them to its own

        def forward(rows, model=model, everything=everything):
            mask = everything["attention_mask"][rows]
            width = int(mask.sum(1).max())
            return model(input_ids=everything["input_ids"][rows, :width], attention_mask=mask[:, :width]).logits

        def output_loss(output, rows):
            return torch.nn.functional.cross_entropy(output, labels[: len(rows)]), len(rows)

        shipped_steps = SplitSteps(model, forward, output_loss, params)
        assert shipped_steps.check(np.arange(16))

        def shipped(optimiser=optimiser, shipped_steps=shipped_steps):
            with shipped_steps.running():
                for i in range(0, len(texts), 16):
                    _, _, backward = shipped_steps.step_loss(np.arange(i, i + 16))
                    backward()
                    optimiser.step()
                    optimiser.zero_grad()

        whole()
        with profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
            whole()
            whole()
        events = prof.key_averages(group_by_input_shape=True)
        total = sum(e.self_cpu_time_total for e in events)
        products = [e for e in events if e.key in GEMMS]
        in_products = sum(e.self_cpu_time_total for e in products)
        flops = sum(e.flops for e in products)
        for e in products:
            if e.key == "aten::mm" and len(e.input_shapes) == 2:
                shapes[tuple(map(tuple, e.input_shapes))] += e.count
        steps = 2 * len(batches)
        runs[name] = {"whole": whole, "split": split, "shipped": shipped, "times": {}}
        print(
            f"| {name} (profiled) | {total / 1e3 / steps:.0f} | {in_products / total:.0%} | "
            f"{flops / (in_products / 1e6) / 1e9:.0f} | {flops / steps / 1e9:.1f} |",
            flush=True,
        )

    common = [shape for shape, _ in shapes.most_common(2)]
    print("\n| matrix product alone | GFLOP/s |\n|---|---|")
    for a, b in common:
        print(f"| {a} x {b} | {gflops(a, b, 200):.0f} |")
    print(f"| (4096, 4096) x (4096, 4096) | {gflops((4096, 4096), (4096, 4096), 5):.0f} |", flush=True)

    # way: (torch's threads while it runs, what runs)
    ways = {"whole": (threads, "whole"), "split": (1, "split"), "shipped": (threads, "shipped"), "one": (1, "whole")}
    for _ in range(8):
        for run in runs.values():
            for way, (count, what) in ways.items():
                torch.set_num_threads(count)
                start = time.perf_counter()
                run[what]()
                run["times"].setdefault(way, []).append((time.perf_counter() - start) / len(batches) * 1000)
    torch.set_num_threads(threads)
    print(
        f"\n| step | {threads} threads, ms | two halves on two threads, ms | ratio | skllm's SplitSteps, ms | ratio | "
        f"one thread, ms | what the threads buy |\n|---|---|---|---|---|---|---|---|"
    )
    for name, run in runs.items():
        median = {way: sorted(times[1:])[len(times[1:]) // 2] for way, times in run["times"].items()}
        print(
            f"| {name} | {median['whole']:.0f} | {median['split']:.0f} | {median['whole'] / median['split']:.2f}x | "
            f"{median['shipped']:.0f} | {median['whole'] / median['shipped']:.2f}x | "
            f"{median['one']:.0f} | {median['one'] / median['whole']:.2f}x |"
        )


if __name__ == "__main__":
    main()
