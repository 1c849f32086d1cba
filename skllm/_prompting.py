"""The prompting core of every estimator that prompts a causal LM.

One definition of each step, so that the in-context estimators
(``ZeroShotClassifier``, ``FewShotClassifier``, ``FewShotGenerator`` and, through
it, ``RetrievalQA``) and the fine-tuned ``FineTuneGenerator`` build, cut and
answer prompts the same way: the chat wrapping of a prompt, its cut to a token
budget, and batched generation with left padding.
"""

import contextlib
import functools

import numpy as np

from ._device import autocast
from ._tokens import pad_batch
from ._training import training_context


def wrap(tokenizer, content, chat, *, plain_end=""):
    """The full prompt text of ``content``: through the chat template when ``chat``.

    ``content`` is the user message, or a list of chat messages (with
    ``chat`` only). Without the chat template the prompt is ``content``
    followed by ``plain_end``.
    """
    if chat:
        messages = content if isinstance(content, list) else [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return content + plain_end


def encode(tokenizer, prompt, chat):
    """Token ids of a full prompt text (the chat template writes its own special tokens)."""
    return tokenizer(prompt, add_special_tokens=not chat)["input_ids"]


def fit_text(tokenizer, prompt_ids, text, budget, *, max_length, row=None, reserved="the answer"):
    """Token ids of the prompt of ``text``, the end of the text dropped until they fit in ``budget``.

    ``prompt_ids(text)`` returns the token ids of the whole prompt around
    ``text``. Returns ``(ids, cut)``; raises a ``ValueError`` when the prompt
    without any text already exceeds the budget (``max_length`` and
    ``reserved``, what the rest of it is kept for, and ``row`` only name the
    problem).
    """
    ids = prompt_ids(text)
    if not ids:
        # An empty text in a template of nothing else, with a tokenizer that adds no start
        # token: the model would be asked to continue nothing.
        where = "" if row is None else f"Row {row}: "
        raise ValueError(
            f"{where}the prompt of the text {text!r} has no tokens (the template holds nothing else and the "
            f"tokenizer adds no start token): give a template with words around {{text}}, or leave out empty texts."
        )
    if len(ids) <= budget:
        return ids, False
    base = len(prompt_ids(""))
    if budget - base <= 0:
        where = "" if row is None else f"Row {row}: "
        raise ValueError(
            f"{where}max_length={max_length} leaves no room for the text: the template alone takes {base} tokens "
            f"and {reserved} {max_length - budget}. Raise max_length or shorten the template."
        )
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    keep = min(len(text_ids), budget - base)
    while True:
        piece = tokenizer.decode(text_ids[:keep])
        # A byte-level cut can split a character: decoded, its bytes are U+FFFD, which the text did not hold.
        while piece.endswith("\ufffd") and not text.startswith(piece):
            piece = piece[:-1]
        ids = prompt_ids(piece)
        if len(ids) <= budget or keep == 0:
            return ids, True
        # Tokens can merge across the cut: drop as many more as the prompt is over.
        keep = max(0, keep - max(1, len(ids) - budget))


def end_ids(model, tokenizer):
    """The token ids that end an answer: the tokenizer's end-of-sequence and the model's generation config's.

    An instruct model may end its turn with a token of its own (``<end_of_turn>``,
    ``<|end|>``) that is not the tokenizer's ``eos_token``; generating would run past it.
    """
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    ids = [tokenizer.eos_token_id, *(extra if isinstance(extra, (list, tuple)) else [extra])]
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def generate(new_tokens, prompts, *, pad_id, device, dtype, batch_size, eos_ids=(), keep_eos=False, seed=None):
    """The generated token ids of each prompt (a list of id lists), in batches of prompts of similar length.

    ``new_tokens(input_ids, attention_mask)`` runs the model on a left-padded
    batch and returns the new tokens only. With ``eos_ids``, each answer is cut
    at its first end-of-sequence token (kept with ``keep_eos``); without them,
    all ``max_new_tokens`` come back (the padding after the end included).
    ``seed`` seeds sampling; the global random state is left untouched.
    """
    import torch

    out = [None] * len(prompts)
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    # Seeded sampling holds the training lock with a forked generator, as a fit does: forking
    # (and so restoring) torch's process-wide generator in a thread would undo the draws of a
    # fit running in another. Greedy decoding draws nothing and needs neither.
    seeded = training_context(seed, device) if seed is not None else contextlib.nullcontext()
    with seeded, torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            # Left padding: every prompt ends where its answer starts.
            ids, mask = pad_batch(prompts, batch, pad_id, device, side="left")
            generated = new_tokens(ids, mask).cpu().numpy()
            for row, i in enumerate(batch):
                tokens = generated[row].tolist()
                end = next((k for k, token in enumerate(tokens) if token in eos_ids), None)
                if end is not None:
                    tokens = tokens[: end + keep_eos]
                out[i] = tokens
    return out


# The fewest tokens a prompt may be left beside the answer.
MIN_PROMPT_TOKENS = 8
# The lowest sampling temperature: below about 1e-6 a logit over it can pass float32's range.
MIN_TEMPERATURE = 1e-6


def prompt_budget(max_length, max_new_tokens):
    """Tokens a prompt may take beside an answer of ``max_new_tokens``; a ``ValueError`` below 8."""
    budget = max_length - max_new_tokens
    if budget < MIN_PROMPT_TOKENS:
        lower = (
            f"lower max_new_tokens to at most {max_length - MIN_PROMPT_TOKENS} or "
            if max_length > MIN_PROMPT_TOKENS
            else ""
        )
        raise ValueError(
            f"max_new_tokens={max_new_tokens} leaves {max(budget, 0)} token(s) for the prompt in "
            f"max_length={max_length}, which needs at least {MIN_PROMPT_TOKENS}: {lower}raise max_length to at "
            f"least {MIN_PROMPT_TOKENS + max_new_tokens}."
        )
    return budget


def answer_tokens(tokenizer, tokens, stop_at_newline):
    """The generated ``tokens`` that make the answer :func:`decode_answer` returns.

    All of them, or with ``stop_at_newline`` those up to the token that ends
    the answer's first line (kept, as an end-of-sequence token is): what
    follows is never read, so it must not be scored or trained either.
    """
    if not stop_at_newline or "\n" not in tokenizer.decode(tokens, skip_special_tokens=True).lstrip():
        return list(tokens)
    for n in range(1, len(tokens) + 1):
        # Leading white space is stripped from an answer (clean_answer), so its line breaks end nothing.
        if "\n" in tokenizer.decode(tokens[:n], skip_special_tokens=True).lstrip():
            return list(tokens[:n])
    return list(tokens)


def line_end_stop(tokenizer, stop_at_newline):
    """Options of ``generate`` that stop an answer at the token ending its first line, with ``stop_at_newline``.

    The line is the one :func:`answer_tokens` keeps (leading line breaks end
    nothing); the rest was decoded only to be cut off, up to ``max_new_tokens``
    (64 by default) for every answer of a plain prompt, which rarely ends with
    an end-of-sequence token. Each row stops on its own, and the others are
    computed as before, so greedy answers are the same. Sampled ones are too
    within a batch, but a batch that ends sooner draws fewer random numbers, so
    the later batches of a seeded call sample other answers than before.
    """
    if not stop_at_newline:
        return {}
    from transformers import StoppingCriteriaList

    return {"stopping_criteria": StoppingCriteriaList([_line_end_class()(tokenizer)])}


@functools.cache
def _line_end_class():
    import torch
    from transformers import StoppingCriteria

    class LineEnd(StoppingCriteria):
        def __init__(self, tokenizer):
            self.tokenizer, self.start = tokenizer, None

        def __call__(self, input_ids, scores, **kwargs):
            if self.start is None:  # called once a token is added: the prompt (or nothing, from embeddings) before
                self.start = input_ids.shape[1] - 1
            rows = input_ids[:, self.start :].tolist()
            done = ["\n" in self.tokenizer.decode(row, skip_special_tokens=True).lstrip() for row in rows]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return LineEnd


def decode_answer(tokenizer, tokens, stop_at_newline):
    """The text of generated ``tokens``, special tokens skipped, stripped; cut at the first line break if asked.

    An answer cut at ``max_new_tokens`` can end inside a character (SmolLM2 writes a Chinese
    one in two tokens), whose bytes decode as U+FFFD: that character is left out, as a prompt
    cut between its tokens is moved back.
    """
    # (A model that writes U+FFFD itself at the end of an answer loses it too: rare, and no text.)
    return clean_answer(tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd"), stop_at_newline)


def clean_answer(text, stop_at_newline):
    """A generated ``text`` stripped, and cut at its first line break if asked (local and API answers alike)."""
    if stop_at_newline:
        # Leading white space first: " \nParis" and "\r\nParis" answer "Paris", as "\nParis" does.
        text = text.lstrip().split("\n")[0]
    return text.strip()
