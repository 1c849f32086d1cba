"""The contract every skllm estimator honours, run over all of them."""

import os
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import make_classification
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from skllm import (
    DocumentIndex,
    FewShotClassifier,
    FewShotGenerator,
    FineTuneClassifier,
    FineTuneGenerator,
    FineTuneRegressor,
    LabelEncodedClassifier,
    LoRA,
    NearestSelection,
    OpenAIChat,
    PreferenceTuner,
    RetrievalQA,
    RewardModel,
    TransformerEmbedder,
    ZeroShotClassifier,
)


def _numeric_data():
    X, y = make_classification(n_samples=60, n_features=5, random_state=0)
    return X, np.where(y == 1, "spam", "ham")


def _embedder(paths, tmp_path):
    return TransformerEmbedder(paths["tiny_bert"], cache_dir=str(tmp_path / "cache"))


def _xgb(paths, tmp_path):
    xgboost = pytest.importorskip("xgboost")
    return LabelEncodedClassifier(xgboost.XGBClassifier(n_estimators=5, max_depth=2, random_state=0, n_jobs=1))


def _finetune(cls, method, model="tiny_bert"):
    def make(paths, tmp_path):
        return cls(paths[model], method=method, epochs=1, batch_size=8, random_state=0, cache_dir=str(tmp_path / "c"))

    return make


def _nearest_few_shot(paths, tmp_path):
    selection = NearestSelection(_embedder(paths, tmp_path))
    return FewShotClassifier(paths["tiny_llama"], n_examples=2, example_selection=selection)


def _qa(paths, tmp_path):
    # The fitted index is the knowledge base; X are questions and y reference answers.
    index = DocumentIndex(_embedder(paths, tmp_path), backend="numpy")
    index.fit(["great film loved it", "awful film hated it", "a long and boring story"])
    return RetrievalQA(index, generator=FewShotGenerator(paths["tiny_llama"], max_new_tokens=3), k=1)


def _api_zero_shot(paths, tmp_path):
    # A chat endpoint in-process (tests/chat_servers.py): the whole HTTP path, no model, milliseconds.
    return ZeroShotClassifier(OpenAIChat("fake", base_url=paths["chat"]), cache_dir=str(tmp_path / "c"))


def _shorter(prompts, completions):
    """A reward for the tuner's contract: short answers are better."""
    return [-float(len(c)) for c in completions]


def _tuner(paths, tmp_path):
    generator = FineTuneGenerator(paths["tiny_llama"], max_new_tokens=3)
    return PreferenceTuner(_shorter, generator, batch_size=4, n_generations=2, random_state=0)


# name -> (factory, data, grid over the estimator's own parameters)
CASES = {
    "TransformerEmbedder": (_embedder, "texts", {"pooling": ["mean", "max"]}),
    "FineTuneClassifier(lora)": (_finetune(FineTuneClassifier, LoRA(r=2)), "texts", {"method__r": [2, 4]}),
    "FineTuneClassifier(prefix, llama)": (
        _finetune(FineTuneClassifier, "prefix", "tiny_llama"),
        "texts",
        {"learning_rate": [1e-3, 1e-2]},
    ),
    "FineTuneRegressor(head)": (_finetune(FineTuneRegressor, "head"), "numeric-target", {"epochs": [1, 2]}),
    "ZeroShotClassifier": (
        lambda paths, tmp: ZeroShotClassifier(paths["tiny_llama"]),
        "texts",
        {"template": [None, "{text} is {labels}? ->"]},
    ),
    "ZeroShotClassifier(api)": (_api_zero_shot, "texts", {"model_name__max_tokens": [4, 8]}),
    "FewShotClassifier": (
        lambda paths, tmp: FewShotClassifier(paths["tiny_llama"], n_examples=2, random_state=0),
        "texts",
        {"n_examples": [1, 2]},
    ),
    "FewShotClassifier(nearest)": (_nearest_few_shot, "texts", {"example_selection__balance": [False, True]}),
    "FewShotGenerator": (
        lambda paths, tmp: FewShotGenerator(paths["tiny_llama"], n_examples=2, max_new_tokens=3, random_state=0),
        "text-target",
        {"n_examples": [1, 2]},
    ),
    "RetrievalQA": (_qa, "text-target", {"k": [1, 2]}),
    "FineTuneGenerator(lora)": (
        lambda paths, tmp: FineTuneGenerator(
            paths["tiny_llama"], method=LoRA(r=2), epochs=1, max_new_tokens=3, random_state=0
        ),
        "text-target",
        {"method__r": [2, 4]},
    ),
    "RewardModel(lora)": (_finetune(RewardModel, LoRA(r=2)), "pairs", {"method__r": [2, 4]}),
    "PreferenceTuner(ppo)": (_tuner, "prompts", {"kl_coef": [0.05, 0.1]}),
    "LabelEncodedClassifier(LogisticRegression)": (
        lambda paths, tmp: LabelEncodedClassifier(LogisticRegression()),
        "numeric",
        {"estimator__C": [0.1, 1.0]},
    ),
    "LabelEncodedClassifier(XGBClassifier)": (_xgb, "numeric", {"estimator__max_depth": [1, 2]}),
}


