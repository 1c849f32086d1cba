"""torch modules shared by the methods (imported only when training starts)."""

import torch
from torch import nn

from .._tokens import pool


class PlainEncoder(nn.Module):
    """Last hidden states of a (possibly peft-wrapped) backbone.

    ``extra``, if given, is a module holding more trained parameters whose
    ``compute()`` runs before each forward pass (the prefixes).
    """

    def __init__(self, model, extra=None):
        super().__init__()
        self.model = model
        self.extra = extra

    def forward(self, input_ids, attention_mask):
        if self.extra is not None:
            self.extra.compute()
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class VirtualTokenEncoder(PlainEncoder):
    """For prompt tuning: drop the hidden states of the ``n`` virtual tokens put in front."""

    def __init__(self, model, n):
        super().__init__(model)
        self.n = n

    def forward(self, input_ids, attention_mask):
        return super().forward(input_ids, attention_mask)[:, self.n :]


class MLP(nn.Module):
    """Dropout, optional hidden layers with ReLU, then a linear output layer."""

    def __init__(self, n_in, n_out, hidden_layer_sizes=(), dropout=0.1):
        super().__init__()
        layers = []
        for size in hidden_layer_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        layers += [nn.Dropout(dropout), nn.Linear(n_in, n_out)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class Network(nn.Module):
    """Encoder, pooling and output layers: what a fine-tuned estimator trains."""

    def __init__(self, encoder, head, pooling):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.pooling = pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids, attention_mask)
        return self.head(pool(hidden.float(), attention_mask, self.pooling))


class Adapted(nn.Module):
    """A frozen layer (linear, or the dropout after one) followed by a residual bottleneck adapter."""

    def __init__(self, base, features, bottleneck, activation="relu"):
        super().__init__()
        self.base = base
        self.down = nn.Linear(features, bottleneck)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.up = nn.Linear(bottleneck, features)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        h = self.base(x)
        return h + self.up(self.act(self.down(h)))


class PrefixEncoderModule(nn.Module):
    """The prefix keys and values of every layer, optionally produced by an MLP."""

    def __init__(self, n_layers, kv_heads, head_dim, n_prefix, hidden_size, reparametrize, projection_size):
        super().__init__()
        self.shape = (n_prefix, n_layers, 2, kv_heads, head_dim)
        total = n_layers * 2 * kv_heads * head_dim
        if reparametrize:
            self.embedding = nn.Parameter(torch.randn(n_prefix, hidden_size) * 0.02)
            self.mlp = nn.Sequential(
                nn.Linear(hidden_size, projection_size), nn.Tanh(), nn.Linear(projection_size, total)
            )
        else:
            self.embedding = nn.Parameter(torch.randn(n_prefix, total) * 0.02)
            self.mlp = None
        self._current = None

    def drop_projection(self):
        """Replace the MLP by the prefixes it gives: the layout of ``reparametrize=False``."""
        if self.mlp is not None:
            with torch.no_grad():
                flat = self.mlp(self.embedding)
            self.embedding = nn.Parameter(flat)
            self.mlp = None
            self._current = None

    def compute(self):
        flat = self.mlp(self.embedding) if self.mlp is not None else self.embedding
        # (P, layers, 2, kv_heads, head_dim) -> (layers, 2, kv_heads, P, head_dim)
        self._current = flat.view(self.shape).permute(1, 2, 3, 0, 4)

    def layer(self, index):
        return self._current[index, 0], self._current[index, 1]


def is_norm(module):
    """Whether ``module`` is a layer normalisation (LayerNorm, RMSNorm and their variants)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))

