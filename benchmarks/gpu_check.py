"""Check the CUDA path of the fine-tuners, the embedder and zero-shot classification.

    python benchmarks/gpu_check.py            # on a machine with CUDA (about 2 minutes)
    python benchmarks/gpu_check.py --cpu --n 24 --encoder tests/legacy/tiny-bert --decoder tests/legacy/tiny-llama
                                              # a dry run of the same steps on the CPU

On CUDA: FineTuneClassifier with "lora", "head" and "full" on Rotten Tomatoes
texts in float32, bfloat16 and float16 (accuracy and seconds each); a model
trained on CUDA is pickled and loaded in a subprocess with CUDA hidden, whose
CPU predictions must match; TransformerEmbedder on CUDA against the CPU (cosine
>= 0.999); ZeroShotClassifier predicting on CUDA. The language-model half on the
decoder: FineTuneGenerator (LoRA SFT) in the three precisions, RewardModel on
the encoder, PreferenceTuner with DPO and with RLOO against that reward model;
each trained on CUDA, pickled and loaded where CUDA is hidden, must give the
same logits (generator) or rewards (reward model) on the CPU. Without CUDA (and
without --cpu) it says so and exits 0. Any failed check makes the exit status 1.
"""

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

FAILURES = []


def check(ok, message):
    print(("ok    " if ok else "FAIL  ") + message, flush=True)
    if not ok:
        FAILURES.append(message)


def describe(torch):
    import transformers

    import skllm

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    print(f"CPU: {cpu} ({os.cpu_count()} cores)")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, skllm {skllm.__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}", flush=True)


def data(n):
    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    X, y = np.asarray(X, dtype=object), np.asarray(y)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(X))[: 2 * n]
    train, test = rows[:n], rows[n:]
    return X[train].tolist(), y[train], X[test].tolist(), y[test]


def outputs(model, items):
    """What a model computes, as an array to compare across devices.

    A classifier's predict_proba; a reward model's rewards; for a generator
    (or a preference tuner's) the last-position logits of each prompt.
    """
    import torch

    model = getattr(model, "generator_", model)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(items)
    if not hasattr(model, "_encode_prompt"):
        return model.predict(items)
    model._ensure_live()
    rows = []
    with torch.inference_mode():
        for text in items:
            ids = torch.tensor([model._encode_prompt(text)], device=model.device_)
            rows.append(model.network_(ids, torch.ones_like(ids))[0, -1])
    return torch.stack(rows).float().cpu().numpy()


def load_and_predict(path, items, out):
    """Run in the subprocess with CUDA hidden: load the pickle and save its outputs on the CPU."""
    import torch

    assert not torch.cuda.is_available()
    with open(path, "rb") as f:
        model = pickle.load(f)
    items = [tuple(item) if isinstance(item, list) else item for item in items]  # JSON made the pairs lists
    values = outputs(model, items)
    np.save(out, values)
    device = getattr(getattr(model, "generator_", model), "device_", "?")
    print(f"subprocess: loaded on {device}, computed {values.shape}")


def fine_tuning(device, dtypes, args, X, y, X_test, y_test):
    from skllm import FineTuneClassifier

    methods = {"lora": 1e-3, "head": 1e-3, "full": 5e-5}
    trained = None
    for method, lr in methods.items():
        for dtype in dtypes:
            clf = FineTuneClassifier(
                args.encoder,
                method=method,
                epochs=args.epochs,
                batch_size=16,
                learning_rate=lr,
                max_length=64,
                device=device,
                dtype=dtype,
                cache_dir=None,
                random_state=0,
            )
            start = time.perf_counter()
            try:
                clf.fit(X, y)
                accuracy = float((clf.predict(X_test) == y_test).mean())
            except Exception as exc:  # report every combination, then fail at the end
                check(False, f"fit {method} {dtype} on {device}: {type(exc).__name__}: {exc}")
                continue
            seconds = time.perf_counter() - start
            finite = all(np.isfinite(v).all() for v in clf.trainable_state_.values())
            on_cpu = all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in clf.trainable_state_.values())
            print(
                f"      {method:5s} {dtype:9s} on {clf.device_}: accuracy {accuracy:.3f}, {seconds:6.1f} s "
                f"(dtype used {clf.dtype_}, loss {clf.loss_curve_[0]:.3f} -> {clf.loss_curve_[-1]:.3f})",
                flush=True,
            )
            check(finite and on_cpu, f"{method} {dtype}: trained state is finite float32 NumPy")
            placed = next(clf.network_.parameters()).device.type == device
            check(placed, f"{method} {dtype}: network on {device}")
            if method == "lora" and dtype == "float32":
                trained = clf
    return trained


