"""Several labels per text: FineTuneClassifier with an indicator matrix, and the comparison with one."""

import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import MultiLabelBinarizer

from skllm import FineTuneClassifier, compare_methods
from skllm._cli import main
from skllm.exceptions import SkllmWarning


def tags_of(text):
    """Labels of the shared test texts: the sentiment, and what the text talks about."""
    positive = any(w in text for w in ("great", "loved", "best", "fun", "good"))
    tags = {"pos" if positive else "neg"}
    if "film" in text or "movie" in text:
        tags.add("film")
    if "story" in text or "acting" in text:
        tags.add("craft")
    return tags


@pytest.fixture(scope="module")
def multi(texts):
    binarizer = MultiLabelBinarizer()
    Y = binarizer.fit_transform([tags_of(t) for t in texts[0]])
    return texts[0], Y, list(binarizer.classes_)


def head(model_dir, cache_dir, **kw):
    # A random start (no linear probe) keeps these tests fast; the probe has its own test.
    params = {"method": "head", "epochs": 10, "batch_size": 8, "random_state": 0, "cache_dir": cache_dir}
    return FineTuneClassifier(model_dir, **{**params, "head_init": "random", **kw})


def test_indicator_y_gives_sigmoid_outputs_and_indicator_predictions(tiny_bert, cache_dir, multi):
    X, Y, names = multi
    assert names == ["craft", "film", "neg", "pos"]
    clf = head(tiny_bert, cache_dir, epochs=30, learning_rate=1e-2).fit(X, Y)
    assert clf.multilabel_ and not clf.sparse_output_
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    pred = clf.predict(X)
    assert isinstance(pred, np.ndarray) and pred.dtype == np.int64 and pred.shape == Y.shape
    assert set(np.unique(pred)) <= {0, 1}
    logits = clf.decision_function(X)
    proba = clf.predict_proba(X)
    assert logits.shape == proba.shape == Y.shape
    np.testing.assert_allclose(proba, expit(logits), rtol=1e-6)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X, Y) > 0.5  # subset accuracy: every label of a text right


def test_the_linear_probe_starts_the_output_layer_label_by_label(tiny_bert, cache_dir, multi, monkeypatch):
    from skllm import _probe

    X, Y, _ = multi
    seen = {}
    start = np.array([-2.0, -1.0, 1.0, 2.0])

    def probe_labels(features, targets, class_weights):
        seen.update(targets=targets, class_weights=class_weights)
        return np.zeros((targets.shape[1], features.shape[1])), start

    monkeypatch.setattr(_probe, "probe_labels", probe_labels)
    # A vanishing learning rate: the model stays where the probe started it.
    clf = head(tiny_bert, cache_dir, head_init="linear_probe", class_weight="balanced", epochs=1, learning_rate=1e-12)
    clf.fit(X, Y)
    assert seen["targets"].shape == Y.shape and seen["class_weights"].shape == (2, Y.shape[1])
    np.testing.assert_allclose(clf.predict_proba(X), np.broadcast_to(expit(start), Y.shape), atol=1e-4)


def test_single_label_models_are_unchanged(tiny_bert, cache_dir, texts):
    clf = head(tiny_bert, cache_dir, epochs=2).fit(*texts)
    assert not clf.multilabel_ and clf.classes_.tolist() == ["neg", "pos"]
    assert clf.decision_function(texts[0]).shape == (len(texts[0]),)


