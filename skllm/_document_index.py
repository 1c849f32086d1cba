"""DocumentIndex: chunk documents, embed them, search them (dense, lexical or both).

The chunk vectors (float32, unit length) and the chunk spans are the source of truth,
kept in NumPy and lists; the vector search structure (FAISS, or NumPy when faiss is not
installed) and the lexical BM25 index are derived from them, built at the first query
and rebuilt after changes that they cannot follow in place.
"""

import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ._chunking import chunk_spans
from ._embed import check_stored_vectors
from ._index_files import (
    arrays_problem,
    check_array_digests,
    check_ids,
    check_metadata,
    emptied_dead_chunks,
    holds_a_path,
    read_documents,
    read_saved_index,
    write_index_files,
)
from ._lexical import BM25, RRF_K, reciprocal_rank_fusion
from ._search import BACKENDS, FAISS_INT_MAX, SEARCHES, build_search_index, faiss_module, search_index
from ._selection import resolve_embedder
from ._training import keep_state_on_error
from ._validation import check_choice, check_int, check_texts

RETRIEVALS = ("hybrid", "dense", "lexical")
_REMEDY = "Build the index again (fit), or restore the model files it was saved with."
# Each ranking fused by ``retrieval="hybrid"`` contributes its best max(k, FUSION_DEPTH) chunks.
FUSION_DEPTH = 100


@dataclass
class Hit:
    """One retrieved chunk, as returned by :meth:`DocumentIndex.query`.

    Attributes
    ----------
    doc_id : hashable
        Id of the document the chunk comes from.
    chunk : str
        The chunk's text: ``document[start:end]``.
    score : float
        Higher is better. With ``retrieval="dense"``, the cosine similarity to the
        query; ``"lexical"``, the BM25 score; ``"hybrid"``, the reciprocal-rank
        fusion score ``sum 1 / (60 + rank)`` over the two rankings.
    start, end : int
        Character span of the chunk in its document.
    chunk_id : int
        Position of the chunk in the index.
    metadata : dict
        The document's metadata.

    Examples
    --------
    >>> from skllm import Hit
    >>> document = "The Eiffel Tower is in Paris. It was finished in 1889."
    >>> hit = Hit(doc_id="paris", chunk=document[30:], score=0.71, start=30, end=54, chunk_id=1)
    >>> document[hit.start : hit.end] == hit.chunk
    True
    """

    doc_id: object
    chunk: str
    score: float
    start: int  # character span of the chunk in its document
    end: int
    chunk_id: int
    metadata: dict = field(default_factory=dict)


