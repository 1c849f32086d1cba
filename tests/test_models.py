"""Finding models by name: local folders, revisions."""

import pytest

from skllm import TransformerEmbedder
from skllm._models import resolve_model


def test_revision_with_a_local_folder_is_an_error_not_ignored(tiny_bert):
    with pytest.raises(ValueError, match=r"revision='v2'.*local folder"):
        resolve_model(tiny_bert, "v2")
    with pytest.raises(ValueError, match="local folder"):
        TransformerEmbedder(tiny_bert, revision="v2", cache_dir=None).fit()
    assert resolve_model(tiny_bert).origin == "local"
