import copy
import itertools
import json
import pickle
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import skllm
from skllm import DocumentIndex, TransformerEmbedder
from skllm._chunking import chunk_spans
from skllm.exceptions import UnknownTokensWarning

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


def test_a_chunk_counted_again_alone_stays_within_the_size(embedder, tiny_llama, cache_dir):
    # Counted in its place in the document, a chunk took fewer tokens than alone, as the embedder reads it (a
    # byte-level BPE's first word loses its leading-space form): chunks came out a token too long.
    import random

    random.seed(0)
    words = "great film loved it awful story hated fun plot sad end thanks free text me".split()
    prose = " ".join(random.choice(words) + random.choice(["", "s", "ing", "ed"]) for _ in range(800))
    bpe = TransformerEmbedder(tiny_llama, pooling="last", cache_dir=cache_dir)
    index = DocumentIndex(bpe, chunk_size=16, chunk_overlap=2, retrieval="dense").fit([prose])  # as a user does
    tok = index.embedder_.tokenizer_
    alone = [len(tok(prose[a:b], add_special_tokens=False)["input_ids"]) for a, b in index._chunk_span]
    assert index.n_chunks_ > 10 and max(alone) <= 16
    assert all(not prose[a[1] : b[0]].strip() for a, b in itertools.pairwise(index._chunk_span))
    tok = embedder.fit().tokenizer_
    text = "see https://example.com/" + "abcdefghij/" * 60 + "?q=1 for details"
    for size in (10, 16, 60):
        spans = chunk_spans(text, tok, size, 2)
        assert max(len(tok(text[a:b], add_special_tokens=False)["input_ids"]) for a, b in spans) <= size
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(not text[a[1] : b[0]].strip() for a, b in itertools.pairwise(spans))  # nothing between is lost


def test_a_tokenizer_without_offsets_is_refused_by_name():
    # A Python ("slow") tokenizer gives no character offsets: DocumentIndex.fit failed with KeyError('offset_mapping').
    from transformers import CanineTokenizer

    with pytest.raises(ValueError, match=r"only a fast \(Rust\) tokenizer gives; the embedder's tokenizer is Canine"):
        chunk_spans("short text", CanineTokenizer(), 20, 5)


def test_text_without_spaces_is_cut_between_tokens(embedder):
    tok = embedder.fit().tokenizer_
    text = "这是一个很长的中文文档没有空格" * 5 + " and then some words"
    spans = chunk_spans(text, tok, 20, 5)
    assert len(spans) >= 4 and spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (after, _) in itertools.pairwise(spans):
        assert after < end  # consecutive chunks share chunk_overlap tokens here too: nothing is lost
    assert all(b >= a for (_, a), (b, _) in itertools.pairwise(chunk_spans(text, tok, 20, 0)))  # no overlap
    for start, end in spans:
        assert 0 < len(tok(text[start:end], add_special_tokens=False)["input_ids"]) <= 20
    # As a user reaches it: the index holds every part of the document, none past what the embedder reads.
    index = DocumentIndex(embedder, chunk_size=20, chunk_overlap=5, retrieval="lexical").fit([text])
    assert index.n_chunks_ == len(spans)
    (hits,) = index.query(["words"], k=1)
    assert hits[0].chunk.endswith("and then some words")


def test_whitespace_tokens_of_a_byte_level_bpe_cut_no_word(tiny_llama):
    # GPT-2-style tokenizers give runs of spaces and line breaks tokens of their own, and a word's token
    # begins at the space before it: neither is a part of the word before.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    text = " \n" * 30 + "call me at storytime" + "  " * 40 + "thanks" + " \n" * 30 + "see you later ok"
    spans = chunk_spans(text, tok, 12, 2)  # "call me at storytime" is 9 tokens
    assert [text[a:b] for a, b in spans] == ["call me at storytime", "thanks", "see you later ok"]
    # Whitespace after the last word (a file's final line break) is in no chunk: it changes none.
    for size in (4, 5, 12):
        plain = "good film great bad"
        kept_whole = [(0, len(plain) + 3)]
        assert chunk_spans(plain + "\n\n\n", tok, size, 1) in (chunk_spans(plain, tok, size, 1), kept_whole)
    # A long word after a chunk: the next chunk steps back no further than leaves room for it, so that
    # it never lies within the chunk before.
    text = "see you later ok " + "qz" * 8
    spans = chunk_spans(text, tok, 10, 4)
    assert all(b > a for (_, a), (_, b) in itertools.pairwise(spans))
    assert spans[-1][1] == len(text) and spans[0][0] == 0


def test_an_index_finds_whole_words_after_blank_lines_and_words_with_marks(tiny_llama, tiny_bert, cache_dir):
    # As a user reaches both: a DocumentIndex searched by its words.
    # A byte-level BPE embedder and blank lines: no word cut into pieces.
    embedder = TransformerEmbedder(tiny_llama, cache_dir=cache_dir, max_length=14)
    index = DocumentIndex(embedder, retrieval="lexical").fit(["call me at storytime" + " \n" * 40 + "thanks"])
    chunks = [index._chunk_text(i).strip() for i in range(index.n_chunks_)]
    assert chunks == ["call me at storytime", "thanks"]
    (hits,) = index.query(["storytime"], k=1)
    assert hits[0].chunk.strip() == "call me at storytime"
    # Hindi: "book" comes first from the only document that holds it (split at its vowel signs, the
    # query's pieces matched "he said that the matter is right" better).
    docs = ["मैंने कल एक किताब खरीदी", "उसने कहा कि बात तो सही है", "आज मौसम बहुत अच्छा है"]
    with pytest.warns(UnknownTokensWarning):  # the tiny vocabulary has no Devanagari
        index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), retrieval="lexical").fit(docs)
    (hits,) = index.query(["किताब"], k=3)
    assert [h.doc_id for h in hits if h.score > 0] == [0]


def test_bm25_reads_chinese_and_japanese_characters_as_words():
    from skllm._lexical import BM25

    scores, ranked = BM25(["日本語のテキスト", "英語の本", "テキスト"]).top(["日本語"], 3)
    assert ranked[0][0] == 0 and scores[0][0] > 0 and scores[0][1] > 0  # the second shares "本" and "語"
    assert ranked[0].tolist() == [0, 1, 2]
    scores, ranked = BM25(["コンピューター", "コンピュータ・ゲーム"]).top(["コンピューター"], 2)
    assert scores[0][0] > 0 and scores[0][1] == 0  # a katakana run is one word
    # ... which ends where Latin letters or digits start, so each finds the document on its own
    docs = ["新しいiPhoneケースを買いました。", "3Dプリンターを使う", "古い本"]
    scores = BM25(docs).scores(["iPhone", "ケース", "プリンター", "3D"])
    expected = [[True, False, False], [True, False, False], [False, True, False], [False, True, False]]
    assert (scores > 0).tolist() == expected


