"""On a Dask cluster: grid searches, comparisons and corpus embedding give what a local run gives."""

import os
import sqlite3
import sys
import time

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from skllm import (
    FineTuneClassifier,
    LoRA,
    TransformerEmbedder,
    ZeroShotClassifier,
    _cache,
    _dask,
    compare_methods,
    dask_embed,
)
from skllm.exceptions import MissingDependencyError

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    # The workers cannot import this test module: its helpers travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit=None
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _embedded_counter():
    """On a worker: count the texts that miss the cache and are really embedded (once installed)."""
    from skllm import _embed

    if not hasattr(_embed, "_counted_texts"):
        _embed._counted_texts = []
        original = _embed.TransformerEmbedder._embed_new

        def counting(self, texts, cache, keys):
            _embed._counted_texts.extend(texts)
            return original(self, texts, cache, keys)

        _embed.TransformerEmbedder._embed_new = counting
    counted = list(_embed._counted_texts)
    _embed._counted_texts.clear()
    return counted


def _search_scores(search):
    return search.best_params_, search.cv_results_["mean_test_score"], search.cv_results_["split0_test_score"]


def _assert_same_search(on_dask, local):
    assert on_dask.best_params_ == local.best_params_
    np.testing.assert_allclose(on_dask.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=1e-12)
    for key in (k for k in local.cv_results_ if k.startswith("split")):
        np.testing.assert_allclose(on_dask.cv_results_[key], local.cv_results_[key], atol=1e-12)


def test_pipeline_grid_search_same_as_local_and_one_load_per_worker(client, tiny_bert, texts, tmp_path):
    X, y = texts
    grid = {"logisticregression__C": [0.1, 1.0, 10.0]}
    folds = KFold(3, shuffle=True, random_state=0)
    on_dask = make_pipeline(TransformerEmbedder(tiny_bert, cache_dir=str(tmp_path)), LogisticRegression())
    with joblib.parallel_backend("dask"):
        dask_search = GridSearchCV(on_dask, grid, cv=folds, n_jobs=-1).fit(X, y)
    local = make_pipeline(TransformerEmbedder(tiny_bert, cache_dir=None), LogisticRegression())
    _assert_same_search(dask_search, GridSearchCV(local, grid, cv=folds).fit(X, y))
    # 9 fits and 9 scorings ran on 2 workers: each read the model from disk at most once.
    loads = client.run(_dask.backbone_loads)
    per_worker = [counts.get(os.path.abspath(tiny_bert), 0) for counts in loads.values()]
    assert max(per_worker) == 1 and sum(per_worker) >= 1, loads


def test_fine_tuning_grid_over_methods_same_as_local(client, tiny_bert, texts, tmp_path):
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, epochs=1, batch_size=8, random_state=0, cache_dir=str(tmp_path))
    grid = [{"method": [LoRA()], "method__r": [2, 4]}, {"method": ["head"]}]
    with joblib.parallel_backend("dask"):
        dask_search = GridSearchCV(clf, grid, cv=2, n_jobs=-1).fit(X, y)
    _assert_same_search(dask_search, GridSearchCV(clone(clf), grid, cv=2).fit(X, y))
    assert dask_search.best_estimator_.predict(X[:3]).shape == (3,)


def test_fine_tuning_in_threads_of_one_process_same_as_one_at_a_time(tiny_bert, texts, tmp_path):
    # A worker with several threads runs fits at once in one process, where torch's RNG is shared.
    X, y = texts
    clf = FineTuneClassifier(tiny_bert, method="lora", epochs=1, batch_size=4, random_state=0, cache_dir=str(tmp_path))
    grid = {"learning_rate": [1e-3, 1e-2]}
    with joblib.parallel_backend("threading", n_jobs=2):
        threaded = GridSearchCV(clf, grid, cv=2, n_jobs=2, refit=False).fit(X, y)
    _assert_same_search(threaded, GridSearchCV(clone(clf), grid, cv=2, refit=False).fit(X, y))


