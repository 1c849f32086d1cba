"""Nearest-neighbour search over unit-length vectors: FAISS (exact, HNSW, IVF) or NumPy (exact)."""

import numpy as np

BACKENDS = ("auto", "faiss", "numpy")
SEARCHES = ("exact", "hnsw", "ivf")
# faiss wants about this many training points per IVF list.
IVF_POINTS_PER_LIST = 39
# hnsw_m, ef_search, n_lists and n_probe are C ints in FAISS.
FAISS_INT_MAX = 2**31 - 1


def build_search_index(vectors, backend, search="exact", hnsw_m=32, ef_search=128, n_lists=None, n_probe=16):
    """The search structure over unit-length float32 ``vectors`` (rows)."""
    if backend == "numpy":
        return vectors
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
    """Scores and row numbers of the ``k`` best rows for each query vector, best first."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if isinstance(index, np.ndarray):
        sims = vectors @ index.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)
    return index.search(vectors, k)


def faiss_module():
    try:
        import faiss
    except ImportError:
        return None
    return faiss
