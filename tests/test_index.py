import itertools
import pickle

import numpy as np
import pytest

from skllm import DocumentIndex, TransformerEmbedder
from skllm._chunking import chunk_spans

DOCS = [
    "great film loved it",
    "awful film hated it",
    " ".join(f"the story {i} was long and boring" for i in range(40)),  # several chunks
    "",
]


@pytest.fixture
def embedder(tiny_bert, cache_dir):
    return TransformerEmbedder(tiny_bert, cache_dir=cache_dir)


@pytest.fixture(params=["numpy", "faiss"])
def backend(request):
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


def test_chunks_hold_whole_words_overlap_and_respect_the_size(embedder):
    tok = embedder.fit().tokenizer_
    text = DOCS[2]
    spans = chunk_spans(text, tok, 20, 5)
    assert len(spans) > 3
    for start, end in spans:
        chunk = text[start:end]
        assert (
            chunk == chunk.strip() and (start == 0 or text[start - 1] == " ") and (end == len(text) or text[end] == " ")
        )
        assert len(tok(chunk, add_special_tokens=False)["input_ids"]) <= 20
    assert all(b[0] < a[1] for a, b in itertools.pairwise(spans))  # consecutive chunks overlap
    assert spans[0][0] == 0 and spans[-1][1] == len(text)  # nothing is lost
    assert chunk_spans("short text", tok, 20, 5) == [(0, 10)]


def test_fit_query_and_hits(embedder, backend):
    index = DocumentIndex(embedder, chunk_size=20, chunk_overlap=4, backend=backend)
    index.fit(DOCS, ids=["a", "b", "c", "d"], metadata=[{"n": i} for i in range(4)])
    assert index.n_documents_ == 4 and index.n_chunks_ > 4
    (hits,) = index.query(["great film loved it"], k=3)
    assert hits[0].doc_id == "a" and hits[0].chunk == DOCS[0] and hits[0].metadata == {"n": 0}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in index.query(["boring story"], k=50)[0]:
        assert DOCS[["a", "b", "c", "d"].index(hit.doc_id)][hit.start : hit.end] == hit.chunk
    assert len(index.query(["x"], k=1000)[0]) == index.n_chunks_  # k beyond the corpus: every chunk


def test_exact_backends_agree(embedder):
    pytest.importorskip("faiss")
    a = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS)
    b = DocumentIndex(embedder, chunk_size=20, backend="faiss").fit(DOCS)
    qa, qb = a.query(["loved the story"], k=5)[0], b.query(["loved the story"], k=5)[0]
    assert [h.chunk_id for h in qa] == [h.chunk_id for h in qb]
    np.testing.assert_allclose([h.score for h in qa], [h.score for h in qb], atol=1e-5)


@pytest.mark.parametrize("search", ["hnsw", "ivf"])
def test_approximate_search_finds_the_exact_neighbours_on_a_small_corpus(embedder, search):
    pytest.importorskip("faiss")
    docs = [f"{w} film {i}" for i in range(60) for w in ("great", "awful")]
    exact = DocumentIndex(embedder, backend="faiss").fit(docs)
    approx = DocumentIndex(embedder, backend="faiss", search=search, n_probe=64).fit(docs)
    q = ["great film 7", "awful film 33"]
    for e, a in zip(exact.query(q, k=5), approx.query(q, k=5)):
        assert len({h.chunk_id for h in e} & {h.chunk_id for h in a}) >= 4


def test_partial_fit_and_remove(embedder, backend):
    index = DocumentIndex(embedder, chunk_size=20, backend=backend).fit(DOCS[:2])
    index.query(["film"])  # builds the search structure, then it must follow the changes
    index.partial_fit(["best movie fun story"], ids=["new"])
    assert index.query(["best movie fun story"], k=1)[0][0].doc_id == "new"
    index.remove([0])
    assert all(h.doc_id != 0 for h in index.query(["great film loved it"], k=10)[0])
    assert index.n_documents_ == 2
    with pytest.raises(KeyError, match="No document with id"):
        index.remove(["missing"])
    with pytest.raises(ValueError, match="unique"):
        index.partial_fit(["again"], ids=["new"])


