"""Vector search: build time, query latency and recall@10, exact against approximate.

Synthetic unit vectors of dimension 384 drawn around 2,000 random centres (a clustered
corpus, like real embeddings); 200 queries from the same distribution, one at a time
(latency per query). Recall@10 of an approximate index is the share of the exact top 10
it returns. Then end-to-end dense retrieval recall@5 on real text (see --help);
dense against lexical and hybrid retrieval: ``bench_retrieval.py``.

    python benchmarks/bench_index.py [--sizes 10000 100000 1000000] [--skip-text]
"""

import argparse
import time

import numpy as np

from skllm._search import build_search_index, search_index

DIM = 384


def clustered(n, rng, centres):
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(
        DIM
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def latency(index, queries, k=10):
    start = time.perf_counter()
    results = [search_index(index, q[None], k)[1][0] for q in queries]
    return (time.perf_counter() - start) / len(queries) * 1000, np.array(results)


def vectors_benchmark(sizes):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    print("| vectors | index | build s | ms/query | recall@10 |\n|---|---|---|---|---|")
    for n in sizes:
        data = clustered(n, rng, centres)
        queries = clustered(200, rng, centres)
        exact = None
        for name, kwargs in [
            ("exact (faiss flat)", {"search": "exact"}),
            ("HNSW M=32 ef=128", {"search": "hnsw", "hnsw_m": 32, "ef_search": 128}),
            ("IVF nprobe=16", {"search": "ivf", "n_probe": 16}),
        ]:
            start = time.perf_counter()
            index = build_search_index(data, "faiss", **kwargs)
            build = time.perf_counter() - start
            if kwargs["search"] == "ivf":
                name = f"IVF nprobe=16 of {index.nlist} lists"  # n_lists is capped at n // 39
            ms, found = latency(index, queries)
            if exact is None:
                exact, recall = found, 1.0
            else:
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
            print(f"| {n:,} | {name} | {build:.1f} | {ms:.3f} | {recall:.3f} |", flush=True)
            del index


def text_benchmark(n_docs=5000, n_queries=500):
    """Recall@5 on Rotten Tomatoes: each query is a contiguous 60% of one snippet's words."""
    from skllm import DocumentIndex
    from skllm.datasets import load_rotten_tomatoes

    docs = load_rotten_tomatoes().data.drop_duplicates().tolist()[:n_docs]
    rng = np.random.default_rng(0)
    targets = rng.choice(len(docs), n_queries, replace=False)
    queries = []
    for t in targets:
        words = docs[t].split()
        size = max(1, int(0.6 * len(words)))
        start = rng.integers(0, len(words) - size + 1)
        queries.append(" ".join(words[start : start + size]))
    index = DocumentIndex(retrieval="dense").fit(docs)  # the embedding's recall; hybrid: bench_retrieval.py
    start = time.perf_counter()
    hits = index.query(queries, k=5)
    seconds = time.perf_counter() - start
    recall = np.mean([t in {h.doc_id for h in row} for t, row in zip(targets, hits)])
    print(f"\nRotten Tomatoes, {len(docs)} snippets, {n_queries} fragment queries (60% of a snippet's words):")
    print(f"recall@5 = {recall:.3f}; {seconds / n_queries * 1000:.1f} ms per query, embedding included")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--skip-text", action="store_true")
    args = parser.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    vectors_benchmark(args.sizes)
    if not args.skip_text:
        text_benchmark()


if __name__ == "__main__":
    main()