def pickle_round_trip(model, texts, what="model", atol=1e-4):
    expected = outputs(model, texts)
    with tempfile.TemporaryDirectory() as folder:
        path, out = os.path.join(folder, "model.pkl"), os.path.join(folder, "proba.npy")
        with open(path, "wb") as f:
            pickle.dump(model, f)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        code = (
            "import sys, json; sys.path.insert(0, sys.argv[1]); import gpu_check; "
            "gpu_check.load_and_predict(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])"
        )
        import json

        here = os.path.dirname(os.path.abspath(__file__))
        result = subprocess.run(
            [sys.executable, "-c", code, here, path, json.dumps(texts), out], env=env, capture_output=True, text=True
        )
        print("      " + (result.stdout.strip() or result.stderr.strip()[-2000:]), flush=True)
        if result.returncode != 0:
            check(False, f"pickled {what} loads in a process without CUDA")
            return
        got = np.load(out)
    check(
        got.shape == expected.shape and np.allclose(got, expected, atol=atol),
        f"CPU outputs of the unpickled {what} match (max diff {np.abs(got - expected).max():.2e}, atol {atol})",
    )


def embedder(device, args, texts):
    from skllm import TransformerEmbedder

    on_device = TransformerEmbedder(args.encoder, device=device, cache_dir=None).fit().transform(texts)
    on_cpu = TransformerEmbedder(args.encoder, device="cpu", cache_dir=None).fit().transform(texts)
    cosine = (on_device * on_cpu).sum(axis=1) / (np.linalg.norm(on_device, axis=1) * np.linalg.norm(on_cpu, axis=1))
    check(cosine.min() >= 0.999, f"TransformerEmbedder on {device} vs cpu: min cosine {cosine.min():.6f}")


def zero_shot(device, args, texts):
    from skllm import ZeroShotClassifier

    start = time.perf_counter()
    clf = ZeroShotClassifier(args.decoder, classes=["positive", "negative"], device=device, cache_dir=None).fit()
    pred = clf.predict(texts)
    seconds = time.perf_counter() - start
    ok = len(pred) == len(texts) and set(pred.tolist()) <= {"positive", "negative"}
    check(ok, f"ZeroShotClassifier predicts on {device} ({len(pred)} texts, {seconds:.1f} s)")


def on_device(model, device):
    import torch

    network = model.network_
    return isinstance(network, torch.nn.Module) and next(network.parameters()).device.type == device


def finite_state(model):
    return all(
        isinstance(v, np.ndarray) and v.dtype == np.float32 and np.isfinite(v).all()
        for v in model.trainable_state_.values()
    )


