"""skllm: every way of adapting a pretrained transformer, as a scikit-learn estimator.

torch and transformers are imported when a model is first needed, so importing
skllm stays light.
"""

from . import datasets, exceptions
from ._api import OpenAIChat
from ._cache import default_cache_dir
from ._compare import compare_methods
from ._dask import dask_embed
from ._document_index import DocumentIndex, Hit
from ._embed import TransformerEmbedder
from ._few_shot import FewShotClassifier
from ._finetune import FineTuneClassifier, FineTuneRegressor
from ._generator import FewShotGenerator
from ._labels import LabelEncodedClassifier
from ._methods import (
    BottleneckAdapter,
    FineTuningMethod,
    FullFineTuning,
    HeadTuning,
    LoRA,
    PartialFineTuning,
    PrefixTuning,
    PromptTuning,
)
from ._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER, clear_model_registry
from ._preference import PreferenceTuner
from ._retrieval_qa import RetrievalQA
from ._reward import RewardModel
from ._selection import BalancedSelection, ExampleSelection, FirstSelection, NearestSelection, RandomSelection
from ._sft import FineTuneGenerator
from ._skops import trusted_types
from ._version import __version__
from ._zero_shot import ZeroShotClassifier

# Pickles name a class by its module: recording the public ``skllm.X`` instead
# of the private module that defines it keeps saved models loadable when the
# code moves between private modules (the old private paths stay importable
# too, for models saved by skllm 0.1; see tests/test_legacy.py).
for _cls in (
    BalancedSelection,
    BottleneckAdapter,
    DocumentIndex,
    ExampleSelection,
    FewShotClassifier,
    FewShotGenerator,
    FineTuneClassifier,
    FineTuneGenerator,
    FineTuneRegressor,
    FineTuningMethod,
    FirstSelection,
    FullFineTuning,
    HeadTuning,
    Hit,
    LabelEncodedClassifier,
    LoRA,
    NearestSelection,
    OpenAIChat,
    PartialFineTuning,
    PreferenceTuner,
    PrefixTuning,
    PromptTuning,
    RandomSelection,
    RetrievalQA,
    RewardModel,
    TransformerEmbedder,
    ZeroShotClassifier,
):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "DEFAULT_CAUSAL_LM",
    "DEFAULT_ENCODER",
    "BalancedSelection",
    "BottleneckAdapter",
    "DocumentIndex",
    "ExampleSelection",
    "FewShotClassifier",
    "FewShotGenerator",
    "FineTuneClassifier",
    "FineTuneGenerator",
    "FineTuneRegressor",
    "FineTuningMethod",
    "FirstSelection",
    "FullFineTuning",
    "HeadTuning",
    "Hit",
    "LabelEncodedClassifier",
    "LoRA",
    "NearestSelection",
    "OpenAIChat",
    "PartialFineTuning",
    "PreferenceTuner",
    "PrefixTuning",
    "PromptTuning",
    "RandomSelection",
    "RetrievalQA",
    "RewardModel",
    "TransformerEmbedder",
    "ZeroShotClassifier",
    "__version__",
    "clear_model_registry",
    "compare_methods",
    "dask_embed",
    "datasets",
    "default_cache_dir",
    "exceptions",
    "trusted_types",
]
