import multiprocessing
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from skllm import TransformerEmbedder, _cache, _models
from skllm.exceptions import CacheWarning

from helpers import count_rows


def db_files(cache_dir):
    return sorted(Path(cache_dir, "embeddings").glob("*.sqlite3"))


def test_cache_survives_clone_and_registry_reset(tiny_bert, cache_dir, texts):
    first = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    Z = first.transform(texts[0])
    # A "restart": no model in memory, a new estimator reading the same folder.
    _models.clear_model_registry()
    again = clone(first).fit()
    seen, handle = count_rows(again.model_)
    try:
        np.testing.assert_allclose(again.transform(texts[0]), Z)
    finally:
        handle.remove()
    assert seen == []


def test_every_configuration_has_its_own_entries(tiny_bert, cache_dir):
    X = ["great film", "awful film"]
    out = {}
    for pooling in ("mean", "max"):
        for max_length in (8, 16):
            emb = TransformerEmbedder(tiny_bert, pooling=pooling, max_length=max_length, cache_dir=cache_dir)
            out[pooling, max_length] = emb.fit().transform(X)
    assert len(db_files(cache_dir)) == 4
    assert not np.allclose(out["mean", 16], out["max", 16])


def test_no_cache_writes_nothing(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("SKLLM_CACHE_DIR", str(tmp_path / "default"))
    TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(["great film"])
    assert not (tmp_path / "default").exists()
    TransformerEmbedder(tiny_bert).fit().transform(["great film"])
    assert len(db_files(tmp_path / "default")) == 1


def test_damaged_entry_is_recomputed_not_returned(tiny_bert, cache_dir):
    X = ["great film", "awful film"]
    emb = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    Z = emb.transform(X)
    (path,) = db_files(cache_dir)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE embeddings SET vector = zeroblob(128) WHERE key = ?", (_cache.text_key(X[0]),))
        conn.execute("UPDATE embeddings SET vector = substr(vector, 1, 20) WHERE key = ?", (_cache.text_key(X[1]),))
    fresh = clone(emb).fit()
    seen, handle = count_rows(fresh.model_)
    try:
        with pytest.warns(CacheWarning, match="damaged entry"):
            np.testing.assert_allclose(fresh.transform(X), Z, atol=1e-6)
    finally:
        handle.remove()
    assert sum(seen) == 2
    np.testing.assert_allclose(clone(emb).fit().transform(X), Z, atol=1e-6)  # rewritten


def test_damaged_database_file_is_moved_aside(tiny_bert, cache_dir):
    X = ["great film", "awful film"]
    emb = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    Z = emb.transform(X)
    (path,) = db_files(cache_dir)
    _cache._connections.clear()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 3000)  # a header, then garbage
    with pytest.warns(CacheWarning, match="damaged"):
        np.testing.assert_allclose(clone(emb).fit().transform(X), Z, atol=1e-6)
    assert list(path.parent.glob("*.corrupt-*"))
    assert len(_cache.EmbeddingCache(cache_dir, clone(emb).fit()._cache().config, 32)) == 2


def _embed_in_child(model_dir, cache_dir, texts, barrier, queue):
    import warnings

    warnings.simplefilter("error", CacheWarning)
    emb = TransformerEmbedder(model_dir, cache_dir=cache_dir, batch_size=4).fit()
    barrier.wait(timeout=120)
    # Many small calls: many write transactions interleaved with the other process.
    queue.put(np.concatenate([emb.transform(texts[i : i + 5]) for i in range(0, len(texts), 5)]))


def test_two_processes_writing_overlapping_texts(tiny_bert, cache_dir):
    words = ["great", "film", "awful", "boring", "fun", "loved", "hated", "story", "plot", "actor"]
    texts = [f"{a} {b} {i}" for i in range(12) for a in words[:5] for b in words[5:]]  # 300 texts
    first, second = texts[:200], texts[100:]  # 100 texts written by both
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [
        ctx.Process(target=_embed_in_child, args=(tiny_bert, cache_dir, part, barrier, queue))
        for part in (first, second)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(len(r) for r in results) == [200, 200]

    reference = TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(texts)
    emb = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    (path,) = db_files(cache_dir)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == len(texts)
    seen, handle = count_rows(emb.model_)
    try:
        np.testing.assert_allclose(emb.transform(texts), reference, atol=1e-5)
    finally:
        handle.remove()
    assert seen == []


def test_unwritable_cache_warns_and_still_embeds(tiny_bert, tmp_path):
    emb = TransformerEmbedder(tiny_bert, cache_dir=str(tmp_path / "cache")).fit()
    # A file where the cache's folder of embeddings goes: the database cannot be created.
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "embeddings").write_text("not a folder")
    with pytest.warns(CacheWarning, match="cannot be"):
        Z = emb.transform(["great film"])
    assert Z.shape == (1, 32)


