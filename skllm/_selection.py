"""How the demonstrations of a few-shot prompt are chosen from the pool: one small object per strategy.

Shared by :class:`~skllm.FewShotClassifier` and :class:`~skllm.FewShotGenerator`.
A strategy is a scikit-learn estimator: it is cloned with the estimator that
uses it, and ``GridSearchCV`` tunes its parameters as ``example_selection__<name>``.
"""

import os

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._validation import check_bool, check_choice, check_int, check_labels, check_texts


def resolve_embedder(embedder, name="embedder", **settings):
    """A fresh :class:`TransformerEmbedder` for ``embedder``: None (the default model), a model name or folder, or
    a ``TransformerEmbedder`` (cloned); anything else raises a ``ValueError`` naming ``name``.

    ``settings`` (e.g. ``cache_dir``, ``device``) go to an embedder built from a name or None; a given
    ``TransformerEmbedder`` keeps its own."""
    from ._embed import TransformerEmbedder

    if embedder is None:
        return TransformerEmbedder(**settings)
    if isinstance(embedder, (str, os.PathLike)):
        return TransformerEmbedder(os.fspath(embedder), **settings)
    if isinstance(embedder, TransformerEmbedder):
        return clone(embedder)
    raise ValueError(
        f"{name} must be a model name or folder, a TransformerEmbedder or None, got "
        f"{type(embedder).__name__} {embedder!r:.60}."
    )


def balanced_order(candidates, y, k, rng=None):
    """Up to ``k`` of ``candidates`` (in their order, or shuffled by ``rng``), classes taken in turn.

    Where ``k`` is not a multiple of the number of classes (or a class runs out), the classes
    whose first candidate comes first get the extra examples: for a ranking, the classes
    nearest the text; for shuffled candidates, classes drawn at random (not always the first
    in sorted order, which would leave the others out of every prompt).
    """
    by_class = {}
    for i in candidates if rng is None else rng.permutation(candidates):
        by_class.setdefault(repr(y[i]), []).append(int(i))
    taken, n = dict.fromkeys(by_class, 0), 0
    while n < k and any(taken[key] < len(queue) for key, queue in by_class.items()):
        for key, queue in by_class.items():
            if taken[key] < len(queue) and n < k:
                taken[key], n = taken[key] + 1, n + 1
    # Listed by classes in sorted order, taken in turn: the order the permutation below shuffles.
    queues = [by_class[key][: taken[key]] for key in sorted(by_class)]
    chosen = []
    while any(queues):
        for queue in queues:
            if queue:
                chosen.append(queue.pop(0))
    if rng is not None:
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    return chosen


class ExampleSelection(BaseEstimator):
    """How demonstrations are chosen: the base of every selection strategy.

    ``fit(X, y, n_examples=..., random_state=...)`` sees the pool (texts and
    their labels or outputs); ``select(texts)`` returns, for each text, the pool
    indices of its demonstrations, the most relevant last (closest to the text
    in the prompt, and the last to be dropped when a prompt is too long).

    Examples
    --------
    >>> from skllm import BalancedSelection
    >>> selection = BalancedSelection().fit(["a", "b", "c", "d"], ["x", "x", "y", "y"], n_examples=2, random_state=0)
    >>> selection.select(["a new text"])
    [[..., ...]]
    """

    #: name accepted by ``example_selection=``
    name = ""

    def fit(self, X, y, *, n_examples=4, random_state=None):
        """Choose from the pool ``X`` with labels (or outputs) ``y``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit(): {_CONTRACT}")

    def select(self, X, exclude=None):
        """Pool indices of the demonstrations of each text of ``X``, the most relevant last.

        ``exclude`` gives, per text, the pool indices that must not be among its
        demonstrations (a list, or None): a pool text that is classified itself,
        to estimate the calibration prior, must not see its own answer, nor that
        of a copy of it elsewhere in the pool.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement select(): {_CONTRACT}")

    def _check_pool(self, X, y, n_examples):
        X, y = check_texts(X, name="the pool X"), check_labels(y, "y")
        if len(X) != len(y):
            raise ValueError(f"The pool has {len(X)} texts but {len(y)} labels; they must match row for row.")
        check_int(n_examples, "n_examples", 0)
        return X, y, min(n_examples, len(X))


def _check_selecting(X, exclude):
    """``X`` as a list of texts, ``exclude`` (if given) one entry per text; else a ValueError."""
    X = check_texts(X)
    if exclude is not None and len(exclude) != len(X):
        raise ValueError(
            f"exclude has {len(exclude)} entries for {len(X)} texts; it needs one per text (a list of pool "
            f"indices, or None)."
        )
    return X


