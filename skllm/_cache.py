"""Persistent, content-addressed stores: embeddings, and the answers of chat endpoints.

One SQLite database per embedding configuration (model identity, pooling,
normalisation, max_length, precision) under ``<cache_dir>/embeddings/``; rows
are keyed by the SHA-256 of the text. SQLite gives atomic transactions and
cross-process locking, so GridSearchCV workers writing at once lose nothing and
corrupt nothing. Each row carries a checksum: a damaged row is reported as a
miss (and recomputed), never returned.

The answers of a chat endpoint (``OpenAIChat``) are kept the same way in
``<cache_dir>/responses/responses.sqlite3``, keyed by the SHA-256 of the whole
request but the key: endpoint, model, messages and sampling parameters.
"""

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .exceptions import CacheWarning

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SQL_CHUNK = 500
_connections = {}
_connections_lock = threading.Lock()
_read_only = set()  # the (process, path) of the databases opened read-only: their writes are skipped


def default_cache_dir():
    """The cache folder used when ``cache_dir="auto"``.

    ``$SKLLM_CACHE_DIR``, else ``$XDG_CACHE_HOME/skllm``, else ``~/.cache/skllm``. A leading
    ``~`` is expanded, as in ``cache_dir``: a shell leaves it as it is when quoted. A relative
    path is taken in the working directory of the call.

    Examples
    --------
    >>> import os
    >>> from skllm import default_cache_dir
    >>> os.environ["SKLLM_CACHE_DIR"] = "/tmp/skllm-example-cache"
    >>> default_cache_dir()
    PosixPath('/tmp/skllm-example-cache')
    >>> del os.environ["SKLLM_CACHE_DIR"]
    """
    # Absolute, as a cache_dir given is: a relative variable names the folder under the working directory
    # of each use (the cache's open connections are kept by folder).
    if os.environ.get("SKLLM_CACHE_DIR"):
        return Path(os.environ["SKLLM_CACHE_DIR"]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return (Path(base).expanduser() / "skllm").absolute()


def resolve_cache_dir(cache_dir):
    """The cache folder that ``cache_dir`` names (``None``: no cache), or a ``ValueError`` naming the problem.

    Symbolic links are followed (the cache lives in their target); one whose
    target does not exist is refused, rather than silently creating a folder
    where the link points.
    """
    if cache_dir is None:
        return None
    if isinstance(cache_dir, str) and cache_dir == "auto":
        root = default_cache_dir()
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir must be 'auto', None or a folder path, got {cache_dir!r}.")
    elif not os.fspath(cache_dir).strip():
        # Path("") is the current folder: the cache would be written wherever the process runs.
        raise ValueError(
            f"cache_dir={cache_dir!r} is an empty path, which would put the cache in the current folder. "
            f"Pass a folder path, 'auto' for the default cache folder, or None to not cache."
        )
    elif "\0" in os.fsdecode(cache_dir):
        raise ValueError(
            f"cache_dir={cache_dir!r} contains a NUL character (\\0), which no file system allows in a path. "
            f"Pass a folder path, 'auto' for the default cache folder, or None to not cache."
        )
    else:
        # Absolute: the cache's open connections are kept by folder, and a relative one names another
        # folder once the process changes its working directory.
        root = Path(cache_dir).expanduser().absolute()
    for path in (root, *root.parents):
        if path.is_symlink() and not path.exists():
            raise ValueError(
                f"cache_dir={cache_dir!r}: {path} is a symbolic link to {os.readlink(path)}, which does not "
                f"exist (or is a loop). Create the target folder, or point cache_dir at an existing folder."
            )
        if path.exists() and not path.is_dir():
            # Every use would fail to open the cache and embed without it, warning each time.
            raise ValueError(
                f"cache_dir={cache_dir!r}: {path} is a file, not a folder. Point cache_dir at a folder (it is "
                f"created if missing), 'auto' for the default cache folder, or None to not cache."
            )
    return root


# File systems shared between machines, where SQLite's locks (and the shared
# memory of its write-ahead log) do not hold: several machines writing one
# database there corrupt it. The cache refuses them (see docs/cluster.md).
NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "afs",
    "9p",
    "lustre",
    "gpfs",
    "ceph",
    "glusterfs",
    "beegfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "fuse.gcsfuse",
    "fuse.glusterfs",
    "fuse.cephfs",
    "fuse.juicefs",
    "fuse.rclone",
    "fuse.blobfuse2",
    "fuse.mountpoint-s3",
    "davfs",
    "wekafs",
    "gfs2",
    "ocfs2",
)
_MOUNTS = "/proc/self/mounts"


