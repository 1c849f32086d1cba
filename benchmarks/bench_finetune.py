"""Fine-tuning methods on Rotten Tomatoes, and LoRA against a Trainer + peft script.

1,000 training and 1,000 test snippets (stratified), max_length 64, 3 epochs,
batch size 16, MiniLM (the packaged all-MiniLM-L6-v2). Each contender runs in its
own process so that peak memory (max RSS) is its own. Reported: test accuracy,
training examples per second (n_train x epochs / fit seconds), peak memory,
trainable parameters and pickle size. The "head" method is also timed against one
forward pass over the training texts (cold cache). "frozen-lr" is the frozen-feature
baseline the fine-tuning defaults are measured against: mean-pooled, normalised MiniLM
embeddings + LogisticRegression, the better of C=1 and C=10 on the test texts (an
optimistic baseline). "trainer-lora" is a plain Trainer + peft script with the Trainer's
defaults, "trainer-lora-grouped" the same with batches of similar length
(``train_sampling_strategy="group_by_length"``), as a knowledgeable user would set;
"trainer-full-grouped" the same script without peft (every weight trained, learning rate
5e-5 as skllm's full fine-tuning). A "-bf16" suffix trains under bfloat16 autocast
(skllm's ``dtype="bfloat16"``, the Trainer's ``bf16=True``); a Trainer contender whose
name has ``-eager`` also loads the model with ``attn_implementation="eager"``: on the CPU,
PyTorch's SDPA attention is slow to train in bfloat16, and skllm runs eager attention
there (``skllm._training.train_epochs``). "zero-shot-predict" is the
peak memory of ZeroShotClassifier (SmolLM2-135M) predicting 200 test snippets.

The fit clock includes loading the model and tokenising the texts on every side (skllm's
``fit`` does both; the Trainer script's clock starts before ``from_pretrained``); Python
imports happen before it. skllm fits with a fresh (empty) embedding cache. Each row also
reports how many times its process loaded a model from disk ("loads"; skllm's registry).

    python benchmarks/bench_finetune.py                 # all contenders
    python benchmarks/bench_finetune.py --only lora trainer-lora-grouped full trainer-full-grouped
    python benchmarks/bench_finetune.py --n 200 --only lora trainer-lora-grouped   # a quick check
    python benchmarks/bench_finetune.py --only lora@1 lora@2 lora trainer-lora-grouped@2 trainer-lora-grouped

A skllm contender's name may end in ``-whole`` (``lora-whole``, ``lora-bf16-whole``): its steps
run whole, on all of torch's threads, not in two halves (``skllm._split_step``), to measure
what the split costs or saves in time and peak memory.

``lora-dropout`` is LoRA with every dropout on, as skllm trained it before ``LoRA`` turned
dropout off by default (``LoRA(dropout=0.1, backbone_dropout=True)``: MiniLM's 0.1 on its
hidden states and attention, and peft's ``lora_dropout=0.1``); a Trainer contender whose name has
``-nodrop`` loads the model with those dropouts at 0 and sets ``lora_dropout=0`` (what skllm's
LoRA now trains with, written by hand), so that both recipes are timed on both sides.

A name may end in ``@E``: that contender trains E epochs instead of ``--epochs`` (the
learning-rate schedule spans its own steps, as a user's shorter fit would), so that the
time each side takes to reach an accuracy is measured within one run.
"""

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads

CONTENDERS = [
    "frozen-lr",
    "head",
    "full",
    "partial",
    "lora",
    "lora-bf16",
    "prefix",
    "prompt",
    "adapter",
    "full-bf16",
    "trainer-lora",
    "trainer-lora-grouped",
    "trainer-lora-grouped-bf16",
    "lora-dropout",
    "trainer-lora-grouped-nodrop",
    "trainer-full-grouped",
    "trainer-full-grouped-bf16",
    "trainer-lora-grouped-bf16-eager",
    "trainer-full-grouped-bf16-eager",
    "trainer-lora-grouped-bf16-nodrop-eager",
    "forward-pass",
    "zero-shot-predict",
]
BATCH, MAX_LENGTH = 16, 64
# --n and --epochs (quick checks) reach the child processes through the environment.
N = int(os.environ.get("BENCH_FINETUNE_N", 1000))
EPOCHS = int(os.environ.get("BENCH_FINETUNE_EPOCHS", 3))
SEED = int(os.environ.get("BENCH_FINETUNE_SEED", 0))


def data():
    from sklearn.model_selection import train_test_split

    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    X, X_rest, y, y_rest = train_test_split(X, y, train_size=N, stratify=y, random_state=0)
    X_test, _, y_test, _ = train_test_split(X_rest, y_rest, train_size=N, stratify=y_rest, random_state=0)
    return X.tolist(), y.tolist(), X_test.tolist(), y_test.tolist()


def loads():
    """Models this process loaded from disk, by skllm's registry."""
    from skllm import _models

    return sum(_models._load_counts.values())


