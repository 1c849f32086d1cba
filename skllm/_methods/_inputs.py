"""What a method feeds its network: token ids, or features computed once."""

import numpy as np


class TokenInputs:
    """Token ids of each text; batches are right-padded ``(input_ids, attention_mask)``."""

    def __init__(self, ids, pad_id):
        self.ids = ids
        self.pad_id = pad_id

    def __len__(self):
        return len(self.ids)

    def lengths(self):
        """Tokens per text: batches group texts of similar length."""
        return np.fromiter((len(row) for row in self.ids), dtype=np.int64, count=len(self.ids))

    def subset(self, rows):
        return TokenInputs([self.ids[i] for i in rows], self.pad_id)

    def token_ids(self):
        """Every token id its batches may hold, as sequences: the texts', then the padding."""
        return [*self.ids, [self.pad_id]]

    def tensors(self, rows, device):
        """The network's positional arguments for ``rows``, on ``device``."""
        from .._tokens import pad_batch

        return pad_batch(self.ids, rows, self.pad_id, device)


class FeatureInputs:
    """One fixed-width feature vector per text (float32 array of shape (n, n_features))."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def token_ids(self):
        """No token ids: the network is fed features."""
        return []

    def lengths(self):
        return np.ones(len(self.features), dtype=np.int64)

    def subset(self, rows):
        return FeatureInputs(self.features[rows])

    def tensors(self, rows, device):
        import torch

        return (torch.from_numpy(np.ascontiguousarray(self.features[rows])).to(device),)


class HiddenInputs:
    """Hidden states of each text's tokens (float32 arrays of shape (n_tokens, width)).

    Batches are right-padded ``(hidden_states, attention_mask)``.
    """

    def __init__(self, states):
        self.states = states

    def __len__(self):
        return len(self.states)

    def token_ids(self):
        """No token ids: the network is fed features."""
        return []

    def lengths(self):
        return np.fromiter((len(s) for s in self.states), dtype=np.int64, count=len(self.states))

    def subset(self, rows):
        return HiddenInputs([self.states[i] for i in rows])

    def tensors(self, rows, device):
        import torch

        width = max(len(self.states[i]) for i in rows)
        hidden = np.zeros((len(rows), width, self.states[rows[0]].shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, i in enumerate(rows):
            n = len(self.states[i])
            hidden[row, :n] = self.states[i]
            mask[row, :n] = 1
        return torch.from_numpy(hidden).to(device), torch.from_numpy(mask).to(device)