@pytest.fixture
def case(request, tiny_bert, tiny_llama, texts, tmp_path):
    factory, data, grid = CASES[request.param]
    paths = {"tiny_bert": tiny_bert, "tiny_llama": tiny_llama}
    if "(api)" in request.param:
        paths["chat"] = request.getfixturevalue("fake_chat").url
    estimator = factory(paths, tmp_path)
    X, y = case_data(data, texts)
    return estimator, X, y, grid


def case_data(data, texts):
    """The fit data ``X, y`` of a case's kind of data (the middle item of its ``CASES`` entry)."""
    if data == "texts":
        return texts
    if data == "text-target":
        return texts[0], [t.upper() for t in texts[0]]
    if data == "pairs":  # preferences: the data is one DataFrame, no y
        return _pairs(texts[0]), None
    if data == "prompts":
        return texts[0][:12], None
    if data == "numeric-target":
        return texts[0], np.array([float(len(t)) for t in texts[0]])
    return _numeric_data()


def _pairs(texts):
    import pandas as pd

    pos, neg = texts[:6], texts[6:12]
    return pd.DataFrame({"prompt": ["review"] * 18, "chosen": pos * 3, "rejected": neg * 3})


def _predict_input(X):
    """What predict takes for the fit data: (prompt, response) tuples for preference pairs."""
    if hasattr(X, "columns") and "chosen" in X.columns:
        return list(zip(X["prompt"], X["chosen"]))
    return X


def _output(estimator, X):
    X = _predict_input(X)
    for method in ("predict_proba", "transform", "predict"):
        if hasattr(estimator, method):
            return np.asarray(getattr(estimator, method)(X))
    raise AssertionError("estimator has no output method")


def _assert_same(a, b):
    if a.dtype == object:  # generated texts
        assert a.tolist() == b.tolist()
    else:
        np.testing.assert_allclose(a, b, atol=1e-6)


def _in_pipeline(estimator, data_is_text):
    """The estimator as a user meets it: with a head after a transformer, or a step before a predictor."""
    if hasattr(estimator, "transform"):
        # Embeddings of a random tiny model are close together: a weakly regularised head.
        return make_pipeline(estimator, LogisticRegression(C=1e4, max_iter=5000))
    return make_pipeline(estimator) if data_is_text else make_pipeline(StandardScaler(), estimator)


@pytest.mark.parametrize("case", list(CASES), indirect=True)
class TestContract:
    def test_unfitted_use_raises_not_fitted(self, case):
        estimator, X, _, _ = case
        with pytest.raises(NotFittedError):
            _output(estimator, X)

    def test_clone_copies_parameters_only(self, case):
        estimator, X, y, _ = case
        estimator.fit(X, y)
        copy = clone(estimator)
        assert repr(copy) == repr(estimator)
        assert not [k for k in vars(copy) if k.endswith("_") and not k.startswith("_")]
        with pytest.raises(NotFittedError):
            _output(copy, X)

    def test_pickle_round_trip_gives_same_output(self, case):
        estimator, X, y, _ = case
        out = _output(estimator.fit(X, y), X)
        restored = pickle.loads(pickle.dumps(estimator))
        _assert_same(_output(restored, X), out)

    def test_same_parameters_give_the_same_model(self, case):
        estimator, X, y, _ = case
        a = _output(clone(estimator).fit(X, y), X)
        b = _output(clone(estimator).fit(X, y), X)
        _assert_same(a, b)

    def test_a_batch_size_set_after_fit_is_checked_where_it_is_read(self, case):
        estimator, X, y, _ = case
        if "batch_size" not in estimator.get_params(deep=False):
            pytest.skip("no batch_size parameter")
        out = _output(estimator.fit(X, y), X)
        estimator.set_params(batch_size=0)  # a loop over batches of 0 would leave the outputs unwritten
        if isinstance(estimator, PreferenceTuner):  # its batch_size is the prompts of a training step
            _assert_same(_output(estimator, X), out)
            return
        with pytest.raises(ValueError, match="batch_size must be"):
            _output(estimator, X)

    def test_a_model_set_after_fit_is_refused_until_the_next_fit(self, case, tiny_bert, tmp_path):
        estimator, X, y, _ = case
        if "model_name" not in estimator.get_params(deep=False):
            pytest.skip("no model_name parameter")
        out = _output(estimator.fit(X, y), X)
        fitted_with = estimator.model_name
        # The unpickled copy would load the new model under the old fitted state: refused, here and there.
        estimator.set_params(model_name=tiny_bert + "-other")
        for model in (estimator, pickle.loads(pickle.dumps(estimator))):
            with pytest.raises(ValueError, match=r"was fitted with model_name=.* call fit again, or set them back"):
                _output(model, X)
        _assert_same(_output(estimator.set_params(model_name=fitted_with), X), out)
        if isinstance(fitted_with, str) and os.path.isdir(fitted_with):
            # The same files at another place (a folder moved, a model shipped): found there.
            moved = str(shutil.copytree(fitted_with, tmp_path / "moved"))
            _assert_same(_output(estimator.set_params(model_name=moved), X), out)
            _assert_same(_output(pickle.loads(pickle.dumps(estimator)), X), out)

    def test_works_in_pipeline_and_gridsearch(self, case):
        estimator, X, y, grid = case
        data_is_text = isinstance(X, list) or hasattr(X, "columns")
        pipe = _in_pipeline(estimator, data_is_text)
        step = pipe.steps[0][0] if hasattr(estimator, "transform") else pipe.steps[-1][0]
        search = GridSearchCV(pipe, {f"{step}__{k}": v for k, v in grid.items()}, cv=3)
        search.fit(X, y)
        assert len(search.cv_results_["params"]) == len(next(iter(grid.values())))
        predictions = search.predict(_predict_input(X))
        assert len(predictions) == len(X)
        if is_classifier(search.best_estimator_):
            assert set(predictions) <= set(y)
        elif predictions.dtype == object:
            assert all(isinstance(p, str) for p in predictions)
        else:
            assert np.isfinite(predictions).all()
        if hasattr(estimator, "transform"):
            assert search.score(X, y) > 0.5  # the head separates embeddings of a random tiny model


