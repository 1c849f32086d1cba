"""DocumentIndex: chunk documents, embed them, search them; RetrievalQA: answer from them.

The chunk vectors (float32, unit length) are the source of truth, kept in NumPy; the
search structure (FAISS, or NumPy when faiss is not installed) is derived from them
and rebuilt when documents are removed.
"""

import json
import logging
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ._validation import check_texts

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss", "numpy")
SEARCHES = ("exact", "hnsw", "ivf")
_FORMAT = 1


@dataclass
class Hit:
    """One retrieved chunk."""

    doc_id: object
    chunk: str
    score: float
    start: int  # character span of the chunk in its document
    end: int
    chunk_id: int
    metadata: dict = field(default_factory=dict)


def chunk_spans(text, tokenizer, chunk_size, chunk_overlap):
    """Character spans of the chunks of ``text``.

    A chunk holds whole words (runs of non-space characters) worth at most
    ``chunk_size`` tokens of ``tokenizer`` — unless one word alone is longer — and
    the next chunk starts so that about ``chunk_overlap`` tokens are shared. A text
    of at most ``chunk_size`` tokens is one chunk, kept whole.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if not words:
        return [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    counts = np.zeros(len(words), dtype=np.int64)
    starts = np.array([w[0] for w in words])
    for begin, end in enc["offset_mapping"]:
        if end > begin:
            counts[max(0, np.searchsorted(starts, begin, side="right") - 1)] += 1
    counts = np.maximum(counts, 1)
    if counts.sum() <= chunk_size:
        return [(0, len(text))]
    spans, first = [], 0
    while first < len(words):
        last, total = first, counts[first]
        while last + 1 < len(words) and total + counts[last + 1] <= chunk_size:
            last += 1
            total += counts[last]
        spans.append((words[first][0], words[last][1]))
        if last + 1 >= len(words):
            break
        # Step back over at most chunk_overlap tokens, always moving forward.
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + counts[nxt - 1] <= chunk_overlap:
            nxt -= 1
            shared += counts[nxt]
        first = nxt
    return spans


class DocumentIndex(BaseEstimator):
    """A vector index of document chunks, searchable by text.

    Parameters
    ----------
    embedder : TransformerEmbedder, default=None
        Embeds chunks and queries (its cache applies). ``None`` means
        ``TransformerEmbedder()`` (all-MiniLM-L6-v2, unit-length vectors).
    chunk_size : int, default=128
        Tokens per chunk, counted with the embedder's tokenizer (capped at its
        ``max_length_``). Chunks hold whole words.
    chunk_overlap : int, default=16
        Tokens shared by consecutive chunks; less than ``chunk_size``.
    backend : {"auto", "faiss", "numpy"}, default="auto"
        ``"faiss"`` needs ``faiss-cpu`` (``pip install 'skllm-toolkit[index]'``);
        ``"auto"`` uses it when installed, else an exact NumPy search.
    search : {"exact", "hnsw", "ivf"}, default="exact"
        Exact inner-product search, or FAISS's approximate HNSW graph or
        inverted lists for large corpora.
    hnsw_m : int, default=32
        Neighbours per HNSW node.
    ef_search : int, default=128
        HNSW search breadth (higher: better recall, slower).
    n_lists : int, default=None
        IVF lists; ``None`` is about ``4 * sqrt(n_vectors)``.
    n_probe : int, default=16
        IVF lists visited per query.

    Attributes
    ----------
    embedder_ : TransformerEmbedder
        The fitted embedder.
    n_documents_, n_chunks_ : int
        Documents and chunks held (after removals).
    """

    def __init__(
        self,
        embedder=None,
        *,
        chunk_size=128,
        chunk_overlap=16,
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
        for name in ("chunk_size", "hnsw_m", "ef_search", "n_probe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if not isinstance(self.chunk_overlap, numbers.Integral) or not 0 <= self.chunk_overlap < self.chunk_size:
            raise ValueError(f"chunk_overlap must be an integer in [0, chunk_size), got {self.chunk_overlap!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not supported; use one of {BACKENDS}.")
        if self.search not in SEARCHES:
            raise ValueError(f"search={self.search!r} is not supported; use one of {SEARCHES}.")
        faiss = _faiss()
        if self.backend == "faiss" and faiss is None:
            from .exceptions import MissingDependencyError

            raise MissingDependencyError("faiss-cpu", "backend='faiss'", "pip install 'skllm-toolkit[index]'")
        use_faiss = faiss is not None and self.backend != "numpy"
        if self.search != "exact" and not use_faiss:
            raise ValueError(f"search={self.search!r} needs the faiss backend; the NumPy backend is exact only.")
        return "faiss" if use_faiss else "numpy"

    # -- building -------------------------------------------------------------------------
    def fit(self, documents, ids=None, metadata=None):
        """Index ``documents`` (replacing any earlier content).

        Parameters
        ----------
        documents : sequence of str
        ids : sequence of hashable, default=None
            One id per document, unique; default ``0..n-1``.
        metadata : sequence of dict, default=None
            Returned with each hit of the document.
        """
        self.backend_ = self._validate()
        from ._embed import TransformerEmbedder

        self.embedder_ = (TransformerEmbedder() if self.embedder is None else _clone(self.embedder)).fit()
        self.chunk_size_ = min(self.chunk_size, self.embedder_.max_length_ - 2)
        self._docs = {}
        self._chunk_doc, self._chunk_span = [], []
        self._vectors = np.empty((0, self.embedder_.embedding_dim_), dtype=np.float32)
        self._alive = np.empty(0, dtype=bool)
        self._search_index = None
        return self._add(documents, ids, metadata, start_id=0)

    def partial_fit(self, documents, ids=None, metadata=None):
        """Add ``documents`` to the index (fits first if needed)."""
        if not hasattr(self, "embedder_"):
            return self.fit(documents, ids, metadata)
        return self._add(documents, ids, metadata, start_id=self._next_id)

    def _add(self, documents, ids, metadata, start_id):
        texts = check_texts(documents, name="documents", estimator=self)
        if ids is None:
            ids = list(range(start_id, start_id + len(texts)))
        ids = list(ids)
        if len(ids) != len(texts):
            raise ValueError(f"documents has {len(texts)} entries but ids has {len(ids)}.")
        seen = set()
        duplicated = [i for i in ids if i in self._docs or i in seen or seen.add(i)]
        if duplicated:
            raise ValueError(f"Document ids must be unique; already present or repeated: {duplicated[:10]!r}.")
        if metadata is None:
            metadata = [{} for _ in texts]
        metadata = list(metadata)
        if len(metadata) != len(texts) or not all(isinstance(m, dict) for m in metadata):
            raise ValueError("metadata must be a sequence of dicts, one per document.")
        tokenizer = self.embedder_.tokenizer_
        chunks, owners, spans = [], [], []
        for doc_id, text, meta in zip(ids, texts, metadata):
            self._docs[doc_id] = (text, meta)
            for start, end in chunk_spans(text, tokenizer, self.chunk_size_, self.chunk_overlap):
                chunks.append(text[start:end])
                owners.append(doc_id)
                spans.append((start, end))
        vectors = self.embedder_.transform(chunks) if chunks else np.empty((0, self._vectors.shape[1]), np.float32)
        first = len(self._chunk_doc)
        self._chunk_doc += owners
        self._chunk_span += spans
        self._vectors = np.vstack([self._vectors, vectors.astype(np.float32)])
        self._alive = np.concatenate([self._alive, np.ones(len(chunks), dtype=bool)])
        self._next_id = max([start_id + len(texts)] + [i + 1 for i in ids if isinstance(i, numbers.Integral)])
        if getattr(self, "_search_index", None) is not None and self.backend_ == "faiss" and self.search != "ivf":
            self._search_index.add(vectors)
            self._positions = np.concatenate([self._positions, np.arange(first, first + len(chunks))])
        else:
            self._search_index = None
        self._update_counts()
        return self

    def remove(self, ids):
        """Remove the documents with these ids; unknown ids raise a ``KeyError``."""
        check_is_fitted(self, "embedder_")
        ids = list(ids)
        unknown = [i for i in ids if i not in self._docs]
        if unknown:
            raise KeyError(f"No document with id(s) {unknown[:10]!r} in the index.")
        gone = set(ids)
        for i in ids:
            del self._docs[i]
        self._alive &= np.array([d not in gone for d in self._chunk_doc], dtype=bool)
        self._search_index = None  # rebuilt without them at the next query
        self._update_counts()
        return self

    def _update_counts(self):
        self.n_documents_ = len(self._docs)
        self.n_chunks_ = int(self._alive.sum())

    def _build(self):
        self._positions = np.flatnonzero(self._alive)
        vectors = np.ascontiguousarray(self._vectors[self._positions])
        self._search_index = build_search_index(
            vectors, self.backend_, self.search, self.hnsw_m, self.ef_search, self.n_lists, self.n_probe
        )

    # -- querying ----------------------------------------------------------------------------
    def query(self, texts, k=5):
        """The ``k`` best chunks for each query text, best first.

        Returns a list (one per query) of lists of :class:`Hit`. When the index holds
        fewer than ``k`` chunks, every chunk is returned.
        """
        check_is_fitted(self, "embedder_")
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}.")
        queries = check_texts(texts, name="texts", estimator=self)
        if self.n_chunks_ == 0:
            return [[] for _ in queries]
        scores, positions = self.search_vectors(self.embedder_.transform(queries), k)
        hits = []
        for row_scores, row_positions in zip(scores, positions):
            row = []
            for score, pos in zip(row_scores, row_positions):
                if pos < 0:
                    continue
                doc_id = self._chunk_doc[pos]
                text, meta = self._docs[doc_id]
                start, end = self._chunk_span[pos]
                row.append(Hit(doc_id, text[start:end], float(score), start, end, int(pos), dict(meta)))
            hits.append(row)
        return hits

    def search_vectors(self, vectors, k):
        """Scores and chunk positions of the ``k`` nearest chunks of each vector."""
        if getattr(self, "_search_index", None) is None:
            self._build()
        k = min(k, len(self._positions))
        scores, idx = search_index(self._search_index, vectors, k)
        return scores, np.where(idx >= 0, self._positions[np.maximum(idx, 0)], -1)

    # -- persistence ---------------------------------------------------------------------------
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_search_index", None)  # derived; rebuilt on the first query
        return state

    def save(self, path):
        """Write the index to folder ``path``: JSON for chunks and documents, ``.npy`` vectors.

        Holds no model weights and no pickled code: the embedder is stored by its
        parameters. Document ids and metadata must be JSON-serialisable.
        """
        check_is_fitted(self, "embedder_")
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self._vectors, allow_pickle=False)
        np.save(folder / "alive.npy", self._alive, allow_pickle=False)
        params = self.get_params(deep=False)
        params["embedder"] = self.embedder_.get_params()
        state = {
            "format": _FORMAT,
            "params": params,
            "documents": [[doc_id, text, meta] for doc_id, (text, meta) in self._docs.items()],
            "chunk_doc": self._chunk_doc,
            "chunk_span": self._chunk_span,
            "next_id": self._next_id,
        }
        try:
            (folder / "index.json").write_text(json.dumps(state))
        except TypeError as exc:
            raise ValueError(f"save() needs JSON-serialisable document ids and metadata: {exc}") from exc
        return folder

    @classmethod
    def load(cls, path):
        """Read an index written by :meth:`save`."""
        from ._embed import TransformerEmbedder

        folder = Path(path)
        state = json.loads((folder / "index.json").read_text())
        if state.get("format") != _FORMAT:
            raise ValueError(f"{folder} holds an index of format {state.get('format')!r}; expected {_FORMAT}.")
        params = dict(state["params"])
        params["embedder"] = TransformerEmbedder(**params["embedder"])
        index = cls(**params)
        index.backend_ = index._validate()
        index.embedder_ = params["embedder"].fit()
        index.chunk_size_ = min(index.chunk_size, index.embedder_.max_length_ - 2)
        index._docs = {_key(d): (text, meta) for d, text, meta in state["documents"]}
        index._chunk_doc = [_key(d) for d in state["chunk_doc"]]
        index._chunk_span = [tuple(s) for s in state["chunk_span"]]
        index._next_id = state["next_id"]
        index._vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        index._alive = np.load(folder / "alive.npy", allow_pickle=False)
        index._search_index = None
        index._update_counts()
        return index


def build_search_index(vectors, backend, search="exact", hnsw_m=32, ef_search=128, n_lists=None, n_probe=16):
    """The search structure over unit-length float32 ``vectors`` (rows)."""
    if backend == "numpy":
        return vectors
    faiss = _faiss()
    dim = vectors.shape[1]
    if search == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    elif search == "ivf":
        n_lists = n_lists or max(1, int(4 * np.sqrt(len(vectors))))
        n_lists = min(n_lists, max(1, len(vectors) // 39))  # faiss wants ~39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(n_probe, n_lists)
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def search_index(index, vectors, k):
    """Scores and row numbers of the ``k`` best rows for each query vector, best first."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(index, np.ndarray):
        sims = vectors @ index.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)
    return index.search(vectors, k)


