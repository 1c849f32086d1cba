"""Checks of a loaded backbone: weights missing from its checkpoint, and what it cannot read.

transformers fills weights missing from a checkpoint with random values, logging it only, and
loads models that take no token ids or whose embedding table lacks ids of the tokenizer, which
fail later, deep inside torch: skllm refuses them when they are loaded, by name.
"""


def refuse_incomplete_backbone(source, model, info):
    """Raise when weights of the backbone were missing from the checkpoint.

    transformers fills them with random values and only logs it (a folder saved from a peft
    wrapper, whose keys carry a ``base_model.model.`` prefix, loads as an untrained network).
    The pooler is not read by skllm (pooling is over the hidden states), so its absence is allowed.
    """
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing:
        raise ValueError(
            f"The checkpoint of model {source.name!r} lacks {len(missing)} of the network's weights "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): they would be random. A folder saved "
            f"from a wrapped model (peft, a custom class) names its weights differently; save the base model "
            f"itself with save_pretrained (for peft: merge_and_unload() first)."
        )


def refuse_tokens_the_model_lacks(source, model, tokenizer):
    """Raise for a model that does not read token ids, or whose embedding table lacks some of the tokenizer's
    (either failed inside torch at a text, naming no token; on a GPU, an assertion leaves the process unusable).

    Only an ``nn.Embedding`` table is checked: other models that read text (CANINE, I-BERT) load as before.
    """
    name = getattr(model, "main_input_name", "input_ids")
    if name != "input_ids":
        raise ValueError(
            f"Model {source.name!r} ({type(model).__name__}) does not read text: it takes {name!r}, not token ids. "
            f"Use a text model."
        )
    import torch

    try:
        table = model.get_input_embeddings()
    except NotImplementedError:
        return
    if not isinstance(table, torch.nn.Embedding):
        return
    vocab = tokenizer.get_vocab()
    largest = max(vocab.values(), default=-1)
    if largest >= table.num_embeddings:
        token = next(t for t, i in vocab.items() if i == largest)
        raise ValueError(
            f"The tokenizer of model {source.name!r} has token ids up to {largest} ({token!r}), but the model's "
            f"embedding table has {table.num_embeddings} rows: tokens added to the tokenizer were not added to the "
            f"model. Call model.resize_token_embeddings(len(tokenizer)) before saving it."
        )
