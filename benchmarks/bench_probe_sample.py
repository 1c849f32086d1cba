"""The linear probe on a sample of the training texts, and the CPU dropout masks.

``--dataset rt|debates``: LoRA fits (3 epochs, 1 thread, an empty embedding cache) with
the probe on every training text and on a sample of ``--rows`` (the shipped
``PROBE_MAX_ROWS`` is set for the fit), for each ``--seeds``: test accuracy and the fit's
CPU seconds. Rotten Tomatoes: 1,000 training and 1,000 test snippets, ``max_length=64``;
the 2016 debates: a stratified 70/30 split (785 / 337 statements), ``max_length=128``.

``--steps``: LoRA and full fine-tuning steps of MiniLM (12 batches of 16 Rotten Tomatoes
snippets, sorted by length) with torch's dropout masks and with skllm's
(``skllm._dropout.fast_cpu_dropout``), alternated over 8 rounds in one process; the
median milliseconds per step of rounds 2-8; and the CPU time per element of a mask with
its product, torch's and skllm's.

    python benchmarks/bench_probe_sample.py --dataset rt
    python benchmarks/bench_probe_sample.py --dataset debates
    python benchmarks/bench_probe_sample.py --steps --threads 2
    # the same fits with another skllm (a checkout in ../old): what its dropout masks change
    PYTHONPATH=../old python benchmarks/bench_probe_sample.py --dataset rt --rows 0
"""

import argparse
import contextlib
import tempfile
import time


def data(dataset):
    from sklearn.model_selection import train_test_split

    if dataset == "rt":
        from bench_finetune import data as rotten_tomatoes

        return (*rotten_tomatoes(), 64)
    from skllm.datasets import load_debate_statements

    X, y = load_debate_statements(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        list(X), list(y), test_size=0.3, stratify=list(y), random_state=0
    )
    return X_train, y_train, X_test, y_test, 128


def probe_sample(dataset, rows, seeds):
    from skllm import FineTuneClassifier, _probe

    X, y, X_test, y_test, max_length = data(dataset)
    print(f"| {dataset} | seed | probe rows | test accuracy | fit CPU s |\n|---|---|---|---|---|")
    for seed in seeds:
        for bound in (len(X), rows) if rows else (len(X),):
            _probe.PROBE_MAX_ROWS = bound
            clf = FineTuneClassifier(
                method="lora", max_length=max_length, epochs=3, batch_size=16, random_state=seed,
                cache_dir=tempfile.mkdtemp(), device="cpu",
            )  # fmt: skip
            start = time.process_time()
            clf.fit(X, y)
            seconds = time.process_time() - start
            label = "every" if bound == len(X) else bound
            print(f"| {dataset} | {seed} | {label} | {clf.score(X_test, y_test):.4f} | {seconds:.1f} |", flush=True)


def alternating_fits(dataset, ways, patched, *, method, dtype, seeds, epochs=3, order=None):
    """``FineTuneClassifier`` fits of ``dataset``, ``ways`` per seed in one process, timed; prints a row per fit.

    ``patched(way)`` is the block a fit of that way runs in (what it changes in skllm, put
    back on leaving). Batch size 16, model loading inside the clock, the probe's features
    put in the run's embedding cache by an untimed fit first. ``order(i)``: the ways of the
    ``i``-th seed in the order they run (default: alternating). Returns ``(seconds, accuracy,
    probabilities)``, each a dict by way of lists by seed.
    """
    import torch
    from bench_finetune_defaults import cpu

    from skllm import FineTuneClassifier

    X, y, X_test, y_test, max_length = data(dataset)
    cache = tempfile.mkdtemp()

    def fit(way, seed, epochs):
        clf = FineTuneClassifier(
            method=method, max_length=max_length, epochs=epochs, batch_size=16, random_state=seed,
            cache_dir=cache, device="cpu", dtype=dtype,
        )  # fmt: skip
        with patched(way):
            start = time.perf_counter()
            clf.fit(X, y)
            return clf, time.perf_counter() - start

    print(cpu(), "| torch", torch.__version__)
    fit(ways[0], 0, 1)  # untimed: the probe's features into the cache, so that no timed fit computes them
    print(f"| {dataset}, {method}, {dtype}, {epochs} epochs | seed | way | test accuracy | fit s |")
    print("|---|---|---|---|---|")
    seconds, accuracy, proba = ({w: [] for w in ways} for _ in range(3))
    for i, seed in enumerate(seeds):
        for way in order(i) if order else (ways if i % 2 == 0 else ways[::-1]):
            clf, took = fit(way, seed, epochs)
            seconds[way].append(took)
            accuracy[way].append(clf.score(X_test, y_test))
            proba[way].append(clf.predict_proba(X_test))
            print(f"| {dataset} | {seed} | {way} | {accuracy[way][-1]:.4f} | {took:.1f} |", flush=True)
    return seconds, accuracy, proba


def steps():
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from skllm._dropout import fast_cpu_dropout, keep_mask
    from skllm._models import DEFAULT_ENCODER, resolve_model
    from skllm.datasets import load_rotten_tomatoes

    torch.manual_seed(0)
    path = resolve_model(DEFAULT_ENCODER).location
    tok = AutoTokenizer.from_pretrained(path)
    X = sorted(load_rotten_tomatoes(return_X_y=True)[0][: 16 * 12], key=len)
    batches = [
        tok(X[i : i + 16], truncation=True, max_length=64, padding=True, return_tensors="pt")
        for i in range(0, len(X), 16)
    ]
    labels = torch.zeros(16, dtype=torch.long)
    runs = {}
    for name in ("lora", "full"):
        for masks in ("torch", "skllm"):
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
            if name == "lora":
                model = get_peft_model(
                    model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1)
                )
            model.train()
            optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
            runs[f"{name}, {masks} masks"] = (model, optimiser, [], masks == "skllm")
    for _ in range(8):
        for model, optimiser, times, skllm_masks in runs.values():
            # the block routes the thread's torch.nn.functional.dropout too: open only around its own model's steps
            with fast_cpu_dropout(model) if skllm_masks else contextlib.nullcontext():
                start = time.perf_counter()
                for batch in batches:
                    model(**batch, labels=labels).loss.backward()
                    optimiser.step()
                    optimiser.zero_grad()
                times.append((time.perf_counter() - start) / len(batches) * 1000)
    x = torch.randn(16, 48, 384)
    for name, drop in (
        ("torch's mask (nn.functional.dropout)", lambda: torch.nn.functional.dropout(x, 0.1, True)),
        ("skllm's mask (keep_mask, then the product)", lambda: x * keep_mask(x.shape, 0.1, x.device)[0]),
    ):
        start = time.process_time()
        for _ in range(200):
            drop()
        print(f"{name}: {(time.process_time() - start) / 200 / x.numel() * 1e9:.2f} CPU ns per element")
    print("| training step | median ms | fastest ms |\n|---|---|---|")
    for name, (_, _, times, _) in runs.items():
        kept = sorted(times[1:])
        print(f"| {name} | {kept[len(kept) // 2]:.0f} | {kept[0]:.0f} |")


def main():
    from bench_finetune_defaults import start

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=["rt", "debates"])
    parser.add_argument("--rows", type=int, default=512, help="0: the probe on every text only")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    start(args.threads)
    if args.steps:
        steps()
    else:
        probe_sample(args.dataset, args.rows, args.seeds)


if __name__ == "__main__":
    main()
