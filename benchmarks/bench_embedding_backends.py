"""TransformerEmbedder's torch path against ONNX Runtime and OpenVINO, fp32 and int8.

The packaged all-MiniLM-L6-v2 is exported once with ``torch.onnx.export``
(dynamic batch and sequence axes) and run by ONNX Runtime (all graph
optimisations; also after its BERT transformer optimizer; and int8 by dynamic
quantisation) and by OpenVINO (converted from the same ONNX file; fp32, bf16,
int8 weight compression and int8 post-training quantisation with NNCF). Every
contender embeds the same texts with the batching TransformerEmbedder uses
(texts sorted by token count, batch size 32, mean pooling, L2 norm): only the
forward pass differs. The contenders run interleaved, round after round, with
the same number of threads; the median time is reported with its ratio to the
torch fp32 path and the cosine of each embedding to that path's (mean and min).
The one-off costs (export, optimisation, quantisation, compilation) are timed.

``--accuracy`` adds a downstream check: 5-fold cross-validated accuracy of a
logistic regression on the embeddings, Rotten Tomatoes and SMS spam.

    python benchmarks/bench_embedding_backends.py [--rounds 3] [--n 2000] [--accuracy]
"""

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch

from skllm import datasets
from skllm._device import _bf16_supported
from skllm._embed import embed_texts, l2_normalize
from skllm._models import DEFAULT_ENCODER, resolve_model
from skllm._tokens import pad_batch, pad_token_id, pool, tokenize

MAX_LENGTH = 256


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def embed_with(forward, tokenizer, texts, batch_size):
    """``embed_texts`` with the forward pass replaced by ``forward(input_ids, mask) -> hidden``."""
    ids, _ = tokenize(tokenizer, texts, MAX_LENGTH)
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pad_id = pad_token_id(tokenizer)
    out = None
    for i in range(0, len(order), batch_size):
        batch = order[i : i + batch_size]
        input_ids, mask = pad_batch(ids, batch, pad_id, "cpu")
        hidden = forward(input_ids.numpy(), mask.numpy())
        pooled = pool(torch.from_numpy(np.asarray(hidden, dtype=np.float32)), mask, "mean").numpy()
        if out is None:
            out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
        out[batch] = pooled
    return l2_normalize(out)


class Encoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(model, path):
    # A padded example, so that the trace keeps the attention-mask path.
    input_ids = torch.tensor([[101, 2023, 2003, 102], [101, 2307, 102, 0]])
    mask = (input_ids != 0).long()
    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(model),
            (input_ids, mask),
            path,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )


def ort_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def forward(input_ids, mask):
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]

    return forward


