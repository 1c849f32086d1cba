"""Chunks counted alone: how many exceed chunk_size, before and after the second count.

``DocumentIndex`` counts a chunk's tokens in their place in the document; tokenised alone,
as the embedder reads it, a chunk can take more (a byte-level BPE's first word loses its
leading-space form; a WordPiece chunk starting inside a long word is split otherwise).
``skllm._chunking.chunk_spans`` counts each chunk again alone and cuts the document again
where one is over. This script counts, per tokenizer and chunk size, the chunks of the
one-pass cut (``_spans``) that are over alone, and the chunks of ``chunk_spans``.

Documents: the packaged movie synopses (``skllm.datasets.load_movie_plots``), 20 documents
of 20 synopses each. Tokenizers: MiniLM's (WordPiece) and SmolLM2-135M's (byte-level BPE).
No timing; the CPU line is printed as every benchmark's is.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_chunking.py
"""

import argparse
import itertools

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads


def tokenizers():
    from transformers import AutoTokenizer

    from skllm import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER
    from skllm._models import resolve_model

    for name in (DEFAULT_ENCODER, DEFAULT_CAUSAL_LM):
        source = resolve_model(name, None, cache_dir="auto")
        yield name, AutoTokenizer.from_pretrained(source.location)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20, help="documents of --per-doc synopses each")
    parser.add_argument("--per-doc", type=int, default=20)
    parser.add_argument("--sizes", nargs="*", default=["64:8", "254:32"], help="chunk_size:chunk_overlap")
    args = parser.parse_args()
    import warnings

    from skllm._chunking import _spans, chunk_spans
    from skllm.datasets import load_movie_plots

    warnings.simplefilter("ignore")
    print(cpu())
    plots = [str(t) for t in load_movie_plots()]
    docs = [" ".join(plots[i : i + args.per_doc]) for i in range(0, args.docs * args.per_doc, args.per_doc)]
    print("| tokenizer | chunk_size:overlap | one-pass chunks | of them over alone | chunks now | over alone now |")
    print("|---|---|---|---|---|---|")
    for name, tok in tokenizers():
        for spec in args.sizes:
            size, overlap = map(int, spec.split(":"))
            before = after = over_before = over_after = 0
            for doc in docs:
                for spans, counted in (
                    (_spans(doc, tok, size, overlap), "before"),
                    (chunk_spans(doc, tok, size, overlap), "after"),
                ):
                    alone = [len(tok(doc[a:b], add_special_tokens=False)["input_ids"]) for a, b in spans]
                    over = sum(n > size for n in alone)
                    if counted == "before":
                        before, over_before = before + len(spans), over_before + over
                    else:
                        after, over_after = after + len(spans), over_after + over
                        # Nothing lost: the chunks cover the document, with nothing but spaces between two.
                        assert spans[0][0] == 0 and spans[-1][1] == len(doc)
                        assert all(not doc[x[1] : y[0]].strip() for x, y in itertools.pairwise(spans))
            print(f"| {name} | {spec} | {before} | {over_before} | {after} | {over_after} |")


if __name__ == "__main__":
    main()