def test_a_sparse_indicator_gives_sparse_predictions(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    clf = head(tiny_bert, cache_dir, epochs=2).fit(X, sp.csc_matrix(Y))
    assert clf.sparse_output_
    pred = clf.predict(X)
    assert sp.issparse(pred) and pred.format == "csr" and pred.dtype == np.int64
    np.testing.assert_array_equal(pred.toarray(), (clf.predict_proba(X) > 0.5).astype(int))


def test_threshold_is_checked_and_read_at_prediction(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    for bad in (0, 1, 1.5, -0.1, "high", None, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be a number > 0 and < 1, got"):
            head(tiny_bert, cache_dir, threshold=bad).fit(X, Y)
    clf = head(tiny_bert, cache_dir, epochs=5).fit(X, Y)
    proba = clf.predict_proba(X)
    for threshold in (0.2, 0.8):
        clf.set_params(threshold=threshold)
        np.testing.assert_array_equal(clf.predict(X), (proba > threshold).astype(int))
    assert clf.set_params(threshold=0.2).predict(X).sum() >= clf.set_params(threshold=0.8).predict(X).sum()
    with pytest.raises(ValueError, match="threshold must be a number"):
        clf.set_params(threshold=2).predict(X)


def test_early_stopping_scores_micro_f1(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    clf = head(tiny_bert, cache_dir, epochs=6, early_stopping=True, validation_fraction=0.25, n_iter_no_change=6)
    clf.fit(X, Y)
    assert len(clf.validation_scores_) == clf.n_iter_ == 6
    assert all(0 <= s <= 1 for s in clf.validation_scores_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_early_stopping_holds_out_a_text_with_a_label():
    # Held-out texts without any label give a micro-F1 of 0 whatever is predicted: training stopped on nothing.
    from skllm._splits import validation_split

    Y = np.zeros((48, 2), dtype=np.int64)
    Y[[3, 9, 20, 33, 40], 0] = 1
    Y[[9, 14], 1] = 1
    for seed in range(40):
        train, valid = validation_split(np.arange(48), 0.1, seed, varied=Y)
        assert Y[valid].any() and Y[train].any(axis=0).all() and sorted([*train, *valid]) == list(range(48))
    no_label = np.zeros((10, 2), dtype=np.int64)
    train, valid = validation_split(np.arange(10), 0.3, 0, varied=no_label)  # nothing to swap in: as drawn
    assert len(valid) == 3


def test_a_multi_label_fit_holds_out_texts_with_labels(tiny_bert, cache_dir, multi, monkeypatch):
    from skllm import _finetune_base
    from skllm._splits import validation_split

    X, Y, _ = multi
    sparse = np.zeros_like(Y)
    sparse[:6, 0] = sparse[6:8, 1] = 1  # 8 of the texts have a label
    splits = []
    monkeypatch.setattr(
        _finetune_base, "validation_split", lambda *a, **k: splits.append(validation_split(*a, **k)) or splits[-1]
    )
    for seed in range(6):  # 5 of 48 texts held out: without a label 2 times in 5 if drawn at random
        head(tiny_bert, cache_dir, epochs=1, early_stopping=True, validation_fraction=0.1, random_state=seed).fit(
            X, sparse
        )
    assert len(splits) == 6 and all(sparse[valid].any() for _, valid in splits)


def test_balanced_class_weight_weighs_each_label_as_a_binary_problem(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    clf = head(tiny_bert, cache_dir, epochs=2, class_weight="balanced")
    weights = clf._label_weights(Y.astype(np.float32))
    positives = Y.sum(axis=0)
    np.testing.assert_allclose(weights[1], len(Y) / (2 * positives), rtol=1e-6)
    np.testing.assert_allclose(weights[0], len(Y) / (2 * (len(Y) - positives)), rtol=1e-6)
    assert clf.fit(X, Y).predict(X).shape == Y.shape
    with pytest.raises(ValueError, match=r"class_weight as a dict .* use class_weight='balanced'"):
        head(tiny_bert, cache_dir, class_weight={0: 2.0}).fit(X, Y)


def test_a_label_on_for_every_text_is_learnt(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    always = np.hstack([Y, np.ones((len(Y), 1), dtype=Y.dtype)])
    with pytest.warns(
        SkllmWarning, match=rf"columns \[{Y.shape[1]}\] are positive for every text, so FineTuneClassifier learns"
    ):
        clf = head(tiny_bert, cache_dir, epochs=5, class_weight="balanced").fit(X, always)
    assert clf.predict(X)[:, -1].all()


def test_a_constant_label_starts_at_its_smoothed_frequency_and_leaves_the_other_probes_alone():
    from skllm._probe import probe_labels

    rng = np.random.default_rng(0)
    features = rng.normal(size=(24, 5))
    Y = (features[:, :2] > 0).astype(int)
    coef, intercept = probe_labels(features, Y, None)
    for column, k in ((np.zeros((24, 1), int), 0), (np.ones((24, 1), int), 24)):
        more_coef, more_intercept = probe_labels(features, np.hstack([Y, column]), None)
        np.testing.assert_array_equal(more_coef[:2], coef)
        np.testing.assert_array_equal(more_intercept[:2], intercept)
        assert not more_coef[2].any()
        np.testing.assert_allclose(more_intercept[2], np.log((k + 0.5) / (24 - k + 0.5)))


def test_a_label_off_for_every_text_does_not_spoil_the_others(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    base = head(tiny_bert, cache_dir, epochs=1, head_init="linear_probe").fit(X, Y).predict(X)
    with pytest.warns(SkllmWarning, match="positive for no text"):
        more = head(tiny_bert, cache_dir, epochs=1, head_init="linear_probe").fit(
            X, np.hstack([Y, np.zeros((len(Y), 1), dtype=Y.dtype)])
        )
    predicted = more.predict(X)
    assert not predicted[:, -1].any()  # never predicted, as it was never seen
    assert (predicted[:, :-1] == Y).mean() >= (base == Y).mean() - 0.05


def test_a_label_never_positive_is_warned_of(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    never = np.hstack([np.zeros((len(Y), 1), dtype=Y.dtype), Y])
    with pytest.warns(SkllmWarning, match=r"columns \[0\] are positive for no text, so .* never to predict them"):
        clf = head(tiny_bert, cache_dir, epochs=1).fit(X, never)
    assert clf.classes_.tolist() == list(range(Y.shape[1] + 1))


@pytest.mark.parametrize(
    "y, value",
    [(np.zeros((6, 3), dtype=int), 0), (sp.csr_matrix((6, 3), dtype=int), 0), (np.ones((6, 2)), 1)],
)
def test_an_indicator_without_any_positive_or_negative_is_refused(tiny_bert, cache_dir, y, value):
    X = ["great film", "awful film", "loved it", "hated it", "fun story", "dull story"]
    with pytest.raises(ValueError, match=rf"of shape \(6, \d\) whose every cell is {value}: .* nothing to learn"):
        head(tiny_bert, cache_dir).fit(X, y)


@pytest.mark.parametrize(
    "y, message",
    [
        (np.zeros((6, 1), dtype=int), r"y has shape \(6, 1\), a single column. For one label per text, pass it as 1-D"),
        ([["x", "y"]] * 6, r"0/1 indicator matrix .* \(multiclass-multioutput\) with 'x' at row 0, column 0"),
        ([[0, 1], [1, 2]] * 3, r"\(multiclass-multioutput\) with 2 at row 1, column 1"),
        ([[0, 2], [2, 0]] * 3, r"y has shape \(6, 2\) with 2 at row 0, column 1. To turn lists"),
        ([[0, 1], [1, np.nan]] * 3, r"with nan at row 1, column 1"),
        (sp.csr_matrix(np.array([[0, 3], [1, 0]] * 3)), r"with 3 at row 0, column 1"),
        (np.zeros((6, 2, 2)), r"y has shape \(6, 2, 2\)"),
        (np.zeros((5, 2), dtype=int), "X has 6 texts but y has 5 rows"),
        ([[1, 2], [3], [4], [5], [6], [7]], "For several labels per text, pass a 0/1 indicator matrix"),
    ],
)
def test_a_two_dimensional_y_that_is_no_indicator_is_refused_clearly(tiny_bert, cache_dir, y, message):
    X = ["great film", "awful film", "loved it", "hated it", "fun story", "dull story"]
    with pytest.raises(ValueError, match=message):
        head(tiny_bert, cache_dir).fit(X, y)


def test_warm_start_starts_afresh_when_the_labels_change(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    clf = head(tiny_bert, cache_dir, epochs=2, warm_start=True).fit(X, Y)
    first = {k: v.copy() for k, v in clf.trainable_state_.items()}
    clf.set_params(learning_rate=1e-12).fit(X, Y)  # same labels: continues (and barely moves)
    assert all(np.allclose(clf.trainable_state_[k], v, atol=1e-6) for k, v in first.items())
    clf.set_params(learning_rate=None).fit(X, Y[:, :3])  # one label fewer: a fresh network, three outputs
    assert clf.predict_proba(X).shape == (len(X), 3)
    single = np.array([f"c{i % 3}" for i in range(len(X))])
    # As many classes, one label each: fresh too (softmax, not sigmoid), as a cold fit starts.
    clf.set_params(learning_rate=1e-12).fit(X, single)
    cold = clone(clf).set_params(warm_start=False).fit(X, single)
    assert not clf.multilabel_ and clf.predict(X).dtype.kind == "U"
    for name, value in cold.trainable_state_.items():
        np.testing.assert_allclose(clf.trainable_state_[name], value, atol=1e-6)


def test_grid_search_with_multilabel_scores(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    scoring = ["f1_samples", "f1_micro"]
    search = GridSearchCV(head(tiny_bert, cache_dir, epochs=2), {"threshold": [0.3, 0.5]}, scoring=scoring, cv=2)
    search.set_params(refit="f1_samples").fit(X, Y)
    for name in scoring:
        assert np.isfinite(search.cv_results_[f"mean_test_{name}"]).all(), name
    assert search.best_params_["threshold"] in (0.3, 0.5)
    assert search.predict(X).shape == Y.shape


def test_pickle_and_joblib_round_trips_predict_the_same(tiny_bert, cache_dir, multi, tmp_path):
    X, Y, _ = multi
    clf = FineTuneClassifier(tiny_bert, method="lora", epochs=2, batch_size=8, random_state=0, cache_dir=cache_dir)
    clf.fit(X, sp.csr_matrix(Y))
    joblib.dump(clf, tmp_path / "model.joblib")
    restored = joblib.load(tmp_path / "model.joblib")
    assert restored.multilabel_ and sp.issparse(restored.predict(X))
    np.testing.assert_allclose(restored.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(restored.predict(X).toarray(), clf.predict(X).toarray())
    again = pickle.loads(pickle.dumps(clone(clf).set_params(threshold=0.3)))
    assert again.threshold == 0.3


def test_tags_say_multi_label():
    assert FineTuneClassifier().__sklearn_tags__().classifier_tags.multi_label


# -- the comparison ------------------------------------------------------------------------


def test_compare_methods_with_an_indicator_matrix(tiny_bert, cache_dir, multi):
    X, Y, _ = multi
    table = compare_methods(
        X,
        sp.csr_matrix(Y),
        methods=["logreg", "head", "zero-shot"],
        cv=2,
        encoder=tiny_bert,
        llm="/no/such/model",  # never loaded: prompting is skipped
        epochs=1,
        cache_dir=cache_dir,
        verbose=0,
    )
    assert table["status"].tolist() == ["computed", "computed", "skipped"], table["error"].tolist()
    assert "one label per text" in table.loc[2, "error"]
    ok = table.iloc[:2]
    for column in ("accuracy_mean", "f1_macro_mean", "f1_micro_mean"):
        assert ok[column].between(0, 1).all(), column
    assert table.attrs["multilabel"] and table.attrs["score"] == "f1_micro_mean"
    # One logistic regression per label on the frozen embeddings (hidden size 32).
    assert table.loc[0, "trainable_params"] == Y.shape[1] * 33


def test_compare_methods_refuses_other_two_dimensional_targets(multi):
    X, Y, _ = multi
    with pytest.raises(ValueError, match=r"compare_methods takes .* y has shape \(48, 4\) with 2 at row 0"):
        compare_methods(X, Y * 2, methods=["logreg"], cv=2, verbose=0)
    with pytest.raises(ValueError, match=r"y has shape \(48, 1\), a single column"):
        compare_methods(X, Y[:, :1], methods=["logreg"], cv=2, verbose=0)
    with pytest.raises(ValueError, match="label_words is for the prompting methods"):
        compare_methods(X, Y, methods=["logreg"], cv=2, label_words={0: "x"}, verbose=0)


def test_cli_multilabel_column(tiny_bert, tiny_llama, cache_dir, multi, tmp_path, capsys):
    X, Y, names = multi
    labels = ["|".join(n for n, on in zip(names, row) if on) for row in Y]
    labels[0] = ""  # no label at all
    path = tmp_path / "multi.csv"
    pd.DataFrame({"review": X, "tags": labels}).to_csv(path, index=False)
    out = tmp_path / "out"
    argv = ["compare", str(path), "--text", "review", "--label", "tags", "--multilabel", "|", "--cv", "2"]
    argv += ["--out", str(out), "--encoder", tiny_bert, "--llm", tiny_llama, "--cache-dir", cache_dir]
    argv += ["--epochs", "1", "--time-budget", "none", "--methods", "logreg", "few-shot"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "multi-label: 4 labels (craft, film, neg, pos)" in printed
    assert "subset_accuracy" in printed and "f1_micro" in printed and "(by f1_micro); refitted" in printed
    table = pd.read_csv(out / "results.csv")
    assert table["status"].tolist() == ["computed", "skipped"]
    assert 0 <= table.loc[0, "f1_micro_mean"] <= 1
    assert json.loads((out / "labels.json").read_text()) == names
    best = joblib.load(out / "best_model.joblib")
    assert best.predict(X[:3]).shape == (3, 4)


def test_cli_multilabel_checks(tmp_path, capsys):
    path = tmp_path / "one.csv"
    pd.DataFrame({"review": ["a", "b", "c"], "tags": ["x", "x|x", ""]}).to_csv(path, index=False)
    argv = ["compare", str(path), "--text", "review", "--label", "tags", "--out", str(tmp_path / "o")]
    assert main([*argv, "--multilabel", "|"]) == 2
    assert "holds only 'x'; a multi-label comparison needs two labels or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--multilabel", "|", "--label-words", "x=ex"])
    assert "--label-words is for the prompting methods" in capsys.readouterr().err