def run_skllm(name, X, y, X_test, y_test, epochs=None):
    import warnings

    import peft  # noqa: F401  (imports before the clock, as in the Trainer script)
    import transformers  # noqa: F401

    from skllm import FineTuneClassifier, HeadTuning

    warnings.simplefilter("ignore")
    if name.endswith("-whole"):  # the engine's steps whole: no SplitSteps (skllm._split_step)
        from skllm import _training

        _training.splits = lambda *args: False
        name = name[: -len("-whole")]
    method, dtype = name, "float32"
    if name == "lora-dropout":  # every dropout on, as before LoRA's defaults turned them off
        from skllm import LoRA

        method, name = LoRA(dropout=0.1, backbone_dropout=True), "lora"
    if name.endswith("-bf16"):
        method, dtype = name[: -len("-bf16")], "bfloat16"
    if name == "head":
        method, epochs = HeadTuning(), epochs or 10
    epochs = epochs or EPOCHS
    clf = FineTuneClassifier(
        method=method,
        max_length=MAX_LENGTH,
        epochs=epochs,
        batch_size=BATCH,
        random_state=SEED,
        dtype=dtype,
        cache_dir=tempfile.mkdtemp(),
        device="cpu",
    )
    start = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    return {
        "accuracy": accuracy,
        "fit_s": seconds,
        "ex_per_s": len(X) * epochs / seconds,
        "trainable": clf.n_trainable_params_,
        "pickle_bytes": len(pickle.dumps(clf)),
        "epochs": epochs,
        "loads": loads(),
    }


def run_frozen_lr(X, y, X_test, y_test):
    from sklearn.linear_model import LogisticRegression

    from skllm import TransformerEmbedder

    emb = TransformerEmbedder(max_length=MAX_LENGTH, batch_size=32, cache_dir=None, device="cpu").fit()
    start = time.perf_counter()
    features = emb.transform(X)
    models = [LogisticRegression(C=C, max_iter=2000).fit(features, y) for C in (1.0, 10.0)]
    seconds = time.perf_counter() - start
    test = emb.transform(X_test)
    return {
        "accuracy": max(m.score(test, y_test) for m in models),
        "fit_s": seconds,
        "ex_per_s": len(X) / seconds,
        "trainable": int(models[0].coef_.size + models[0].intercept_.size),
        "pickle_bytes": None,
        "epochs": 0,
    }


def encode(tok, texts, targets, max_length=MAX_LENGTH):
    """Tokenised examples with their integer labels, as the Trainer takes them."""
    enc = tok(list(texts), truncation=True, max_length=max_length)
    return [
        {"input_ids": i, "attention_mask": m, "labels": int(t)}
        for i, m, t in zip(enc["input_ids"], enc["attention_mask"], targets)
    ]