def test_bm25_strips_the_accents_of_latin_letters_only():
    from skllm._lexical import BM25

    scores, ranked = BM25(["café au lait", "CAFE noir", "thé"]).top(["Café"], 3)
    assert sorted(ranked[0][:2].tolist()) == [0, 1] and scores[0][1] > 0 and scores[0][2] == 0
    # A voicing mark makes another word: が is not か, パ and バ are not ハ (nor й и).
    scores, ranked = BM25(["かき", "がき", "天気"]).top(["がき"], 3)
    assert ranked[0][0] == 1 and scores[0][0] > scores[0][1] > 0  # the second shares き only
    for texts, query in [(["ハト", "パト", "バト"], "パト"), (["иод", "йод", "код"], "йод")]:
        scores, ranked = BM25(texts).top([query], 3)
        assert ranked[0][0] == 1 and scores[0][0] > 0 and scores[0][1:].tolist() == [0, 0]
    scores, ranked = BM25(["ﾊﾟﾄ", "ﾊﾞﾄ"]).top(["パト"], 2)  # half-width kana: the same words
    assert ranked[0][0] == 0 and scores[0][0] > 0 and scores[0][1] == 0
    # Letters with no lower case of their own (mathematical bold and sans) read as the plain lower case.
    scores = BM25(["𝐁𝐑𝐄𝐀𝐊𝐈𝐍𝐆 news", "𝗙𝗥𝗘𝗘 prize", "ＦＲＥＥ prize", "breaking free"]).scores(["breaking", "FREE"])
    assert (scores > 0).tolist() == [[True, False, False, True], [False, True, True, True]]
    # The marks letters carry stay in their word: "किताब" (book) is no "क" + "त" + "ब".
    for docs, query in [
        (["किताब पढ़ो", "उसने कहा कि बात सही है"], "किताब"),
        (["هذا كِتَابٌ جميل", "قال إن الأمر صحيح"], "كِتَابٌ"),
        (["שָׁלוֹם לכולם", "הוא אמר שלום"], "שָׁלוֹם"),
    ]:
        assert (BM25(docs).scores([query])[0] > 0).tolist() == [True, False], query
    # A mark, a joiner or an emoji's variation selector starts no word of its own.
    from skllm._lexical import words

    assert words("❤️ love 👨\u200d👩\u200d👧 family 1️⃣") == ["love", "family", "1"]


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
    a = DocumentIndex(embedder, chunk_size=20, retrieval="dense", backend="numpy").fit(DOCS)
    b = DocumentIndex(embedder, chunk_size=20, retrieval="dense", backend="faiss").fit(DOCS)
    qa, qb = a.query(["loved the story"], k=5)[0], b.query(["loved the story"], k=5)[0]
    assert [h.chunk_id for h in qa] == [h.chunk_id for h in qb]
    np.testing.assert_allclose([h.score for h in qa], [h.score for h in qb], atol=1e-5)


@pytest.mark.parametrize("search", ["hnsw", "ivf"])
def test_approximate_search_finds_the_exact_neighbours_on_a_small_corpus(embedder, search):
    pytest.importorskip("faiss")
    docs = [f"{w} film {i}" for i in range(60) for w in ("great", "awful")]
    exact = DocumentIndex(embedder, retrieval="dense", backend="faiss").fit(docs)
    approx = DocumentIndex(embedder, retrieval="dense", backend="faiss", search=search, n_probe=64).fit(docs)
    q = ["great film 7", "awful film 33"]
    for e, a in zip(exact.query(q, k=5), approx.query(q, k=5)):
        assert len({h.chunk_id for h in e} & {h.chunk_id for h in a}) >= 4


@pytest.mark.parametrize("search", ["exact", "hnsw", "ivf"])
def test_searching_vectors_of_an_emptied_index_finds_nothing(embedder, search):
    pytest.importorskip("faiss")
    index = DocumentIndex(embedder, backend="faiss", search=search).fit(["great film", "awful film"])
    index.remove([0, 1])
    scores, positions = index.search_vectors(np.ones((2, index.embedder_.embedding_dim_)), 3)
    assert scores.shape == positions.shape == (2, 0)


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
    # Pickling leaves the live index as it was: its search structure is not dropped.
    built = index._search_index
    pickle.dumps(index)
    assert index._search_index is built is not None


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
        (lambda i: i.set_params(retrieval="bm25").fit(["a"]), ValueError, "retrieval='bm25' is not supported"),
        (lambda i: i.fit(["a"]).set_params(retrieval=None).query(["q"]), ValueError, "retrieval=None is not supported"),
    ],
)
def test_bad_input(embedder, call, error, message):
    with pytest.raises(error, match=message):
        call(DocumentIndex(embedder))


def test_query_before_fit(embedder):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DocumentIndex(embedder).query(["q"])


# -- lexical and hybrid retrieval ------------------------------------------------------------
CODES = ["great film part zq7 it", "great film part xk9 it", "great film part mm3 it", "awful film hated it"]


def test_lexical_and_hybrid_find_rare_exact_words_that_dense_misses(embedder):
    index = DocumentIndex(embedder, backend="numpy").fit(CODES, ids=["zq7", "xk9", "mm3", "awful"])
    # The tiny tokenizer does not know the codes: their embeddings are alike, their words are not.
    for code in ("zq7", "xk9", "mm3"):
        for retrieval in ("lexical", "hybrid"):
            (hits,) = index.set_params(retrieval=retrieval).query([f"the {code} part"], k=2)
            assert hits[0].doc_id == code, retrieval
    lexical = index.set_params(retrieval="lexical").query(["xk9"], k=10)[0]
    assert len(lexical) == 4 and lexical[0].score > 0 and all(h.score == 0 for h in lexical[1:])
    assert [h.chunk_id for h in lexical[1:]] == [0, 2, 3]  # no shared word: score 0, index order


def _naive_bm25(chunks, query, k1=1.2, b=0.75):
    import math
    import re

    words = [re.findall(r"\w+", c.lower()) for c in chunks]
    avg = sum(map(len, words)) / len(words)
    scores = []
    for doc in words:
        total = 0.0
        for w in re.findall(r"\w+", query.lower()):
            df = sum(w in d for d in words)
            tf = doc.count(w)
            idf = math.log(1 + (len(words) - df + 0.5) / (df + 0.5))
            total += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avg)) if tf else 0.0
        scores.append(total)
    return scores