def generation(device, dtypes, args, X, y, X_test):
    """LoRA SFT of the decoder, a reward model, then DPO and RLOO; the float32 ones pickled to the CPU."""
    import pandas as pd

    from skllm import FineTuneGenerator, PreferenceTuner, RewardModel

    words = {"fresh": "positive", "rotten": "negative"}
    answers = [words.get(label, str(label)) for label in y]
    X_gen, y_gen = X[:64], answers[:64]
    prompts = X_test[:8]
    for dtype in dtypes:
        gen = FineTuneGenerator(
            args.decoder, epochs=2, max_new_tokens=4, device=device, dtype=dtype, cache_dir=None, random_state=0
        )
        start = time.perf_counter()
        try:
            gen.fit(X_gen, y_gen)
            predicted = gen.predict(prompts)
        except Exception as exc:
            check(False, f"FineTuneGenerator {dtype} on {device}: {type(exc).__name__}: {exc}")
            continue
        print(
            f"      generator {dtype:9s} on {gen.device_}: {time.perf_counter() - start:5.1f} s, loss "
            f"{gen.loss_curve_[0]:.3f} -> {gen.loss_curve_[-1]:.3f}, {len(predicted)} answers",
            flush=True,
        )
        check(finite_state(gen) and on_device(gen, device), f"generator {dtype}: finite float32 state, on {device}")
        if dtype == "float32":
            pickle_round_trip(gen, prompts, "generator", atol=1e-3)

    fresh = [t for t, label in zip(X, y) if label == "fresh"]
    rotten = [t for t, label in zip(X, y) if label == "rotten"]
    n_pairs = min(len(fresh), len(rotten), 48)
    pairs = pd.DataFrame(
        {"prompt": ["Review the film in one word."] * n_pairs, "chosen": fresh[:n_pairs], "rejected": rotten[:n_pairs]}
    )
    rm = RewardModel(args.encoder, epochs=2, device=device, cache_dir=None, random_state=0)
    try:
        rm.fit(pairs)
        accuracy = float(
            (
                rm.predict(list(zip(pairs.prompt, pairs.chosen))) > rm.predict(list(zip(pairs.prompt, pairs.rejected)))
            ).mean()
        )
        print(f"      reward model on {rm.device_}: training pairwise accuracy {accuracy:.3f}", flush=True)
        check(finite_state(rm) and on_device(rm, device), f"reward model: finite float32 state, on {device}")
        pickle_round_trip(rm, list(zip(pairs.prompt[:16], pairs.chosen[:16])), "reward model")
    except Exception as exc:
        check(False, f"RewardModel on {device}: {type(exc).__name__}: {exc}")
        rm = None

    for dtype in dtypes:
        gen = FineTuneGenerator(args.decoder, max_new_tokens=6, device=device, dtype=dtype, cache_dir=None)
        tuner = PreferenceTuner(generator=gen, algorithm="dpo", batch_size=8, random_state=0)
        try:
            tuner.fit(pairs.iloc[:32])
            history = tuner.history_
            ok = np.isfinite(history[["reward", "kl", "loss"]].to_numpy()).all()
            print(f"      dpo {dtype:9s}: loss {history.loss.iloc[0]:.3f} -> {history.loss.iloc[-1]:.3f}", flush=True)
            check(
                ok and finite_state(tuner.generator_) and on_device(tuner.generator_, device),
                f"DPO {dtype}: finite history and state, policy on {device}",
            )
        except Exception as exc:
            check(False, f"PreferenceTuner dpo {dtype} on {device}: {type(exc).__name__}: {exc}")
    if rm is not None:
        gen = FineTuneGenerator(args.decoder, max_new_tokens=6, device=device, cache_dir=None)
        tuner = PreferenceTuner(rm, gen, algorithm="rloo", batch_size=4, n_generations=2, random_state=0)
        try:
            tuner.fit(prompts)
            history = tuner.history_
            ok = np.isfinite(history[["reward", "kl", "loss"]].to_numpy()).all()
            print(
                f"      rloo float32: reward {history.reward.iloc[0]:.3f} -> {history.reward.iloc[-1]:.3f}, "
                f"kl {history.kl.iloc[-1]:.4f}",
                flush=True,
            )
            check(ok and on_device(tuner.generator_, device), f"RLOO: finite history, policy on {device}")
            pickle_round_trip(tuner, prompts, "preference-tuned generator", atol=1e-3)
        except Exception as exc:
            check(False, f"PreferenceTuner rloo on {device}: {type(exc).__name__}: {exc}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="dry run of every step on the CPU")
    parser.add_argument("--n", type=int, default=200, help="training texts (as many again for testing)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--decoder", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--skip-generation", action="store_true", help="leave out the generator and preferences")
    parser.add_argument("--skip-classifiers", action="store_true", help="leave out the classifiers and embedder")
    args = parser.parse_args(argv)

    import torch

    warnings.simplefilter("ignore")  # truncation and deprecation notes would hide the results
    describe(torch)
    if args.cpu:
        device, dtypes = "cpu", ["float32", "bfloat16"]
    elif torch.cuda.is_available():
        device, dtypes = "cuda", ["float32", "bfloat16", "float16"]
    else:
        print("CUDA is not available: nothing to check (use --cpu for a dry run on the CPU).")
        return 0

    total = time.perf_counter()
    X, y, X_test, y_test = data(args.n)
    print(f"fine-tuning on {len(X)} texts, testing on {len(X_test)}, {args.epochs} epoch(s), device {device}")
    if not args.skip_classifiers:
        trained = fine_tuning(device, dtypes, args, X, y, X_test, y_test)
        if trained is not None:
            pickle_round_trip(trained, X_test[:32], "classifier")
        embedder(device, args, X_test[:64])
        zero_shot(device, args, X_test[:16])
    if not args.skip_generation:
        generation(device, dtypes, args, X, y, X_test)
    print(f"total {time.perf_counter() - total:.1f} s")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed:", *FAILURES, sep="\n  ")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