def test_in_context_classifier_grid_same_as_local(client, tiny_llama, texts):
    X, y = texts
    clf = ZeroShotClassifier(tiny_llama, batch_size=16)
    grid = {"calibration": [None, "batch"], "length_normalize": [True, False]}
    with joblib.parallel_backend("dask"):
        dask_search = GridSearchCV(clf, grid, cv=2, n_jobs=-1).fit(X[:24], y[:24])
    _assert_same_search(dask_search, GridSearchCV(clone(clf), grid, cv=2).fit(X[:24], y[:24]))


def test_dask_series_embedded_in_order_by_both_workers_into_one_cache(client, tiny_bert, tmp_path):
    words = ["great", "film", "awful", "boring", "fun", "loved", "hated", "story", "plot", "actor"]
    unique = [f"{a} {b} {i}" for i in range(12) for a in words[:5] for b in words[5:]]  # 300 texts
    rows = unique[:200] + unique[100:]  # 100 texts in two partitions, written by both workers at once
    import pandas as pd

    index = np.random.RandomState(0).permutation(len(rows)) * 10
    series = dd.from_pandas(pd.Series(rows, index=index), npartitions=8, sort=False)
    client.run(_embedded_counter)
    cache_dir = str(tmp_path / "cache")
    embedder = TransformerEmbedder(tiny_bert, cache_dir=cache_dir, batch_size=4)

    frame = dask_embed(series, embedder).compute()
    reference = TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(rows)
    assert frame.index.tolist() == index.tolist()
    assert list(frame.columns) == [f"transformerembedder{i}" for i in range(32)]
    np.testing.assert_allclose(frame.to_numpy(), reference, atol=1e-5)
    embedded = [t for texts in client.run(_embedded_counter).values() for t in texts]
    assert set(embedded) == set(unique)

    (path,) = (tmp_path / "cache" / "embeddings").glob("*.sqlite3")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == len(unique)
    # A second pass, and a fitted embedder sent without its weights, read everything back.
    again = dask_embed(series, clone(embedder).fit()).compute()
    np.testing.assert_allclose(again.to_numpy(), reference, atol=1e-5)
    assert all(texts == [] for texts in client.run(_embedded_counter).values())


def test_dask_embed_names_the_partition_of_a_text_it_refuses(tiny_bert):
    import pandas as pd

    series = dd.from_pandas(pd.Series(["a"] * 10 + [None] + ["b"] * 5, index=range(100, 116)), npartitions=2)
    embedded = dask_embed(series, TransformerEmbedder(tiny_bert, cache_dir=None))
    with pytest.raises(ValueError, match=r"In partition 1 of the texts .* at positions \[2\] \(index labels \[110\]\)"):
        embedded.compute(scheduler="synchronous")


def test_dask_embed_blames_the_texts_only_for_what_is_wrong_with_them(tiny_bert, tmp_path):
    # A parameter set since fit, or a model folder gone when the tasks ran, was reported as a problem "in
    # partition 1 of the texts", and the folder's FileNotFoundError became a ValueError.
    import pickle
    import shutil

    import pandas as pd

    series = dd.from_pandas(pd.Series(["great film", "awful", "ok", "fun"]), npartitions=2)
    embedder = TransformerEmbedder(tiny_bert, cache_dir=None).fit()
    with pytest.raises(ValueError, match=r"^This TransformerEmbedder was fitted with max_length=256, set to max_"):
        dask_embed(series, embedder.set_params(max_length=16)).compute(scheduler="synchronous")
    # A filtered series has empty partitions: they embed as nothing.
    kept = series[series.str.startswith("great")]
    frame = dask_embed(kept, embedder.set_params(max_length=256)).compute(scheduler="synchronous")
    assert frame.shape == (1, 32) and frame.index.tolist() == [0]
    moving = tmp_path / "model"
    shutil.copytree(tiny_bert, moving)
    shipped = pickle.loads(pickle.dumps(TransformerEmbedder(str(moving), cache_dir=None).fit()))
    shutil.rmtree(moving)
    with pytest.raises(FileNotFoundError, match=r"^model_name=.* looks like a path, but no such folder exists"):
        dask_embed(series, shipped).compute(scheduler="synchronous")