class _SameForEveryText(ExampleSelection):
    """A strategy that picks the demonstrations once, in ``fit``."""

    def fit(self, X, y, *, n_examples=4, random_state=None):
        X, y, k = self._check_pool(X, y, n_examples)
        self.indices_ = self._choose(len(X), y, k, check_random_state(random_state))
        return self

    def select(self, X, exclude=None):
        # Fixed demonstrations: the estimator keeps them out of what it classifies to calibrate.
        check_is_fitted(self, "indices_")
        return [list(self.indices_) for _ in range(len(_check_selecting(X, exclude)))]


class BalancedSelection(_SameForEveryText):
    """The same demonstrations for every text, taken from each class in turn.

    The pool is shuffled with the estimator's ``random_state``, then one
    example of each class is taken in turn until ``n_examples``; their order
    in the prompt is shuffled too. ``example_selection="balanced"``.

    Attributes
    ----------
    indices_ : list of int
        Pool indices of the demonstrations.

    Examples
    --------
    >>> from skllm import BalancedSelection
    >>> pool, labels = ["great", "awful", "fine", "dull"], ["pos", "neg", "pos", "neg"]
    >>> chosen = BalancedSelection().fit(pool, labels, n_examples=2, random_state=0).indices_
    >>> sorted(labels[i] for i in chosen)
    ['neg', 'pos']
    """

    name = "balanced"

    def _choose(self, n, y, k, rng):
        return balanced_order(np.arange(n), y, k, rng)


class RandomSelection(_SameForEveryText):
    """The same demonstrations for every text, drawn at random from the pool (once).

    ``example_selection="random"``; reproducible with the estimator's ``random_state``.

    Attributes
    ----------
    indices_ : list of int
        Pool indices of the demonstrations.

    Examples
    --------
    >>> from skllm import RandomSelection
    >>> RandomSelection().fit(["a", "b", "c", "d"], ["x", "y", "x", "y"], n_examples=2, random_state=0).indices_
    [2, 3]
    """

    name = "random"

    def _choose(self, n, y, k, rng):
        return rng.choice(n, size=k, replace=False).tolist()


class FirstSelection(_SameForEveryText):
    """The first ``n_examples`` of the pool, in their order, for every text.

    ``example_selection="first"``: the demonstrations are exactly the first
    pairs given to ``fit``.

    Attributes
    ----------
    indices_ : list of int
        ``[0, 1, ..., n_examples - 1]``.

    Examples
    --------
    >>> from skllm import FirstSelection
    >>> FirstSelection().fit(["a", "b", "c"], ["A", "B", "C"], n_examples=2).indices_
    [0, 1]
    """

    name = "first"

    def _choose(self, n, y, k, rng):
        return list(range(k))


