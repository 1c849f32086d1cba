"""Nearest-neighbour search over unit-length vectors: FAISS (exact, HNSW, IVF) or NumPy (exact)."""

import numpy as np

BACKENDS = ("auto", "faiss", "numpy")
SEARCHES = ("exact", "hnsw", "ivf")
# faiss wants about this many training points per IVF list.
IVF_POINTS_PER_LIST = 39
# hnsw_m, ef_search, n_lists and n_probe are C ints in FAISS.
FAISS_INT_MAX = 2**31 - 1


class ExactRows:
    """The NumPy backend's structure: the rows, each scored once where several are the same.

    A matrix product gives two equal rows scores that can differ in the last bit, by
    where they fall in its blocks (a copy of a document scored above the original in 2 of
    10 pairs, and which came first changed with the number of queries scored together):
    equal rows are scored as one, so that they tie and come in row order.
    """

    def __init__(self, vectors):
        self.ntotal = len(vectors)
        self.rows, self.inverse = vectors, None
        # Equal rows found by a key of their bits (sorting the rows themselves took seconds and three times
        # their memory at 200,000 rows), then checked whole: a collision of keys leaves every row as it is.
        _, first, inverse = np.unique(_row_keys(vectors), return_index=True, return_inverse=True)
        if len(first) < len(vectors):
            inverse = inverse.ravel()
            blocks = range(0, len(vectors), _BLOCK)
            if all(np.array_equal(vectors[a : a + _BLOCK], vectors[first[inverse[a : a + _BLOCK]]]) for a in blocks):
                self.rows, self.inverse = vectors[first], inverse

    def scores(self, vectors):
        sims = vectors @ self.rows.T
        return sims if self.inverse is None else sims[:, self.inverse]


_BLOCK = 8192  # rows a key or a check is computed for at once (bounds the memory they take)


def _row_keys(vectors):
    """A 64-bit key of each row's bits: equal rows have equal keys (and distinct rows almost never do)."""
    bits = np.ascontiguousarray(vectors).view(np.uint32)
    weights = np.random.default_rng(0).integers(1, 2**63, size=bits.shape[1], dtype=np.uint64) | np.uint64(1)
    keys = np.empty(len(bits), dtype=np.uint64)
    for a in range(0, len(bits), _BLOCK):  # products and sums wrap modulo 2**64
        keys[a : a + _BLOCK] = (bits[a : a + _BLOCK].astype(np.uint64) * weights).sum(axis=1)
    return keys


def build_search_index(vectors, backend, search="exact", hnsw_m=32, ef_search=128, n_lists=None, n_probe=16):
    """The search structure over unit-length float32 ``vectors`` (rows)."""
    if backend == "numpy":
        return ExactRows(vectors)
    faiss = faiss_module()
    dim = vectors.shape[1]
    if search == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    elif search == "ivf":
        n_lists = n_lists or max(1, int(4 * np.sqrt(len(vectors))))
        n_lists = min(n_lists, max(1, len(vectors) // IVF_POINTS_PER_LIST))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, n_lists, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(n_probe, n_lists)
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


def search_index(index, vectors, k):
    """Scores and row numbers of the ``k`` best rows for each query vector, best first.

    Rows of equal score come in row order, on every backend, so the ``k`` best are the
    first ``k`` of any larger ``k`` (FAISS alone would return ties highest row first).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(index, (ExactRows, np.ndarray)):  # an array: a structure built before ExactRows
        sims = index.scores(vectors) if isinstance(index, ExactRows) else vectors @ index.T
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1 : k]
        above, tied = sims > kth, sims == kth
        # Of the rows tied with the k-th score, the lowest take the places the better rows leave.
        tied &= np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)
        top = np.nonzero(above | tied)[1].reshape(len(sims), k)  # k rows a query, ascending
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)
    # One more than k shows whether rows tie with the k-th beyond it; then fetch more until none can.
    fetch = min(k + 1, max(k, index.ntotal))
    while True:
        scores, rows = index.search(vectors, fetch)
        settled = (scores[:, k - 1] > scores[:, -1]) | (rows[:, -1] < 0)  # rows < 0: nothing more was found
        if fetch >= index.ntotal or settled.all():
            break
        fetch = min(2 * fetch, index.ntotal)
    # Missing results (row -1, the lowest score) sort last.
    order = np.lexsort((np.where(rows < 0, index.ntotal, rows), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def faiss_module():
    try:
        import faiss
    except ImportError:
        return None
    return faiss
