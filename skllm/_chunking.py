"""Splitting documents into chunks of whole words that fit the embedder."""

import re

import numpy as np


def chunk_spans(text, tokenizer, chunk_size, chunk_overlap):
    """Character spans of the chunks of ``text``.

    A chunk holds whole words (runs of non-space characters) worth at most
    ``chunk_size`` tokens of ``tokenizer`` — unless one word alone is longer — and
    the next chunk starts so that about ``chunk_overlap`` tokens are shared. A text
    of at most ``chunk_size`` tokens is one chunk, kept whole.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    counts = np.zeros(len(words), dtype=np.int64)
    starts = np.array([w[0] for w in words])
    for begin, end in enc["offset_mapping"]:
        if end > begin:
            counts[max(0, np.searchsorted(starts, begin, side="right") - 1)] += 1
    counts = np.maximum(counts, 1)
    if counts.sum() <= chunk_size:
        return [(0, len(text))]
    spans, first = [], 0
    while first < len(words):
        last, total = first, counts[first]
        while last + 1 < len(words) and total + counts[last + 1] <= chunk_size:
            last += 1
            total += counts[last]
        spans.append((words[first][0], words[last][1]))
        if last + 1 >= len(words):
            break
        # Step back over at most chunk_overlap tokens, always moving forward.
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + counts[nxt - 1] <= chunk_overlap:
            nxt -= 1
            shared += counts[nxt]
        first = nxt
    return spans