class NearestSelection(ExampleSelection):
    """For each text, the pool texts most similar to it (cosine similarity of embeddings).

    ``example_selection="nearest"``. The pool is embedded once in ``fit``; each
    text is embedded when its prompt is built (both through the embedder's
    cache). The most similar demonstration is rendered last, next to the text.

    Parameters
    ----------
    embedder : str, TransformerEmbedder or None, default=None
        Embeds pool and texts; ``None`` means ``TransformerEmbedder()``
        (all-MiniLM-L6-v2), a model name or folder ``TransformerEmbedder(name)``. Cloned in ``fit``; tune it as
        ``example_selection__embedder__<name>``.
    balance : bool, default=False
        Take the nearest example of each class in turn instead of the nearest
        overall.
    retrieval : {"dense", "lexical", "hybrid"}, default="dense"
        How the pool is ranked for a text, as in :class:`DocumentIndex`: by
        cosine similarity of embeddings, by BM25 over words, or by the
        reciprocal-rank fusion of the two.

    Attributes
    ----------
    embedder_ : TransformerEmbedder or None
        The fitted embedder (no weights pickled); ``None`` with ``retrieval="lexical"``.
    embeddings_ : ndarray of shape (n_pool, dim) or None
        The pool's embeddings; ``None`` with ``retrieval="lexical"``.
    model_identity_ : str or None
        The model files ``embeddings_`` were made with (the embedder's
        ``model_identity_`` at fit), kept through pickles: a loaded copy warns
        at its first embedding if the files have changed since.
    pool_ : list of str or None
        The pool's texts, for the BM25 ranking (``None`` with ``retrieval="dense"``).
    labels_ : list
        The pool's labels (for ``balance``).
    n_examples_ : int
        Demonstrations per text.

    Examples
    --------
    >>> from skllm import NearestSelection
    >>> pool = ["The cat sat on the mat.", "Stocks fell sharply today.", "A kitten played with yarn."]
    >>> selection = NearestSelection().fit(pool, ["pets", "finance", "pets"], n_examples=1)
    >>> [pool[i] for i in selection.select(["My cat is asleep."])[0]]
    ['The cat sat on the mat.']
    """

    name = "nearest"

    def __init__(self, embedder=None, *, balance=False, retrieval="dense"):
        self.embedder = embedder
        self.balance = balance
        self.retrieval = retrieval

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_vectors_checked", None)  # each loaded copy checks its model files again
        return state

    def __setstate__(self, state):
        state.setdefault("retrieval", "dense")  # pickled before `retrieval` existed
        if state.get("embedder_") is not None:  # pickled before it kept its own record: the embedder's, as pickled
            state.setdefault("model_identity_", state["embedder_"].model_identity_)
        super().__setstate__(state)

    def fit(self, X, y, *, n_examples=4, random_state=None):
        check_bool(self.balance, "balance")
        check_choice(self.retrieval, "retrieval", ("dense", "lexical", "hybrid"))
        embedder = resolve_embedder(self.embedder)
        X, y, k = self._check_pool(X, y, n_examples)
        self.embedder_ = self.embeddings_ = self.pool_ = self.model_identity_ = None
        if self.retrieval != "lexical":
            self.embedder_ = embedder.fit()
            self.model_identity_ = self.embedder_.model_identity_
            self.embeddings_ = self.embedder_.transform(X)
        if self.retrieval != "dense":
            self.pool_ = [str(text) for text in X]
        self.labels_ = y
        self.n_examples_ = k
        return self

    def _rankings(self, X):
        """The whole pool ranked for each text of ``X``, best first."""
        from ._embed import check_stored_vectors
        from ._lexical import BM25, reciprocal_rank_fusion

        if self.embeddings_ is not None:
            vectors = self.embedder_.transform(X)
            check_stored_vectors(
                self, "NearestSelection", "Fit it again, or restore the model files it was fitted with."
            )
            dense = np.argsort(-(vectors @ self.embeddings_.T), axis=1, kind="stable")
            if getattr(self, "pool_", None) is None:  # also a selection pickled before `retrieval`
                return dense
        # Built per call from the pool's texts: cheap for a pool, and no private object in the pickle.
        scores, lexical = BM25(self.pool_).top([str(text) for text in X], len(self.pool_))
        if self.embeddings_ is None:
            return lexical
        lexical = np.where(scores > 0, lexical, -1)  # sharing no word: not in the lexical ranking
        return [ids for ids, _ in reciprocal_rank_fusion(list(zip(dense, lexical)), len(self.pool_))]

    def select(self, X, exclude=None):
        check_is_fitted(self, "labels_")
        X = _check_selecting(X, exclude)
        chosen = []
        exclude = [None] * len(X) if exclude is None else exclude
        for ranked, skip in zip(self._rankings(X), exclude):
            if skip is not None:
                ranked = np.asarray(ranked)[~np.isin(ranked, skip)]
            if self.balance:
                # Taken class by class, then put back in rank order: the most similar goes last
                # whichever class it is (in class order, the last would be the first class's).
                rank = {int(i): r for r, i in enumerate(ranked)}
                picks = sorted(balanced_order(ranked, self.labels_, self.n_examples_), key=rank.__getitem__)
            else:
                picks = ranked[: self.n_examples_].tolist()
            chosen.append(picks[::-1])  # most similar last
        return chosen


SELECTIONS = {cls.name: cls for cls in (BalancedSelection, RandomSelection, NearestSelection, FirstSelection)}
_CONTRACT = (
    "a selection strategy subclasses ExampleSelection and implements fit(X, y, *, n_examples, random_state) "
    f"and select(X, exclude=None); or use one of {sorted(SELECTIONS)}."
)


def resolve_selection(selection, nearest=None):
    """A fresh strategy for a name, or a clone of the given object.

    ``nearest`` returns the strategy the estimator builds for ``"nearest"``
    from its own parameters.
    """
    if isinstance(selection, ExampleSelection):
        missing = [m for m in ("fit", "select") if getattr(type(selection), m) is getattr(ExampleSelection, m)]
        if missing:
            raise ValueError(
                f"example_selection={selection!r} does not implement {' and '.join(f'{m}()' for m in missing)}: "
                f"{_CONTRACT}"
            )
        return clone(selection)
    if isinstance(selection, str) and selection in SELECTIONS:
        if selection == "nearest" and nearest is not None:
            return nearest()
        return SELECTIONS[selection]()
    raise ValueError(
        f"example_selection={selection!r} is not supported; use one of {sorted(SELECTIONS)} "
        f"or a selection object such as NearestSelection(balance=True)."
    )
