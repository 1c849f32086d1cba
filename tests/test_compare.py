import json
import re
import time
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from skllm import HeadTuning, TransformerEmbedder, _compare, compare_methods
from skllm._methods import METHODS, FullFineTuning
from skllm.exceptions import SkllmWarning

from helpers import count_rows


def test_fine_tuning_methods_come_from_the_registry():
    assert _compare.FINETUNE_METHODS == tuple(METHODS)
    assert set(METHODS) <= set(_compare.ALL_METHODS)


def test_rows_are_reused_only_when_their_fingerprint_matches(texts, tiny_bert, cache_dir, tmp_path, monkeypatch):
    X, y = texts
    common = dict(encoder=tiny_bert, cache_dir=cache_dir, out_dir=tmp_path, verbose=0, epochs=1)
    first = compare_methods(X, y, methods=["logreg", "head"], cv=2, **common)
    assert first["status"].tolist() == ["computed", "computed"] and first.attrs["reused_rows"] == 0

    again = compare_methods(X, y, methods=["logreg", "head"], cv=2, **common)
    assert again["status"].tolist() == ["reused", "reused"] and again.attrs["reused_rows"] == 2
    assert again["accuracy_mean"].tolist() == first["accuracy_mean"].tolist()

    # Each change that alters a row makes it recomputed, and the saved row overwritten.
    for changed in (
        dict(X=list(reversed(X)), y=list(reversed(y))),
        dict(y=[{"pos": "neg", "neg": "pos"}[v] for v in y]),
        dict(cv=3),
        dict(random_state=1),
        dict(max_length=16),
    ):
        args = {"X": X, "y": y, "cv": 2, **changed}
        table = compare_methods(args.pop("X"), args.pop("y"), methods=["logreg", "head"], **args, **common)
        assert table.attrs["reused_rows"] == 0, changed
    # Settings a method does not use do not touch its row: epochs (the head trains a fixed
    # number) and the language model.
    compare_methods(X, y, methods=["logreg", "head"], cv=2, **common)
    table = compare_methods(X, y, methods=["logreg", "head"], cv=2, llm="other/llm", **{**common, "epochs": 2})
    assert table.attrs["reused_rows"] == 2
    # A method named by a string stands for its defaults: when they change, its row is redone.
    monkeypatch.setattr(HeadTuning, "default_learning_rate", HeadTuning.default_learning_rate / 2)
    table = compare_methods(X, y, methods=["logreg", "head"], cv=2, **common)
    assert table.set_index("method")["status"].to_dict() == {"logreg": "reused", "head": "computed"}


def test_rows_saved_without_a_fingerprint_are_recomputed(texts, tiny_bert, cache_dir, tmp_path):
    rows = tmp_path / "rows"
    rows.mkdir()
    (rows / "logreg.json").write_text(json.dumps({"method": "logreg", "accuracy_mean": 0.123, "error": ""}))
    with pytest.warns(SkllmWarning, match=r"logreg\.json is not reused: it does not hold a saved row"):
        table = compare_methods(
            *texts, methods=["logreg"], cv=2, encoder=tiny_bert, cache_dir=cache_dir, out_dir=tmp_path, verbose=0
        )
    assert table.loc[0, "status"] == "computed" and table.loc[0, "accuracy_mean"] != 0.123
    assert "fingerprint" in json.loads((rows / "logreg.json").read_text())