def test_a_relative_cache_dir_follows_the_working_directory_without_warning(tiny_bert, tmp_path, monkeypatch):
    # The open connections were kept by the relative name: after a chdir, the cache of the first folder was
    # taken for one "deleted while in use", with a CacheWarning.
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    monkeypatch.chdir(first)
    emb = TransformerEmbedder(tiny_bert, cache_dir="cache").fit()
    emb.transform(["great film"])
    monkeypatch.chdir(second)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb.transform(["awful film"])
    assert (first / "cache").is_dir() and (second / "cache").is_dir()


def test_cache_on_a_network_file_system_is_refused(tiny_bert, tmp_path, monkeypatch):
    share = tmp_path / "shared space"
    share.mkdir()
    mounts = tmp_path / "mounts"
    escaped = str(share).replace(" ", "\\040")
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nfiler:/export {escaped} nfs4 rw,relatime 0 0\n")
    monkeypatch.setattr(_cache, "_MOUNTS", str(mounts))
    assert _cache.filesystem_type(share / "skllm" / "not-yet") == ("nfs4", str(share))
    emb = TransformerEmbedder(tiny_bert, cache_dir=str(share / "skllm")).fit()
    with pytest.raises(ValueError, match=r"skllm is on a network file system \(nfs4, mounted at .*shared space\)"):
        emb.transform(["great film"])
    assert not (share / "skllm").exists()  # refused before anything is written
    # A local disk, and no cache at all, are fine.
    assert TransformerEmbedder(tiny_bert, cache_dir=str(tmp_path / "local")).fit().transform(["a"]).shape == (1, 32)
    assert TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(["a"]).shape == (1, 32)


@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_cache_dir_is_refused_at_fit(tiny_bert, empty, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"cache_dir=.* is an empty path.*current folder.*None to not cache"):
        TransformerEmbedder(tiny_bert, cache_dir=empty).fit()
    with pytest.raises(ValueError, match="is an empty path"):
        _cache.resolve_cache_dir(empty)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["ZeroShotClassifier", "FewShotClassifier", "FewShotGenerator", "FineTuneGenerator"])
def test_language_models_refuse_an_empty_cache_dir_before_loading(name, tiny_llama, tmp_path, monkeypatch):
    import skllm

    monkeypatch.chdir(tmp_path)
    estimator = getattr(skllm, name)(tiny_llama, cache_dir="")
    y = ["good", "bad"] if name.endswith("Classifier") else ["yes", "no"]
    with pytest.raises(ValueError, match=r"cache_dir='' is an empty path"):
        estimator.fit(["great film", "awful film"], y)
    assert list(tmp_path.iterdir()) == []


def test_response_cache_refuses_an_empty_cache_dir():
    from skllm import OpenAIChat

    with pytest.raises(ValueError, match=r"cache_dir='' is an empty path"):
        OpenAIChat("m", api_key="k").connect(cache_dir="")


def test_cache_deleted_while_in_use_is_created_again(tiny_bert, cache_dir):
    import shutil

    emb = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    emb.transform(["great film"])
    shutil.rmtree(cache_dir)  # the connection of this process stays open on the unlinked file
    with pytest.warns(CacheWarning, match="was deleted while in use; it is created again"):
        Z = emb.transform(["awful film", "loved it"])
    (path,) = db_files(cache_dir)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2
    seen, handle = count_rows(emb.model_)
    try:
        np.testing.assert_allclose(emb.transform(["awful film", "loved it"]), Z)
    finally:
        handle.remove()
    assert seen == []


def test_a_connection_closed_by_another_thread_is_reopened_not_taken_for_a_damaged_file(tmp_path, monkeypatch):
    from skllm._cache import ResponseCache

    cache = ResponseCache(tmp_path)
    cache.put(b"k", {"answer": "yes"})
    stale, lock = cache._connection()
    cache._drop_connection()  # another thread found the file replaced and closed the connection...
    real = cache._connection
    handed = iter([(stale, lock)])  # ...after this thread had taken it
    monkeypatch.setattr(cache, "_connection", lambda: next(handed, None) or real())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # no "damaged ... moved aside"
        assert cache.get([b"k"]) == {b"k": {"answer": "yes"}}
    assert not list(tmp_path.rglob("*.corrupt-*"))


@pytest.mark.parametrize("value", ["'many'", "2.5", "x'00'"])
def test_a_token_count_that_is_not_an_integer_is_a_damaged_entry(tiny_bert, cache_dir, value):
    X = ["great film", "awful film"]
    emb = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    Z = emb.transform(X)
    (path,) = db_files(cache_dir)
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE embeddings SET n_tokens = {value} WHERE key = ?", (_cache.text_key(X[0]),))
    fresh = clone(emb).fit()
    seen, handle = count_rows(fresh.model_)
    try:
        with pytest.warns(CacheWarning, match="damaged entry"):
            np.testing.assert_allclose(fresh.transform(X), Z, atol=1e-6)
    finally:
        handle.remove()
    assert seen == [1]