def test_dask_embed_rejects_what_it_cannot_embed(tiny_bert):
    import pandas as pd

    frame = dd.from_pandas(pd.DataFrame({"a": ["x"], "b": ["y"]}), npartitions=1)
    with pytest.raises(ValueError, match=r"one column; this one has 2: \['a', 'b'\]"):
        dask_embed(frame, TransformerEmbedder(tiny_bert))
    with pytest.raises(TypeError, match="must be a Dask Series"):
        dask_embed(["a text"], TransformerEmbedder(tiny_bert))
    with pytest.raises(TypeError, match="embedder must be a TransformerEmbedder"):
        dask_embed(frame["a"], LogisticRegression())
    with pytest.raises(ValueError, match="pooling"):
        dask_embed(frame["a"], TransformerEmbedder(tiny_bert, pooling="median"))


def test_compare_on_dask_same_table_and_resumes(client, tiny_bert, texts, tmp_path, capsys):
    X, y = texts
    settings = dict(methods=["logreg", "head"], cv=3, encoder=tiny_bert, random_state=0)
    out = tmp_path / "out"
    on_dask = compare_methods(X, y, **settings, cache_dir=str(tmp_path / "c1"), out_dir=out, client=client)
    assert "method x fold tasks" in capsys.readouterr().err  # progress over tasks as they complete
    local = compare_methods(X, y, **settings, cache_dir=str(tmp_path / "c2"), verbose=0)
    columns = ["method", "accuracy_mean", "accuracy_std", "f1_macro_mean", "f1_macro_std", "trainable_params"]
    assert on_dask[columns].equals(local[columns])
    assert on_dask["status"].tolist() == ["computed", "computed"]
    # Resuming, from a cluster or not, reuses the rows the cluster saved.
    resumed = compare_methods(X, y, **settings, cache_dir=str(tmp_path / "c1"), out_dir=out, verbose=0)
    assert resumed.attrs["reused_rows"] == 2
    assert resumed[columns].equals(local[columns])


def test_compare_on_dask_a_failing_method_fails_its_row_only(client, tiny_bert, texts, tmp_path):
    missing = str(tmp_path / "no-such-llm")
    table = compare_methods(
        *texts, methods=["zero-shot", "logreg"], cv=2, encoder=tiny_bert, llm=missing, client=client, verbose=0
    )
    assert table["status"].tolist() == ["failed", "computed"]
    assert "no-such-llm" in table.loc[0, "error"] and "on Dask worker tcp://" in table.loc[0, "error"]


