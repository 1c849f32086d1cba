"""Splitting documents into chunks of whole words that fit the embedder."""

import itertools
import re

import numpy as np


def chunk_spans(text, tokenizer, chunk_size, chunk_overlap):
    """Character spans of the chunks of ``text``.

    A chunk holds whole words (runs of non-space characters) worth at most
    ``chunk_size`` tokens of ``tokenizer``, and the next chunk starts so that about
    ``chunk_overlap`` tokens are shared. A word longer than ``chunk_size`` tokens
    (text written without spaces, as Chinese or Japanese is, or a long URL) is cut
    between its tokens, each piece counting as a word (so that chunks of it share
    ``chunk_overlap`` tokens too).
    A text of at most ``chunk_size`` tokens is one chunk, kept whole.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = [[] for _ in words]
    starts = np.array([w[0] for w in words])
    for begin, end in enc["offset_mapping"]:
        if end > begin:
            tokens[max(0, np.searchsorted(starts, begin, side="right") - 1)].append((begin, end))
    if sum(max(len(t), 1) for t in tokens) <= chunk_size:
        return [(0, len(text))]
    pieces, counts = [], []
    for (start, stop), spans in zip(words, tokens):
        if len(spans) <= chunk_size:
            pieces.append((start, stop))
            counts.append(max(len(spans), 1))
            continue
        # Cut where a token begins (kept inside the word: a SentencePiece token can begin at the space
        # before it); tokens that begin at one character (bytes of one character) stay in one piece.
        begins = np.sort([min(max(begin, start), stop) for begin, _ in spans])
        bounds = [start, *sorted(set(begins[1:].tolist()) - {start, stop}), stop]
        # Tokens per piece: those that begin in it (the last piece takes a token beginning at its end).
        n_tokens = np.diff(np.searchsorted(begins, [*bounds[:-1], stop + 1], side="left"))
        pieces += list(itertools.pairwise(bounds))
        counts += np.maximum(n_tokens, 1).tolist()
    words, counts = pieces, np.array(counts, dtype=np.int64)
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
