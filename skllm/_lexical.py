"""Lexical (BM25) ranking of chunks and its fusion with a dense ranking.

BM25 is written here on scikit-learn's ``CountVectorizer`` and a SciPy sparse
matrix rather than taken from a BM25 package: the index is a term-count matrix
that scikit-learn already builds (no new dependency, so hybrid search works
with the core install), its arrays are plain NumPy/SciPy (rebuilt from the
saved chunk texts, nothing pickled on disk), and scoring a batch of queries is
one sparse product. ``benchmarks/bench_retrieval.py`` compares it with
scikit-learn's sublinear TF-IDF: on its sentence-to-source task both find every
source, so the choice rests on BM25 being the ranking that retrieval stacks
use and tune (term-frequency saturation, length normalisation with ``b``).
"""

import functools
import unicodedata

import numpy as np

# Okapi BM25 constants (Robertson & Zaragoza; Lucene's defaults).
BM25_K1 = 1.2
BM25_B = 0.75
# Reciprocal-rank fusion constant (Cormack, Clarke & Buettcher, 2009).
RRF_K = 60
# Words: runs of letters or digits, single characters included, so that codes
# and numbers ("7", "x", "B-52" as "b" + "52") count. Chinese characters and
# hiragana, written without spaces, are a word each, and a run of katakana is one
# word (as Lucene's standard analyzer reads them): a whole run of such text as one
# word would match only itself. The marks that letters carry (Hindi's vowel signs,
# Arabic's harakat, Hebrew's niqqud) stay in their word, as in Lucene: Python's \w
# does not match them, and "किताब" would be the three words "क", "त", "ब". The
# pattern is the `regex` package's (transformers requires it), which knows \p{M} and
# set differences (V1): letters, digits and numbers ("½", "m²", as Python's \w), less
# the characters that are a word each, then marks too; a mark never starts a word, and
# the variation selectors (of emoji) are in none. A katakana run ends where another
# script starts ("iPhoneケース" is "iphone" and "ケース", as Unicode's word boundaries split it).
_CJK = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_KANA = "\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # katakana, the long vowel mark, half-width
_SELECTORS = "\ufe00-\ufe0f\U000e0100-\U000e01ef"
TOKEN_PATTERN = (
    rf"[{_CJK}]|[{_KANA}][{_KANA}\u3099\u309a]*"
    rf"|[[\w\p{{N}}]--[{_CJK}{_KANA}\p{{M}}\u200c\u200d]][[\w\p{{N}}\p{{M}}]--[{_CJK}{_KANA}{_SELECTORS}]]*"
)


@functools.cache
def _word_pattern():
    import regex

    return regex.compile(TOKEN_PATTERN, regex.V1)


def words(text):
    """The words of a (lower-cased, accent-stripped) text, as BM25 counts them."""
    return _word_pattern().findall(text)


# Queries scored per sparse product (bounds the dense score block in memory).
_QUERY_BLOCK = 256


class BM25:
    """Okapi BM25 scores of a fixed list of texts (the index's live chunks).

    ``score(i, q) = sum over the words w of q of
    idf(w) * tf(w, i) * (k1 + 1) / (tf(w, i) + k1 * (1 - b + b * len(i) / avg_len))``
    with ``idf(w) = ln(1 + (n - df(w) + 0.5) / (df(w) + 0.5))`` (never negative),
    lengths counted in words. A word repeated in the query counts each time.
    """

    def __init__(self, texts, k1=BM25_K1, b=BM25_B):
        from sklearn.feature_extraction.text import CountVectorizer

        self.vectorizer = CountVectorizer(
            tokenizer=words, token_pattern=None, strip_accents=strip_latin_accents, dtype=np.float32
        )
        try:
            counts = self.vectorizer.fit_transform(texts).tocsr()
        except ValueError:  # no word at all in any text (empty chunks only)
            self.vectorizer, self.weights = None, None
            self.n_texts = len(texts)
            return
        n, lengths = counts.shape[0], np.asarray(counts.sum(axis=1)).ravel()
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1e-9))
        tf = counts.data
        rows = np.repeat(np.arange(n), np.diff(counts.indptr))
        counts.data = (idf[counts.indices] * tf * (k1 + 1) / (tf + norm[rows])).astype(np.float32)
        self.weights = counts.T.tocsr()  # words x texts: queries multiply from the left
        self.n_texts = n

    def scores(self, queries):
        """Dense ``(n_queries, n_texts)`` float32 scores, in blocks of queries."""
        out = np.zeros((len(queries), self.n_texts), dtype=np.float32)
        if self.vectorizer is None:
            return out
        for start in range(0, len(queries), _QUERY_BLOCK):
            q = self.vectorizer.transform(queries[start : start + _QUERY_BLOCK])
            out[start : start + q.shape[0]] = (q @ self.weights).toarray()
        return out

    def top(self, queries, k):
        """Scores and row numbers of the ``k`` best texts of each query, best first.

        Texts sharing no word with the query score 0; they come after the others,
        in index order, so that ``k`` rows are always returned (when there are).
        """
        return top_k(self.scores(queries), k)


