"""Token-level helpers shared by every estimator: padding, pooling and truncation.

One definition of each, so that the embedder, the fine-tuners and the in-context
estimators pad, pool and cut texts the same way.
"""

import warnings

import numpy as np

from .exceptions import TruncationWarning, UnknownTokensWarning

POOLINGS = ("mean", "cls", "max", "last")


def pad_token_id(tokenizer):
    """The id used for padding: the pad token, else the end-of-sequence token, else 0.

    Decoder tokenizers often have no pad token; the padded positions are masked
    out, so any id works, but it must be a valid one.
    """
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def pad_batch(ids, batch, pad_id, device, *, side="right"):
    """``input_ids`` and ``attention_mask`` tensors for rows ``batch`` of ``ids``.

    ``side="left"`` aligns every row on its last token, where a causal LM
    continues the prompt.
    """
    import torch

    width = max(len(ids[i]) for i in batch)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, i in enumerate(batch):
        n = len(ids[i])
        cols = slice(0, n) if side == "right" else slice(width - n, width)
        input_ids[row, cols] = ids[i]
        mask[row, cols] = 1
    return torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device)


def pool(hidden, mask, pooling):
    """One vector per row of ``hidden`` (batch, tokens, dim) from its unmasked tokens.

    ``pooling`` is one of ``POOLINGS``; ``"last"`` expects right padding.
    """
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def check_room_for_text(tokenizer, max_length):
    """Raise a ``ValueError`` when ``max_length`` leaves no position for text after the special tokens."""
    special = tokenizer.num_special_tokens_to_add(pair=False)
    if max_length <= special:
        raise ValueError(
            f"max_length={max_length} leaves no room for text: this tokenizer adds {special} special token(s) "
            f"to every text, so every text would read the same. Use max_length > {special}."
        )


def tokenize(tokenizer, texts, max_length):
    """Token ids per text (truncated to ``max_length``) and untruncated lengths."""
    ids = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    n_tokens = [len(row) for row in ids]
    long = [i for i, n in enumerate(n_tokens) if n > max_length]
    if long:
        # Tokenizing twice only for the long texts lets the tokenizer apply
        # its own truncation rules (special tokens kept) while we still learn
        # how many texts were cut.
        cut = tokenizer([texts[i] for i in long], add_special_tokens=True, truncation=True, max_length=max_length)
        for i, row in zip(long, cut["input_ids"]):
            ids[i] = row
    filler = next(
        (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None), 0
    )
    # A decoder tokenizer may map "" to no token at all; the model needs one.
    ids = [row if len(row) else [filler] for row in ids]
    return ids, n_tokens


def user_stacklevel():
    """``warnings.warn``'s stacklevel for the first frame outside skllm and scikit-learn: the user's call.

    For a warning raised along paths of different depths (fit, predict, a Pipeline, a method's
    inputs), which no constant fits; Python 3.12's ``skip_file_prefixes`` does this.
    """
    import os
    import sys

    import joblib
    import sklearn

    # (joblib: a Pipeline's fit runs its steps through joblib's Memory)
    inside = tuple(os.path.dirname(os.path.abspath(m.__file__)) for m in (sys.modules[__package__], sklearn, joblib))
    frame, level = sys._getframe(1), 1  # the frame that calls warnings.warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def unknown_tokens_warning(tokenizer, texts, ids):
    """Warn where a text is mostly the tokenizer's unknown token (a script or symbols its vocabulary lacks).

    Such texts keep little of their content, and texts unknown alike (three Thai sentences, two
    emoji) become the same input to the model. Not where the unknown token is also a token the
    tokenizer adds or pads with (GPT-2's <|endoftext|>): it would be counted in every text.
    """
    unk = tokenizer.unk_token_id
    added = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.cls_token_id}
    if unk is None or unk in added | {tokenizer.sep_token_id}:  # byte-level tokenizers know every text
        return
    special = set(tokenizer.all_special_ids) - {unk}
    unknown = []
    for text, row in zip(texts, ids):
        content = [t for t in row if t not in special]
        if content and 2 * sum(t == unk for t in content) > len(content):
            unknown.append(text)
    if unknown:
        warnings.warn(
            f"{len(unknown)} of {len(texts)} texts are mostly tokens unknown to this tokenizer "
            f"({tokenizer.unk_token}), e.g. {unknown[0]!r:.60}: the model reads little of them, and texts unknown "
            f"alike read the same. Its vocabulary lacks their script or symbols: use a model that covers them (a "
            f"multilingual one).",
            UnknownTokensWarning,
            stacklevel=user_stacklevel(),
        )


def truncation_warning(n_cut, n_texts, max_length, stacklevel):
    if n_cut:
        warnings.warn(
            f"{n_cut} of {n_texts} texts were longer than max_length={max_length} tokens "
            f"and were truncated to their first {max_length} tokens.",
            TruncationWarning,
            stacklevel=stacklevel + 1,
        )
