"""RetrievalQA: answer questions from the chunks of a DocumentIndex with a local causal LM."""

import warnings

from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ._live import _snapshot, same_value
from ._lm import check_template
from ._prompting import fit_text
from ._scoring import check_lengths, exact_match, normalize_answer
from ._validation import check_int, check_texts
from .exceptions import TruncationWarning

# The generator's parameters RetrievalQA sets: the whole prompt is its {text}, with no demonstrations.
_REPLACED = {"template": "{examples}{text}", "n_examples": 0}

DEFAULT_QA_TEMPLATE = (
    "Answer the question using only the context.\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:"
)


class RetrievalQA(BaseEstimator):
    """Answer questions from the chunks of a :class:`DocumentIndex` with a local LM.

    For each question, the ``k`` best chunks are retrieved and rendered into the
    prompt as context; the generator answers greedily.

    The fitted index is the knowledge base, not something ``fit`` learns:
    RetrievalQA only reads it, and its clones share it (as with
    :class:`sklearn.frozen.FrozenEstimator`). So ``clone``, ``GridSearchCV``
    (over ``k``, ``template`` or ``generator__<name>``) and ``cross_val_score``
    work on questions ``X`` and reference answers ``y``. To compare indexes
    (chunk sizes, embedders), fit one per setting and pass each as ``index``.

    Parameters
    ----------
    index : DocumentIndex
        A fitted index (required; ``None`` only so that the class has defaults).
    generator : FewShotGenerator, default=None
        The LM, cloned in ``fit``; ``None`` means ``FewShotGenerator(max_new_tokens=64)``
        on the default causal LM. Its prompt is this estimator's ``template``
        (its own ``template`` and ``n_examples`` are replaced, and it is fitted anew:
        demonstrations it was fitted on are not used). Its parameters
        set after ``fit`` reach ``generator_`` at ``predict``, which reads them or
        refuses them until the next ``fit``, as for its own.
    k : int, default=4
        Chunks per question.
    template : str, default=None
        Format string with ``{context}`` (the chunks, separated by blank lines)
        and ``{question}``; ``None`` uses ``skllm._retrieval_qa.DEFAULT_QA_TEMPLATE``.

    Attributes
    ----------
    generator_ : FewShotGenerator
        The fitted generator.

    Examples
    --------
    >>> from skllm import DocumentIndex, FewShotGenerator, RetrievalQA
    >>> docs = ["The Eiffel Tower is in Paris. It was finished in 1889.", "Mount Everest is in the Himalayas."]
    >>> index = DocumentIndex().fit(docs, ids=["paris", "everest"])
    >>> qa = RetrievalQA(index, generator=FewShotGenerator(max_new_tokens=8), k=1).fit()
    >>> answers, sources = qa.predict_with_sources(["When was the Eiffel Tower finished?"])
    >>> [hit.doc_id for hit in sources[0]]
    ['paris']
    >>> print("Answer:", answers[0])
    Answer: ...
    """

    DEFAULT_TEMPLATE = DEFAULT_QA_TEMPLATE

    def __init__(self, index=None, *, generator=None, k=4, template=None):
        self.index = index
        self.generator = generator
        self.k = k
        self.template = template

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def __sklearn_clone__(self):
        # The index is shared, not copied: a clone of it would be unfitted, and
        # RetrievalQA never changes it.
        params = {name: clone(value, safe=False) for name, value in self.get_params(deep=False).items()}
        params["index"] = self.index
        return type(self)(**params)

    def get_params(self, deep=True):
        """The parameters; with ``deep``, the generator's as ``generator__<name>`` (not the index's)."""
        params = super().get_params(deep=False)
        if deep and hasattr(self.generator, "get_params"):
            params.update({f"generator__{name}": value for name, value in self.generator.get_params().items()})
        return params

    def _template(self):
        return self.template if self.template is not None else DEFAULT_QA_TEMPLATE

    def fit(self, X=None, y=None):
        """Check the parameters and the index, and load the generator.

        Parameters
        ----------
        X : sequence of str, default=None
            Questions. Nothing is learnt from them (the index holds the
            knowledge): they are only checked, so that ``fit(X, y)`` works in
            pipelines and cross-validation.
        y : sequence of str, default=None
            Reference answers, one per question (used by :meth:`score`);
            given without ``X``, a ``ValueError``.
        """
        if not hasattr(self.index, "query"):
            raise ValueError(f"index must be a fitted DocumentIndex, got {self.index!r}.")
        check_is_fitted(self.index, "embedder_", msg="index must be a fitted DocumentIndex: fit it on your documents.")
        check_int(self.k, "k")
        check_template(self._template(), "template", {"context", "question"}, {"context", "question"})
        if X is not None:
            questions = check_texts(X, estimator=self)
            if y is not None:
                check_lengths(questions, check_texts(y, name="y", estimator=self))
        elif y is not None:
            raise ValueError(
                "RetrievalQA.fit got answers y without questions X: y holds one reference answer per question. "
                "Pass both, fit(questions, answers), or neither, fit()."
            )
        fitted = clone(self._generator()).set_params(**_REPLACED).fit(["-"], ["-"])
        self.generator_ = fitted  # only once fitted: a refused refit keeps the previous generator
        return self

    def set_params(self, **params):
        """Set parameters, as any estimator's; ``index__*`` is refused (the index is shared, never changed)."""
        nested = sorted(name for name in params if name.startswith("index__"))
        if nested:
            raise ValueError(
                f"RetrievalQA shares its index with its clones and never changes it, so {nested} cannot be set "
                f"through it: every clone of a grid search, and the estimator cloned, would change with it. Set "
                f"index= to another fitted DocumentIndex instead (a grid over {{'index': [index_a, index_b]}})."
            )
        return super().set_params(**params)

    def _generator(self):
        from ._generator import FewShotGenerator

        generator = self.generator if self.generator is not None else FewShotGenerator(max_new_tokens=64)
        if not isinstance(generator, FewShotGenerator):
            raise ValueError(
                f"generator must be a FewShotGenerator (the LM that writes the answers; its template and n_examples "
                f"are replaced) or None for FewShotGenerator(max_new_tokens=64), got {type(generator).__name__}."
            )
        return generator

    def _pass_on_generator_params(self):
        """The generator's parameters set since fit (``generator__max_new_tokens``, or a new ``generator``) reach
        ``generator_``, which reads them at predict or refuses them until the next fit, as it does its own."""
        current, fitted = self._generator().get_params(deep=False), self.generator_.get_params(deep=False)
        changed = {
            name: value
            for name, value in current.items()
            if name not in _REPLACED and not same_value(_snapshot(value), _snapshot(fitted[name]))
        }
        if changed:
            self.generator_.set_params(**changed)

    def predict_with_sources(self, X):
        """The answer to each question and the chunks it was given.

        Returns
        -------
        answers : ndarray of str, shape (n_questions,)
        sources : list of list of Hit
            The chunks given with each question, best first: the ``k``
            retrieved, less the lowest-ranked where the prompt would not fit
            the generator's ``max_length`` (a ``TruncationWarning`` says so).
        """
        check_is_fitted(self, "generator_")
        # Read at each prediction, as set_params may change it after fit: checked as fit checks it.
        check_template(self._template(), "template", {"context", "question"}, {"context", "question"})
        self._pass_on_generator_params()
        questions = check_texts(X, estimator=self)
        retrieved = self.index.query(questions, k=self.k)
        self.generator_._ensure_live()
        prompts, sources, unfit = [], [], []
        for row, (question, hits) in enumerate(zip(questions, retrieved)):
            # A prompt too long for the generator would lose its end, the question and the
            # answer cue: the lowest-ranked chunks go first, and the sources say what was given.
            n = len(hits)
            while True:
                prompt = self._template().format(context="\n\n".join(h.chunk for h in hits[:n]), question=question)
                if self.generator_._fits(prompt):
                    break
                if n == 0:  # the question alone is too long: its end is cut here, keeping the answer cue
                    unfit.append(row)
                    prompt = self._cut_question(question, row)
                    break
                n -= 1
            prompts.append(prompt)
            sources.append(hits[:n])
        dropped = sum(len(given) < len(hits) for given, hits in zip(sources, retrieved))
        if dropped:
            alone = (
                f" The questions at rows {unfit[:10]} are too long on their own: they were given with no chunk, "
                f"and their ends were cut (the template's end, the answer cue, kept)."
                if unfit
                else " The questions were kept whole."
            )
            generator = self.generator_
            warnings.warn(
                f"{dropped} of {len(questions)} prompts were longer than the generator's max_length="
                f"{generator.max_length_} tokens less max_new_tokens={generator.max_new_tokens} with all the chunks "
                f"retrieved; their lowest-ranked chunks were left out. The sources list the chunks given.{alone}",
                TruncationWarning,
                stacklevel=2,
            )
        return self.generator_.predict(prompts), sources

    def _cut_question(self, question, row):
        """The prompt with no chunk and the end of ``question`` cut, so that it fits the generator whole."""
        generator, template = self.generator_, self._template()
        tried = []

        def prompt_ids(text):
            tried.append(text)
            return generator._encode(
                generator._wrap(generator._render([], 0, template.format(context="", question=text)))
            )

        fit_text(
            generator.tokenizer_,
            prompt_ids,
            question,
            generator.prompt_budget_,
            max_length=generator.max_length_,
            row=row,
            reserved=f"the answer (max_new_tokens={generator.max_new_tokens})",
        )
        return template.format(context="", question=tried[-1])  # the question as cut, whose prompt fits

    def predict(self, X):
        """The answer to each question, as a 1-D array of str (see :meth:`predict_with_sources`)."""
        return self.predict_with_sources(X)[0]

    def score(self, X, y):
        """Exact match of the answers against the references ``y``, after :func:`normalize_answer`.

        Lower case, no punctuation, no articles, single spaces (the usual QA
        exact match). Pass ``scoring=`` to ``GridSearchCV`` for other metrics.
        """
        questions = check_texts(X, estimator=self)
        expected = check_texts(y, name="y", estimator=self)
        check_lengths(questions, expected)
        return exact_match(self.predict(questions), expected, normalize=normalize_answer)