def _key(value):
    # JSON turns tuples into lists; lists are not hashable ids.
    return tuple(value) if isinstance(value, list) else value


def _clone(estimator):
    from sklearn.base import clone

    return clone(estimator)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class RetrievalQA(BaseEstimator):
    """Answer questions from the chunks of a :class:`DocumentIndex` with a local LM.

    For each question, the ``k`` best chunks are retrieved and rendered into the
    prompt as context; the generator answers greedily.

    Parameters
    ----------
    index : DocumentIndex
        A fitted index.
    generator : FewShotGenerator, default=None
        The LM; ``None`` means ``FewShotGenerator(n_examples=0, max_new_tokens=64)``
        on the default causal LM.
    k : int, default=4
        Chunks per question.
    template : str, default=None
        Format string with ``{context}`` and ``{question}``.

    Attributes
    ----------
    generator_ : FewShotGenerator
        The fitted generator.
    sources_ : list of list of Hit
        The chunks used for each question of the last ``predict`` call.
    """

    DEFAULT_TEMPLATE = (
        "Answer the question using only the context.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
    )

    def __init__(self, index, *, generator=None, k=4, template=None):
        self.index = index
        self.generator = generator
        self.k = k
        self.template = template

    def fit(self, X=None, y=None):
        """Check the index and load the generator."""
        from ._icl import FewShotGenerator

        check_is_fitted(self.index, "embedder_")
        template = self.template or self.DEFAULT_TEMPLATE
        if "{context}" not in template or "{question}" not in template:
            raise ValueError(f"template must contain {{context}} and {{question}}, got {template!r}.")
        generator = self.generator or FewShotGenerator(n_examples=0, max_new_tokens=64)
        # The generator sees the whole prompt as its {text}; it needs no demonstrations.
        self.generator_ = _clone(generator).set_params(template="{examples}{text}", n_examples=0)
        self.generator_.fit(["-"], ["-"])
        return self

    def predict(self, questions):
        """The answer to each question (array of str); ``sources_`` tells which chunks were used."""
        check_is_fitted(self, "generator_")
        questions = check_texts(questions, name="questions", estimator=self)
        template = self.template or self.DEFAULT_TEMPLATE
        self.sources_ = self.index.query(questions, k=self.k)
        prompts = [
            template.format(context="\n\n".join(h.chunk for h in hits), question=q)
            for q, hits in zip(questions, self.sources_)
        ]
        return self.generator_.predict(prompts)