def test_bm25_and_reciprocal_rank_fusion_match_a_naive_computation():
    from skllm._lexical import BM25, reciprocal_rank_fusion

    chunks = ["the cat sat on the mat", "a dog and a cat", "stocks fell 7 points today", "the the the cat x"]
    for query in ["cat mat", "the cat", "7 points", "unknown words", "cat cat"]:
        np.testing.assert_allclose(BM25(chunks).scores([query])[0], _naive_bm25(chunks, query), rtol=1e-5)
    rankings = [[np.array([3, 1, 2]), np.array([1, 4, -1])], [np.array([5]), np.array([-1, -1])]]
    fused = reciprocal_rank_fusion(rankings, k=3, constant=60)
    naive = {3: 1 / 61, 1: 1 / 62 + 1 / 61, 2: 1 / 63, 4: 1 / 62}
    assert fused[0][0].tolist() == [1, 3, 4]  # 1 is in both lists; 4 (1/62) beats 2 (1/63)
    np.testing.assert_allclose(fused[0][1], [naive[1], naive[3], naive[4]], rtol=1e-6)
    assert fused[1][0].tolist() == [5] and np.isclose(fused[1][1][0], 1 / 61)


def test_hybrid_scores_are_the_fusion_of_the_dense_and_lexical_rankings(embedder):
    from skllm._lexical import reciprocal_rank_fusion

    index = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS + CODES)
    query = ["the story 7 was boring zq7"]
    _, dense = index.search_vectors(index.embedder_.transform(query), 100)
    words, lexical = index.search_words(query, 100)
    expected = reciprocal_rank_fusion([(dense[0], np.where(words[0] > 0, lexical[0], -1))], k=5)[0]
    (hits,) = index.query(query, k=5)
    assert [h.chunk_id for h in hits] == expected[0].tolist()
    np.testing.assert_allclose([h.score for h in hits], expected[1], rtol=1e-6)


def test_partial_fit_and_remove_keep_the_lexical_index_in_sync(embedder, backend):
    index = DocumentIndex(embedder, chunk_size=20, retrieval="lexical", backend=backend).fit(DOCS)
    index.query(["film"])  # builds the BM25 index, which must then follow the changes
    index.partial_fit(CODES, ids=["zq7", "xk9", "mm3", "awful"])
    assert index.query(["xk9"], k=1)[0][0].doc_id == "xk9"
    index.remove(["xk9", 0])
    assert all(h.doc_id not in ("xk9", 0) for h in index.query(["xk9 great"], k=100)[0])
    # The word statistics are those of the documents left, as in a fresh index of them.
    fresh = DocumentIndex(embedder, chunk_size=20, retrieval="lexical", backend=backend)
    fresh.fit([DOCS[1], DOCS[2], DOCS[3], CODES[0], CODES[2], CODES[3]])
    got = sorted(round(h.score, 5) for h in index.query(["great film story"], k=100)[0])
    assert got == sorted(round(h.score, 5) for h in fresh.query(["great film story"], k=100)[0])
    assert index.n_chunks_ == fresh.n_chunks_


def test_hybrid_save_load_and_pickle_round_trip(embedder, tmp_path):
    index = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS + CODES)
    queries = ["zq7 story", "awful film"]
    expected = index.query(queries, k=4)
    folder = index.save(tmp_path / "idx")
    assert sorted(f.name for f in folder.iterdir()) == ["alive.npy", "index.json", "vectors.npy"]
    for restored in (DocumentIndex.load(folder), pickle.loads(pickle.dumps(index))):
        assert restored.retrieval == "hybrid" and getattr(restored, "_lexical", None) is None
        got = restored.query(queries, k=4)
        assert [[h.chunk_id for h in row] for row in got] == [[h.chunk_id for h in row] for row in expected]
        np.testing.assert_allclose([h.score for h in got[0]], [h.score for h in expected[0]], rtol=1e-6)


def test_indexes_saved_or_pickled_before_hybrid_search_stay_dense(embedder, tmp_path):
    import json

    index = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS)
    folder = index.save(tmp_path / "old")
    state = json.loads((folder / "index.json").read_text())
    del state["params"]["retrieval"]
    (folder / "index.json").write_text(json.dumps(state))
    assert DocumentIndex.load(folder).retrieval == "dense"
    old = index.__getstate__()
    del old["retrieval"]
    restored = DocumentIndex.__new__(DocumentIndex)
    restored.__setstate__(old)
    assert restored.retrieval == "dense" and restored.query(["great film"], k=1)[0][0].doc_id == 0


@pytest.mark.parametrize("retrieval", ["lexical", "hybrid"])
def test_nearest_selection_ranks_the_pool_by_words_too(embedder, retrieval):
    from skllm import NearestSelection

    labels = ["a", "b", "c", "neg"]
    selection = NearestSelection(embedder, retrieval=retrieval).fit(CODES, labels, n_examples=2)
    chosen = selection.select(["the xk9 part", "mm3"])
    assert [CODES[row[-1]] for row in chosen] == [CODES[1], CODES[2]]  # the most relevant last
    balanced = NearestSelection(embedder, balance=True, retrieval=retrieval).fit(CODES, labels, n_examples=4)
    assert sorted(balanced.select(["xk9"])[0]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="retrieval='bm25' is not supported"):
        NearestSelection(embedder, retrieval="bm25").fit(CODES, labels)
    old = pickle.loads(pickle.dumps(NearestSelection(embedder).fit(CODES, labels, n_examples=1)))
    state = old.__getstate__()
    del state["retrieval"], state["pool_"]
    old.__setstate__(state)
    assert old.retrieval == "dense" and len(old.select(["xk9"])[0]) == 1


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
    # Unicode punctuation and forms too, as LMs write them: these scored 0 against their plain references.
    pairs = [("東京。", "東京"), ("“Paris”", "Paris"), ("Cafe\u0301", "Café"), ("Ｐａｒｉｓ", "Paris")]
    assert all(normalize_answer(answer) == normalize_answer(reference) for answer, reference in pairs)
    qa.fit()
    monkeypatch.setattr(type(qa), "predict", lambda self, X: np.array(["In 1889.", "Paris"], dtype=object))
    assert qa.score(["q1", "q2"], ["in 1889", "London"]) == 0.5


def test_retrieval_qa_score_refuses_fewer_answers_than_questions(qa):
    qa.fit()
    # Zipping 3 answers with 1 reference used to score the first question only.
    with pytest.raises(ValueError, match="X has 3 texts but y has 1"):
        qa.score(["great film", "awful film", "loved it"], ["yes"])


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


# -- edge cases: ids, query vectors, k, damaged saved folders --------------------------------
@pytest.mark.parametrize(
    "ids, message",
    [
        (["a", None], r"never None or NaN; got 1 .*None at position 1 \(a missing id\)"),
        ([float("nan"), "b"], r"nan at position 0 \(a missing id\)"),
        ([["a"], "b"], r"list \['a'\] at position 0 \(not hashable\)"),
        ("ab", "ids must be a list of labels, got the single string 'ab'"),
    ],
)
def test_ids_that_cannot_identify_a_document_are_refused(embedder, ids, message):
    with pytest.raises(ValueError, match=message):
        DocumentIndex(embedder).fit(["great film", "awful film"], ids=ids)
    index = DocumentIndex(embedder).fit(["great film", "awful film"], ids=["a", "b"])
    with pytest.raises(ValueError, match=message):
        index.remove(ids)
    assert index.n_documents_ == 2