def strip_latin_accents(text):
    """``text`` without the accents of Latin letters ("café" as "cafe"); the marks of other scripts stay.

    scikit-learn's ``strip_accents="unicode"`` drops every combining mark after
    NFKD, which merges words that differ by a letter in other scripts: "が" and
    "か", "パ" and "バ" (a voicing mark), "й" and "и". Here a mark is dropped only
    after a Latin letter, and what remains is composed again (NFC), so "が" is
    one character, as typed. The compatibility forms (full-width "Ａ",
    half-width "ｶﾞ", the mathematical bold "𝐁", "™") are still read as their
    plain letters, in lower case: the vectorizer lower-cases before this runs, and
    "𝐁" has no lower case of its own, so it would stay the "B" that no lower-cased
    query matches.
    """
    if text.isascii():
        return text
    kept, base = [], ""
    for char in unicodedata.normalize("NFKD", text):
        if not unicodedata.combining(char):
            base = char
        elif base and _is_latin(base):
            continue
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)).lower()


@functools.lru_cache(maxsize=4096)
def _is_latin(char):
    return char.isascii() or unicodedata.name(char, "").startswith("LATIN ")


def top_k(scores, k):
    """The ``k`` largest entries of each row of ``scores`` and their columns, best first (ties: lower column)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.empty((len(scores), 0), np.float32), np.empty((len(scores), 0), np.int64)
    # Stable argsort of the negated scores: equal scores keep column order.
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition breaks ties arbitrarily; keep every column tied with the k-th score.
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        cand = [np.flatnonzero(row >= t) for row, t in zip(scores, kth[:, 0])]
    else:
        cand = [np.arange(scores.shape[1])] * len(scores)
    idx = np.empty((len(scores), k), dtype=np.int64)
    for i, (row, c) in enumerate(zip(scores, cand)):
        idx[i] = c[np.argsort(-row[c], kind="stable")][:k]
    return np.take_along_axis(scores, idx, axis=1), idx


def reciprocal_rank_fusion(rankings, k, constant=RRF_K):
    """Fuse ranked lists of ids: ``score(d) = sum over lists of 1 / (constant + rank of d)``.

    ``rankings`` holds, for each query, a sequence of rankings (arrays of ids,
    best first, ``-1`` for padding; ranks start at 1). Returns, per query, the
    ``k`` best ``(ids, scores)`` as arrays, best first; ties go to the id ranked
    first by the earliest list.
    """
    fused = []
    for lists in rankings:
        score, first_seen = {}, {}
        for list_number, ranking in enumerate(lists):
            for rank, item in enumerate(ranking, start=1):
                item = int(item)
                if item < 0:
                    continue
                score[item] = score.get(item, 0.0) + 1.0 / (constant + rank)
                first_seen.setdefault(item, (list_number, rank))
        best = sorted(score, key=lambda d: (-score[d], first_seen[d]))[:k]
        fused.append((np.array(best, dtype=np.int64), np.array([score[d] for d in best], dtype=np.float32)))
    return fused