def test_a_saved_row_changed_by_hand_or_without_checksum_is_recomputed(texts, tiny_bert, cache_dir, tmp_path):
    def compare():
        return compare_methods(
            *texts, methods=["logreg"], cv=2, encoder=tiny_bert, cache_dir=cache_dir, out_dir=tmp_path, verbose=0
        )

    first = compare()
    saved = tmp_path / "rows" / "logreg.json"
    stored = json.loads(saved.read_text())
    assert set(stored) == {"fingerprint", "row", "checksum"}
    edits = [
        # A score edited by hand, the checksum left as it was.
        ({**stored, "row": {**stored["row"], "accuracy_mean": 0.999}}, "its content does not match its checksum"),
        # As saved before rows had a checksum: accepted by nobody, recomputed once.
        ({k: v for k, v in stored.items() if k != "checksum"}, "it has no checksum"),
        ("{not json", "it cannot be read as JSON"),
    ]
    for content, why in edits:
        saved.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.warns(SkllmWarning, match=rf"saved comparison row {re.escape(str(saved))} is not reused: {why}"):
            table = compare()
        assert table.loc[0, "status"] == "computed"
        assert table.loc[0, "accuracy_mean"] == first.loc[0, "accuracy_mean"]
        again = json.loads(saved.read_text())  # saved again, with its checksum
        assert again["fingerprint"] == stored["fingerprint"] and "checksum" in again
        assert again["row"]["accuracy_mean"] == stored["row"]["accuracy_mean"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compare().loc[0, "status"] == "reused"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cv=1), "cv must be an integer >= 2, got 1."),
        (dict(cv=40), "cv=40 needs at least 40 texts of every class, but class 'neg' has 24; use cv <= 24."),
        (dict(epochs=0), "epochs must be an integer >= 1, got 0."),
        (dict(max_length=1), "max_length must be an integer >= 2, got 1."),
        (dict(max_samples=0), "max_samples must be an integer >= 2 or None, got 0."),
        (dict(max_samples=3), "max_samples=3 is too small for cv=5 with 2 classes"),
        (dict(time_budget=0), "time_budget must be a number > 0 or None, got 0."),
        (dict(time_budget=-5.0), "time_budget must be a number > 0 or None, got -5.0."),
        (dict(random_state=None), "random_state must be an integer in [0, 4294967295], got None."),
        (dict(random_state=2**32), "random_state must be an integer in [0, 4294967295], got 4294967296."),
        (dict(methods=["logreg", "svm"]), "methods='svm' is not supported"),
        (dict(methods=["logreg", "logreg"]), "methods lists 'logreg' twice (positions 0 and 1)"),
    ],
)
def test_settings_are_checked_before_any_work(texts, kwargs, message):
    with pytest.raises(ValueError) as error:
        compare_methods(*texts, encoder="/no/such/model", verbose=0, **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(y=None), "y must be a list of labels, one per text, or a 0/1 indicator matrix, got None."),
        (dict(y=5), "y must be a list of labels, got int 5."),
        (dict(methods=[]), "methods is empty: name at least one of ['logreg',"),
        (dict(cache_dir=""), "cache_dir='' is an empty path"),
        (dict(cache_dir=123), "cache_dir must be 'auto', None or a folder path, got 123."),
        # Labels read as the estimators read them: 1 and "1" are not merged, a missing one is no class.
        (dict(y=[1, "1"] * 24), "mixes label types"),
        (dict(y=["pos", float("nan")] * 24), "missing label(s)"),
        (dict(y=[None, "neg"] * 24), "missing label(s)"),
        (dict(y=[1.5, 4.5] * 24), "numbers that are not whole, e.g. 1.5 at position 0: a continuous target"),
    ],
)
def test_bad_arguments_are_refused_at_the_call(texts, kwargs, message):
    X, y = texts
    kwargs = {"y": y, "methods": ["logreg"], **kwargs}
    with pytest.raises(ValueError) as error:
        compare_methods(X, verbose=0, **kwargs)
    assert message in str(error.value)