def test_cli_compare_with_a_scheduler_from_a_process_without_a_default_client(client, tiny_bert, texts, tmp_path):
    import subprocess

    import pandas as pd

    # The command runs in its own process, where the only client is the one it makes from the
    # address (no default client, as for a user): the scheduler is this process's cluster.
    X, y = texts
    data = tmp_path / "data.csv"
    pd.DataFrame({"text": X[:16], "label": y[:16]}).to_csv(data, index=False)
    out = tmp_path / "out"
    args = [str(data), "--text", "text", "--label", "label", "--methods", "logreg", "--cv", "2"]
    args += ["--encoder", tiny_bert, "--time-budget", "none", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    args += ["--scheduler", client.scheduler.address]
    done = subprocess.run(
        [sys.executable, "-m", "skllm", "compare", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "method x fold tasks" in done.stderr and "best: logreg" in done.stdout
    best = joblib.load(out / "best_model.joblib")
    assert best.predict(X[:2]).shape == (2,)
    assert (out / "rows" / "logreg.json").is_file()


def test_scheduler_that_does_not_answer_fails_within_seconds(tiny_bert, texts, monkeypatch, capsys):
    import socket

    from skllm._cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT", 2.0)
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"No Dask scheduler answered at 'tcp://127.0.0.1:{port}' within"):
        compare_methods(*texts, methods=["logreg"], cv=2, encoder=tiny_bert, client=f"tcp://127.0.0.1:{port}")
    # Well under distributed's own 30 s connect timeout, with room for a loaded machine.
    assert time.perf_counter() - start < 20
    with pytest.raises(ValueError, match=r"client must be a distributed.Client or a scheduler address"):
        compare_methods(*texts, methods=["logreg"], cv=2, encoder=tiny_bert, client=8786)
    args = ["compare", "x.csv", "--text", "t", "--label", "l", "--scheduler", f"tcp://127.0.0.1:{port}"]
    monkeypatch.setattr(
        "skllm._cli.read_table", lambda path: __import__("pandas").DataFrame({"t": texts[0], "l": texts[1]})
    )
    assert main([*args, "--encoder", tiny_bert, "--time-budget", "none", "--cv", "2", "--methods", "logreg"]) == 2
    assert "No Dask scheduler answered" in capsys.readouterr().err


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'skllm-toolkit\[dask\]'"):
        _dask.connect("tcp://127.0.0.1:8786")


def test_model_a_worker_cannot_find_names_the_worker_and_the_model(client, tmp_path):
    missing = str(tmp_path / "no-such-model")
    future = client.submit(TransformerEmbedder(missing).fit, ["a text"], pure=False)
    with pytest.raises(ValueError, match=rf"'{missing}'.* on Dask worker tcp://127\.0\.0\.1:\d+"):
        future.result(timeout=60)
    future = client.submit(TransformerEmbedder("nobody/no-such-model").fit, pure=False)
    with pytest.raises(OSError, match=r"'nobody/no-such-model'.* on Dask worker tcp://"):
        future.result(timeout=60)


def test_torch_uses_one_thread_per_dask_thread(client):
    def threads():
        import torch

        with _dask.worker_threads():
            return torch.get_num_threads()

    assert set(client.run(lambda: __import__("torch").get_num_threads()).values()) == {1}
    assert client.submit(threads, pure=False).result() == 1


def _embed_or_die(model, cache_dir, texts, marker):
    """First attempt: die halfway through writing to the cache; a retry embeds normally."""
    emb = TransformerEmbedder(model, cache_dir=cache_dir).fit()
    if not os.path.exists(marker):
        open(marker, "w").close()
        cache = emb._cache()
        conn = sqlite3.connect(cache.path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        zeros = np.zeros(emb.embedding_dim_, dtype="<f4").tobytes()
        for text in texts:
            key = _cache.text_key(text)
            conn.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", (key, zeros, 1, b"x" * 16))
        os._exit(1)  # killed mid-transaction
    return emb.transform(texts)


def test_worker_killed_mid_task_is_retried_with_the_same_result(client, tiny_bert, tmp_path):
    texts = [f"great film {i}" for i in range(20)]
    cache_dir = str(tmp_path / "cache")
    TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().transform(texts[:1])  # the database exists
    future = client.submit(_embed_or_die, tiny_bert, cache_dir, texts, str(tmp_path / "died"), pure=False)
    result = future.result(timeout=120)
    assert (tmp_path / "died").exists()
    np.testing.assert_allclose(result, TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(texts), atol=1e-5)
    (path,) = (tmp_path / "cache" / "embeddings").glob("*.sqlite3")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == len(texts)
        assert conn.execute("SELECT COUNT(*) FROM embeddings WHERE checksum = ?", (b"x" * 16,)).fetchone()[0] == 0
    client.wait_for_workers(2, timeout=60)
