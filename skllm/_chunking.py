"""Splitting documents into chunks of whole words that fit the embedder."""

import itertools
import re

import numpy as np


def chunk_spans(text, tokenizer, chunk_size, chunk_overlap):
    """Character spans of the chunks of ``text`` (see :func:`_spans`), each at most ``chunk_size`` tokens alone.

    Tokens are counted in their place in the whole text, and a chunk tokenised on its own, as the embedder
    reads it, can take more: a chunk that starts inside a long word is split into other pieces there
    (WordPiece's ``##ghij`` becomes ``g ##hi ##j``), and a byte-level BPE's first word loses its leading-space
    form. Each chunk is therefore counted again alone; where one came out too long, the text is cut again with
    a size smaller by the largest excess (a few times at most), and a chunk still too long is then cut again
    within itself, its pieces counted again (a character of more byte tokens than ``chunk_size`` stays whole).
    """
    spans = _spans(text, tokenizer, chunk_size, chunk_overlap)
    if spans == [(0, len(text))]:  # the whole text, counted as itself
        return spans
    size = chunk_size
    for _ in range(3):
        counts = _n_tokens(tokenizer, [text[start:end] for start, end in spans])
        excess = max(counts) - chunk_size
        if excess <= 0:
            return spans
        if size - excess < 2:
            break
        size -= excess
        spans = _spans(text, tokenizer, size, min(chunk_overlap, size - 1))
    out = []
    for start, end in _fitted_alone(text, spans, tokenizer, chunk_size, chunk_overlap, depth=4):
        # A piece of a re-cut chunk that lies within a neighbour adds nothing: no chunk lies within another.
        while out and start <= out[-1][0] and end >= out[-1][1]:
            out.pop()
        if not out or end > out[-1][1]:
            out.append((start, end))
    return out


def _fitted_alone(text, spans, tokenizer, chunk_size, chunk_overlap, depth):
    """``spans``, each one over ``chunk_size`` tokens alone cut again within itself, its pieces counted again."""
    counts = _n_tokens(tokenizer, [text[start:end] for start, end in spans])
    out = []
    for (start, end), n in zip(spans, counts):
        inner = _spans(text[start:end], tokenizer, chunk_size, chunk_overlap) if n > chunk_size and depth else []
        if len(inner) < 2:  # it fits, or cannot be cut further: left to the embedder's truncation
            out.append((start, end))
            continue
        pieces = [(start + a, start + b) for a, b in inner]
        out += _fitted_alone(text, pieces, tokenizer, chunk_size, chunk_overlap, depth - 1)
    return out


def _n_tokens(tokenizer, texts):
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def _spans(text, tokenizer, chunk_size, chunk_overlap):
    """Character spans of the chunks of ``text``, tokens counted in their place in ``text``.

    A chunk holds whole words (runs of non-space characters) worth at most
    ``chunk_size`` tokens of ``tokenizer``, and the next chunk starts so that about
    ``chunk_overlap`` tokens are shared. A word longer than ``chunk_size`` tokens
    (text written without spaces, as Chinese or Japanese is, or a long URL) is cut
    between its tokens, each piece counting as a word (so that chunks of it share
    ``chunk_overlap`` tokens too). Tokens of whitespace only count with the word
    after them, never as a part of one. A chunk never lies within the one before.
    A text of at most ``chunk_size`` tokens is one chunk, kept whole.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"Documents are cut into chunks at the character offsets of their tokens, which only a fast (Rust) "
            f"tokenizer gives; the embedder's tokenizer is {type(tokenizer).__name__}, a Python one. Use an embedder "
            f"whose model folder holds a fast tokenizer (a tokenizer.json)."
        )
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)  # nothing is cut here
    tokens = [[] for _ in words]
    # Tokens of whitespace only (a byte-level BPE's "Ċ" and "ĠĠ" runs between paragraphs), counted with the
    # word after them: never a part of a word, so they never make one look too long to keep whole.
    gaps, trailing = [0] * len(words), 0  # (whitespace after the last word is in no chunk but a whole text)
    starts = np.array([w[0] for w in words])
    for begin, end in enc["offset_mapping"]:
        if end <= begin:
            continue
        piece = text[begin:end]
        space = len(piece) - len(piece.lstrip())  # a byte-level BPE's "Ġword" begins at the space before it
        if space == len(piece):
            after = int(np.searchsorted(starts, begin, side="right"))
            if after < len(words):
                gaps[after] += 1
            else:
                trailing += 1
        else:
            tokens[max(0, np.searchsorted(starts, begin + space, side="right") - 1)].append((begin + space, end))
    if sum(max(len(t), 1) for t in tokens) + sum(gaps) + trailing <= chunk_size:
        return [(0, len(text))]
    pieces, counts, spaces = [], [], []  # each piece's tokens, and those of the whitespace before it
    for (start, stop), spans, gap in zip(words, tokens, gaps):
        if len(spans) <= chunk_size:
            pieces.append((start, stop))
            counts.append(max(len(spans), 1))
            spaces.append(gap)
            continue
        # Cut where a token begins (kept inside the word: a SentencePiece token can begin at the space
        # before it); tokens that begin at one character (bytes of one character) stay in one piece.
        begins = np.sort([min(max(begin, start), stop) for begin, _ in spans])
        bounds = [start, *sorted(set(begins[1:].tolist()) - {start, stop}), stop]
        # Tokens per piece: those that begin in it (the last piece takes a token beginning at its end).
        n_tokens = np.diff(np.searchsorted(begins, [*bounds[:-1], stop + 1], side="left"))
        pieces += list(itertools.pairwise(bounds))
        counts += np.maximum(n_tokens, 1).tolist()
        spaces += [gap] + [0] * (len(n_tokens) - 1)
    words = pieces
    spans, first = [], 0
    while first < len(words):
        # A chunk starts at its first word: the whitespace before that word is not in it.
        last, total = first, counts[first]
        while last + 1 < len(words) and total + spaces[last + 1] + counts[last + 1] <= chunk_size:
            last += 1
            total += spaces[last] + counts[last]
        spans.append((words[first][0], words[last][1]))
        if last + 1 >= len(words):
            break
        # Step back over at most chunk_overlap tokens, always moving forward, and no further than leaves
        # room for the word after this chunk (else the next chunk would lie within this one).
        nxt, shared = last + 1, 0
        after = spaces[last + 1] + counts[last + 1]
        while nxt - 1 > first:
            step = counts[nxt - 1] + (spaces[nxt] if nxt <= last else 0)
            if shared + step > chunk_overlap or shared + step + after > chunk_size:
                break
            nxt -= 1
            shared += step
        first = nxt
    return spans