def test_save_load_and_pickle_hold_no_weights(embedder, backend, tmp_path):
    index = DocumentIndex(embedder, chunk_size=20, backend=backend).fit(DOCS, ids=["a", "b", "c", "d"])
    expected = index.query(["awful film"], k=3)
    folder = index.save(tmp_path / "idx")
    assert sum(f.stat().st_size for f in folder.iterdir()) < 200_000
    for restored in (DocumentIndex.load(folder), pickle.loads(pickle.dumps(index))):
        got = restored.query(["awful film"], k=3)
        assert [h.chunk_id for h in got[0]] == [h.chunk_id for h in expected[0]]
    assert len(pickle.dumps(index)) < 200_000


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda i: i.fit([]), ValueError, "empty documents"),
        (lambda i: i.fit(["a", None]), ValueError, r"positions \[1\]"),
        (lambda i: i.fit(["a", "b"], ids=[1, 1]), ValueError, "unique"),
        (lambda i: i.fit(["a"], ids=[1, 2]), ValueError, "1 entries but ids has 2"),
        (lambda i: i.set_params(chunk_overlap=200).fit(["a"]), ValueError, "chunk_overlap must be"),
        (lambda i: i.set_params(search="lsh").fit(["a"]), ValueError, "search='lsh' is not supported"),
        (lambda i: i.fit(["a"]).query(["q"], k=0), ValueError, "k must be an integer >= 1"),
    ],
)
def test_bad_input(embedder, call, error, message):
    with pytest.raises(error, match=message):
        call(DocumentIndex(embedder))


def test_query_before_fit(embedder):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DocumentIndex(embedder).query(["q"])


@pytest.fixture
def qa(embedder, tiny_llama):
    from skllm import FewShotGenerator, RetrievalQA

    index = DocumentIndex(embedder, backend="numpy").fit(DOCS[:2], ids=["a", "b"])
    return RetrievalQA(index, generator=FewShotGenerator(tiny_llama, max_new_tokens=4), k=1)


def test_retrieval_qa_answers_from_retrieved_chunks_and_predict_writes_nothing(qa):
    qa.fit()
    state = dict(vars(qa))
    answers, sources = qa.predict_with_sources(["great film loved it", "awful film hated it"])
    assert answers.shape == (2,) and all(isinstance(a, str) for a in answers)
    assert [[h.doc_id for h in hits] for hits in sources] == [["a"], ["b"]]
    assert qa.predict(["great film loved it", "awful film hated it"]).tolist() == answers.tolist()
    assert vars(qa).keys() == state.keys()  # no sources_ or other state written by predict


def test_retrieval_qa_clones_share_the_index_and_tune_with_gridsearch(qa):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score

    copy = clone(qa)
    assert copy.index is qa.index and copy.generator is not qa.generator
    assert "index__chunk_size" not in qa.get_params() and "generator__max_new_tokens" in qa.get_params()
    questions = ["great film loved it", "awful film hated it"] * 3
    answers = ["yes", "no"] * 3
    search = GridSearchCV(qa, {"k": [1, 2], "template": [None, "{context}\nQ: {question}\nA:"]}, cv=2)
    search.fit(questions, answers)
    assert len(search.cv_results_["params"]) == 4 and search.best_estimator_.index is qa.index
    scores = cross_val_score(qa, questions, answers, cv=3)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_retrieval_qa_score_is_normalised_exact_match(qa, monkeypatch):
    from skllm._retrieval_qa import normalize_answer

    assert normalize_answer("  The Eiffel   Tower!") == "eiffel tower"
    qa.fit()
    monkeypatch.setattr(type(qa), "predict", lambda self, X: np.array(["In 1889.", "Paris"], dtype=object))
    assert qa.score(["q1", "q2"], ["in 1889", "London"]) == 0.5


@pytest.mark.parametrize(
    "params, message",
    [
        ({"index": None}, "index must be a fitted DocumentIndex"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"template": "{question} only"}, r"missing \['context'\]"),
    ],
)
def test_retrieval_qa_bad_parameters(qa, params, message):
    with pytest.raises(ValueError, match=message):
        qa.set_params(**params).fit()


def test_retrieval_qa_needs_a_fitted_index(embedder):
    from sklearn.exceptions import NotFittedError

    from skllm import RetrievalQA

    with pytest.raises(NotFittedError, match="fit it on your documents"):
        RetrievalQA(DocumentIndex(embedder)).fit()
