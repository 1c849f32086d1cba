"""Compatibility module: the names of skllm 0.1's ``skllm._index``.

Models pickled by skllm 0.1 refer to ``skllm._index.<Class>``. The index now
lives one component per file: ``_document_index.py`` (DocumentIndex, Hit),
``_retrieval_qa.py``, ``_chunking.py`` and ``_search.py``.
"""

from ._chunking import chunk_spans
from ._document_index import DocumentIndex, Hit
from ._retrieval_qa import RetrievalQA
from ._search import BACKENDS, SEARCHES, build_search_index, search_index

__all__ = [
    "BACKENDS",
    "SEARCHES",
    "DocumentIndex",
    "Hit",
    "RetrievalQA",
    "build_search_index",
    "chunk_spans",
    "search_index",
]
