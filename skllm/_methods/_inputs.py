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

    def lengths(self):
        return np.ones(len(self.features), dtype=np.int64)

    def subset(self, rows):
        return FeatureInputs(self.features[rows])

    def tensors(self, rows, device):
        import torch

        return (torch.from_numpy(np.ascontiguousarray(self.features[rows])).to(device),)