def ov_compiled(model, threads, precision):
    import openvino as ov

    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()

    def forward(input_ids, mask):
        return request.infer({"input_ids": input_ids, "attention_mask": mask})[0]

    return forward


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def build(model, tokenizer, folder, threads, calibration, only):
    """Every contender as ``name -> forward``, and the one-off cost of each as ``name -> seconds``."""
    forwards, costs, notes = {}, {}, {}
    onnx_path = os.path.join(folder, "model.onnx")

    # A fresh copy, because the TorchScript exporter leaves the traced model
    # computing wrong embeddings afterwards; eager attention, because ONNX
    # Runtime's BERT optimizer fuses that pattern (not SDPA's) into Attention.
    def export():
        from transformers import AutoModel

        copy = AutoModel.from_pretrained(model.name_or_path, attn_implementation="eager").eval()
        export_onnx(copy, onnx_path)

    costs["onnx export"], _ = timed(export)

    def wanted(name):
        return not only or any(o in name for o in only)

    if wanted("onnxruntime fp32 (graph opt.)"):
        costs["onnxruntime fp32 (graph opt.)"], forwards["onnxruntime fp32 (graph opt.)"] = timed(
            ort_session, onnx_path, threads
        )

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    opt_path = os.path.join(folder, "model.opt.onnx")

    def optimize():
        cfg = model.config
        opt = optimizer.optimize_model(
            onnx_path, model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
        )
        opt.save_model_to_file(opt_path)
        return opt.get_fused_operator_statistics()

    seconds, fused = timed(optimize)
    notes["fused operators"] = {k: v for k, v in fused.items() if v}
    name = "onnxruntime fp32 (BERT optimizer)"
    if wanted(name):
        load, forwards[name] = timed(ort_session, opt_path, threads)
        costs[name] = seconds + load
    for per_channel in (False, True):
        name = f"onnxruntime int8 dynamic{' per-channel' if per_channel else ''}"
        if not wanted(name):
            continue
        q_path = os.path.join(folder, f"model.int8{per_channel:d}.onnx")
        quant, _ = timed(
            quantize_dynamic,
            opt_path,
            q_path,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            # The fused operators defeat ONNX shape inference.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        load, forwards[name] = timed(ort_session, q_path, threads)
        costs[name] = seconds + quant + load

    import openvino as ov

    convert, ov_model = timed(ov.convert_model, onnx_path)
    for precision in ("f32", "bf16"):
        name = f"openvino {precision}"
        if wanted(name):
            load, forwards[name] = timed(ov_compiled, ov_model, threads, precision)
            costs[name] = convert + load

    try:
        import nncf
    except ImportError:
        notes["nncf"] = "not installed: no OpenVINO int8 rows"
        return forwards, costs, notes

    name = "openvino int8 weights (NNCF)"
    if wanted(name):
        compress, compressed = timed(nncf.compress_weights, ov.convert_model(onnx_path))
        load, forwards[name] = timed(ov_compiled, compressed, threads, "f32")
        costs[name] = convert + compress + load
    name = "openvino int8 PTQ (NNCF)"
    if wanted(name):
        pad_id = pad_token_id(tokenizer)
        ids, _ = tokenize(tokenizer, calibration, MAX_LENGTH)
        items = []
        for i in range(0, len(ids), 32):
            input_ids, mask = pad_batch(ids, range(i, min(i + 32, len(ids))), pad_id, "cpu")
            items.append({"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()})
        quant, quantized = timed(
            nncf.quantize,
            ov.convert_model(onnx_path),
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
        )
        load, forwards[name] = timed(ov_compiled, quantized, threads, "f32")
        costs[name] = convert + quant + load
    return forwards, costs, notes


def accuracy(contenders, batch_size, n_rt):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rt_texts, rt_y = datasets.load_rotten_tomatoes(return_X_y=True)
    pick = np.random.default_rng(1).choice(len(rt_texts), n_rt, replace=False)
    sms_texts, sms_y = datasets.load_sms_spam(drop_duplicates=True, return_X_y=True)
    tasks = {
        f"Rotten Tomatoes ({n_rt})": ([list(rt_texts)[i] for i in pick], np.asarray(rt_y)[pick]),
        f"SMS spam ({len(sms_texts)}, deduplicated)": (list(sms_texts), np.asarray(sms_y)),
    }
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    rows = []
    for task, (texts, y) in tasks.items():
        for name, embed in contenders.items():
            X = embed(texts)
            scores = cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=folds)
            rows.append((task, name, scores.mean(), scores.std()))
            print(f"  {task}: {name} {scores.mean():.4f}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=300, help="texts for OpenVINO's int8 PTQ")
    parser.add_argument("--only", nargs="*", default=[], help="substrings of the contenders to run")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's default")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--n-accuracy", type=int, default=4000, help="Rotten Tomatoes texts for --accuracy")
    args = parser.parse_args()

    import onnxruntime
    import openvino
    from transformers import AutoModel, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{threads} threads; onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}")
    print(f"load average {os.getloadavg()}")

    path = str(resolve_model(DEFAULT_ENCODER).location)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    rt = datasets.load_rotten_tomatoes().data
    texts = rt.sample(args.n, random_state=0).tolist()
    calibration = rt.drop(rt.sample(args.n, random_state=0).index).sample(args.calibration, random_state=0).tolist()

    with tempfile.TemporaryDirectory() as folder:
        forwards, costs, notes = build(model, tokenizer, folder, threads, calibration, args.only)
        size = {f: os.path.getsize(os.path.join(folder, f)) / 2**20 for f in os.listdir(folder)}
        print("files (MiB):", {k: round(v, 1) for k, v in size.items()})
        for key, value in notes.items():
            print(f"{key}: {value}")

        def torch_path(dtype):
            return lambda X: l2_normalize(
                embed_texts(
                    model,
                    tokenizer,
                    X,
                    pooling="mean",
                    normalize=False,
                    max_length=MAX_LENGTH,
                    batch_size=args.batch_size,
                    device=torch.device("cpu"),
                    dtype=dtype,
                )[0]
            )

        contenders = {"torch fp32 (TransformerEmbedder)": torch_path("float32")}
        if _bf16_supported(torch.device("cpu")):
            contenders["torch bf16 (TransformerEmbedder)"] = torch_path("bfloat16")
        for name, forward in forwards.items():
            contenders[name] = lambda X, forward=forward: embed_with(forward, tokenizer, X, args.batch_size)

        if args.rounds:
            report_speed(contenders, texts, args, costs)

        if args.accuracy:
            keep = [n for n in contenders if "fp32 (Transformer" in n or "int8" in n or "bf16 (Transformer" in n]
            print("\nlogistic regression, 5-fold accuracy:")
            rows = accuracy({n: contenders[n] for n in keep}, args.batch_size, args.n_accuracy)
            print("\n| data | contender | accuracy | std |\n|---|---|---|---|")
            for task, name, mean, std in rows:
                print(f"| {task} | {name} | {mean:.4f} | {std:.4f} |")
    print(f"load average at the end {os.getloadavg()}")


def report_speed(contenders, texts, args, costs):
    """Time the contenders interleaved, round after round, and print the table."""
    for fn in contenders.values():  # warm-up
        fn(texts[:64])
    times = {name: [] for name in contenders}
    outputs = {}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            seconds, outputs[name] = timed(fn, texts)
            times[name].append(seconds)
        print(f"round {r + 1}: load average {os.getloadavg()}", flush=True)

    ref = outputs["torch fp32 (TransformerEmbedder)"]
    base = statistics.median(times["torch fp32 (TransformerEmbedder)"])
    print(
        f"\n{args.n} Rotten Tomatoes snippets, batch size {args.batch_size}, {args.rounds} rounds, median\n\n"
        "| contender | median s | texts/s | vs torch fp32 | cosine mean | cosine min | one-off s |\n"
        "|---|---|---|---|---|---|---|"
    )
    for name in contenders:
        med = statistics.median(times[name])
        cos = (outputs[name] * ref).sum(axis=1)
        cost = f"{costs[name]:.1f}" if name in costs else "-"
        print(
            f"| {name} | {med:.2f} | {args.n / med:.0f} | {base / med:.2f}x "
            f"| {cos.mean():.7f} | {cos.min():.7f} | {cost} |"
        )
    print(f"\nonnx export: {costs['onnx export']:.1f} s")


if __name__ == "__main__":
    main()