# Checks of scikit-learn's API that need no numeric input, for estimators that read text.
TEXT_API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
]


TEXT_ESTIMATORS = [
    TransformerEmbedder(),
    FineTuneClassifier(),
    FineTuneRegressor(),
    ZeroShotClassifier(),
    FewShotClassifier(),
    FewShotGenerator(),
    DocumentIndex(),
    RetrievalQA(),
    FineTuneGenerator(),
    RewardModel(),
    PreferenceTuner(),
]


@pytest.mark.parametrize("estimator", TEXT_ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", TEXT_API_CHECKS, ids=lambda c: c.__name__)
def test_text_estimators_pass_sklearn_api_checks(estimator, check):
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", TEXT_ESTIMATORS, ids=lambda e: type(e).__name__)
def test_text_estimators_declare_string_input(estimator):
    tags = estimator.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


@parametrize_with_checks([LabelEncodedClassifier(LogisticRegression())])
def test_numeric_estimators_pass_all_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "y",
    [
        ["a", "b", np.nan, "a"],
        np.array([0.0, 1.0, np.nan, 1.0]),
        [0, 1, None, 1],
        pd.array(["a", "b", None, "a"], dtype="string"),  # pandas NA
    ],
)
def test_label_encoded_classifier_refuses_missing_labels_naming_positions(y):
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    with pytest.raises(ValueError, match=r"y has 1 missing label\(s\) \(None, NaN, NaT or NA\) at positions \[2\]"):
        LabelEncodedClassifier(LogisticRegression()).fit(X, y)


def test_label_encoded_classifier_refit_on_an_array_keeps_no_feature_names_from_a_frame():
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    clf = LabelEncodedClassifier(LogisticRegression()).fit(frame, ["x", "y", "x", "y"])
    assert list(clf.feature_names_in_) == ["a", "b"]
    clf.fit(frame.to_numpy(), ["x", "y", "x", "y"])
    assert not hasattr(clf, "feature_names_in_") and clf.n_features_in_ == 2


def test_label_encoded_classifier_routes_sample_weight_as_requested():
    # It had no metadata routing: a grid search fitted the estimator unweighted though it asked for the
    # weights, and one that declined them got them anyway.
    import sklearn
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline

    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = np.where(X[:, 0] + 0.3 * rng.randn(40) > 0, "b", "a")
    w = rng.rand(40) * 3
    weighted = LogisticRegression().fit(X, (y == "b").astype(int), sample_weight=w).coef_
    with sklearn.config_context(enable_metadata_routing=True):
        asks = LogisticRegression().set_fit_request(sample_weight=True)
        search = GridSearchCV(
            LabelEncodedClassifier(asks).set_score_request(sample_weight=True), {"estimator__C": [1.0]}, cv=KFold(2)
        )
        np.testing.assert_allclose(search.fit(X, y, sample_weight=w).best_estimator_.estimator_.coef_, weighted)
        piped = make_pipeline(LabelEncodedClassifier(asks)).fit(X, y, sample_weight=w)
        np.testing.assert_allclose(piped[-1].estimator_.coef_, weighted)
        declines = LogisticRegression().set_fit_request(sample_weight=False)
        with pytest.raises(TypeError, match="not routed to any object"):
            LabelEncodedClassifier(declines).fit(X, y, sample_weight=w)
    # Without routing, fit's parameters go to the estimator as they are.
    np.testing.assert_allclose(
        LabelEncodedClassifier(LogisticRegression()).fit(X, y, sample_weight=w).estimator_.coef_, weighted
    )


def test_the_generators_say_they_need_y(tiny_llama):
    from skllm import FewShotGenerator, FineTuneGenerator

    assert FewShotGenerator(tiny_llama).__sklearn_tags__().target_tags.required
    assert FineTuneGenerator(tiny_llama).__sklearn_tags__().target_tags.required
