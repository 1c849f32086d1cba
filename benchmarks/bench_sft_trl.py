"""FineTuneGenerator (LoRA) against a TRL SFTTrainer + peft script: throughput at equal loss.

Both train LoRA r=8 (alpha 16, dropout 0.1, peft's default target modules for
Llama: q_proj, v_proj) on the packaged SmolLM2-135M-Instruct, on the very same
token sequences: skllm's chat-templated prompt plus the target and EOS, the loss on
the target tokens only. TRL gets them already tokenized (``input_ids`` and
``labels``), so the two losses are the same quantity. Same batch size, learning
rate, warm-up, weight decay, gradient clipping, epochs and float32; each contender
runs in its own process, after the model is loaded, and is timed over training only.

Tasks built from the packaged Rotten Tomatoes data:

- ``label``: a snippet, the question "Is this movie review positive or negative?
  Answer with one word.", and the answer word (2 target tokens with EOS);
- ``review``: "Write a one-sentence review of the movie <title>." and a real
  snippet of that movie (about 30 target tokens).

Contenders: ``skllm`` (FineTuneGenerator), ``skllm-full-logits`` (the same with the
output layer over every position, as before the loss kept the scored positions
only), ``skllm-nodrop`` (the same with ``LoRA``'s default ``dropout=0.0``, where every
other contender sets 0.1; SmolLM2 has no dropout of its own), ``trl`` (SFTTrainer's
defaults, but in float32 like the others: TRL turns on bf16 autocast by default,
which CPUs without bf16 instructions emulate slowly) and
``trl-fast``, what a knowledgeable user sets on CPU for a model this small: no
gradient checkpointing (on by default in TRL, it recomputes the forward pass to save
memory) and batches of similar length (``train_sampling_strategy="group_by_length"``).
TRL's ``padding_free`` needs FlashAttention and its Liger kernels need Triton, neither
of which runs on CPU. Reported: training examples/s, target tokens/s,
the mean training loss of the last epoch, and the loss of the trained model on 200
held-out examples (computed the same way for all).

    python benchmarks/bench_sft_trl.py [--task label review] [--train 320] [--epochs 1]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads

CONTENDERS = ["skllm", "skllm-full-logits", "skllm-nodrop", "trl", "trl-fast"]
BATCH, LR, MAX_LENGTH, SEED = 8, 1e-3, 256, 0
LABEL_PROMPT = "Is this movie review positive or negative? Answer with one word.\n\nReview: {text}"


def task_data(task, n_train, n_test):
    """(texts, targets) for training and held-out evaluation, fixed by the seed."""
    from bench_preferences import PROMPT as REVIEW_PROMPT
    from bench_preferences import movies
    from sklearn.model_selection import train_test_split

    from skllm.datasets import load_rotten_tomatoes

    if task == "label":
        X, y = load_rotten_tomatoes(return_X_y=True)
        texts = [LABEL_PROMPT.format(text=t) for t in X]
        targets = y.map({"fresh": "positive", "rotten": "negative"}).tolist()
    else:
        frame = movies()  # the reviews and titles of the sentiment-control benchmark
        texts = [REVIEW_PROMPT.format(title=t) for t in frame["title"]]
        targets = frame["text"].tolist()
    train_x, rest_x, train_y, rest_y = train_test_split(texts, targets, train_size=n_train, random_state=SEED)
    return train_x, train_y, rest_x[:n_test], rest_y[:n_test]


def generator(epochs, dropout=0.1):
    from skllm import FineTuneGenerator, LoRA

    return FineTuneGenerator(
        method=LoRA(r=8, alpha=16, dropout=dropout),
        epochs=epochs,
        batch_size=BATCH,
        learning_rate=LR,
        max_length=MAX_LENGTH,
        random_state=SEED,
        device="cpu",
    )


def held_out_loss(network, ids, labels, tokenizer):
    """Mean cross-entropy over the target tokens of the held-out examples (the full computation, for all)."""
    import numpy as np
    import torch

    from skllm._causal import IGNORE, pad_examples
    from skllm._tokens import pad_token_id

    total, count = 0.0, 0
    network.eval()
    with torch.no_grad():
        for start in range(0, len(ids), 16):
            rows = np.arange(start, min(start + 16, len(ids)))
            x, m, lab = pad_examples(ids, labels, rows, pad_token_id(tokenizer), torch.device("cpu"))
            logits = network(x, m)[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), lab[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
            total += float(loss)
            count += int((lab[:, 1:] != IGNORE).sum())
    return total / count


def run_skllm(args, full_logits=False, dropout=0.1):
    import skllm._causal as causal

    X, y, X_test, y_test = task_data(args.task, args.train, args.test)
    if full_logits:

        def every_position(network, input_ids, attention_mask, labels):
            return network(input_ids, attention_mask)[:, :-1].float(), labels[:, 1:]

        causal.scored_logits = every_position
    gen = generator(1, dropout).fit(X[:2], y[:2])  # loads the model before timing (one epoch on 2 texts)
    gen.set_params(epochs=args.epochs)
    start = time.perf_counter()
    gen.fit(X, y)
    seconds = time.perf_counter() - start
    ids, labels = gen._examples(X, y)
    test_ids, test_labels = gen._examples(X_test, y_test)
    return {
        "fit_s": seconds,
        "train_loss": gen.loss_curve_[-1],
        "held_out_loss": held_out_loss(gen.network_, test_ids, test_labels, gen.tokenizer_),
        "target_tokens": sum(sum(t != -100 for t in row) for row in labels) * args.epochs,
        "examples": len(ids) * args.epochs,
    }


def run_trl(args, fast=False):
    """What a user writes by hand: SFTTrainer + peft LoRA on the same tokenized examples."""
    import logging

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    X, y, X_test, y_test = task_data(args.task, args.train, args.test)
    ref = generator(0).fit(X[:2], y[:2])  # the same tokenizer, chat template and model folder
    ids, labels = ref._examples(X, y)
    test_ids, test_labels = ref._examples(X_test, y_test)
    model = AutoModelForCausalLM.from_pretrained(ref._source().location, dtype=torch.float32)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    config = SFTConfig(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        lr_scheduler_type="linear",
        warmup_steps=0.06,  # as FineTuneGenerator's warmup_ratio
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=MAX_LENGTH,
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        use_cpu=True,
        seed=SEED,
        disable_tqdm=True,
        bf16=False,
        gradient_checkpointing=not fast,
        train_sampling_strategy="group_by_length" if fast else "random",
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict({"input_ids": ids, "labels": labels}),
        processing_class=ref.tokenizer_,
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, task_type="CAUSAL_LM"),
    )
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]

    class Net(torch.nn.Module):  # the same held-out computation as for skllm
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits

    return {
        "fit_s": seconds,
        "train_loss": losses[-1] if losses else result.training_loss,
        "held_out_loss": held_out_loss(Net(trainer.model), test_ids, test_labels, ref.tokenizer_),
        "target_tokens": sum(sum(t != -100 for t in row) for row in labels) * args.epochs,
        "examples": len(ids) * args.epochs,
    }


def one(args):
    import warnings

    warnings.simplefilter("ignore")
    if args.only.startswith("trl"):
        return run_trl(args, fast=args.only.endswith("fast"))
    # skllm-nodrop: LoRA's default dropout (0), where the others set peft's lora_dropout=0.1
    return run_skllm(args, full_logits=args.only.endswith("full-logits"), dropout=0.0 if "nodrop" in args.only else 0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", nargs="*", default=["label", "review"], choices=["label", "review"])
    parser.add_argument("--contenders", nargs="*", default=CONTENDERS, choices=CONTENDERS)
    parser.add_argument("--train", type=int, default=320)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        args.task = args.task[0]
        print(json.dumps(one(args)))
        return
    print(cpu())
    print(f"LoRA r=8 on SmolLM2-135M-Instruct, {args.train} examples x {args.epochs} epoch(s), batch {BATCH}, lr {LR}")
    for task in args.task:
        rows = {}
        print(f"\ntask {task}")
        for name in args.contenders:
            command = [sys.executable, __file__, "--only", name, "--task", task]
            command += ["--train", str(args.train), "--test", str(args.test), "--epochs", str(args.epochs)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:])
                continue
            rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, rows[name], flush=True)
        best_trl = min((rows[n]["fit_s"] for n in rows if n.startswith("trl")), default=None)
        print("| contender | fit s | examples/s | target tokens/s | last-epoch loss | held-out loss | vs best TRL |")
        print("|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            ratio = f"{best_trl / r['fit_s']:.2f}x" if best_trl else ""
            print(
                f"| {name} | {r['fit_s']:.1f} | {r['examples'] / r['fit_s']:.2f} | "
                f"{r['target_tokens'] / r['fit_s']:.1f} | {r['train_loss']:.4f} | {r['held_out_loss']:.4f} | {ratio} |"
            )


if __name__ == "__main__":
    main()