def _unescape_mount(field):
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def filesystem_type(path):
    """``(type, mount point)`` of the file system holding ``path`` (or its nearest existing parent).

    ``(None, None)`` where the mount table cannot be read (systems other than Linux).
    """
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:  # first: looking at an automounted share mounts it
        path = path.parent
    try:
        with open(_MOUNTS, encoding="utf-8", errors="replace") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return None, None
    real = os.path.realpath(path)
    best = (None, None)
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best[1] is None or len(point) > len(best[1])):
            best = (fields[2], point)
    return best


def check_local_filesystem(root):
    """Raise a ``ValueError`` if ``root`` is on a file system shared between machines."""
    fstype, point = filesystem_type(root)
    if fstype is not None and fstype.lower() in NETWORK_FILESYSTEMS:
        raise ValueError(
            f"The skllm cache folder {root} is on a network file system ({fstype}, mounted at {point}). "
            f"SQLite's locking is not safe there: machines writing one cache at once would corrupt it. Give each "
            f"machine a cache on its own disk (cache_dir, or the SKLLM_CACHE_DIR environment variable, e.g. "
            f"/tmp/skllm-cache), or cache_dir=None to not cache. See 'Running on a cluster' in the docs."
        )


def text_key(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def namespace(config):
    """Name of the database holding embeddings made under ``config`` (a dict)."""
    blob = json.dumps({"format": FORMAT_VERSION, **config}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _checksum(key, vector, n_tokens):
    digest = hashlib.blake2b(key, digest_size=16)
    digest.update(vector)
    digest.update(int(n_tokens).to_bytes(8, "little", signed=True))
    return digest.digest()


def _select_keys(conn, query, keys):
    """The rows of ``query`` (whose ``{marks}`` is the IN list) for ``keys``, asked in chunks of SQLite's size."""
    for start in range(0, len(keys), _SQL_CHUNK):
        chunk = keys[start : start + _SQL_CHUNK]
        yield from conn.execute(query.format(marks=",".join("?" * len(chunk))), chunk).fetchall()


def _file_identity(path):
    """``(device, inode)`` of the file at ``path`` (symbolic links followed), ``None`` if there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _close(conn):
    try:
        conn.close()
    except sqlite3.Error:
        pass


class SQLiteStore:
    """A database file under ``root`` with the connection handling every skllm cache shares.

    Each process opens its own connection (kept per process and path, with a
    lock for the threads that share it); a damaged file is moved aside once
    and rebuilt; a problem is one ``CacheWarning`` per instance and a log line.
    Subclasses create their tables in ``_schema`` and name themselves in
    ``what``.
    """

    what = "cache"

    def __init__(self, root, path):
        self.root = Path(root)
        self.path = Path(path)
        self._warned = False
        check_local_filesystem(self.root)

    # -- connection management -------------------------------------------------
    def _schema(self, conn):
        raise NotImplementedError

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:  # e.g. file systems without shared memory
                if "readonly" in str(exc) or not os.access(self.path.parent, os.W_OK):
                    raise
            conn.execute("PRAGMA synchronous = NORMAL")
            self._schema(conn)
            _read_only.discard((os.getpid(), str(self.path)))
            return conn
        except sqlite3.OperationalError as exc:
            _close(conn)
            # (a folder that cannot be written: SQLite cannot make the files beside the database)
            if not (self.path.is_file() and ("readonly" in str(exc) or not os.access(self.path.parent, os.W_OK))):
                raise
            # A cache this process may read but not write (shared, or shipped in a read-only folder): it is
            # read, and what it lacks is computed and not stored (said once; each write then fails quietly).
            self._warn(f"The {self.what} {self.path} is read-only here ({exc}): it is read, and nothing is stored.")
            _read_only.add((os.getpid(), str(self.path)))
            return self._open_read_only()

    def _open_read_only(self):
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=60.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            # A WAL database whose shared-memory file this process cannot create: read as a file nobody changes.
            _close(conn)
            return sqlite3.connect(
                f"{uri}&immutable=1", uri=True, timeout=60.0, check_same_thread=False, isolation_level=None
            )

    def _connection(self):
        """``(connection, lock)`` of this process for the file, reopened if the file was deleted meanwhile."""
        key = (os.getpid(), str(self.path))
        with _connections_lock:
            entry = _connections.get(key)
            if entry is not None and _file_identity(self.path) != entry[2]:
                # The file (or its folder) was deleted or replaced under the open
                # connection: what it writes would go to an unlinked file and be lost.
                del _connections[key]
                _close(entry[0])
                self._warn(f"The {self.what} {self.path} was deleted while in use; it is created again.")
                entry = None
            if entry is None:
                conn = self._open()
                entry = (conn, threading.Lock(), _file_identity(self.path))
                _connections[key] = entry
            return entry[:2]

    def _drop_connection(self):
        key = (os.getpid(), str(self.path))
        with _connections_lock:
            entry = _connections.pop(key, None)
        if entry is not None:
            _close(entry[0])

    def _warn(self, message):
        if not self._warned:
            warnings.warn(message, CacheWarning, stacklevel=4)
            self._warned = True
        logger.warning(message)

    def _quarantine(self, exc):
        """Move a damaged database aside so that a fresh one replaces it."""
        self._drop_connection()
        target = self.path.with_name(f"{self.path.name}.corrupt-{os.getpid()}-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(target) + suffix))
                except OSError:
                    pass
        self._warn(f"The {self.what} {self.path} was damaged ({exc}); it was moved aside and is rebuilt.")

    def _run(self, operation):
        """Run ``operation(conn)``; recover once from a damaged database file."""
        for attempt in range(2):
            try:
                conn, lock = self._connection()
                with lock:
                    return operation(conn)
            except sqlite3.ProgrammingError:
                # "Cannot operate on a closed database": another thread found the file deleted and
                # closed this connection. The file is not damaged: open the new one and try again.
                if attempt == 0:
                    continue
                raise
            except sqlite3.DatabaseError as exc:
                damaged = not isinstance(exc, sqlite3.OperationalError) or "malformed" in str(exc)
                if damaged and attempt == 0:
                    self._quarantine(exc)
                    continue
                raise

    def _write(self, sql, rows):
        """Run ``sql`` over ``rows`` in one transaction (a failure warns: the results are then not cached)."""

        def write(conn):
            if (os.getpid(), str(self.path)) in _read_only:  # opened read-only, and said so then
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        try:
            self._run(write)
        except (sqlite3.Error, OSError) as exc:
            self._warn(f"The {self.what} {self.path} cannot be written ({exc}); results are not cached.")


class EmbeddingCache(SQLiteStore):
    """Embeddings of one configuration, stored in ``root/embeddings/<namespace>.sqlite3``.

    Instances are cheap and picklable; each process opens its own connection.
    """

    what = "embedding cache"

    def __init__(self, root, config, dim):
        self.config = config
        self.dim = int(dim)
        super().__init__(root, Path(root) / "embeddings" / f"{namespace(config)}.sqlite3")

    def __getstate__(self):
        return {"root": self.root, "config": self.config, "dim": self.dim, "path": self.path, "_warned": False}

    def _schema(self, conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " key BLOB PRIMARY KEY, vector BLOB NOT NULL,"
            " n_tokens INTEGER NOT NULL, checksum BLOB NOT NULL) WITHOUT ROWID"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('config', ?)",
            (json.dumps({"format": FORMAT_VERSION, "dim": self.dim, **self.config}, sort_keys=True),),
        )

    # -- public operations -----------------------------------------------------
    def get(self, keys):
        """Return ``{key: (vector, n_tokens)}`` for the stored, intact keys."""
        expected = self.dim * 4

        def read(conn):
            found = {}
            for key, vector, n_tokens, checksum in _select_keys(
                conn, "SELECT key, vector, n_tokens, checksum FROM embeddings WHERE key IN ({marks})", keys
            ):
                # A row edited outside skllm may hold any SQLite type in any column.
                intact = isinstance(vector, bytes) and len(vector) == expected and isinstance(n_tokens, int)
                if not intact or checksum != _checksum(key, vector, n_tokens):
                    self._warn(f"A damaged entry in the embedding cache {self.path} was ignored and recomputed.")
                    continue
                found[bytes(key)] = (np.frombuffer(vector, dtype="<f4"), n_tokens)
            return found

        try:
            return self._run(read)
        except (sqlite3.Error, OSError) as exc:
            self._warn(f"The embedding cache {self.path} cannot be read ({exc}); embedding without it.")
            return {}

    def put(self, keys, vectors, n_tokens):
        """Store ``vectors`` (float32, one row per key) in one transaction."""
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        rows = []
        for key, vector, count in zip(keys, vectors, n_tokens):
            blob = vector.tobytes()
            rows.append((key, blob, int(count), _checksum(key, blob, int(count))))
        self._write("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def __len__(self):
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])


def request_key(request):
    """Key of a chat request (a JSON-able dict: endpoint, model, messages, sampling parameters; never a secret)."""
    blob = json.dumps({"format": FORMAT_VERSION, **request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).digest()


def _answer_checksum(key, blob):
    return hashlib.blake2b(key + blob, digest_size=16).digest()


class ResponseCache(SQLiteStore):
    """Answers of deterministic chat requests, in ``root/responses/responses.sqlite3``, keyed by ``request_key``.

    An answer is a JSON-able dict, written as soon as it arrives, so that an
    interrupted run continues where it stopped.
    """

    what = "response cache"

    def __init__(self, root):
        super().__init__(root, Path(root) / "responses" / "responses.sqlite3")

    def __getstate__(self):
        return {"root": self.root, "path": self.path, "_warned": False}

    def _schema(self, conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (key BLOB PRIMARY KEY, answer BLOB NOT NULL,"
            " checksum BLOB NOT NULL) WITHOUT ROWID"
        )

    def get(self, keys):
        """Return ``{key: answer}`` for the stored, intact keys."""

        def read(conn):
            found = {}
            for key, blob, checksum in _select_keys(
                conn, "SELECT key, answer, checksum FROM responses WHERE key IN ({marks})", keys
            ):
                key = bytes(key)
                if not isinstance(blob, bytes) or checksum != _answer_checksum(key, blob):
                    self._warn(f"A damaged entry in the response cache {self.path} was ignored and asked again.")
                    continue
                found[key] = json.loads(blob)
            return found

        try:
            return self._run(read)
        except (sqlite3.Error, OSError, ValueError) as exc:
            self._warn(f"The response cache {self.path} cannot be read ({exc}); asking the endpoint.")
            return {}

    def put(self, key, answer):
        blob = json.dumps(answer, sort_keys=True).encode()
        self._write("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", [(key, blob, _answer_checksum(key, blob))])

    def __len__(self):
        return self._run(lambda conn: conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