def test_a_row_saved_earlier_is_reused_where_the_budget_would_skip_its_method(texts, tiny_bert, cache_dir, tmp_path):
    X, y = texts
    common = dict(encoder=tiny_bert, cache_dir=cache_dir, out_dir=tmp_path, verbose=0, cv=2, random_state=0)
    first = compare_methods(X, y, methods=["logreg", "head"], **common).set_index("method")
    table = compare_methods(X, y, methods=["logreg", "head", "linear-svm"], time_budget=0.01, **common)
    plan, rows = table.attrs["plan"], table.set_index("method")
    assert "head" in plan["skipped"] and (plan["n"], plan["cv"]) == (len(X), 2)
    assert rows.loc["head", "status"] == "reused"  # costs nothing: not skipped
    assert rows.loc["head", "accuracy_mean"] == first.loc["head", "accuracy_mean"]
    skipped = rows[rows["status"] == "skipped"]
    assert len(skipped) and (skipped["error"] == "does not fit in the time budget").all()


def test_label_words_keyed_by_numpy_labels(texts, tiny_bert, cache_dir):
    X, y = texts
    y = np.array([1 if v == "pos" else 0 for v in y])
    words = {np.int64(0): "bad", np.int64(1): "good"}
    table = compare_methods(X, y, methods=["logreg"], encoder=tiny_bert, cache_dir=cache_dir, label_words=words, cv=2)
    assert table["status"].tolist() == ["computed"]


def test_a_sample_of_all_rows_but_a_few_keeps_each_class_share():
    from skllm._compare.folds import check_folds, subsample

    y = np.array(["a", "b"] * 12)
    index, sampled = subsample(y, 23, 0)  # one row left out, fewer than the classes
    assert len(index) == len(set(index)) == 23 and sorted(np.unique(sampled, return_counts=True)[1]) == [11, 12]
    six = np.array([c for c in "abcdef" for _ in range(17)] + ["a"] * 3)  # 105 texts in 6 classes, down to 100
    index, sampled = subsample(six, 100, 0)
    assert len(set(index)) == 100 and np.unique(sampled, return_counts=True)[1].tolist() == [19, 17, 16, 16, 16, 16]
    check_folds(y, 2, max_samples=23)
    with pytest.raises(ValueError, match=r"class 'rare' has 1"):
        check_folds(np.array(["a", "b"] * 10 + ["rare"]), cv=2, max_samples=20)
    # A class the sample leaves out entirely is named too, whatever its place in the sorted labels.
    for rare in ("aaa_rare", "zzz_rare"):
        y = np.array(["neg"] * 500 + ["pos"] * 498 + [rare] * 2)
        with pytest.raises(ValueError, match=rf"class '{rare}' has 0 of the 100 sampled"):
            check_folds(y, cv=2, max_samples=100)
    # The data holds enough of it: the remedy is a larger sample.
    with pytest.raises(ValueError, match=r"raise max_samples \(the data holds 2 of that class\)"):
        check_folds(y, cv=2, max_samples=100)


