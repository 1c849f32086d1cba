import numpy as np
import pytest
import torch

from skllm._tokens import pad_batch, pad_token_id, pool


class _Tokenizer:
    def __init__(self, pad, eos):
        self.pad_token_id, self.eos_token_id = pad, eos


@pytest.mark.parametrize("pad, eos, expected", [(3, 1, 3), (None, 1, 1), (None, None, 0)])
def test_pad_token_falls_back_to_eos_then_zero(pad, eos, expected):
    assert pad_token_id(_Tokenizer(pad, eos)) == expected


def test_pad_batch_right_and_left():
    ids = [[5, 6, 7], [8]]
    right, mask = pad_batch(ids, [0, 1], 0, "cpu")
    assert right.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    left, mask = pad_batch(ids, [1, 0], 9, "cpu", side="left")
    assert left.tolist() == [[9, 9, 8], [5, 6, 7]] and mask.tolist() == [[0, 0, 1], [1, 1, 1]]


def test_pooling_ignores_padding():
    hidden = torch.arange(12, dtype=torch.float32).view(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(pool(hidden, mask, "mean")[0], [1.0, 2.0])
    np.testing.assert_allclose(pool(hidden, mask, "max")[0], [2.0, 3.0])
    np.testing.assert_allclose(pool(hidden, mask, "cls")[1], [6.0, 7.0])
    np.testing.assert_allclose(pool(hidden, mask, "last")[0], [2.0, 3.0])
