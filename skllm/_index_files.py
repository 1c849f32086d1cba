"""The folder :meth:`DocumentIndex.save` writes: ``index.json`` and two ``.npy`` arrays.

Nothing in it is pickled: the state is JSON, the arrays are read with
``allow_pickle=False``. Each file is written whole (under a temporary name,
then renamed), the arrays first and ``index.json`` last, which records a digest
of each array, so files left from two different saves are refused on reading.
The document ids it holds are checked here too, as given and as read back.
"""

import hashlib
import io
import json
import math
import os
import warnings

import numpy as np

from ._validation import check_labels, is_missing
from ._version import __version__
from .exceptions import InconsistentVersionWarning

_FORMAT = 1
_STATE_KEYS = ("params", "documents", "chunk_doc", "chunk_span", "next_id")


def write_index_files(folder, state, arrays):
    """Write ``state`` (a dict) and ``arrays`` (name -> ndarray) to ``folder``; a refused save writes nothing."""
    data = {name: _npy_bytes(array) for name, array in arrays.items()}
    digests = {name: hashlib.sha256(b).hexdigest() for name, b in data.items()}
    state = {"format": _FORMAT, "skllm_version": __version__, **state, "arrays": digests}
    try:  # before any file is written: a refused save leaves the folder as it was
        text = json.dumps(state, default=_plain_value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save() needs JSON-serialisable document ids, metadata and parameters: {exc}") from exc
    _check_metadata_survives(state["documents"], json.loads(text)["documents"])
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in [*data.items(), ("index.json", text.encode("utf-8"))]:
        partial = folder / f".{name}.partial"
        partial.write_bytes(content)
        os.replace(partial, folder / name)  # a file is whole or absent, never half-written
    return folder


def read_index_files(folder):
    """``(state, vectors, alive)`` from ``folder``, checked against each other; errors name the file.

    The caller checks the vectors' width against its embedder, then :func:`check_array_digests`.
    """
    state = _read_state(folder / "index.json")
    vectors = _read_array(folder / "vectors.npy")
    alive = _read_array(folder / "alive.npy")
    problem = arrays_problem(vectors, alive, len(state["chunk_doc"]))
    if problem is not None:
        name, what = problem
        raise ValueError(f"{folder / (name + '.npy')} {what}")
    # The chunks of removed documents stay, marked dead in alive.npy, as in the live index.
    known = {json.dumps(d[0]) for d in state["documents"]}
    orphans = [d for d, live in zip(state["chunk_doc"], alive) if live and json.dumps(d) not in known]
    if orphans:
        raise ValueError(
            f"{folder / 'index.json'} is damaged: chunks belong to documents it does not hold: {orphans[:10]!r}."
        )
    return state, vectors, alive


def emptied_dead_chunks(index):
    """An index's chunk ids, spans and vectors with nothing left of its removed documents' chunks.

    Nothing of a removed document stays, to be saved or pickled: its chunks keep their places
    (chunk ids do not change), with no id, no span and a zero vector. New lists and a new
    array: a copy of the index shares the old ones.
    """
    alive = index._alive
    chunk_doc = [d if live else None for d, live in zip(index._chunk_doc, alive)]
    chunk_span = [s if live else (0, 0) for s, live in zip(index._chunk_span, alive)]
    return chunk_doc, chunk_span, np.where(alive[:, None], index._vectors, np.float32(0))


def arrays_problem(vectors, alive, n_chunks, width=None):
    """``(array name, what is wrong)`` with an index's ``vectors`` and ``alive`` flags for ``n_chunks`` chunks of
    embeddings ``width`` wide (``None``: any), or None where nothing is."""
    if not (isinstance(vectors, np.ndarray) and vectors.ndim == 2 and vectors.shape[0] == n_chunks) or not (
        np.issubdtype(vectors.dtype, np.floating)
    ):
        kind, shape = getattr(vectors, "dtype", type(vectors).__name__), getattr(vectors, "shape", "?")
        return "vectors", (
            f"holds a {kind} array of shape {shape}; the index lists {n_chunks} chunks, so it must be a float "
            f"array of shape ({n_chunks}, embedding size)."
        )
    if width is not None and vectors.shape[1] != width:
        return "vectors", f"holds vectors of width {vectors.shape[1]}, but the embedder makes vectors of width {width}."
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        return "vectors", (
            f"is damaged: {len(bad)} row(s) hold NaN or infinite values, at rows {bad[:10].tolist()}. "
            f"Save the index again."
        )
    if not isinstance(alive, np.ndarray) or alive.shape != (n_chunks,) or alive.dtype != bool:
        kind, shape = getattr(alive, "dtype", type(alive).__name__), getattr(alive, "shape", "?")
        return "alive", (
            f"holds a {kind} array of shape {shape}; the index lists {n_chunks} chunks, so it must be a bool "
            f"array of shape ({n_chunks},)."
        )
    return None


def check_array_digests(folder, state):
    """Refuse arrays that are not the ones ``index.json`` was saved with (after the clearer checks of their shape)."""
    digests = state.get("arrays", {})  # older saves hold none
    for name in ("vectors.npy", "alive.npy"):
        if name in digests and hashlib.sha256((folder / name).read_bytes()).hexdigest() != digests[name]:
            raise ValueError(
                f"{folder / name} is not the array index.json was saved with (altered, or left from another save "
                f"that did not finish). Save the index again."
            )


def _check_metadata_survives(documents, read_back):
    """Refuse metadata that JSON would change: keys that are not strings, tuples and sets in values."""
    changed = [doc[0] for doc, back in zip(documents, read_back) if not _same(doc[2], back[2])]
    if changed:
        raise ValueError(
            f"The metadata of {len(changed)} document(s) would not load as saved, ids {changed[:10]!r}: JSON keeps "
            f"dicts with string keys, lists, strings, numbers, booleans and None (a key 1 would come back as '1', "
            f"a tuple as a list). Store such metadata in those types, or pickle the index instead."
        )


def _same(value, back):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return (
            isinstance(back, dict)
            and all(isinstance(k, str) for k in value)
            and value.keys() == back.keys()
            and all(_same(value[k], back[k]) for k in value)
        )
    if isinstance(value, list):
        return isinstance(back, list) and len(value) == len(back) and all(map(_same, value, back))
    if isinstance(value, float) and math.isnan(value):
        return isinstance(back, float) and math.isnan(back)
    if isinstance(value, os.PathLike):
        return back == os.fspath(value)
    return type(value) is type(back) and value == back


def _read_state(path):
    """The parsed ``index.json`` at ``path``, or a ``ValueError`` naming the file and what is wrong."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: the folder holds no index written by DocumentIndex.save."
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON (truncated or damaged?): {exc}. Save the index again.") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} holds an index of format {found!r}; expected {_FORMAT}.")
    missing = [key for key in _STATE_KEYS if key not in state]
    if not isinstance(state.get("arrays", {}), dict):
        missing.append("arrays")
    if missing:
        raise ValueError(f"{path} lacks the entries {missing} (truncated or damaged?). Save the index again.")
    documents, chunk_doc, chunk_span = state["documents"], state["chunk_doc"], state["chunk_span"]
    lists = isinstance(documents, list) and isinstance(chunk_doc, list) and isinstance(chunk_span, list)
    if not lists or len(chunk_span) != len(chunk_doc):
        raise ValueError(f"{path} is damaged: chunk_doc and chunk_span must be lists of the same length.")
    if not all(isinstance(d, list) and len(d) == 3 for d in documents):
        raise ValueError(f"{path} is damaged: each of its documents must be [id, text, metadata].")
    saved = state.get("skllm_version")  # None: saved before versions were recorded
    if saved is not None and saved != __version__:
        warnings.warn(
            f"Trying to load the DocumentIndex of {path} from skllm version {saved} when using version "
            f"{__version__}. Its state may not mean the same in this version: check its answers, or index again.",
            InconsistentVersionWarning,
            stacklevel=5,
        )
    return state


def read_saved_index(cls, folder, model_name=None):
    """``(index, embedder, state, vectors, alive)`` from ``folder``: the unfitted index of the saved parameters,
    the unfitted embedder its vectors were made with (its model at ``model_name``, if given), and the files.

    Parameters that this version's classes lack (an index saved by a newer version) are refused by name, and
    a local model folder that is no longer there is named, not looked up on the Hub.
    """
    state, vectors, alive = read_index_files(folder)
    params = dict(state["params"])
    params.setdefault("retrieval", "dense")  # indexes saved before hybrid search ranked by embeddings only
    _refuse_unknown(cls, params, folder, state)
    fitted = saved_embedder(params["embedder"], folder, state)
    old_name = fitted.model_name
    if model_name is not None:
        fitted.set_params(model_name=model_name)
    _check_model_folder(fitted, state.get("model_identity"), folder, None if model_name is None else old_name)
    # Two objects, as after fit: setting the parameter leaves the queries alone (older saves hold one).
    parameter = state.get("embedder_parameter", params["embedder"])
    if isinstance(parameter, dict):
        parameter = saved_embedder(parameter, folder, state)
        if model_name is not None and parameter.model_name == old_name:
            parameter.set_params(model_name=model_name)
    elif model_name is not None and parameter == old_name:
        parameter = model_name
    params["embedder"] = parameter
    return cls(**params), fitted, state, vectors, alive


def _refuse_unknown(cls, params, folder, state):
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        saved = state.get("skllm_version", "an earlier version")
        raise ValueError(
            f"{folder / 'index.json'} sets the {cls.__name__} parameter(s) {unknown}, which skllm {__version__} "
            f"does not have (it was saved by skllm {saved}): load it with the version that saved it."
        )


def _check_model_folder(embedder, identity, folder, saved_name=None):
    """Refuse an embedder whose model was a local folder at save and is no folder now (not looked up on the Hub).

    ``saved_name``: the model name in the saved files, when ``DocumentIndex.load`` was given another one.
    """
    from ._models import MissingFolderError, resolve_model

    if not (isinstance(identity, str) and identity.startswith("files:")):
        return
    try:
        gone = resolve_model(embedder.model_name, embedder.revision, cache_dir=embedder.cache_dir).origin == "hub"
    except MissingFolderError:
        gone = True
    if gone and saved_name is not None:
        raise FileNotFoundError(
            f"DocumentIndex.load was given model_name={embedder.model_name!r}, and there is no such folder "
            f"(working directory {os.getcwd()}). The vectors of {folder} were made with the local model folder "
            f"{saved_name!r}: give the folder that holds its files now."
        )
    if gone:
        raise FileNotFoundError(
            f"The vectors of {folder} were made with the model folder {embedder.model_name!r}, and there is no such "
            f"folder now (working directory {os.getcwd()}). Put it back, run from the folder the name is relative "
            f"to, or give its new place: DocumentIndex.load({str(folder)!r}, model_name=...)."
        )


def _read_array(path):
    """The array in the ``.npy`` file at ``path``, or an error naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: the folder holds no index written by DocumentIndex.save."
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} cannot be read as a NumPy array (truncated or damaged?): {exc}.") from None


