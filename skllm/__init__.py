"""skllm: every way of adapting a pretrained transformer, as a scikit-learn estimator.

torch and transformers are imported when a model is first needed, so importing
skllm stays light.
"""

from . import datasets, exceptions
from ._cache import default_cache_dir
from ._compare import compare_methods
from ._embed import TransformerEmbedder
from ._finetune import FineTuneClassifier, FineTuneRegressor
from ._icl import FewShotClassifier, FewShotGenerator, ZeroShotClassifier
from ._index import DocumentIndex, Hit, RetrievalQA
from ._labels import LabelEncodedClassifier
from ._methods import (
    BottleneckAdapter,
    FineTuningMethod,
    FullFineTuning,
    HeadTuning,
    LoRA,
    PrefixTuning,
    PromptTuning,
)
from ._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER, clear_model_registry
from ._version import __version__

__all__ = [
    "DEFAULT_CAUSAL_LM",
    "DEFAULT_ENCODER",
    "BottleneckAdapter",
    "DocumentIndex",
    "FewShotClassifier",
    "FewShotGenerator",
    "FineTuneClassifier",
    "FineTuneRegressor",
    "FineTuningMethod",
    "FullFineTuning",
    "HeadTuning",
    "Hit",
    "LabelEncodedClassifier",
    "LoRA",
    "PrefixTuning",
    "PromptTuning",
    "RetrievalQA",
    "TransformerEmbedder",
    "ZeroShotClassifier",
    "__version__",
    "clear_model_registry",
    "compare_methods",
    "datasets",
    "default_cache_dir",
    "exceptions",
]
