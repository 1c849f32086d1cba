"""Saving fitted models with skops: the skllm types a skops file may hold, for ``trusted=``."""

import pathlib

from ._api import OpenAIChat, Secret
from ._document_index import DocumentIndex
from ._embed import TransformerEmbedder
from ._few_shot import FewShotClassifier
from ._finetune import FineTuneClassifier, FineTuneRegressor
from ._generator import FewShotGenerator
from ._labels import LabelEncodedClassifier
from ._methods import METHODS
from ._preference import PreferenceTuner
from ._retrieval_qa import RetrievalQA
from ._reward import RewardModel
from ._selection import BalancedSelection, FirstSelection, NearestSelection, RandomSelection
from ._sft import FineTuneGenerator
from ._zero_shot import ZeroShotClassifier

# Every skllm class a fitted estimator can hold, besides the fine-tuning methods
# (taken from their registry). Their saved state is plain values and numpy arrays
# (the trained tensors); the models, tokenizers and networks are left out of it,
# as in a pickle, and reloaded by name on first use.
_TYPES = (
    BalancedSelection,
    DocumentIndex,
    FewShotClassifier,
    FewShotGenerator,
    FineTuneClassifier,
    FineTuneGenerator,
    FineTuneRegressor,
    FirstSelection,
    LabelEncodedClassifier,
    NearestSelection,
    OpenAIChat,
    PreferenceTuner,
    RandomSelection,
    RetrievalQA,
    RewardModel,
    # An API key's place in a saved OpenAIChat: always empty (the key is read from
    # the environment after loading), made by calling Secret(None).
    Secret,
    TransformerEmbedder,
    ZeroShotClassifier,
)

# Plain values that parameters documented as paths (``cache_dir``, ``model_name``) may hold.
_VALUE_TYPES = (pathlib.PosixPath, pathlib.WindowsPath)


def trusted_types():
    """The names of the skllm types to trust when loading a model saved with skops.

    ``skops.io.load(path, trusted=skllm.trusted_types())`` loads fitted skllm
    estimators, and scikit-learn pipelines of them, without running code from
    the file: skops builds only the types listed (scikit-learn's and numpy's are
    trusted by skops itself) and refuses a file holding any other. The file
    holds hyperparameters as plain values and the trained tensors as numpy
    arrays; the backbone is loaded again by ``model_name`` on first use, as
    after ``joblib.load``.

    Paths (``pathlib.PosixPath``, ``pathlib.WindowsPath``) are listed too, as
    the values of path parameters such as ``cache_dir``. Other types that are
    not skllm's must be added by hand after checking them with
    ``skops.io.get_untrusted_types``: the estimator wrapped by a
    :class:`LabelEncodedClassifier` (e.g. ``xgboost.sklearn.XGBClassifier``),
    or a reward function given to :class:`PreferenceTuner` (which is code, and
    is imported by name).

    Returns
    -------
    list of str
        Type names as skops writes them, e.g. ``"skllm.FineTuneClassifier"``.

    Examples
    --------
    >>> import skllm
    >>> "skllm.FineTuneClassifier" in skllm.trusted_types()
    True
    """
    # A method registered from outside skllm (a plug-in, a test's) is the user's to trust.
    methods = [cls for cls in METHODS.values() if cls.__module__.split(".")[0] == "skllm"]
    return sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in (*_TYPES, *_VALUE_TYPES, *methods))
