"""Embedding throughput: TransformerEmbedder against SentenceTransformer.encode.

Same model (the packaged all-MiniLM-L6-v2), same texts, batch size 32, same
torch threads; the contenders run interleaved, round after round, and the
median time of each is reported. The embedder runs without its cache
(cache_dir=None) so that every round really embeds.

    python benchmarks/bench_embedding_throughput.py [--rounds 3] [--n-short 2000]
"""

import argparse
import statistics
import time

import numpy as np
import torch

from skllm import TransformerEmbedder, datasets
from skllm._models import DEFAULT_ENCODER, resolve_model


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n-short", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    path = resolve_model(DEFAULT_ENCODER).location
    short = datasets.load_rotten_tomatoes().data.sample(args.n_short, random_state=0).tolist()
    long = datasets.load_movie_plots().tolist()
    print(f"model {DEFAULT_ENCODER} from {path}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    st = SentenceTransformer(str(path), device="cpu")
    st.max_seq_length = 256
    ours = TransformerEmbedder(DEFAULT_ENCODER, cache_dir=None, batch_size=args.batch_size, device="cpu").fit()
    ours_bf16 = TransformerEmbedder(
        DEFAULT_ENCODER, cache_dir=None, batch_size=args.batch_size, device="cpu", dtype="bfloat16"
    ).fit()
    contenders = {
        "sentence-transformers fp32": lambda X: st.encode(X, batch_size=args.batch_size, normalize_embeddings=True),
        "skllm fp32": ours.transform,
        f"skllm {ours_bf16.dtype_}": ours_bf16.transform,
    }

    import warnings

    from skllm.exceptions import TruncationWarning

    warnings.simplefilter("ignore", TruncationWarning)
    rows = []
    for label, texts in (("short (Rotten Tomatoes snippets)", short), ("long (movie plots, 256 tokens)", long)):
        for fn in contenders.values():  # warm-up
            fn(texts[:64])
        times = {name: [] for name in contenders}
        outputs = {}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                seconds, outputs[name] = timed(lambda fn=fn, texts=texts: fn(texts))
                times[name].append(seconds)
        ref = outputs["sentence-transformers fp32"]
        base = statistics.median(times["sentence-transformers fp32"])
        for name in contenders:
            med = statistics.median(times[name])
            cos = float((np.asarray(outputs[name]) * ref).sum(axis=1).min())
            rows.append((label, len(texts), name, med, len(texts) / med, base / med, cos))

    print(
        "\n| texts | n | contender | median s | texts/s | speed-up vs ST | min cosine to ST fp32 |\n"
        "|---|---|---|---|---|---|---|"
    )
    for label, n, name, med, rate, ratio, cos in rows:
        print(f"| {label} | {n} | {name} | {med:.2f} | {rate:.0f} | {ratio:.2f}x | {cos:.6f} |")


if __name__ == "__main__":
    main()
