"""Prefix tuning: trainable key/value prefixes in every attention layer.

peft's prefix tuning passes the prefixes as ``past_key_values``, which BERT-family
models no longer accept in transformers 5 ("Model does not support past key values
which are required for prefix tuning"). This implementation works one level lower,
through transformers' attention-function registry: an attention function that
prepends the layer's prefix keys and values (after rotary position encoding, as
cached keys would be) and widens the attention mask, then calls the standard SDPA
attention. It therefore works for every model that dispatches attention through
that registry — BERT, Llama and most current architectures — with one mechanism.
"""

from ._base import FineTuningMethod, check_bool, check_int

ATTENTION_NAME = "skllm_prefix"
#: transformers releases whose attention registry this module was checked against
SUPPORTED_TRANSFORMERS = ">=5.0,<6"
_registered = False
_sdpa_attention_forward = None


def _internals():
    """The transformers internals prefix tuning hooks into, or a clear ImportError."""
    try:
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import sdpa_mask
    except ImportError as exc:
        import transformers

        raise ImportError(
            f"Prefix tuning hooks into transformers' attention registry (AttentionInterface, "
            f"AttentionMaskInterface, integrations.sdpa_attention.sdpa_attention_forward, "
            f"masking_utils.sdpa_mask), which transformers {transformers.__version__} does not provide "
            f"as expected ({exc}). Supported: transformers{SUPPORTED_TRANSFORMERS}; install one, "
            f"e.g. pip install 'transformers{SUPPORTED_TRANSFORMERS}', or use another method."
        ) from exc
    return AttentionInterface, AttentionMaskInterface, sdpa_attention_forward, sdpa_mask


def _prefix_attention(module, query, key, value, attention_mask, **kwargs):
    import torch

    sdpa_attention_forward = _sdpa_attention_forward or _internals()[2]
    prefix = getattr(module, "_skllm_prefix", None)
    if prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    prefix_key, prefix_value = prefix(module.layer_idx)  # (kv_heads, P, head_dim)
    batch, q_len, k_len = query.shape[0], query.shape[2], key.shape[2]
    n_prefix = prefix_key.shape[1]
    key = torch.cat([prefix_key.to(key.dtype).unsqueeze(0).expand(batch, -1, -1, -1), key], dim=2)
    value = torch.cat([prefix_value.to(value.dtype).unsqueeze(0).expand(batch, -1, -1, -1), value], dim=2)
    causal = kwargs.pop("is_causal", None)
    causal = getattr(module, "is_causal", False) if causal is None else causal
    if attention_mask is None:
        # SDPA would otherwise be asked for is_causal, whose top-left alignment
        # is wrong once keys outnumber queries: spell the mask out.
        attention_mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device)
        if causal and q_len > 1:
            attention_mask = attention_mask.tril(k_len - q_len)
        attention_mask = attention_mask[None, None].expand(batch, 1, q_len, k_len)
    attention_mask = attention_mask[..., -k_len:]
    shape = (*attention_mask.shape[:-1], n_prefix)
    if attention_mask.dtype == torch.bool:
        visible = torch.ones(shape, dtype=torch.bool, device=query.device)
    else:
        visible = torch.zeros(shape, dtype=attention_mask.dtype, device=query.device)
    attention_mask = torch.cat([visible, attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, is_causal=False, **kwargs)


def _register():
    global _registered, _sdpa_attention_forward
    if not _registered:
        AttentionInterface, AttentionMaskInterface, _sdpa_attention_forward, sdpa_mask = _internals()
        # A new name next to "sdpa"; no existing implementation is changed.
        AttentionInterface.register(ATTENTION_NAME, _prefix_attention)
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
        _registered = True


class PrefixTuning(FineTuningMethod):
    """Trainable key/value prefixes in every attention layer ("prefix").

    The backbone is frozen; each layer attends to ``n_prefix_tokens`` extra
    keys and values learned for the task. With ``reparametrize=True`` (as in Li
    & Liang, 2021) the prefixes are produced by a small MLP from a shared
    embedding during training, which stabilises optimisation. The MLP serves
    training only: afterwards it is replaced by the prefixes it produces, which
    alone are stored (``trainable_state_``, the pickle) and used to predict.
    On MiniLM with 16 prefix tokens that is 6 layers x 2 (keys, values) x 384
    x 16 = 73,728 values instead of the MLP's 1.29 million.

    Parameters
    ----------
    n_prefix_tokens : int, default=16
        Number of prefix positions per layer.
    reparametrize : bool, default=True
        Produce the prefixes with an MLP (embedding -> tanh -> all layers)
        during training.
    projection_size : int, default=256
        Hidden size of that MLP.
    keep_projection : bool, default=False
        Keep the MLP after training: it is then stored and pickled, and
        ``warm_start`` trains on through it. By default a warm start trains the
        stored prefixes directly.

    Examples
    --------
    >>> from skllm import FineTuneClassifier, PrefixTuning
    >>> PrefixTuning(n_prefix_tokens=4, projection_size=32).get_params()
    {'keep_projection': False, 'n_prefix_tokens': 4, 'projection_size': 32, 'reparametrize': True}
    >>> X = ["a great film", "loved it", "awful", "so dull"] * 2
    >>> y = ["pos", "pos", "neg", "neg"] * 2
    >>> method = PrefixTuning(n_prefix_tokens=4, projection_size=32)
    >>> clf = FineTuneClassifier(method=method, epochs=1, max_length=16, random_state=0).fit(X, y)
    >>> clf.predict(["so dull"]).shape
    (1,)
    >>> clf.n_trainable_params_  # 4 tokens x 6 layers x 2 (keys, values) x 384, and the output layer
    19202
    """

    name = "prefix"
    default_learning_rate = 5e-3
    relative_cost = 0.5

    # Models saved before the MLP was dropped after training stored it.
    _value_before_added = (("keep_projection", True),)

    def __init__(self, n_prefix_tokens=16, reparametrize=True, projection_size=256, keep_projection=False):
        self.n_prefix_tokens = n_prefix_tokens
        self.reparametrize = reparametrize
        self.projection_size = projection_size
        self.keep_projection = keep_projection

    def validate(self):
        check_int(self.n_prefix_tokens, "n_prefix_tokens")
        check_int(self.projection_size, "projection_size")
        check_bool(self.reparametrize, "reparametrize")
        check_bool(self.keep_projection, "keep_projection")

    def build(self, backbone):
        from ._encoders import PlainEncoder, PrefixEncoderModule

        attention = [m for m in backbone.modules() if hasattr(m, "layer_idx") and hasattr(m, "is_causal")]
        config = backbone.config
        if not attention or not hasattr(backbone, "set_attn_implementation"):
            raise ValueError(
                f"Prefix tuning needs a model that dispatches attention through transformers' attention "
                f"registry; {type(backbone).__name__} does not."
            )
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        n_layers = max(m.layer_idx for m in attention) + 1
        _register()
        backbone.set_attn_implementation(ATTENTION_NAME)
        prefixes = PrefixEncoderModule(
            n_layers,
            kv_heads,
            head_dim,
            self.n_prefix_tokens,
            config.hidden_size,
            self.reparametrize,
            self.projection_size,
        )
        for module in attention:
            module._skllm_prefix = prefixes.layer
        return PlainEncoder(backbone, extra=prefixes)

    def compact(self, network):
        """The prefixes the MLP produces, as a plain trainable parameter in place of the MLP."""
        if self.reparametrize and not self.keep_projection:
            network.encoder.extra.drop_projection()
        return network