def _plain_value(value):
    """NumPy scalars (ids from a DataFrame column, metadata values) as the Python numbers JSON writes.

    Paths (the embedder's ``cache_dir`` or ``model_name`` given as a ``Path``) are written as strings.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_documents(folder, state, alive):
    """``(docs, chunk_doc, chunk_span)`` from ``index.json``'s ``state``: id -> (text, metadata), and each chunk's
    id and span; a ``ValueError`` naming the file where they do not fit together."""
    docs = {_key(d): (text, meta) for d, text, meta in state["documents"]}
    chunk_doc = [_key(d) for d in state["chunk_doc"]]
    chunk_span = [tuple(s) if isinstance(s, list) else s for s in state["chunk_span"]]
    problem = damaged_contents(docs, chunk_doc, chunk_span, alive, state["next_id"], state["documents"])
    if problem:
        raise ValueError(f"{folder / 'index.json'} is damaged: {problem}. Save the index again.")
    return docs, chunk_doc, chunk_span


def _key(value):
    # JSON turns tuples into lists, at any depth; lists are not hashable ids.
    return tuple(_key(v) for v in value) if isinstance(value, list) else value


def damaged_contents(docs, chunk_doc, chunk_span, alive, next_id, saved_documents):
    """What is wrong with the documents (id -> (text, metadata)), chunks and next id read from ``index.json``.

    None where nothing is; ``saved_documents`` are the file's entries, before equal ids merged. Only live
    chunks (``alive``) are checked: a removed document's chunks stay, dead, and its id may be in use again.

    The arrays carry digests; the JSON is checked here, so that an edited or damaged file fails at load,
    naming what is wrong, not with an empty chunk or an error deep inside a later query.
    """
    if len(docs) != len(saved_documents):
        return f"{len(saved_documents)} documents hold {len(docs)} distinct ids"
    for doc_id, (text, meta) in docs.items():
        if not isinstance(text, str) or not isinstance(meta, dict):
            return f"document {doc_id!r} must hold a text and a dict of metadata, got {text!r:.40} and {meta!r:.40}"
    for pos, (doc_id, span) in enumerate(zip(chunk_doc, chunk_span)):
        if not alive[pos]:
            continue
        if doc_id not in docs:
            return f"chunk {pos} belongs to a document {doc_id!r} it does not hold"
        n = len(docs[doc_id][0])
        ints = isinstance(span, tuple) and len(span) == 2
        if not ints or not all(isinstance(v, int) and not isinstance(v, bool) for v in span):
            return f"chunk {pos} spans {span!r}, not two integers [start, end]"
        if not 0 <= span[0] <= span[1] <= n:
            return f"chunk {pos} spans {list(span)!r}, not [start, end] with 0 <= start <= end <= {n} in its document"
    if not isinstance(next_id, int) or isinstance(next_id, bool):
        return f"next_id must be an integer, got {next_id!r}"
    return None


def check_metadata(metadata, n_documents):
    """``metadata`` as a list of ``n_documents`` dicts (``None``: empty ones), or a ``ValueError`` naming why."""
    if metadata is None:
        metadata = [{} for _ in range(n_documents)]
    if hasattr(metadata, "to_dict") and hasattr(metadata, "columns"):  # iterating a DataFrame gives its columns
        raise ValueError(
            f"metadata must be a sequence of dicts, one per document, got a DataFrame of {len(metadata)} rows: "
            f"pass metadata.to_dict('records')."
        )
    if isinstance(metadata, (str, bytes, dict)) or not hasattr(metadata, "__iter__"):
        raise ValueError(f"metadata must be a sequence of dicts, one per document, got {type(metadata).__name__}.")
    metadata = list(metadata)
    if len(metadata) != n_documents:
        raise ValueError(
            f"metadata must be a sequence of dicts, one per document: documents has {n_documents} entries "
            f"but metadata has {len(metadata)}."
        )
    bad = [i for i, m in enumerate(metadata) if not isinstance(m, dict)]
    if bad:
        kinds = ", ".join(f"{type(metadata[i]).__name__} {metadata[i]!r:.40}" for i in bad[:10])
        raise ValueError(
            f"metadata must be a sequence of dicts, one per document; got {len(bad)} that are not dicts, "
            f"at positions {bad[:10]}: {kinds}. Use {{}} for a document without metadata."
        )
    return metadata


def check_ids(ids):
    """``ids`` as a list, or a ``ValueError`` naming the ids that cannot identify a document."""
    ids = check_labels(ids, "ids")
    bad = []
    for position, value in enumerate(ids):
        if is_missing(value):
            bad.append(f"{value!r} at position {position} (a missing id)")
            continue
        try:
            hash(value)
        except TypeError:
            bad.append(f"{type(value).__name__} {value!r:.40} at position {position} (not hashable)")
    if bad:
        raise ValueError(
            f"ids must be hashable values such as str, int or tuples, never None or NaN; got {len(bad)} that "
            f"cannot identify a document: {'; '.join(bad[:10])}."
        )
    return ids


def holds_a_path(doc_id):
    """Whether ``doc_id`` is or holds (in a tuple) a path, which JSON writes as a string: another id once loaded."""
    return isinstance(doc_id, os.PathLike) or (isinstance(doc_id, tuple) and any(map(holds_a_path, doc_id)))


def saved_embedder(settings, folder, state):
    """A ``TransformerEmbedder`` from the parameters ``index.json`` holds; a GPU this machine lacks is replaced."""
    from ._device import device_for_loading
    from ._embed import TransformerEmbedder

    _refuse_unknown(TransformerEmbedder, settings, folder, state)
    settings = dict(settings)
    if settings.get("device") not in (None, "auto"):
        # Saved on a GPU, loaded where there is none (or fewer): where a pickled model would run.
        settings["device"] = str(device_for_loading(settings["device"]))
    return TransformerEmbedder(**settings)