def trainer_script(
    X,
    targets,
    n_labels,
    *,
    learning_rate,
    lora=True,
    grouped=True,
    bf16=False,
    epochs=EPOCHS,
    batch=BATCH,
    max_length=MAX_LENGTH,
    seed=0,
    dropout=True,
    eager=False,
):
    """What a user writes by hand: the packaged encoder (+ peft LoRA) and a Trainer; gives (tokenizer, trainer)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from skllm._models import DEFAULT_ENCODER, resolve_model

    path = resolve_model(DEFAULT_ENCODER).location
    tok = AutoTokenizer.from_pretrained(path)
    off = {} if dropout else {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if eager:
        off["attn_implementation"] = "eager"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=n_labels, **off)
    if lora:
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1 if dropout else 0.0)
        model = get_peft_model(model, config)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=32,
        learning_rate=learning_rate,
        weight_decay=0.01,
        warmup_steps=0.06,  # a float below 1 is a ratio of the steps
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if grouped else "random",
        bf16=bf16,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(tok, X, targets, max_length),
        data_collator=DataCollatorWithPadding(tok),
    )
    return tok, trainer


def run_trainer(X, y, X_test, y_test, grouped=False, lora=True, bf16=False, epochs=None, dropout=True, eager=False):
    """The hand-written script, timed from loading the model to the end of training, and scored."""
    import torch

    labels, epochs = sorted(set(y)), epochs or EPOCHS
    start = time.perf_counter()
    tok, trainer = trainer_script(
        X,
        [labels.index(t) for t in y],
        len(labels),
        learning_rate=1e-3 if lora else 5e-5,
        lora=lora,
        grouped=grouped,
        bf16=bf16,
        epochs=epochs,
        seed=SEED,
        dropout=dropout,
        eager=eager,
    )
    model = trainer.model
    trainer.train()
    seconds = time.perf_counter() - start
    out = trainer.predict(encode(tok, X_test, [labels.index(t) for t in y_test]))
    # Scored against the label_ids that come back with the predictions: with
    # group_by_length, transformers (5.24) also groups the evaluation batches, and
    # predict returns the texts in that order, not in the order given.
    accuracy = float((out.predictions.argmax(1) == out.label_ids).mean())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del torch
    return {
        "accuracy": accuracy,
        "fit_s": seconds,
        "ex_per_s": len(X) * epochs / seconds,
        "trainable": trainable,
        "pickle_bytes": None,
        "epochs": epochs,
        "loads": 1,
    }


def run_zero_shot(X_test):
    import warnings

    from skllm import ZeroShotClassifier

    warnings.simplefilter("ignore")
    clf = ZeroShotClassifier(classes=["fresh", "rotten"], device="cpu").fit()
    start = time.perf_counter()
    clf.predict(X_test[:200])
    seconds = time.perf_counter() - start
    return {
        "accuracy": None,
        "fit_s": seconds,
        "ex_per_s": 200 / seconds,
        "trainable": 0,
        "pickle_bytes": None,
        "epochs": 0,
        "loads": loads(),
    }


def run_forward(X):
    from skllm import TransformerEmbedder

    emb = TransformerEmbedder(max_length=MAX_LENGTH, batch_size=32, cache_dir=None, device="cpu").fit()
    start = time.perf_counter()
    emb.transform(X)
    seconds = time.perf_counter() - start
    return {
        "accuracy": None,
        "fit_s": seconds,
        "ex_per_s": len(X) / seconds,
        "trainable": 0,
        "pickle_bytes": None,
        "epochs": 0,
    }


def one(contender):
    X, y, X_test, y_test = data()
    name, _, epochs = contender.partition("@")
    epochs = int(epochs) if epochs else None  # None: --epochs (the head: 10)
    if name.startswith("trainer-"):
        result = run_trainer(
            X,
            y,
            X_test,
            y_test,
            grouped="grouped" in name,
            lora="lora" in name,
            bf16="-bf16" in name,
            epochs=epochs,
            dropout="-nodrop" not in name,
            eager="-eager" in name,
        )
    elif name == "zero-shot-predict":
        result = run_zero_shot(X_test)
    elif name == "frozen-lr":
        result = run_frozen_lr(X, y, X_test, y_test)
    elif name == "forward-pass":
        result = run_forward(X)
    else:
        result = run_skllm(name, X, y, X_test, y_test, epochs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=CONTENDERS)
    parser.add_argument("--n", type=int, default=N, help="training (and test) texts")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=SEED, help="random_state of skllm, seed of the Trainer")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one)
    os.environ["BENCH_FINETUNE_N"], os.environ["BENCH_FINETUNE_EPOCHS"] = str(args.n), str(args.epochs)
    os.environ["BENCH_FINETUNE_SEED"] = str(args.seed)
    settings = f"n={args.n}, epochs={args.epochs}, seed={args.seed}"
    print(cpu(), f"| load average {os.getloadavg()[0]:.2f} | {settings}", flush=True)
    results = {}
    for name in args.only:
        out = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True, text=True)
        if out.returncode:
            print(f"{name} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, results[name], file=sys.stderr, flush=True)

    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")
    print("| method | epochs | test accuracy | fit s | train ex/s | peak RSS MB | loads | trainable params | pickle |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
        size = f"{r['pickle_bytes'] / 1024:.0f} KB" if r["pickle_bytes"] else "-"
        print(
            f"| {name} | {r['epochs']} | {acc} | {r['fit_s']:.1f} | {r['ex_per_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r.get('loads', '-')} | {r['trainable']:,} | {size} |"
        )

    def trainer_of(skllm, grouping="-grouped"):
        """The Trainer script's contender for an skllm one: same method and precision."""
        return f"trainer-{skllm.split('-')[0]}{grouping}{'-bf16' if skllm.endswith('-bf16') else ''}"

    pairs = [
        (skllm, trainer_of(skllm, grouping))
        for skllm in ("lora", "full", "lora-bf16", "full-bf16")
        for grouping in ("", "-grouped")
    ]
    pairs += [("lora", "trainer-lora-grouped-nodrop"), ("lora-dropout", "trainer-lora-grouped")]
    pairs += [(f"{m}-bf16", f"trainer-{m}-grouped-bf16-eager") for m in ("lora", "full")]
    pairs += [("lora-bf16", "trainer-lora-grouped-bf16-nodrop-eager")]
    for name, trainer in pairs:
        if name in results and trainer in results:
            print(
                f"{name} vs {trainer}: {results[trainer]['fit_s'] / results[name]['fit_s']:.2f}x faster, "
                f"accuracy {results[name]['accuracy']:.3f} vs {results[trainer]['accuracy']:.3f}"
            )
    # Shorter fits (NAME@E) against the grouped Trainer script's fit of --epochs epochs.
    for name in results:
        base, _, _ = name.partition("@")
        if base == name:
            continue
        trainer = base if base.startswith("trainer-") else trainer_of(base)
        if trainer in results:
            r, t = results[name], results[trainer]
            print(
                f"{name} ({r['epochs']} epochs) vs {trainer} ({t['epochs']} epochs): "
                f"{t['fit_s'] / r['fit_s']:.2f}x faster, accuracy {r['accuracy']:.3f} vs {t['accuracy']:.3f} "
                f"({r['accuracy'] - t['accuracy']:+.3f})"
            )
    if "head" in results and "forward-pass" in results:
        print(
            f"head, 10 epochs, cold cache: {results['head']['fit_s'] / results['forward-pass']['fit_s']:.2f}x "
            f"one forward pass over the training texts"
        )


if __name__ == "__main__":
    main()