@pytest.mark.parametrize(
    "vectors, message",
    [
        (np.ones((1, 5)), r"vectors must have shape \(n_queries, 32\), the embedder's width; got shape \(1, 5\)"),
        (np.ones(32), r"got shape \(32,\) \(one query: vectors.reshape\(1, -1\)\)"),
        (np.array([[0.1] * 32, [np.nan] * 32]), r"1 row\(s\) with NaN or infinite values, at rows \[1\]"),
        ([["a"] * 32], "vectors must be an array of numbers"),
    ],
)
def test_query_vectors_of_the_wrong_width_or_not_finite_are_refused(embedder, vectors, message):
    index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"])
    with pytest.raises(ValueError, match=message):
        index.search_vectors(vectors, 1)


def test_k_below_one_is_refused_by_every_search(embedder):
    index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"])
    vector = index.embedder_.transform(["great film"])
    for call in (
        lambda k: index.query(["great"], k=k),
        lambda k: index.search_words(["great"], k),
        lambda k: index.search_vectors(vector, k),
    ):
        for k in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match=rf"k must be an integer >= 1, got {k!r}"):
                call(k)
    scores, positions = index.search_words(["great"], 1)
    assert positions.tolist() == [[0]] and scores.shape == (1, 1)


@pytest.fixture
def saved(embedder, tmp_path):
    return DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"], ids=["a", "b"]).save(tmp_path)


def test_load_names_a_truncated_index_json(saved):
    text = (saved / "index.json").read_text()
    (saved / "index.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"index.json is not valid JSON \(truncated or damaged\?\)"):
        DocumentIndex.load(saved)
    (saved / "index.json").write_text('{"format": 1, "params": {}}')
    with pytest.raises(ValueError, match=r"index.json lacks the entries \['documents', 'chunk_doc'"):
        DocumentIndex.load(saved)
    (saved / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.json does not exist"):
        DocumentIndex.load(saved)


@pytest.mark.parametrize(
    "array, message",
    [
        (
            np.ones((3, 32), np.float32),
            r"vectors.npy holds a float32 array of shape \(3, 32\); .* \(2, embedding size\)",
        ),
        (np.ones(64, np.float32), r"vectors.npy holds a float32 array of shape \(64,\)"),
        (np.ones((2, 8), np.float32), r"vectors.npy holds vectors of width 8, .* vectors of width 32"),
        (None, r"vectors.npy cannot be read as a NumPy array \(truncated or damaged\?\)"),
    ],
)
def test_load_names_a_vectors_file_of_the_wrong_shape(saved, array, message):
    if array is None:
        data = (saved / "vectors.npy").read_bytes()
        (saved / "vectors.npy").write_bytes(data[: len(data) - 40])
    else:
        np.save(saved / "vectors.npy", array)
    with pytest.raises(ValueError, match=message):
        DocumentIndex.load(saved)


def test_load_names_an_alive_file_of_the_wrong_shape(saved):
    np.save(saved / "alive.npy", np.ones(5, bool))
    with pytest.raises(ValueError, match=r"alive.npy holds a bool array of shape \(5,\); .* shape \(2,\)"):
        DocumentIndex.load(saved)


def test_ids_from_numpy_and_nested_tuples_survive_save_and_load(embedder, tmp_path):
    ids = [np.int64(7), (1, (2, "x"))]  # a DataFrame column's ids; a composite key
    index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"], ids=ids)
    loaded = DocumentIndex.load(index.save(tmp_path))
    hits = loaded.query(["awful film"], k=2)[0]
    assert hits == index.query(["awful film"], k=2)[0]
    assert {hit.doc_id for hit in hits} == {7, (1, (2, "x"))}


def test_a_refused_save_leaves_the_saved_index_whole(embedder, tmp_path):
    index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"], ids=["a", "b"])
    index.save(tmp_path)
    other = DocumentIndex(embedder, backend="numpy").fit(["a film about cats", "dogs"], metadata=[{"x": {1}}, {}])
    with pytest.raises(ValueError, match="JSON-serialisable"):
        other.save(tmp_path)  # a set in the metadata: nothing is written
    assert DocumentIndex.load(tmp_path).query(["awful film"], k=2) == index.query(["awful film"], k=2)


def test_an_overlap_as_long_as_the_capped_chunk_size_is_refused(embedder):
    # chunk_size 500 is capped at the tiny embedder's length: an overlap of 200 would leave
    # chunks that advance by one word each.
    cap = embedder.fit().max_length_ - 2
    with pytest.raises(ValueError, match=rf"chunk_overlap=200 must be less than the chunk size in use, {cap}"):
        DocumentIndex(embedder, chunk_size=500, chunk_overlap=200).fit(DOCS)


def test_load_names_live_chunks_of_a_document_it_lacks(saved):
    state = json.loads((saved / "index.json").read_text())
    state["documents"] = [d for d in state["documents"] if d[0] != "b"]
    (saved / "index.json").write_text(json.dumps(state))
    damaged = r"index.json is damaged: chunks belong to documents it does not hold: \['b'\]"
    with pytest.raises(ValueError, match=damaged):
        DocumentIndex.load(saved)


def test_an_index_saved_after_removals_loads_as_it_was(embedder, tmp_path):
    index = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS, ids=["a", "b", "c", "d"])
    index.remove(["c"]).partial_fit(["a new text about films"], ids=["c"])  # the id comes back
    loaded = DocumentIndex.load(index.save(tmp_path))
    assert (loaded.n_documents_, loaded.n_chunks_) == (index.n_documents_, index.n_chunks_)
    assert loaded.query(["boring story", "films"], k=5) == index.query(["boring story", "films"], k=5)


def test_nothing_of_a_removed_document_is_saved_or_pickled(embedder, tmp_path):
    # Its id, spans and vectors stayed in the dead chunks: in the files of every later save, and an id that JSON
    # cannot write (bytes) made every save fail although no live document held it.
    import json

    docs = ["patient Jane Doe has diabetes", "awful film", "great film"]
    index = DocumentIndex(embedder, backend="numpy").fit(docs, ids=[b"jane", "ok", "fine"])
    expected = index.query(["awful film"], k=2)
    dead = np.flatnonzero([d == b"jane" for d in index._chunk_doc])
    index.remove([b"jane"])
    assert index.query(["awful film"], k=2) == expected
    for state in (pickle.loads(pickle.dumps(index)).__dict__, vars(index)):
        assert all(state["_chunk_doc"][i] is None and state["_chunk_span"][i] == (0, 0) for i in dead)
        assert not state["_vectors"][dead].any() and b"jane" not in pickle.dumps(state)
    index.save(tmp_path)
    saved = json.loads((tmp_path / "index.json").read_text())
    assert "jane" not in json.dumps(saved) and not np.load(tmp_path / "vectors.npy")[dead].any()
    assert DocumentIndex.load(tmp_path).query(["awful film"], k=2) == expected


def test_arrays_of_another_save_are_refused(embedder, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"]).save(first)
    DocumentIndex(embedder, backend="numpy").fit(["a film about cats", "dogs"]).save(second)
    (first / "vectors.npy").write_bytes((second / "vectors.npy").read_bytes())  # same shape, other texts
    with pytest.raises(ValueError, match=r"vectors\.npy is not the array index\.json was saved with"):
        DocumentIndex.load(first)


def test_saved_vectors_with_nan_are_refused_naming_the_file_and_rows(embedder, tmp_path):
    DocumentIndex(embedder, backend="numpy").fit(DOCS[:2]).save(tmp_path)
    vectors = np.load(tmp_path / "vectors.npy")
    vectors[1, 0] = np.nan
    np.save(tmp_path / "vectors.npy", vectors)
    with pytest.raises(
        ValueError, match=r"vectors\.npy is damaged: 1 row\(s\) hold NaN or infinite values, at rows \[1\]"
    ):
        DocumentIndex.load(tmp_path)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ([{}], "documents has 2 entries but metadata has 1"),
        ([{}, None], r"1 that are not dicts, at positions \[1\]: NoneType None"),
        ({"a": 1}, "got dict"),
        # iterating a DataFrame gives its column names, which would read as one entry
        (pd.DataFrame({"n": [1, 2]}), r"got a DataFrame of 2 rows: pass metadata.to_dict\('records'\)"),
    ],
)
def test_metadata_errors_name_the_counts_or_rows(embedder, metadata, message):
    with pytest.raises(ValueError, match=message):
        DocumentIndex(embedder).fit(["a", "b"], metadata=metadata)