class DocumentIndex(BaseEstimator):
    """An index of document chunks, searchable by text: by meaning, by words, or both.

    Chunks are embedded (dense vectors) and indexed by their words (BM25);
    ``retrieval`` chooses which ranking answers a query. ``"hybrid"`` fuses the two
    with reciprocal-rank fusion, so that a passage sharing rare exact words with
    the query (names, numbers, codes) is found even when its embedding is not
    the nearest.

    Parameters
    ----------
    embedder : str, TransformerEmbedder or None, default=None
        Embeds chunks and queries (its cache applies). ``None`` means
        ``TransformerEmbedder()`` (all-MiniLM-L6-v2, unit-length vectors); a
        model name or folder, ``TransformerEmbedder(name)``.
    chunk_size : int, default=64
        Tokens per chunk, counted with the embedder's tokenizer (capped at its
        ``max_length_``). Chunks hold whole words. Smaller chunks ranked better
        and built faster than 128 or 254 in ``benchmarks/bench_retrieval.py``.
    chunk_overlap : int, default=8
        Tokens shared by consecutive chunks; less than ``chunk_size``, and
        than the size in use where the embedder's length caps it.
    retrieval : {"hybrid", "dense", "lexical"}, default="hybrid"
        How chunks are ranked: ``"dense"``, by cosine similarity of embeddings;
        ``"lexical"``, by BM25 over words (no query embedding);
        ``"hybrid"``, by reciprocal-rank fusion of the two (each contributes its
        best ``max(k, 100)`` chunks; ``score = sum 1 / (60 + rank)``). Read at
        query time: ``set_params(retrieval=...)`` switches a fitted index.
    backend : {"auto", "faiss", "numpy"}, default="auto"
        ``"faiss"`` needs ``faiss-cpu`` (``pip install faiss-cpu``);
        ``"auto"`` uses it when installed, else an exact NumPy search.
    search : {"exact", "hnsw", "ivf"}, default="exact"
        The structure of the dense search: exact inner-product search, or
        FAISS's approximate HNSW graph or inverted lists for large corpora.
    hnsw_m : int, default=32
        Neighbours per HNSW node.
    ef_search : int, default=128
        HNSW search breadth (higher: better recall, slower).
    n_lists : int, default=None
        IVF lists; ``None`` is about ``4 * sqrt(n_vectors)``. Either way at
        most ``n_vectors // 39`` (FAISS wants about 39 training points per list).
    n_probe : int, default=16
        IVF lists visited per query.

    Attributes
    ----------
    embedder_ : TransformerEmbedder
        The fitted embedder.
    model_identity_ : str
        The model files the stored vectors were made with (the embedder's
        ``model_identity_`` at fit), kept through saves: a loaded copy warns
        at its first embedding if the files have changed since.
    n_documents_, n_chunks_ : int
        Documents and chunks held (after removals).
    backend_ : str
        ``"faiss"`` or ``"numpy"``.
    chunk_size_ : int
        The chunk size really used.

    Examples
    --------
    >>> from skllm import DocumentIndex
    >>> docs = ["The Eiffel Tower is in Paris.", "Mount Everest is the highest mountain on Earth."]
    >>> index = DocumentIndex().fit(docs, ids=["paris", "everest"])
    >>> [hit.doc_id for hit in index.query(["Which mountain is the tallest?"], k=1)[0]]
    ['everest']
    """

    def __init__(
        self,
        embedder=None,
        *,
        chunk_size=64,
        chunk_overlap=8,
        retrieval="hybrid",
        backend="auto",
        search="exact",
        hnsw_m=32,
        ef_search=128,
        n_lists=None,
        n_probe=16,
    ):
        self.embedder = embedder
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.retrieval = retrieval
        self.backend = backend
        self.search = search
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.n_lists = n_lists
        self.n_probe = n_probe

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # -- validation ---------------------------------------------------------------------
    def _validate(self):
        check_int(self.chunk_size, "chunk_size")
        check_int(self.chunk_overlap, "chunk_overlap", 0)
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap must be an integer in [0, chunk_size), got {self.chunk_overlap!r}.")
        check_choice(self.retrieval, "retrieval", RETRIEVALS)
        check_choice(self.backend, "backend", BACKENDS)
        self._check_search_params()
        faiss = faiss_module()
        if self.backend == "faiss" and faiss is None:
            from .exceptions import MissingDependencyError

            raise MissingDependencyError("faiss-cpu", "backend='faiss'", "pip install faiss-cpu")
        use_faiss = faiss is not None and self.backend != "numpy"
        if self.search != "exact" and not use_faiss:
            raise ValueError(f"search={self.search!r} needs the faiss backend; the NumPy backend is exact only.")
        return "faiss" if use_faiss else "numpy"

    def _check_search_params(self):
        """The search structure's parameters: read at fit and again whenever the structure is built."""
        check_choice(self.search, "search", SEARCHES)
        # C ints in FAISS; HNSW needs 2 links a node (1 crashes FAISS) and allocates 2 * hnsw_m.
        check_int(self.hnsw_m, "hnsw_m", 2, high=FAISS_INT_MAX // 2)
        for name in ("ef_search", "n_probe"):
            check_int(getattr(self, name), name, high=FAISS_INT_MAX)
        check_int(self.n_lists, "n_lists", high=FAISS_INT_MAX, allow_none=True)

    def _search_params(self):
        return (self.search, self.hnsw_m, self.ef_search, self.n_lists, self.n_probe)

    # -- building -------------------------------------------------------------------------
    def fit(self, documents, ids=None, metadata=None):
        """Index ``documents`` (replacing any earlier content).

        Parameters
        ----------
        documents : sequence of str
        ids : sequence of hashable, default=None
            One id per document, unique, never ``None`` or NaN; default ``0..n-1``.
        metadata : sequence of dict, default=None
            Returned with each hit of the document.
        """
        with keep_state_on_error(self):  # a refused fit leaves the index as it was
            self.backend_ = self._validate()
            self.embedder_ = resolve_embedder(self.embedder).fit()
            self.model_identity_ = self.embedder_.model_identity_
            if not self.embedder_.normalize:
                raise ValueError(
                    "The index ranks chunks by cosine similarity, the inner product of unit vectors; an embedder with "
                    "normalize=False would rank longer vectors first. Use TransformerEmbedder(normalize=True)."
                )
            self._set_chunk_size()
            self._docs = {}
            self._chunk_doc, self._chunk_span = [], []
            self._vectors = np.empty((0, self.embedder_.embedding_dim_), dtype=np.float32)
            self._alive = np.empty(0, dtype=bool)
            self._search_index = self._lexical = None
            self._next_id = 0
            return self._add(documents, ids, metadata)

    def partial_fit(self, documents, ids=None, metadata=None):
        """Add ``documents`` to the index (fits first if needed).

        The documents are cut into chunks as at :meth:`fit`: ``chunk_size`` and
        ``chunk_overlap`` set since take effect at the next ``fit``, and are
        refused here until then.
        """
        if not hasattr(self, "embedder_"):
            return self.fit(documents, ids, metadata)
        fitted = getattr(self, "_chunking", None)  # None: pickled before this was recorded
        if fitted is not None and fitted != (self.chunk_size, self.chunk_overlap):
            raise ValueError(
                f"This DocumentIndex was fitted with chunk_size={fitted[0]}, chunk_overlap={fitted[1]}, set to "
                f"chunk_size={self.chunk_size!r}, chunk_overlap={self.chunk_overlap!r} since. Every chunk of an index "
                f"is cut alike: call fit to cut all documents anew, or set them back."
            )
        return self._add(documents, ids, metadata)

    def _add(self, documents, ids, metadata):
        """Chunk, embed and add ``documents``; nothing changes unless all of them are added."""
        texts = check_texts(documents, name="documents", estimator=self)
        start_id = self._next_id
        if ids is None:
            ids = list(range(start_id, start_id + len(texts)))
        ids = check_ids(ids)
        if len(ids) != len(texts):
            raise ValueError(f"documents has {len(texts)} entries but ids has {len(ids)}.")
        seen = set()
        duplicated = [i for i in ids if i in self._docs or i in seen or seen.add(i)]
        if duplicated:
            raise ValueError(f"Document ids must be unique; already present or repeated: {duplicated[:10]!r}.")
        metadata = check_metadata(metadata, len(texts))
        self.embedder_._ensure_live()  # its tokenizer is not pickled
        check_stored_vectors(self, "index", _REMEDY)
        tokenizer = self.embedder_.tokenizer_
        chunks, owners, spans = [], [], []
        for doc_id, text in zip(ids, texts):
            for start, end in chunk_spans(text, tokenizer, self.chunk_size_, self.chunk_overlap):
                chunks.append(text[start:end])
                owners.append(doc_id)
                spans.append((start, end))
        vectors = self.embedder_.transform(chunks) if chunks else np.empty((0, self._vectors.shape[1]), np.float32)
        # Embedded: from here on nothing can fail halfway.
        # copies, as hits return: a caller changing its dicts after fit must not change the index's
        self._docs.update(zip(ids, zip(texts, map(_copied, metadata))))
        first = len(self._chunk_doc)
        self._chunk_doc += owners
        self._chunk_span += spans
        self._vectors = np.vstack([self._vectors, vectors.astype(np.float32)])
        self._alive = np.concatenate([self._alive, np.ones(len(chunks), dtype=bool)])
        # Default ids continue after the largest whole-number id (3.0 is the id 3, True the id 1: equal keys).
        whole = [int(i) + 1 for i in ids if isinstance(i, (numbers.Real, np.bool_)) and _whole(i)]
        self._next_id = max([start_id + len(texts), *whole])
        self._lexical = None  # word statistics (idf, mean length) change: rebuilt at the next lexical query
        if (
            getattr(self, "_search_index", None) is not None
            and self.backend_ == "faiss"
            and self.search != "ivf"
            and getattr(self, "_built_with", None) == self._search_params()
        ):
            self._search_index.add(vectors)
            self._positions = np.concatenate([self._positions, np.arange(first, first + len(chunks))])
        else:
            self._search_index = None
        self._update_counts()
        return self

    def remove(self, ids):
        """Remove the documents with these ids; unknown ids raise a ``KeyError``, repeated ids a ``ValueError``."""
        check_is_fitted(self, "embedder_")
        ids = check_ids(ids)
        seen = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]
        if repeated:
            raise ValueError(f"ids to remove must be unique; repeated: {repeated[:10]!r}.")
        unknown = [i for i in ids if i not in self._docs]
        if unknown:
            raise KeyError(f"No document with id(s) {unknown[:10]!r} in the index.")
        gone = set(ids)
        for i in ids:
            del self._docs[i]
        self._alive &= np.array([d not in gone for d in self._chunk_doc], dtype=bool)
        self._chunk_doc, self._chunk_span, self._vectors = emptied_dead_chunks(self)
        self._search_index = self._lexical = None  # rebuilt without them at the next query
        self._update_counts()
        return self

    def _set_chunk_size(self):
        """``chunk_size_``: ``chunk_size`` capped at the embedder's length; the overlap must stay below it."""
        self._chunking = (self.chunk_size, self.chunk_overlap)
        self.chunk_size_ = min(self.chunk_size, self.embedder_.max_length_ - 2)
        if self.chunk_overlap >= self.chunk_size_:  # every chunk would advance by one word
            raise ValueError(
                f"chunk_overlap={self.chunk_overlap} must be less than the chunk size in use, {self.chunk_size_} "
                f"(chunk_size={self.chunk_size} capped at the embedder's max_length_ - 2); lower chunk_overlap."
            )

    def _update_counts(self):
        self.n_documents_ = len(self._docs)
        self.n_chunks_ = int(self._alive.sum())

    def _build(self):
        # Parameters set after fit are read here (the structure is built at the first query and after a
        # removal): a bad value must not reach FAISS, whose checks abort the process.
        self._check_search_params()
        if self.search != "exact" and self.backend_ == "numpy":
            raise ValueError(
                f"search={self.search!r} needs the faiss backend; this index was fitted with the NumPy backend, which "
                f"is exact only. Set search='exact', or fit again with backend='faiss'."
            )
        self._positions = np.flatnonzero(self._alive)
        vectors = np.ascontiguousarray(self._vectors[self._positions])
        self._search_index = build_search_index(vectors, self.backend_, *self._search_params())
        self._built_with = self._search_params()

    # -- querying ----------------------------------------------------------------------------
    def query(self, texts, k=5):
        """The ``k`` best chunks for each query text, best first, ranked as ``retrieval`` says.

        Returns a list (one per query) of lists of :class:`Hit`. When the index holds
        fewer than ``k`` chunks, every chunk is returned.
        """
        check_is_fitted(self, "embedder_")
        check_int(k, "k")
        check_choice(self.retrieval, "retrieval", RETRIEVALS)
        queries = check_texts(texts, name="texts", estimator=self)
        if self.n_chunks_ == 0:
            return [[] for _ in queries]
        if self.retrieval != "lexical":
            vectors = self.embedder_.transform(queries)
            check_stored_vectors(self, "index", _REMEDY)
        if self.retrieval == "dense":
            ranked = zip(*self.search_vectors(vectors, k))
        elif self.retrieval == "lexical":
            ranked = zip(*self.search_words(queries, k))
        else:
            depth = max(k, FUSION_DEPTH)
            _, dense = self.search_vectors(vectors, depth)
            words, lexical = self.search_words(queries, depth)
            lexical = np.where(words > 0, lexical, -1)  # a chunk sharing no word is not in that ranking
            fused = reciprocal_rank_fusion(list(zip(dense, lexical)), k, RRF_K)
            ranked = ((scores, positions) for positions, scores in fused)
        hits = []
        for row_scores, row_positions in ranked:
            row = []
            for score, pos in zip(row_scores, row_positions):
                if pos < 0:
                    continue
                doc_id = self._chunk_doc[pos]
                text, meta = self._docs[doc_id]
                start, end = self._chunk_span[pos]
                # a copy: a caller changing a hit's metadata must not change the index's
                row.append(Hit(doc_id, text[start:end], float(score), start, end, int(pos), _copied(meta)))
            hits.append(row)
        return hits

    def search_vectors(self, vectors, k):
        """Scores and chunk positions of the ``k`` nearest chunks of each vector, best first.

        ``vectors`` is an array of shape ``(n_queries, embedding_dim_)`` of finite
        numbers, ``k`` an integer >= 1 (as for :meth:`query`).
        """
        check_is_fitted(self, "embedder_")
        check_int(k, "k")
        vectors = self._check_query_vectors(vectors)
        if not self._alive.any():  # no live chunk: nothing to build (an IVF structure cannot train on none)
            return np.empty((len(vectors), 0), np.float32), np.empty((len(vectors), 0), np.int64)
        # Search parameters set since the structure was built take effect now.
        if getattr(self, "_search_index", None) is None or getattr(self, "_built_with", None) != self._search_params():
            self._build()
        k = min(k, len(self._positions))
        if k == 0:
            return np.empty((len(vectors), 0), np.float32), np.empty((len(vectors), 0), np.int64)
        scores, idx = search_index(self._search_index, vectors, k)
        return scores, np.where(idx >= 0, self._positions[np.maximum(idx, 0)], -1)

    def _check_query_vectors(self, vectors):
        dim = self._vectors.shape[1]
        try:
            array = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"vectors must be an array of numbers of shape (n_queries, {dim}): {exc}") from None
        if array.ndim != 2 or array.shape[1] != dim:
            hint = " (one query: vectors.reshape(1, -1))" if array.ndim == 1 and array.shape[0] == dim else ""
            raise ValueError(
                f"vectors must have shape (n_queries, {dim}), the embedder's width; got shape {array.shape}{hint}."
            )
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if len(bad):
            raise ValueError(
                f"vectors has {len(bad)} row(s) with NaN or infinite values, at rows {bad[:10].tolist()}; "
                f"every query vector must be finite."
            )
        return array

    def search_words(self, texts, k):
        """BM25 scores and chunk positions of the ``k`` best chunks of each text, best first.

        Chunks sharing no word with a text score 0 and come last, in index order.
        ``k`` is an integer >= 1 (as for :meth:`query`).
        """
        check_is_fitted(self, "embedder_")
        check_int(k, "k")
        texts = check_texts(texts, name="texts", estimator=self)
        if getattr(self, "_lexical", None) is None:
            positions = np.flatnonzero(self._alive)
            chunks = [self._chunk_text(p) for p in positions]
            self._lexical = (BM25(chunks), positions)
        bm25, positions = self._lexical
        scores, idx = bm25.top(texts, k)
        return scores, positions[idx]

    def _chunk_text(self, pos):
        start, end = self._chunk_span[pos]
        return self._docs[self._chunk_doc[pos]][0][start:end]

    # -- persistence ---------------------------------------------------------------------------
    def __copy__(self):
        # partial_fit and remove change these in place: a copy changes its own, not the original's.
        own = ("_docs", "_chunk_doc", "_chunk_span", "_alive")
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update({name: v.copy() if name in own else v for name, v in vars(self).items()})
        if getattr(self, "_search_index", None) is not None and self.backend_ == "faiss":
            new._search_index = faiss_module().clone_index(self._search_index)  # partial_fit adds to it
        return new

    def __getstate__(self):
        # A copy: BaseEstimator.__getstate__ may return the instance's own __dict__, and
        # pickling must not drop the live index's search structures.
        state = dict(super().__getstate__())
        state.pop("_search_index", None)  # derived; rebuilt on the first query
        state.pop("_lexical", None)
        state.pop("_vectors_checked", None)  # each loaded copy checks its model files again
        if "_docs" in state:  # (id, (text, metadata)) pairs: skops writes a dict's keys as JSON, tuple ids fail
            state["_docs"] = list(state["_docs"].items())
        return state

    def __setstate__(self, state):
        # Indexes pickled before hybrid search ranked by embeddings only: keep that.
        state.setdefault("retrieval", "dense")
        if isinstance(state.get("_docs"), list):
            state["_docs"] = dict(state["_docs"])
        if "embedder_" in state:  # pickled before the index kept its own record: the embedder's, as pickled
            state.setdefault("model_identity_", state["embedder_"].model_identity_)
        if "_vectors" in state:  # an altered file: NaN rows were never found, other shapes failed deep in a query
            n_chunks, width = len(state.get("_chunk_doc", ())), getattr(state.get("embedder_"), "embedding_dim_", None)
            problem = arrays_problem(state["_vectors"], state.get("_alive"), n_chunks, width)
            if problem is not None:
                raise ValueError(f"This pickled DocumentIndex was altered or damaged: its {' '.join(problem)}")
        super().__setstate__(state)

    def save(self, path):
        """Write the index to folder ``path``: JSON for chunks and documents, ``.npy`` vectors.

        Holds no model weights and no pickled code: the embedder is stored by its
        parameters. Document ids and metadata must be JSON-serialisable (NumPy
        numbers are written as Python ones; tuple ids come back as tuples).
        A save that is refused writes nothing. Each file is written whole, the
        arrays first and ``index.json`` last; ``index.json`` records a digest of
        each array, so files left from two different saves are refused by
        :meth:`load` instead of pairing one save's texts with another's vectors.
        """
        check_is_fitted(self, "embedder_")
        # parameters set since fit that load() would refuse: refused now (the chunking written is the fitted one)
        chunking = getattr(self, "_chunking", (self.chunk_size, self.chunk_overlap))
        clone(self).set_params(chunk_size=chunking[0], chunk_overlap=chunking[1])._validate()
        paths = [i for i in self._docs if holds_a_path(i)]
        if paths:
            raise ValueError(
                f"save() writes document ids as JSON, where a path such as {paths[0]!r} comes back as a string, "
                f"another id ({len(paths)} such ids). Use str(path) as the id, or pickle the index instead."
            )
        params = self.get_params(deep=False)
        params["chunk_size"], params["chunk_overlap"] = chunking  # the chunks' own, not any set since
        params["embedder"] = self.embedder_.get_params()  # the settings the vectors were made with
        given = self.embedder  # the parameter as set (a model name stays a name), given back apart by load()
        state = {
            "params": params,
            "embedder_parameter": given.get_params() if isinstance(given, BaseEstimator) else given,
            "documents": [[doc_id, text, meta] for doc_id, (text, meta) in self._docs.items()],
            "chunk_doc": self._chunk_doc,
            "chunk_span": self._chunk_span,
            "next_id": self._next_id,
            # The model files the vectors were made with: load() warns if the model has changed since.
            "model_identity": self.model_identity_,
        }
        return write_index_files(Path(path), state, {"vectors.npy": self._vectors, "alive.npy": self._alive})

    @classmethod
    def load(cls, path, model_name=None):
        """Read an index written by :meth:`save`.

        A missing, truncated or inconsistent file raises an error naming it. ``model_name``: where
        the embedder's model folder is now, if it moved (the same files, as for ``set_params``).
        """
        folder = Path(path)
        index, fitted, state, vectors, alive = read_saved_index(cls, folder, model_name)
        index.backend_ = index._validate()
        index.embedder_ = fitted.fit()
        if vectors.shape[1] != index.embedder_.embedding_dim_:
            made_by = "the embedder of index.json" if model_name is None else "the model_name given to load"
            raise ValueError(
                f"{folder / 'vectors.npy'} holds vectors of width {vectors.shape[1]}, but {made_by} "
                f"({index.embedder_.model_name!r}) makes vectors of width {index.embedder_.embedding_dim_}."
            )
        check_array_digests(folder, state)
        index.model_identity_ = state.get("model_identity", index.embedder_.model_identity_)  # older saves: none
        check_stored_vectors(index, "index", _REMEDY)
        index._set_chunk_size()
        index._docs, index._chunk_doc, index._chunk_span = read_documents(folder, state, alive)
        index._next_id = state["next_id"]
        index._vectors = vectors.astype(np.float32, copy=False)
        index._alive = alive
        index._search_index = index._lexical = None  # derived from vectors and chunk texts
        index._update_counts()
        return index


def _copied(value):
    """``value`` with its containers copied: dicts, lists, sets and NumPy arrays, nested too.

    Other objects (a lock, a model) are handed out as they are: they may not be copyable.
    """
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return type(value)(_copied(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _whole(number):
    try:
        return float(number).is_integer()
    except (OverflowError, ValueError):
        return False
