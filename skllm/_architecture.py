"""Facts about a loaded model's architecture that every estimator reads the same way.

Its output width, whether its attention is causal, where its position ids start and how
many tokens it takes.
"""


def output_width(config):
    """The width of a model's last hidden states: ``hidden_size``, or OPT's ``word_embed_proj_dim``.

    OPT models whose embeddings are narrower than their layers (opt-350m: 512 against 1,024)
    project the layers' output down to that width. A multimodal config is read for its text model.
    """
    if getattr(config, "hidden_size", None) is None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(getattr(config, "word_embed_proj_dim", None) or config.hidden_size)


def is_decoder(model):
    """True for models whose attention is causal (decoders such as Llama).

    Read from the attention modules' ``is_causal``; a model whose modules state none (Bloom) is
    asked: its first position's output is the same whatever follows it only if it is causal.
    """
    import torch

    stated = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    if stated:
        return any(stated)
    vocab = getattr(model.config, "vocab_size", None) or 5  # (CANINE reads characters: no embedding table)
    ids = torch.tensor([[1, 2, 3], [1, 2, min(4, vocab - 1)]], device=model.device)
    training = model.training
    try:
        model.eval()  # no dropout: the difference must come from the attention alone
        with torch.no_grad():
            first = model(input_ids=ids, attention_mask=torch.ones_like(ids))[0][:, 0].float()
    except Exception:  # a model this probe cannot run (as before it: taken for an encoder)
        return False
    finally:
        model.train(training)
    return bool(torch.allclose(first[0], first[1], atol=1e-5))


def check_pooling_fits(pooling, decoder, name, auto=True):
    """Refuse ``pooling="cls"`` on a decoder (``decoder``: :func:`is_decoder` of the model).

    With causal attention the first token sees only itself. ``auto``: whether the caller takes ``"auto"``.
    """
    if pooling == "cls" and decoder:
        hint = " ('auto' picks 'last' for a decoder)" if auto else ""
        raise ValueError(
            f"pooling='cls' reads the first token, and {name!r} is a decoder (causal attention), where the first "
            f"token sees only itself: texts would be told apart by their first token alone (or not at all, after "
            f"a start token). Use pooling='last' or 'mean'{hint}."
        )


def first_position(model):
    """The position id of a text's first token: 0, or ``padding_idx + 1`` in RoBERTa-like models.

    RoBERTa-like position ids start after the padding index (whose row is zeros), and
    max_position_embeddings counts those unused positions (514 for 512 tokens).
    """
    embeddings = getattr(model, "embeddings", None)
    offset = getattr(embeddings, "padding_idx", None)
    return offset + 1 if isinstance(offset, int) and hasattr(embeddings, "position_embeddings") else 0


def positions(model, tokenizer):
    """How many tokens the model accepts."""
    limit = getattr(model.config, "max_position_embeddings", None)
    limit = limit if isinstance(limit, int) and limit > 0 else 10**9  # XLNet's -1: no limit
    # The tokenizer usually counts RoBERTa's unused positions too, but a hand-saved one may not.
    limit -= first_position(model)
    return int(min(limit, getattr(tokenizer, "model_max_length", limit) or limit))