@pytest.mark.parametrize(
    "name, allowed",
    [
        ("ef_search", "1, 2147483647"),
        ("n_probe", "1, 2147483647"),
        ("n_lists", "1, 2147483647"),
        # HNSW needs 2 links a node (1 crashes FAISS at the first query) and allocates 2 * hnsw_m.
        ("hnsw_m", "2, 1073741823"),
    ],
)
@pytest.mark.parametrize("value", [10**12, 1])
def test_faiss_parameters_are_bounded_at_fit(embedder, name, allowed, value):
    if value == 1 and name != "hnsw_m":
        return
    with pytest.raises(ValueError, match=rf"{name} must be an integer in \[{allowed}\].*got {value}"):
        DocumentIndex(embedder, **{name: value}).fit(["a"])


def test_remove_refuses_repeated_and_unknown_ids(embedder):
    index = DocumentIndex(embedder).fit(["a", "b"], ids=["a", "b"])
    with pytest.raises(ValueError, match=r"must be unique; repeated: \['a'\]"):
        index.remove(["a", "a"])
    with pytest.raises(KeyError, match=r"No document with id\(s\) \['c'\]"):
        index.remove(["c"])
    assert index.n_documents_ == 2


@pytest.mark.parametrize("bad", [5, "classifier"])
def test_embedder_that_is_not_an_embedder_is_refused_at_fit(embedder, bad):
    from skllm import FineTuneClassifier

    bad = FineTuneClassifier() if bad == "classifier" else bad
    with pytest.raises(
        ValueError,
        match=rf"embedder must be a model name or folder, a TransformerEmbedder or None, got {type(bad).__name__}",
    ):
        DocumentIndex(bad).fit(["a"])


