"""Training steps with PyTorch's SDPA attention against transformers' eager attention, in float32 and bfloat16.

The network ``LoRA().build_network`` builds (what ``FineTuneClassifier`` trains: a private
copy of the backbone, no dropout, LoRA on the attention's query and value), on the first
``--batches`` batches of 16 texts sorted by length, forward and backward (no optimiser
step: the attention is what differs), on 2 threads, whole steps (not split in halves).
For each of float32 and bfloat16 autocast, SDPA and eager steps alternate in rounds (the
median of rounds 2 to ``--rounds``); then one round of each under ``torch.profiler``
gives the self time of the attention's own kernels (``scaled_dot_product`` in their
names: SDPA's forward and backward; eager attention has none, its products count as
matrix products). Models: the packaged MiniLM on Rotten Tomatoes snippets
(``max_length=64``) or SmolLM2-135M on the 2016 debates' statements (``max_length=128``);
``--tokens N``: rows of N random token ids instead (``--batch-size`` of them a batch).
``--dropout``: the backbone keeps its dropout (``LoRA(backbone_dropout=True)``: MiniLM's 0.1
on its hidden states and attention probabilities), and the steps run in
``skllm._dropout.fast_cpu_dropout``'s block, as the engine's do: SDPA then draws its
attention mask with torch's ``bernoulli_``, eager attention's dropout skllm's masks.

    python benchmarks/bench_attention.py --model encoder
    python benchmarks/bench_attention.py --model llm
    python benchmarks/bench_attention.py --model encoder --tokens 512 --batch-size 4 --batches 4
    python benchmarks/bench_attention.py --model encoder --tokens 512 --batch-size 8 --batches 4 --dropout
"""

import argparse
import contextlib
import statistics
import time
import warnings

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads
from bench_probe_sample import data


def batches(tokenizer, texts, max_length, count, size=16):
    import torch

    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    picked = [order[i : i + size] for i in range(0, len(order), size)][:: max(1, len(order) // size // count)][:count]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for rows in picked:
        width = max(len(ids[i]) for i in rows)
        batch = torch.full((len(rows), width), pad)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            batch[j, : len(ids[i])], mask[j, : len(ids[i])] = torch.tensor(ids[i]), 1
        out.append((batch, mask))
    return out


def main():
    import torch

    from skllm import LoRA
    from skllm._attention import eager_attention
    from skllm._dropout import fast_cpu_dropout
    from skllm._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER, load_backbone, resolve_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["encoder", "llm"], default="encoder")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, help="batches of random token ids this long instead of texts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dropout", action="store_true", help="the backbone's own dropout on, skllm's masks")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    print(cpu(), flush=True)
    dataset, model, pooling = (
        ("rt", DEFAULT_ENCODER, "mean") if args.model == "encoder" else ("debates", DEFAULT_CAUSAL_LM, "last")
    )
    X, _, _, _, max_length = data(dataset)
    backbone, tokenizer = load_backbone(resolve_model(model), torch.device("cpu"))
    network = LoRA(backbone_dropout=args.dropout).build_network(backbone, 2, pooling)
    network.train()
    masks = (lambda: fast_cpu_dropout(network)) if args.dropout else contextlib.nullcontext

    def attention(eager):  # SDPA as loaded (eager_attention would switch a model with attention dropout too)
        return eager_attention(network, every=True) if eager else contextlib.nullcontext()

    work = batches(tokenizer, X, max_length, args.batches, args.batch_size)
    if args.tokens:  # attention's cost depends on the length, not on the tokens
        generator = torch.Generator().manual_seed(0)
        shape = (args.batch_size, args.tokens)
        work = [(torch.randint(100, 20000, shape, generator=generator), torch.ones(shape, dtype=torch.long))] * len(
            work
        )
    tokens = sum(int(mask.sum()) for _, mask in work) / len(work)
    print(
        f"{model}: {len(work)} batches of {args.batch_size} texts, {tokens:.0f} tokens a batch (padded to its longest)"
    )

    def steps(dtype):
        for ids, mask in work:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                loss = network.encoder(ids, mask).float().mean()
            loss.backward()

    def timed(dtype, eager):
        with attention(eager), masks():
            start = time.perf_counter()
            steps(dtype)
            return (time.perf_counter() - start) / len(work) * 1000

    print("| dtype | attention | ms a step, median | attention kernels' self ms a step |\n|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        rounds = {False: [], True: []}
        for r in range(args.rounds):
            for eager in (False, True) if r % 2 == 0 else (True, False):
                rounds[eager].append(timed(dtype, eager))
        for eager in (False, True):
            from torch.profiler import ProfilerActivity, profile

            with attention(eager), masks(), profile(activities=[ProfilerActivity.CPU]) as prof:
                steps(dtype)
            kernels = sum(e.self_cpu_time_total for e in prof.key_averages() if "scaled_dot_product" in e.key)
            median = statistics.median(rounds[eager][1:])
            name = "eager" if eager else "sdpa"
            print(f"| {dtype} | {name} | {median:.1f} | {kernels / 1000 / len(work):.1f} |", flush=True)


if __name__ == "__main__":
    main()
