"""Compatibility module: models pickled by skllm 0.1 refer to ``skllm._icl.<Class>``.

The in-context estimators now live one per file (``_zero_shot.py``,
``_few_shot.py``, ``_generator.py``, sharing ``_lm.py``,
``_prompt_classifier.py`` and ``_selection.py``). Keep these names importable
from here so that those pickles still load.
"""

from ._few_shot import DEFAULT_EXAMPLE_TEMPLATE, FewShotClassifier
from ._generator import DEFAULT_GENERATION_EXAMPLE_TEMPLATE, DEFAULT_GENERATION_TEMPLATE, FewShotGenerator
from ._prompt_classifier import DEFAULT_TEMPLATE
from ._zero_shot import ZeroShotClassifier

__all__ = [
    "DEFAULT_EXAMPLE_TEMPLATE",
    "DEFAULT_GENERATION_EXAMPLE_TEMPLATE",
    "DEFAULT_GENERATION_TEMPLATE",
    "DEFAULT_TEMPLATE",
    "FewShotClassifier",
    "FewShotGenerator",
    "ZeroShotClassifier",
]