def test_embedder_given_by_model_folder(tiny_bert, cache_dir, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("SKLLM_CACHE_DIR", cache_dir)
    for name in (str(tiny_bert), Path(tiny_bert)):
        index = DocumentIndex(name, backend="numpy").fit(["great film", "awful film"])
        assert isinstance(index.embedder_, TransformerEmbedder) and index.embedder_.model_name == str(tiny_bert)
        assert index.query(["great film"], k=1)[0][0].doc_id == 0


def _state(index):
    return (index.n_documents_, index.n_chunks_, dict(index._docs), list(index._chunk_doc), index._vectors.copy())


def _same_state(a, b):
    return a[:4] == b[:4] and np.array_equal(a[4], b[4])


def test_a_refused_fit_leaves_the_index_as_it_was(embedder):
    index = DocumentIndex(embedder, chunk_size=20, backend="numpy").fit(DOCS[:3])
    before, hits = _state(index), index.query(["loved it"], k=3)
    with pytest.raises(ValueError, match="1 entries but ids has 2"):
        index.fit(["a"], ids=[1, 2])  # refused after the state would have been reset
    with pytest.raises(ValueError, match="chunk_overlap=8 must be less than the chunk size in use"):
        # refused after a new embedder was fitted: the old vectors must not meet its queries
        index.set_params(embedder=TransformerEmbedder(embedder.model_name, max_length=8)).fit(DOCS[:3])
    assert _same_state(_state(index), before)
    assert index.query(["loved it"], k=3) == hits


def test_a_partial_fit_that_fails_halfway_adds_nothing(embedder, monkeypatch):
    index = DocumentIndex(embedder, backend="numpy").fit(["great film"], ids=["a"])
    before = _state(index)

    def fail(texts):
        raise MemoryError("out of memory while embedding")

    with monkeypatch.context() as m:
        m.setattr(index.embedder_, "transform", fail)
        with pytest.raises(MemoryError):
            index.partial_fit(["loved it", "hated it"], ids=["b", "c"])
    assert _same_state(_state(index), before)
    index.partial_fit(["loved it", "hated it"], ids=["b", "c"])  # the retry is not refused as a duplicate
    assert index.n_documents_ == 3 and index.n_chunks_ == 3


def test_partial_fit_works_on_an_unpickled_index(embedder):
    index = DocumentIndex(embedder, backend="numpy").fit(["great film"])
    restored = pickle.loads(pickle.dumps(index))
    restored.partial_fit(["fun movie"])  # before any query has loaded the model again
    assert restored.query(["fun movie"], k=1)[0][0].doc_id == 1


def test_partial_fit_refuses_chunking_set_since_fit(embedder):
    index = DocumentIndex(embedder, chunk_size=20, chunk_overlap=4).fit([DOCS[2]])
    with pytest.raises(ValueError, match="chunk_size=20, chunk_overlap=4, set to chunk_size=5, chunk_overlap=50"):
        index.set_params(chunk_overlap=50, chunk_size=5).partial_fit([DOCS[2]])
    assert index.n_documents_ == 1


def test_default_ids_skip_whole_number_ids_given_as_floats(embedder):
    index = DocumentIndex(embedder, backend="numpy").fit(["a", "b"], ids=np.array([3.0, 7.0]))
    index.partial_fit(["c", "d"])
    assert sorted(index._docs) == [3.0, 7.0, 8, 9]


def test_search_parameters_set_after_fit_are_checked_and_take_effect_at_the_next_query(embedder):
    pytest.importorskip("faiss")
    index = DocumentIndex(embedder, backend="faiss", retrieval="dense").fit(DOCS[:2])
    index.query(["film"])
    index.set_params(search="hnsw", hnsw_m=0)
    with pytest.raises(ValueError, match=r"hnsw_m must be an integer in \[2, "):
        index.query(["film"])  # FAISS would abort the process
    index.set_params(hnsw_m=4).query(["film"])
    assert type(index._search_index).__name__.startswith("IndexHNSW")
    numpy_index = DocumentIndex(embedder, backend="numpy").fit(DOCS[:2])
    with pytest.raises(ValueError, match="fitted with the NumPy backend, which is exact only"):
        numpy_index.set_params(search="hnsw").query(["film"])


def _retrain_in_place(folder):
    from transformers import BertModel

    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.mul_(-1)
    model.save_pretrained(folder)


def test_load_warns_when_the_model_files_changed_since_the_save(tiny_bert, cache_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    index = DocumentIndex(TransformerEmbedder(str(folder), cache_dir=cache_dir), backend="numpy").fit(DOCS[:2])
    saved = index.save(tmp_path / "idx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DocumentIndex.load(saved)  # unchanged: no warning
    _retrain_in_place(folder)
    with pytest.warns(UserWarning, match="changed since this index was saved.*Build the index again"):
        DocumentIndex.load(saved)


@pytest.mark.filterwarnings("ignore:The files of model .* changed since this model was fitted")
def test_the_warning_that_the_model_files_changed_outlives_saving_and_pickling_again(tiny_bert, cache_dir, tmp_path):
    import shutil

    from skllm import NearestSelection

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    embedder = TransformerEmbedder(str(folder), cache_dir=cache_dir)
    index = DocumentIndex(embedder, backend="numpy").fit(DOCS[:2])
    selection = NearestSelection(embedder).fit(DOCS[:2], ["a", "b"], n_examples=1)
    pickled, saved = pickle.dumps((index, selection)), index.save(tmp_path / "idx")
    _retrain_in_place(folder)
    changed = "changed since this (index|NearestSelection) was saved"
    with pytest.warns(UserWarning, match=changed):
        loaded = DocumentIndex.load(saved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.query(["film"])  # told once per loaded copy
    index, selection = pickle.loads(pickled)
    with pytest.warns(UserWarning, match=changed):
        index.query(["film"])  # the embedder now records the new files
    with pytest.warns(UserWarning, match=changed):
        selection.select(["film"])
    # The vectors are still the old model's, however often the index is saved again.
    for again in (loaded, index):
        with pytest.warns(UserWarning, match=changed):
            DocumentIndex.load(again.save(tmp_path / "again"))
    index, selection = pickle.loads(pickle.dumps((index, selection)))
    with pytest.warns(UserWarning, match=changed):
        index.query(["film"])
    with pytest.warns(UserWarning, match=changed):
        selection.select(["film"])
    refitted = index.fit(DOCS[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DocumentIndex.load(refitted.save(tmp_path / "refitted")).query(["film"])


def test_an_embedder_with_a_path_cache_dir_saves_and_loads(tiny_bert, tmp_path):
    from pathlib import Path

    index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=Path(tmp_path / "c")), backend="numpy").fit(["a"])
    loaded = DocumentIndex.load(index.save(tmp_path / "idx"))
    assert loaded.embedder_.cache_dir == str(tmp_path / "c")


@pytest.mark.parametrize(
    "metadata, shown",
    [({1: "x"}, "a key 1 would come back as '1'"), ({"span": (1, 2)}, "a tuple as a list")],
)
def test_save_refuses_metadata_json_would_change(embedder, tmp_path, metadata, shown):
    index = DocumentIndex(embedder, backend="numpy").fit(["a", "b"], ids=["x", "y"], metadata=[{}, metadata])
    with pytest.raises(ValueError, match=rf"metadata of 1 document\(s\) would not load as saved, ids \['y'\].*{shown}"):
        index.save(tmp_path / "idx")
    assert not (tmp_path / "idx").exists()  # a refused save writes nothing
    kept = {"n": np.int64(3), "score": float("nan"), "tags": ["a", "b"], "nested": {"ok": True, "v": None}}
    index = DocumentIndex(embedder, backend="numpy").fit(["a"], metadata=[kept])
    loaded = DocumentIndex.load(index.save(tmp_path / "ok"))
    assert loaded._docs[0][1]["tags"] == ["a", "b"] and loaded._docs[0][1]["n"] == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_index_saved_with_its_embedder_on_a_gpu_loads_on_the_cpu(saved):
    state = json.loads((saved / "index.json").read_text())
    state["params"]["embedder"]["device"] = "cuda"  # as saved on a GPU machine
    (saved / "index.json").write_text(json.dumps(state))
    index = DocumentIndex.load(saved)
    assert index.embedder_.device_ == "cpu"
    assert index.query(["great film"], 1)[0][0].doc_id == "a"


@pytest.mark.parametrize("where", ["index", "embedder"])
def test_an_index_saved_by_another_version_is_warned_of_and_unknown_parameters_named(saved, where):
    from skllm.exceptions import InconsistentVersionWarning

    state = json.loads((saved / "index.json").read_text())
    assert state["skllm_version"] == skllm.__version__
    state["skllm_version"] = "99.0"
    (saved / "index.json").write_text(json.dumps(state))
    with pytest.warns(InconsistentVersionWarning, match="from skllm version 99.0"):
        DocumentIndex.load(saved)
    params = state["params"] if where == "index" else state["params"]["embedder"]
    params["rerank"] = True  # a parameter of a newer version
    (saved / "index.json").write_text(json.dumps(state))
    with pytest.warns(InconsistentVersionWarning), pytest.raises(ValueError, match=r"parameter\(s\) \['rerank'\]"):
        DocumentIndex.load(saved)


def test_an_index_whose_model_folder_moved_names_it_and_loads_from_its_new_place(tiny_bert, cache_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    index = DocumentIndex(TransformerEmbedder(str(folder), cache_dir=cache_dir), backend="numpy").fit(DOCS[:3])
    expected = [hit.doc_id for hit in index.query(["great film"], 3)[0]]
    saved = index.save(tmp_path / "idx")
    moved = shutil.move(folder, tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"model folder .*model.* no such folder now.*model_name=\.\.\."):
        DocumentIndex.load(saved)
    # A wrong new place is named as the one given, the saved folder as the one the vectors were made with.
    with pytest.raises(FileNotFoundError, match=r"given model_name='/nonexistent/x'.*made with the local model folder"):
        DocumentIndex.load(saved, model_name="/nonexistent/x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same files: nothing to warn of
        loaded = DocumentIndex.load(saved, model_name=str(moved))
    assert loaded.embedder_.model_name == loaded.embedder.model_name == str(moved)
    assert [hit.doc_id for hit in loaded.query(["great film"], 3)[0]] == expected


def test_a_template_set_after_fit_is_checked_at_predict(qa):
    qa.fit()
    for template, said in [("Q: {question}\nA:", r"missing \['context'\]"), ("{foo} {context} {question}", "foo")]:
        qa.set_params(template=template)
        with pytest.raises(ValueError, match=said):
            qa.predict_with_sources(["great film"])


def test_generator_parameters_set_after_fit_are_read_or_refused_at_predict(qa, tiny_llama):
    from skllm import FewShotGenerator

    qa.set_params(generator__stop_at_newline=False).fit()
    long = qa.predict(["great film"])[0]
    qa.set_params(generator__max_new_tokens=1)  # read at predict, as by the generator itself
    short = qa.predict(["great film"])[0]
    assert long.startswith(short) and len(short) <= len(long)
    assert qa.generator_.max_new_tokens == 1 and qa.generator_.template == "{examples}{text}"
    qa.set_params(generator__model_name="/nonexistent/model")  # chooses what fit loaded: refused
    with pytest.raises(ValueError, match=r"fitted with model_name=.* set to model_name='/nonexistent/model' since"):
        qa.predict(["great film"])
    qa.set_params(generator=FewShotGenerator(tiny_llama, max_new_tokens=4, stop_at_newline=False))  # back again
    assert qa.predict(["great film"])[0] == long


@pytest.mark.parametrize(
    "alter, message",
    [
        (lambda s: s["_vectors"].__setitem__((0, 0), np.nan), r"its vectors is damaged: 1 row\(s\) hold NaN"),
        (lambda s: s.__setitem__("_vectors", s["_vectors"][:, :8]), r"its vectors holds vectors of width 8, but"),
        (lambda s: s.__setitem__("_vectors", s["_vectors"][:1]), r"its vectors holds a float32 array of shape \(1, "),
        (lambda s: s.__setitem__("_alive", s["_alive"][:1]), r"its alive holds a bool array of shape \(1,\)"),
    ],
)
def test_an_altered_pickled_index_is_refused_on_loading(embedder, alter, message):
    index = DocumentIndex(embedder, backend="numpy").fit(DOCS[:2])
    state = index.__getstate__()
    state["_vectors"] = state["_vectors"].copy()
    alter(state)  # NaN rows used to give no hits at all, other shapes an error deep in a query
    with pytest.raises(ValueError, match=r"This pickled DocumentIndex was altered or damaged: " + message):
        DocumentIndex.__new__(DocumentIndex).__setstate__(state)
    pickle.loads(pickle.dumps(index)).query(["great film"], 1)  # unaltered: loads and queries


def test_save_writes_the_chunking_the_chunks_were_cut_with_and_refuses_what_load_would(embedder, tmp_path):
    long = " ".join(f"the story {i} was long and boring" for i in range(30))
    index = DocumentIndex(embedder, chunk_size=20, chunk_overlap=4, backend="numpy").fit([long])
    index.set_params(chunk_size=100)
    loaded = DocumentIndex.load(index.save(tmp_path / "a"))
    assert (loaded.chunk_size, loaded.chunk_overlap) == (20, 4)
    np.testing.assert_array_equal(loaded._vectors, index._vectors)
    index.set_params(chunk_overlap=300)  # pending, not written: no reason to refuse the save
    assert DocumentIndex.load(index.save(tmp_path / "b")).chunk_overlap == 4
    index.set_params(retrieval="bm25")  # load would refuse it: refused now, nothing written
    with pytest.raises(ValueError, match="retrieval"):
        index.save(tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_save_refuses_path_ids_that_would_load_as_strings(embedder, tmp_path):
    from pathlib import Path

    for ids in ([Path("a.txt"), "b"], [("docs", Path("a.txt")), "b"]):  # a path, or one inside a tuple id
        index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"], ids=ids)
        with pytest.raises(ValueError, match=r"a path such as .*PosixPath\('a.txt'\).* comes back as a string"):
            index.save(tmp_path)


def test_an_embedder_without_unit_vectors_is_refused(tiny_bert, cache_dir):
    with pytest.raises(ValueError, match=r"cosine similarity.*TransformerEmbedder\(normalize=True\)"):
        DocumentIndex(TransformerEmbedder(tiny_bert, normalize=False, cache_dir=cache_dir)).fit(["great film"])


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda s: s["chunk_span"].__setitem__(0, [5, 2]), r"chunk 0 spans \[5, 2\], not \[start, end\] with 0 <="),
        (lambda s: s["chunk_span"].__setitem__(0, [0]), r"chunk 0 spans \(0,\), not two integers"),
        (lambda s: s["documents"].append(list(s["documents"][0])), "3 documents hold 2 distinct ids"),
        (lambda s: s["documents"][0].__setitem__(2, None), "document 'a' must hold a text and a dict of metadata"),
        (lambda s: s.__setitem__("next_id", "x"), "next_id must be an integer"),
    ],
)
def test_load_names_chunks_documents_and_ids_that_json_edits_broke(saved, edit, said):
    state = json.loads((saved / "index.json").read_text())
    edit(state)
    (saved / "index.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match=rf"index.json is damaged: {said}"):
        DocumentIndex.load(saved)


def test_default_ids_continue_after_a_true_id_and_the_index_keeps_copies_of_metadata(embedder):
    given = [{"tags": ["a"]}]
    index = DocumentIndex(embedder, backend="numpy").fit(["great film"], ids=[True], metadata=given)
    given[0]["tags"].append("changed after fit")  # the index holds copies too
    given[0]["new"] = 1
    index.partial_fit(["awful film"])  # True is the id 1: the next default id is 2
    assert sorted(index._docs, key=repr) == [2, True]
    hit = index.query(["great film"], 1)[0][0]
    hit.metadata["tags"].append("changed")
    assert index.query(["great film"], 1)[0][0].metadata == {"tags": ["a"]}
    # Arrays and sets are copied too: a hit's metadata changed in place leaves the index's and the caller's alone.
    given = {"arr": np.array([1, 2]), "s": {1}}
    index.partial_fit(["good plot"], ids=["y"], metadata=[given])
    hit = index.query(["good plot"], 1)[0][0]
    hit.metadata["arr"][0] = 99
    hit.metadata["s"].add(2)
    kept = index.query(["good plot"], 1)[0][0].metadata
    assert kept["arr"].tolist() == given["arr"].tolist() == [1, 2] and kept["s"] == given["s"] == {1}
    lock = threading.Lock()  # in memory, metadata may hold anything: handed out as it is
    index.partial_fit(["fun story"], ids=["x"], metadata=[{"lock": lock}])
    assert index.query(["fun story"], 1)[0][0].metadata["lock"] is lock


def test_a_loaded_index_keeps_its_embedder_parameter_apart_from_its_fitted_embedder(
    tiny_bert, cache_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("SKLLM_CACHE_DIR", cache_dir)
    by_name = DocumentIndex(str(tiny_bert), backend="numpy").fit(DOCS[:2])
    assert DocumentIndex.load(by_name.save(tmp_path / "name")).get_params()["embedder"] == str(tiny_bert)
    index = DocumentIndex(TransformerEmbedder(tiny_bert, cache_dir=cache_dir), backend="numpy").fit(DOCS[:2])
    loaded = DocumentIndex.load(index.save(tmp_path / "idx"))
    assert loaded.embedder is not loaded.embedder_
    assert loaded.embedder.get_params() == index.embedder.get_params()
    expected = loaded.query(["great film"], k=2)
    # As on the fitted index: parameters set since take effect at the next fit, not on the queries.
    loaded.set_params(embedder__pooling="cls", embedder__normalize=False)
    assert loaded.query(["great film"], k=2) == expected
    again = DocumentIndex.load(loaded.save(tmp_path / "again"))
    assert again.embedder_.pooling == "mean" and again.embedder_.normalize
    assert again.embedder.pooling == "cls" and not again.embedder.normalize  # the parameter, as saved


def test_a_shallow_copy_adds_and_removes_without_changing_the_original(embedder, backend, tmp_path):
    index = DocumentIndex(embedder, chunk_size=20, backend=backend).fit(DOCS, ids=["a", "b", "c", "d"])
    expected = index.query(["great film loved it"], k=100)  # builds the search structures
    copy.copy(index).remove(["a"])
    copy.copy(index).partial_fit(["great film loved it too"], ids=["e"])
    assert index.n_documents_ == 4 and sorted(index._docs) == ["a", "b", "c", "d"]
    assert index.query(["great film loved it"], k=100) == expected
    loaded = DocumentIndex.load(index.save(tmp_path / "idx"))
    assert loaded.query(["great film loved it"], k=100) == expected


def test_tuple_ids_save_with_skops_and_pickle(embedder, tmp_path):
    sio = pytest.importorskip("skops.io")
    import skllm

    ids = [("films", 1), ("films", 2)]
    index = DocumentIndex(embedder, backend="numpy").fit(["great film", "awful film"], ids=ids)
    expected = index.query(["awful film"], k=2)
    sio.dump(index, tmp_path / "index.skops")
    for restored in (
        sio.load(tmp_path / "index.skops", trusted=skllm.trusted_types()),
        pickle.loads(pickle.dumps(index)),
    ):
        assert restored.query(["awful film"], k=2) == expected
        assert restored._docs == index._docs
        restored.partial_fit(["fun story"], ids=[("films", 3)])
        assert restored.n_documents_ == 3
    assert isinstance(index._docs, dict)  # saving leaves the live index as it was


def test_copies_of_a_document_tie_among_many_chunks(embedder, backend):
    # The matrix product of many rows gave a copy's equal vector another last bit than the original's, by
    # where it fell in the product's blocks: the copy could come first, and which one did varied with the
    # number of queries scored together.
    import random

    from conftest import WORDS

    rng = random.Random(0)
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(160)]
    docs += docs[:10]  # 160..169 copy 0..9
    index = DocumentIndex(embedder, retrieval="dense", backend=backend).fit(docs)
    alone = index.query(["story"], k=170)[0]
    rank = {h.doc_id: r for r, h in enumerate(alone)}
    for original in range(10):
        assert rank[original] < rank[original + 160]
        assert alone[rank[original]].score == alone[rank[original + 160]].score
    together = index.query(["story"] * 25, k=170)
    assert all([h.chunk_id for h in hits] == [h.chunk_id for h in alone] for hits in together)


@pytest.mark.parametrize("search", ["exact", "hnsw", "ivf"])
def test_tied_scores_go_to_the_lowest_position_on_every_backend(embedder, backend, search):
    if search != "exact" and backend == "numpy":
        pytest.skip("the NumPy backend is exact only")
    docs = ["great film loved it", "awful film"] * 6
    index = DocumentIndex(embedder, retrieval="dense", backend=backend, search=search, n_probe=64).fit(docs)
    ranked = [[h.chunk_id for h in index.query(["great film loved it"], k=k)[0]] for k in range(1, 13)]
    assert ranked[5] == [0, 2, 4, 6, 8, 10] and ranked[11][:6] == [0, 2, 4, 6, 8, 10]
    assert all(ranked[k - 1] == ranked[11][:k] for k in range(1, 13))  # a smaller k gives a prefix
    vectors = index.embedder_.transform(["great film loved it", "awful film"])
    _, positions = index.search_vectors(np.repeat(vectors, 30, axis=0), 3)  # FAISS scores 20 or more queries by BLAS
    assert positions[:30].tolist() == [[0, 2, 4]] * 30 and positions[30:].tolist() == [[1, 3, 5]] * 30


def test_retrieval_qa_refuses_setting_its_shared_index(qa):
    # A clone shares the index: set_params(index__retrieval=...) changed it for every clone and the original.
    from sklearn.base import clone

    with pytest.raises(ValueError, match=r"\['index__retrieval'\] cannot be set through it"):
        clone(qa).set_params(index__retrieval="lexical")
    assert qa.index.retrieval == "hybrid"


def test_chunks_cut_again_alone_fit_and_none_lies_within_another(tiny_llama):
    # Pieces of a chunk cut again alone were not counted again, and could lie within the chunk before them.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    for text, size, overlap in [
        ("語é語中üé語本文é日中é日語é日 thanks me *", 4, 1),
        ("me文freetext  本film中 text\ntextgreat", 3, 2),
    ]:
        spans = chunk_spans(text, tok, size, overlap)
        assert all(b[0] > a[0] and b[1] > a[1] for a, b in itertools.pairwise(spans)), spans
        assert all(not text[a[1] : b[0]].strip() for a, b in itertools.pairwise(spans))  # nothing lost between
        alone = [len(tok(text[a:b], add_special_tokens=False)["input_ids"]) for a, b in spans if b - a > 1]
        assert max(alone) <= size  # (one character of more byte tokens than chunk_size cannot be cut)