def test_copies_of_a_text_go_to_one_fold():
    from skllm._compare.folds import cut_folds

    texts = np.array([f"text {i % 24}" for i in range(72)], dtype=object)  # each text 3 times
    y = np.array([i % 2 for i in range(72)])
    folds = cut_folds(y, 3, multilabel=False, random_state=0, texts=texts)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(72))
    for train, test in folds:
        assert not set(texts[train]) & set(texts[test]) and np.bincount(y[test]).tolist() == [12, 12]
    plain = cut_folds(y[:24], 3, multilabel=False, random_state=0, texts=texts[:24])  # no copies: the plain folds
    expected = cut_folds(y[:24], 3, multilabel=False, random_state=0)
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(plain, expected))
    indicator = np.stack([y, 1 - y], axis=1)
    for train, test in cut_folds(indicator, 3, multilabel=True, random_state=0, texts=texts):
        assert not set(texts[train]) & set(texts[test])
    with pytest.raises(ValueError, match=r"cv=3 folds need 3 distinct texts of class 0, but there are 2"):
        cut_folds(y[:6], 3, multilabel=False, random_state=0, texts=np.array(["a", "b", "c", "b", "a", "b"]))
    # Data without near-copies keeps its folds: groups are numbered as the exact texts number them.
    mixed = np.array([["Zebra", "apple", "Mango", "kiwi"][i % 4] + f" {i % 24}" for i in range(72)], dtype=object)
    exact = np.unique(mixed.astype(str), return_inverse=True)[1].ravel()
    from sklearn.model_selection import StratifiedGroupKFold

    expected = list(StratifiedGroupKFold(3, shuffle=True, random_state=0).split(mixed, y, exact))
    got = cut_folds(y, 3, multilabel=False, random_state=0, texts=mixed)
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(got, expected))
    # Copies in another case or spacing (an uncased encoder reads them alike) go to one fold too.
    varied = np.array([[t, f" {t.upper()}", t.replace(" ", "  ")][i // 24] for i, t in enumerate(texts)], dtype=object)
    for train, test in cut_folds(y, 3, multilabel=False, random_state=0, texts=varied):
        assert not set(texts[train]) & set(texts[test])


def test_the_time_budgets_sample_keeps_enough_distinct_texts_of_each_class_for_the_folds():
    from skllm._compare.folds import cut_folds, subsample

    texts = np.array([f"a {i}" for i in range(300)] + [f"b {i}" for i in range(90)] + ["one"] * 9 + ["two"])
    y = np.array(["a"] * 300 + ["b"] * 90 + ["c"] * 10)
    for seed in range(6):
        index, y_used = subsample(y, 240, seed, texts, 2)
        assert len(set(texts[index][y_used == "c"])) == 2 and len(index) >= 240 and (np.diff(index) > 0).all()
        cut_folds(y_used, 2, multilabel=False, random_state=seed, texts=texts[index])  # no error


def test_a_comparison_the_time_budget_shrinks_keeps_a_class_of_few_distinct_texts(tiny_bert, cache_dir, monkeypatch):
    from skllm._compare import run

    # Full fine-tuning timed as slow, as on a real encoder: the plan samples fewer texts, and class "c"
    # (10 rows, 2 distinct texts) must still split into the folds, as its whole data does.
    costs = {"embed": 0.0, "train": 0.1, "fold": 1.0, "predict": 0.0, "prompt": 0, "few-shot": 0, "loading": 0}
    monkeypatch.setattr(run, "measure_costs", lambda *a, **k: costs)
    X = [f"text a {i}" for i in range(300)] + [f"text b {i}" for i in range(90)] + ["rare one"] * 9 + ["rare two"]
    y = ["a"] * 300 + ["b"] * 90 + ["c"] * 10
    table = compare_methods(
        X, y, methods=["logreg", "full"], cv=2, encoder=tiny_bert, cache_dir=cache_dir, time_budget=60, verbose=0
    )
    assert table.attrs["plan"]["n"] < len(X) and table["status"].tolist() == ["computed", "computed"]


def test_copies_too_few_for_the_folds_are_refused_before_any_model_runs(monkeypatch):
    from skllm._compare import run

    # Counted as texts, each class has 4 (enough for cv=3); as distinct texts, "pos" has 2.
    X = ["great film", "loved it", "great film", "great film", "awful film", "hated it", "dull story", "bad acting"]
    y = ["pos"] * 4 + ["neg"] * 4
    monkeypatch.setattr(run, "measure_costs", lambda *a, **k: pytest.fail("the time budget was measured first"))
    with pytest.raises(ValueError, match=r"cv=3 folds need 3 distinct texts of class 'pos', but there are 2"):
        compare_methods(X, y, methods=["logreg", "full"], cv=3, time_budget=120, verbose=0)


def test_a_class_with_one_text_asks_for_more_texts_not_fewer_folds():
    from skllm._compare.folds import check_folds

    with pytest.raises(ValueError, match=r"class 'rare' has 1; add texts of that class or leave it out\.$"):
        check_folds(["a", "b"] * 5 + ["rare"], cv=2)


def test_each_text_is_embedded_once_for_pipelines_head_and_few_shot(texts, tiny_bert, tiny_llama, cache_dir):
    X, y = texts
    model = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().model_
    seen, handle = count_rows(model)
    try:
        table = compare_methods(
            X,
            y,
            methods=["logreg", "head", "few-shot"],
            cv=2,
            encoder=tiny_bert,
            llm=tiny_llama,
            epochs=1,
            cache_dir=cache_dir,
            verbose=0,
        )
    finally:
        handle.remove()
    assert (table["status"] == "computed").all(), table["error"].tolist()
    assert sum(seen) == len(set(X))


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("600", 600), ("2.5 min", 150), ("none", None)]
)
def test_durations(text, seconds):
    assert _compare.parse_duration(text) == seconds


def test_durations_that_are_not():
    with pytest.raises(ValueError, match="--time-budget must be a duration such as 90s"):
        _compare.parse_duration("ten minutes", "--time-budget")


COSTS = {"embed": 0.05, "train": 0.2, "prompt": 0.2, "few-shot": 1.0}
# The plan figures below were worked out for these methods (the comparison before "partial").
ALL = [m for m in _compare.ALL_METHODS if m != "partial"]


def plan(seconds, **kw):
    args = dict(n=400, min_n=100, cv=5, epochs=3, n_classes=2, seconds=seconds, **kw)
    return _compare.plan_comparison(ALL, COSTS, **args)


def test_a_plan_that_fits_keeps_everything_as_asked():
    p = plan(1e9)
    assert (p["n"], p["cv"], p["epochs"], p["skipped"]) == (400, 5, 3, [])


def test_the_plan_shrinks_folds_then_epochs_then_texts_then_skips():
    plans = {seconds: plan(seconds) for seconds in (4000, 2800, 900, 600, 60)}
    shape = {seconds: (p["n"], p["cv"], p["epochs"]) for seconds, p in plans.items()}
    assert shape[4000] == (400, 3, 3) and shape[2800] == (400, 3, 2) and shape[900] == (200, 2, 2)
    assert shape[600][1:] == (2, 1) and 100 <= shape[600][0] < 200
    assert all(not p["skipped"] for seconds, p in plans.items() if seconds > 60)
    # Then the costliest go first: few-shot, full fine-tuning and prompt tuning (the costliest of
    # the other methods: its virtual tokens lengthen every text) before logistic regression.
    assert plans[60]["skipped"][:3] == ["few-shot", "full", "prompt"] and "logreg" not in plans[60]["skipped"]
    for seconds, p in plans.items():
        assert p["seconds"] <= seconds
        running = sum(v for m, v in p["per_method"].items() if m not in p["skipped"])
        assert p["seconds"] == pytest.approx(running)  # the shared embeddings are in the first method's


def test_the_refit_is_part_of_the_plan():
    assert plan(1e9, refit=True)["seconds"] > plan(1e9)["seconds"]


def test_a_time_budget_plans_and_says_so(texts, tiny_bert, tiny_llama, cache_dir, tmp_path, capsys):
    table = compare_methods(
        *texts,
        methods=["logreg", "lora", "zero-shot"],
        cv=2,
        encoder=tiny_bert,
        llm=tiny_llama,
        epochs=1,
        time_budget=600,
        cache_dir=cache_dir,
        out_dir=tmp_path,
    )
    plan_ = table.attrs["plan"]
    assert plan_["measure_seconds"] < 30
    assert all(plan_["costs"][kind] > 0 for kind in ("embed", "train", "prompt"))
    assert (plan_["n"], plan_["cv"], plan_["epochs"], plan_["skipped"]) == (48, 2, 1, [])
    printed = capsys.readouterr().out
    assert "plan for a time budget of 10.0 min" in printed and "estimated total" in printed
    assert json.loads((tmp_path / "plan.json").read_text())["plan"]["n"] == 48


class Slow(ClassifierMixin, BaseEstimator):
    """Takes ``seconds`` to fit, whatever the estimate said."""

    def __init__(self, seconds=4.0):
        self.seconds = seconds

    def fit(self, X, y):
        time.sleep(self.seconds)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.repeat(self.classes_[0], len(X))


def test_a_method_that_overruns_its_estimate_is_stopped_between_folds(texts, tiny_bert, cache_dir, monkeypatch):
    from skllm._compare import run

    real = _compare.make_estimator
    monkeypatch.setattr(run, "make_estimator", lambda name, **kw: Slow() if name == "linear-svm" else real(name, **kw))
    monkeypatch.setattr(run, "measure_costs", lambda *a, **kw: dict.fromkeys(["embed", "train", "prompt"], 0.0))
    TransformerEmbedder(tiny_bert).fit()  # loaded, as the timing before a plan does
    messages = []
    table, _ = _compare.run_comparison(
        *texts,
        ["linear-svm", "logreg"],
        cv=2,
        encoder=tiny_bert,
        llm=None,
        epochs=1,
        max_length=64,
        max_samples=None,
        time_budget=7.0,
        cache_dir=cache_dir,
        random_state=0,
        out_dir=None,
        verbose=0,
        report=messages.append,
    )
    assert table["status"].tolist() == ["skipped", "computed"], messages
    assert "linear-svm: stopped after 1 of 2 folds, it would end after the time budget" in messages


class FailsOnAll(ClassifierMixin, BaseEstimator):
    """Fits the folds, fails on all ``n`` texts (as running out of memory would)."""

    def __init__(self, n=0):
        self.n = n

    def fit(self, X, y):
        if len(X) == self.n:
            raise RuntimeError("out of memory\nwhile fitting | all")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.repeat(self.classes_[0], len(X))


def test_a_failed_refit_keeps_the_folds_results_and_returns_no_model(texts, tiny_bert, cache_dir, monkeypatch):
    from skllm._compare import run

    n = len(texts[0])
    monkeypatch.setattr(run, "make_estimator", lambda name, **kw: FailsOnAll(n))
    messages = []
    table, best = _compare.run_comparison(
        *texts, ["logreg"], cv=2, encoder=tiny_bert, llm=None, epochs=1, max_length=64, max_samples=None,
        time_budget=None, cache_dir=cache_dir, random_state=0, out_dir=None, verbose=0, report=messages.append,
        refit=True,
    )  # fmt: skip
    assert best is None and table["status"].tolist() == ["computed"]
    assert table.attrs["refit_error"] == "RuntimeError: out of memory while fitting | all"  # one line
    assert any("The refit of logreg on all the texts failed, so no model is returned" in m for m in messages)


def test_memory_and_trained_state_columns(texts, tiny_bert, cache_dir):
    table = compare_methods(
        *texts, methods=["logreg", "head", "full"], cv=2, encoder=tiny_bert, epochs=1, cache_dir=cache_dir, verbose=0
    )
    assert (table["status"] == "computed").all(), table["error"].tolist()
    rows = table.set_index("method")
    # Peak resident memory a fit added: a number of bytes, and training every layer takes some.
    assert (rows["fit_memory_bytes"] >= 0).all() and rows.loc["full", "fit_memory_bytes"] > 0
    assert rows["fit_gpu_memory_bytes"].isna().all()  # no CUDA here
    # The trained parameters as stored: float32 here (the embeddings are float32, and so are the tensors).
    for name in ("logreg", "head", "full"):
        assert rows.loc[name, "trained_state_bytes"] == 4 * rows.loc[name, "trainable_params"]
    assert 0 < rows.loc["head", "trained_state_bytes"] < rows.loc["full", "trained_state_bytes"]
    assert (rows["trained_state_bytes"] < rows["model_bytes"]).all()
    assert rows["f1_micro_mean"].isna().all()  # one label per text: micro-F1 would repeat accuracy


def test_peak_memory_sees_what_torch_allocates():
    import torch

    from skllm._memory import PeakMemory

    with PeakMemory() as memory:
        kept = torch.ones(32, 1024, 1024)  # 128 MiB, outside Python's allocator
    assert memory.rss_bytes >= 0.9 * kept.nbytes
    with PeakMemory() as memory:
        torch.ones(32, 1024, 1024).sum()  # freed before the block ends: the peak still counts
    assert memory.rss_bytes >= 0.9 * kept.nbytes
    with PeakMemory() as memory:
        pass
    assert memory.rss_bytes < 0.1 * kept.nbytes and memory.cuda_bytes is None


class RenamedFullFineTuning(FullFineTuning):
    """A method registered as a new one would be: full fine-tuning under another name, at half its cost."""

    name = "renamed-full"
    relative_cost = 0.5


def test_a_newly_registered_method_is_compared_with_no_other_change(texts, tiny_bert, cache_dir, monkeypatch):
    monkeypatch.setitem(METHODS, RenamedFullFineTuning.name, RenamedFullFineTuning)
    table = compare_methods(
        *texts,
        methods=["logreg", "renamed-full"],
        cv=2,
        encoder=tiny_bert,
        epochs=1,
        time_budget=600,
        cache_dir=cache_dir,
        verbose=0,
    )
    rows = table.set_index("method")
    assert rows.loc["renamed-full", "status"] == "computed", rows.loc["renamed-full", "error"]
    assert 0 <= rows.loc["renamed-full", "accuracy_mean"] <= 1 and rows.loc["renamed-full", "trainable_params"] > 0
    # Planned from its class's facts: a fine-tuning method at half the cost of full fine-tuning.
    plan_ = table.attrs["plan"]
    assert plan_["costs"]["train"] > 0 and plan_["per_method"]["renamed-full"] > 0
    shape = dict(n=plan_["n"], cv=plan_["cv"], epochs=plan_["epochs"], n_classes=2)
    ours, full = (_compare.estimate_seconds(m, plan_["costs"], **shape)[0] for m in ("renamed-full", "full"))
    assert ours < full
    assert "renamed-full" in table.attrs["timing"]["methods"]


def test_the_data_fingerprint_reads_wide_label_rows_in_full():
    from skllm._compare.rows import data_digest

    wide = np.zeros((2, 1500), dtype=np.int64)
    other = wide.copy()
    other[0, 700] = 1  # NumPy's repr shows neither: "[0, 0, 0, ..., 0, 0, 0]"
    assert data_digest(["a", "b"], wide) != data_digest(["a", "b"], other)
    small = np.array([[0, 1], [1, 0]])
    with np.printoptions(threshold=1000):
        # Narrow rows keep the fingerprint they had, so saved rows of earlier runs are still reused.
        assert data_digest(["a", "b"], small) == rows_digest_before(["a", "b"], small)


def rows_digest_before(texts, y):
    from skllm._compare.folds import plain
    from skllm._compare.rows import digest

    return digest([list(texts), [repr(plain(v)) for v in y]])


class _Memorised(ClassifierMixin, BaseEstimator):
    """Predicts every text's labels as given: a perfect model."""

    def __init__(self, truth=None):
        self.truth = truth

    def fit(self, X, y):
        return self

    def predict(self, X):
        return np.array([self.truth[t] for t in X])


def test_a_perfect_multilabel_model_scores_1_though_a_fold_lacks_a_label():
    from skllm._compare.folds import evaluate_fold

    texts = np.array([f"t{i}" for i in range(8)], dtype=object)
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]])
    train, test = np.arange(4, 8), np.arange(4)
    # The test half holds no text of the third label, and none is predicted: it is not a 0 of the mean.
    perfect = _Memorised(dict(zip(texts, y)))
    scores = evaluate_fold(perfect, texts, y, train, test, multilabel=True, measure_model=False)
    assert scores["accuracy"] == scores["f1_macro"] == scores["f1_micro"] == 1.0
    empty = np.zeros_like(y)
    scores = evaluate_fold(_Memorised(dict(zip(texts, empty))), texts, empty, train, test, multilabel=True)
    assert scores["f1_macro"] == 1.0