def test_a_symlinked_cache_folder_is_followed(tiny_bert, tmp_path):
    real = tmp_path / "real"
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    real.mkdir()
    Z = TransformerEmbedder(tiny_bert, cache_dir=str(tmp_path / "link")).fit().transform(["great film"])
    assert len(db_files(real)) == 1  # written in the target
    emb = TransformerEmbedder(tiny_bert, cache_dir=str(real)).fit()
    seen, handle = count_rows(emb.model_)
    try:
        np.testing.assert_allclose(emb.transform(["great film"]), Z)  # the same cache by either name
    finally:
        handle.remove()
    assert seen == []


def test_a_symlink_to_nowhere_is_refused_at_fit(tiny_bert, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "missing", target_is_directory=True)
    with pytest.raises(ValueError, match=r"link is a symbolic link to .*missing, which does not exist"):
        TransformerEmbedder(tiny_bert, cache_dir=str(tmp_path / "link" / "skllm")).fit()
    assert not (tmp_path / "missing").exists()


def test_cache_dir_with_a_nul_character_is_refused_at_fit(tiny_bert, tmp_path):
    bad = str(tmp_path / "a\0b")
    with pytest.raises(ValueError, match=r"cache_dir=.* contains a NUL character"):
        _cache.resolve_cache_dir(bad)
    with pytest.raises(ValueError, match=r"NUL character"):
        TransformerEmbedder(tiny_bert, cache_dir=bad).fit()


def test_a_cache_dir_that_is_a_file_is_refused_at_fit(tiny_bert, tmp_path):
    (tmp_path / "notes.txt").write_text("not a folder")
    for bad in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "skllm"):
        with pytest.raises(ValueError, match=r"notes.txt is a file, not a folder"):
            TransformerEmbedder(tiny_bert, cache_dir=str(bad)).fit()


def test_a_tilde_in_the_cache_variables_is_the_home_folder(tiny_bert, tmp_path, monkeypatch):
    # Quoted in a shell (SKLLM_CACHE_DIR="~/x"), the tilde reaches the variable unexpanded.
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("SKLLM_CACHE_DIR", "~/x")
    assert _cache.default_cache_dir() == tmp_path / "x"
    TransformerEmbedder(tiny_bert).fit().transform(["great film"])
    assert len(db_files(tmp_path / "x")) == 1
    assert not (tmp_path / "work" / "~").exists()  # not a folder named "~" where the process runs
    monkeypatch.delenv("SKLLM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "~/xdg")
    assert _cache.resolve_cache_dir("auto") == tmp_path / "xdg" / "skllm"


def test_a_relative_cache_variable_names_a_folder_of_the_working_directory(tiny_bert, tmp_path, monkeypatch):
    # Kept relative, the folder's open connection was found again from another working directory, where no
    # cache file was: a CacheWarning said the cache had been deleted while in use.
    monkeypatch.setenv("SKLLM_CACHE_DIR", "relcache")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert _cache.default_cache_dir() == tmp_path / "a" / "relcache"
    embedder = TransformerEmbedder(tiny_bert).fit()
    embedder.transform(["great film"])
    monkeypatch.chdir(tmp_path / "b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.transform(["great film"])
    assert len(db_files(tmp_path / "a" / "relcache")) == len(db_files(tmp_path / "b" / "relcache")) == 1


def test_a_read_only_cache_is_read_and_not_written(tiny_bert, cache_dir, monkeypatch):
    # Opened for writing, a database this process may only read failed at its first statement: the cache was
    # not read at all, every text embedded again, under a warning that it "cannot be read".
    TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit().transform(["great film", "awful story"])
    (path,) = db_files(cache_dir)
    for conn, _, _ in _cache._connections.values():
        conn.close()
    _cache._connections.clear()
    connect = sqlite3.connect

    def read_only(database, *args, uri=False, **kwargs):  # what SQLite gives a user without write permission
        if not uri:
            database, uri = f"{Path(database).absolute().as_uri()}?mode=ro", True
        return connect(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    embedder = TransformerEmbedder(tiny_bert, cache_dir=cache_dir).fit()
    embedded = []
    embed_new = embedder._embed_new
    monkeypatch.setattr(embedder, "_embed_new", lambda texts, *a: embedded.extend(texts) or embed_new(texts, *a))
    with pytest.warns(CacheWarning, match=r"is read-only here .*it is read, and nothing is stored") as caught:
        vectors = embedder.transform(["great film", "awful story", "fun plot"])
    assert embedded == ["fun plot"] and len(caught) == 1
    expected = TransformerEmbedder(tiny_bert, cache_dir=None).fit().transform(["great film", "awful story", "fun plot"])
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: the next calls neither warn nor store
        embedder.transform(["fun plot", "sad end"])
    monkeypatch.setattr(sqlite3, "connect", connect)
    for conn, _, _ in _cache._connections.values():
        conn.close()
    _cache._connections.clear()
    _cache._read_only.clear()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2  # nothing was stored
