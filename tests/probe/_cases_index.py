"""Cases for DocumentIndex (ids, vectors, k, saved files) and RetrievalQA."""

import json

import numpy as np
from _cases_encoders import PREDICT_X_SHORT
from _context import Case
from _families import BASE, NAN, check_output, float_values, int_values, none_ok, param_cases, text_cases

import skllm

DOCS = [
    "great film with a fun story",
    "awful film and a dull plot",
    "loved it, the best movie",
    "hated it, the worst movie and boring",
    "a short story about a long film",
]
IDS = ["a", "b", "c", "d", "e"]
QUERY = ["great film", "worst movie"]


def _embedder(ctx):
    return skllm.TransformerEmbedder(ctx.bert, cache_dir=ctx.cache, max_length=32)


def make_index(ctx, **params):
    params.setdefault("chunk_size", 8)
    params.setdefault("chunk_overlap", 2)
    params.setdefault("backend", "numpy")
    embedder = params.pop("embedder", None) or _embedder(ctx)
    return skllm.DocumentIndex(embedder, **params)


def fitted_index(ctx):
    return ctx.fitted(("index",), lambda: make_index(ctx).fit(DOCS, ids=IDS))


def _hits(n):
    def check(result, ctx):
        if len(result) != n or not all(isinstance(h, list) for h in result):
            return f"{len(result)} hit lists for {n} queries"
        for hits in result:
            if any(h.doc_id not in IDS for h in hits):
                return f"hits of unknown documents {[h.doc_id for h in hits]}"
        return None

    return check


def _queries(model, ctx):
    hits = model.query(QUERY, k=2)
    return None if len(hits) == 2 and all(len(h) <= 2 for h in hits) else f"hits {hits!r:.100}"


def index_cases(ctx):
    group = "DocumentIndex"
    cases = text_cases(group, "fit", lambda ctx, X: make_index(ctx).fit(X), "estimator", xname="documents")
    cases += text_cases(group, "query", lambda ctx, X: fitted_index(ctx).query(X, k=2), "hits", xname="texts")
    for retrieval in ("dense", "lexical", "hybrid"):
        cases += text_cases(
            group,
            f"query ({retrieval})",
            lambda ctx, X, r=retrieval: fitted_index(ctx).set_params(retrieval=r).query(X, k=2),
            "hits",
            xname="texts",
            only=[
                "None",
                "bare string",
                "None at row 1",
                "empty string",
                "whitespace only",
                "lone surrogate at row 1",
                "Series with shuffled int index",
            ],
        )
    cases += text_cases(
        group,
        "search_words",
        lambda ctx, X: fitted_index(ctx).search_words(X, 2),
        "scores_pair",
        xname="texts",
        only=["None", "bare string", "None at row 1", "empty list"],
    )
    cases += text_cases(
        group,
        "partial_fit",
        lambda ctx, X: make_index(ctx).fit(DOCS).partial_fit(X, ids=None),
        "estimator",
        xname="documents",
        only=["None", "bare string", "None at row 1", "empty list", "tuple"],
    )

    fit_ids = lambda ctx, ids: make_index(ctx).fit(DOCS, ids=ids)  # noqa: E731
    for label, ids, expect, match in [
        ("duplicates", ["a", "b", "a", "d", "e"], "raises", (r"ids|duplicate|unique", r"'a'|\ba\b")),
        ("one short", IDS[:4], "raises", (r"ids", r"\b4\b", r"\b5\b")),
        ("one too many", [*IDS, "f"], "raises", (r"ids", r"\b6\b", r"\b5\b")),
        ("unhashable lists", [[1], [2], [3], [4], [5]], "raises", (r"ids|hashable",)),
        ("a string", "abcde", "raises", (r"ids",)),
        ("None among them", ["a", None, "c", "d", "e"], "either", (r"ids|None",)),
        ("NaN among them", ["a", NAN, "c", "d", "e"], "raises", (r"ids|NaN",)),
        ("numpy ints", np.arange(5), "ok", ()),
        ("int and str mixed", [1, "b", 3, "d", 5], "either", (r"ids|mix|type",)),
        ("1 and '1' (equal as JSON)", [1, "1", 3, 4, 5], "either", (r"ids|duplicate|JSON",)),
        ("True and 1 (equal keys)", [True, 1, 3, 4, 5], "raises", (r"ids|duplicate|unique",)),
        ("floats 1.0 and 1", [1.0, 1, 3, 4, 5], "raises", (r"ids|duplicate|unique",)),
        ("tuples", [(1, 2), (3, 4), (5, 6), (7, 8), (9, 0)], "either", (r"ids|JSON",)),
        ("an int", 5, "raises", (r"ids",)),
    ]:
        cases.append(
            Case(
                group,
                f"fit: ids {label}",
                repr(ids)[:120],
                lambda ctx, ids=ids: fit_ids(ctx, ids),
                expect,
                match,
                check=_queries,
            )
        )
    for label, meta, expect, match in [
        ("one short", [{}] * 4, "raises", (r"metadata", r"\b4\b", r"\b5\b")),
        ("not dicts", ["x"] * 5, "raises", (r"metadata", r"dict")),
        ("None among them", [{}, None, {}, {}, {}], "either", (r"metadata", r"\b1\b")),
        ("a single dict", {"source": "x"}, "raises", (r"metadata",)),
        ("dicts", [{"n": i} for i in range(5)], "ok", ()),
    ]:
        cases.append(
            Case(
                group,
                f"fit: metadata {label}",
                repr(meta)[:120],
                lambda ctx, m=meta: make_index(ctx).fit(DOCS, metadata=m),
                expect,
                match,
                check=_queries,
            )
        )
    query_k = lambda ctx, k: fitted_index(ctx).query(QUERY, k=k)  # noqa: E731
    ks = [*int_values(1, huge="ok"), ("100 (more than the chunks)", 100, "ok"), ("np.int64(2)", np.int64(2), "ok")]
    for label, k, expect in ks:
        cases.append(
            Case(
                group,
                f"query: k={label}",
                f"k={k!r}",
                lambda ctx, k=k: query_k(ctx, k),
                expect,
                (r"\bk\b",),
                check=_hits(2),
            )
        )
    for label, k, expect in [
        ("0", 0, "raises"),
        ("-1", -1, "raises"),
        ("'2'", "2", "raises"),
        ("None", None, "raises"),
    ]:
        cases.append(
            Case(
                group,
                f"search_words: k={label}",
                f"k={k!r}",
                lambda ctx, k=k: fitted_index(ctx).search_words(QUERY, k),
                expect,
                (r"\bk\b",),
            )
        )
    make_fit = lambda ctx, **p: make_index(ctx, **p).fit(DOCS, ids=IDS)  # noqa: E731
    for param, values in [
        ("chunk_size", int_values(1, huge="ok")),
        (
            "chunk_overlap",
            [v for v in int_values(0, huge=None) if v[0] != "None"]
            + [("8 (= chunk_size)", 8, "raises"), ("20 (> chunk_size)", 20, "raises")],
        ),
        ("retrieval", [("'bogus'", "bogus", "raises"), ("None", None, "raises"), ("'Dense'", "Dense", "either")]),
        ("backend", [("'bogus'", "bogus", "raises"), ("None", None, "raises")]),
        (
            "search",
            [
                ("'bogus'", "bogus", "raises"),
                ("'hnsw' with backend='numpy'", "hnsw", "raises"),
                ("'ivf' with backend='numpy'", "ivf", "raises"),
            ],
        ),
    ]:
        cases += param_cases(group, "fit", make_fit, param, values, check=_queries)
    faiss_fit = lambda ctx, **p: make_index(ctx, backend="faiss", **p).fit(DOCS * 8)  # noqa: E731
    for param, values, search in [
        ("hnsw_m", int_values(1, huge=None), "hnsw"),
        ("ef_search", int_values(1, huge="either"), "hnsw"),
        ("n_lists", none_ok(int_values(1, huge="either")), "ivf"),
        ("n_probe", int_values(1, huge="either"), "ivf"),
    ]:
        cases += param_cases(
            group,
            f"fit ({search})",
            lambda ctx, s=search, **p: faiss_fit(ctx, search=s, **p),
            param,
            values,
            check=lambda m, ctx: None if len(m.query(QUERY, k=2)) == 2 else "bad hits",
        )
    for label, embedder, expect, match in [
        ("5", 5, "raises", (r"embedder",)),
        ("a FineTuneClassifier", "ftc", "raises", (r"embedder",)),
        ("a missing folder", "/nonexistent/probe-encoder", "raises", (r"probe-encoder",)),
        ("the tiny BERT folder (a name)", "bert", "ok", ()),
    ]:

        def run(ctx, embedder=embedder):
            value = (
                {"ftc": skllm.FineTuneClassifier(ctx.bert), "bert": ctx.bert}.get(embedder, embedder)
                if isinstance(embedder, str)
                else embedder
            )
            return skllm.DocumentIndex(value, chunk_size=8, chunk_overlap=2).fit(DOCS, ids=IDS)

        cases.append(Case(group, f"fit: embedder={label}", label, run, expect, match, check=_queries))

    # remove / partial_fit
    def fresh(ctx):
        return make_index(ctx).fit(DOCS, ids=IDS)

    for label, ids, expect, match, allow in [
        ("an unknown id", ["zz"], "raises", (r"zz",), (KeyError,)),
        ("a known and an unknown id", ["a", "zz"], "raises", (r"zz",), (KeyError,)),
        ("a bare string id", "a", "either", (r"ids|string",), ()),
        ("None", None, "raises", (r"ids",), ()),
        ("an empty list", [], "either", (r"ids|empty",), ()),
        ("the same id twice", ["a", "a"], "either", (r"ids|duplicate|twice",), ()),
        ("every document", IDS, "either", (r"empty|every|all",), ()),
    ]:
        cases.append(
            Case(
                group,
                f"remove: {label}",
                repr(ids),
                lambda ctx, ids=ids: fresh(ctx).remove(ids),
                expect,
                match,
                check=lambda r, ctx: None,
                allow=allow,
            )
        )

    def removed_then_query(ctx):
        index = fresh(ctx)
        index.remove(IDS)
        return index.query(QUERY, k=2)

    cases.append(
        Case(
            group,
            "query after removing every document",
            "remove(all) then query",
            removed_then_query,
            "either",
            (r"empty|no document",),
            check=lambda r, ctx: None if r == [[], []] else f"hits {r!r:.80}",
        )
    )
    for label, ids, expect, match in [
        ("an id already indexed", ["a"], "raises", (r"'a'|\ba\b", r"already|duplicate|exists")),
        ("ids one short", [], "raises", (r"ids",)),
        ("new ids", ["f"], "ok", ()),
    ]:
        cases.append(
            Case(
                group,
                f"partial_fit: {label}",
                repr(ids),
                lambda ctx, ids=ids: fresh(ctx).partial_fit(["a new film"], ids=ids),
                expect,
                match,
                check=_queries,
            )
        )
    cases.append(
        Case(
            group,
            "partial_fit: default ids after explicit ones",
            "fit(ids=['a'..]) then partial_fit(no ids)",
            lambda ctx: fresh(ctx).partial_fit(["a new film"]),
            "either",
            (r"ids",),
            check=_queries,
        )
    )
    cases.append(
        Case(
            group,
            "partial_fit: default ids twice",
            "partial_fit twice without ids",
            lambda ctx: make_index(ctx).fit(DOCS).partial_fit(["a new film"]),
            "ok",
            check=lambda m, ctx: None if m.n_documents_ == 6 else f"{m.n_documents_} documents",
        )
    )

    # search_vectors
    def vectors(ctx, make):
        index = fitted_index(ctx)
        return index.search_vectors(make(index.embedder_.embedding_dim_), 2)

    for label, make, expect, match in [
        ("the right width", lambda d: np.ones((2, d), dtype=np.float32), "ok", ()),
        ("a wrong width", lambda d: np.ones((2, d + 3), dtype=np.float32), "raises", (r"\d+",)),
        ("NaN", lambda d: np.full((1, d), NAN, dtype=np.float32), "raises", (r"NaN|finite",)),
        ("inf", lambda d: np.full((1, d), np.inf, dtype=np.float32), "raises", (r"inf|finite",)),
        ("1-D", lambda d: np.ones(d, dtype=np.float32), "either", (r"2-D|shape|1-D",)),
        ("a list of lists", lambda d: [[1.0] * d], "ok", ()),
        ("strings", lambda d: [["a"] * d], "raises", (r"number|float|str",)),
        ("None", lambda d: None, "raises", (r"vectors",)),
        ("zero vector", lambda d: np.zeros((1, d), dtype=np.float32), "either", (r"zero|norm",)),
        ("empty (0, d)", lambda d: np.zeros((0, d), dtype=np.float32), "either", (r"empty",)),
    ]:
        cases.append(
            Case(
                group,
                f"search_vectors: {label}",
                label,
                lambda ctx, m=make: vectors(ctx, m),
                expect,
                match,
                check=lambda r, ctx: None,
            )
        )
    cases.append(
        Case(
            group,
            "search_vectors: k=0",
            "k=0",
            lambda ctx: (
                vectors(ctx, lambda d: np.ones((1, d), np.float32))
                and fitted_index(ctx).search_vectors(np.ones((1, 16), np.float32), 0)
            ),
            "raises",
            (r"\bk\b",),
        )
    )
    cases += _saved_file_cases(group)
    cases.append(
        Case(
            group,
            "set_params(retrieval='bogus') then query",
            "retrieval='bogus' on a fitted index",
            lambda ctx: fresh(ctx).set_params(retrieval="bogus").query(QUERY, k=2),
            "raises",
            (r"retrieval",),
        )
    )
    for method, args in [
        ("query", (QUERY,)),
        ("remove", (["a"],)),
        ("search_words", (QUERY, 2)),
        ("save", ("/tmp/never-written",)),
    ]:
        cases.append(
            Case(
                group,
                f"{method} before fit",
                "unfitted",
                lambda ctx, m=method, a=args: getattr(make_index(ctx), m)(*a),
                "raises",
                (r"fit",),
            )
        )
    return cases


def _saved_file_cases(group):
    def saved(ctx):
        folder = ctx.path("index")
        make_index(ctx).fit(DOCS, ids=IDS, metadata=[{"n": i} for i in range(5)]).save(folder)
        return folder

    def damaged(edit):
        def run(ctx):
            folder = saved(ctx)
            edit(folder)
            return skllm.DocumentIndex.load(folder)

        return run

    def rewrite_json(change):
        def edit(folder):
            state = json.loads((folder / "index.json").read_text())
            change(state)
            (folder / "index.json").write_text(json.dumps(state))

        return edit

    def truncate(name, keep=0.5):
        def edit(folder):
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[: int(len(data) * keep)])

        return edit

    def first_key_of_list(state):
        for key, value in state.items():
            if isinstance(value, list) and value:
                return key
        return None

    def drop_first_list_item(state):
        key = first_key_of_list(state)
        state[key] = state[key][1:]

    def save_vectors(make):
        def edit(folder):
            vectors = np.load(folder / "vectors.npy")
            np.save(folder / "vectors.npy", make(vectors))

        return edit

    def save_alive(make):
        def edit(folder):
            alive = np.load(folder / "alive.npy")
            np.save(folder / "alive.npy", make(alive))

        return edit

    cases = []
    specs = [
        ("index.json deleted", lambda f: (f / "index.json").unlink(), (r"index\.json",)),
        ("vectors.npy deleted", lambda f: (f / "vectors.npy").unlink(), (r"vectors\.npy",)),
        ("alive.npy deleted", lambda f: (f / "alive.npy").unlink(), (r"alive\.npy",)),
        ("index.json truncated", truncate("index.json"), (r"index\.json",)),
        ("index.json emptied", truncate("index.json", 0), (r"index\.json",)),
        ("vectors.npy truncated", truncate("vectors.npy"), (r"vectors\.npy",)),
        ("vectors.npy garbage", lambda f: (f / "vectors.npy").write_bytes(b"\x00garbage" * 20), (r"vectors\.npy",)),
        ("index.json a JSON list", lambda f: (f / "index.json").write_text("[1, 2]"), (r"index\.json",)),
        ("index.json of another format", rewrite_json(lambda s: s.update(format=999)), (r"index\.json|format",)),
        ("index.json missing an entry", rewrite_json(lambda s: s.pop(sorted(s)[-1])), (r"index\.json",)),
        ("a list in index.json one item short", rewrite_json(drop_first_list_item), (r"index\.json|\d",)),
        ("vectors with one row less", save_vectors(lambda v: v[:-1]), (r"vectors|rows|\d",)),
        ("vectors of another width", save_vectors(lambda v: np.hstack([v, v])), (r"vectors|width|dimension|\d",)),
        (
            "vectors with NaN",
            save_vectors(lambda v: np.where(np.arange(v.shape[0])[:, None] == 0, np.nan, v)),
            (r"vectors|NaN|finite",),
        ),
        ("vectors as float64", save_vectors(lambda v: v.astype(np.float64)), ()),
        ("vectors 1-D", save_vectors(lambda v: v.ravel()), (r"vectors|shape|1-D",)),
        ("alive of another length", save_alive(lambda a: np.concatenate([a, a])), (r"alive|\d",)),
        ("alive as strings", save_alive(lambda a: np.array(["x"] * len(a))), (r"alive",)),
        ("index.json not UTF-8", lambda f: (f / "index.json").write_bytes(b"\xff\xfe\x00{"), (r"index\.json",)),
    ]
    for label, edit, match in specs:
        expect = "ok" if label == "vectors as float64" else "raises"
        check = (lambda m, ctx: _queries(m, ctx)) if expect == "ok" else None
        cases.append(Case(group, f"load: {label}", label, damaged(edit), expect, match, check=check))
    for label, path, match in [
        ("a missing folder", lambda ctx: ctx.path("no-index"), (r"no-index",)),
        ("an empty folder", lambda ctx: _mkdir(ctx.path("empty-index")), (r"empty-index|index\.json",)),
        ("a file", lambda ctx: _touch(ctx.path("index-file")), (r"index-file",)),
        ("None", lambda ctx: None, (r"path",)),
    ]:
        cases.append(
            Case(group, f"load: {label}", label, lambda ctx, p=path: skllm.DocumentIndex.load(p(ctx)), "raises", match)
        )
    for label, path, match in [
        ("an existing file", lambda ctx: _touch(ctx.path("save-file")), (r"save-file",)),
        ("None", lambda ctx: None, (r"path",)),
        ("under /proc", lambda ctx: "/proc/skllm-probe-index", (r"proc|permission|writ",)),
    ]:
        cases.append(
            Case(group, f"save: to {label}", label, lambda ctx, p=path: fitted_index(ctx).save(p(ctx)), "raises", match)
        )
    cases.append(
        Case(
            group,
            "save: metadata not JSON-serialisable",
            "metadata=[{'x': object()}, ...]",
            lambda ctx: make_index(ctx).fit(DOCS, metadata=[{"x": object()}] + [{}] * 4).save(ctx.path("meta")),
            "raises",
            (r"metadata|JSON",),
        )
    )
    cases.append(
        Case(
            group,
            "save: ids not JSON-serialisable",
            "ids=[(1, 2), ...]",
            lambda ctx: (
                make_index(ctx).fit(DOCS, ids=[(1, 2), (3, 4), (5, 6), (7, 8), (9, 0)]).save(ctx.path("tuple-ids"))
            ),
            "either",
            (r"ids|JSON",),
            check=lambda r, ctx: None,
        )
    )

    def round_trip(ctx):
        folder = saved(ctx)
        before = fitted_index(ctx).query(QUERY, k=2)
        after = skllm.DocumentIndex.load(folder).query(QUERY, k=2)
        return before, after

    cases.append(
        Case(
            group,
            "load: a good save (round trip)",
            "save then load",
            round_trip,
            "ok",
            check=lambda r, ctx: (
                None
                if [[h.doc_id for h in q] for q in r[0]] == [[h.doc_id for h in q] for q in r[1]]
                else "hits changed"
            ),
        )
    )
    return cases


def _mkdir(path):
    path.mkdir()
    return path


def _touch(path):
    path.write_text("x")
    return path


# -- RetrievalQA -------------------------------------------------------------------------------


def qa_cases(ctx):
    group = "RetrievalQA"

    def generator(ctx):
        return skllm.FewShotGenerator(ctx.llama, max_new_tokens=4, max_length=256, cache_dir=ctx.cache)

    def make(ctx, **params):
        params.setdefault("index", fitted_index(ctx))
        params.setdefault("generator", generator(ctx))
        params.setdefault("k", 1)
        return skllm.RetrievalQA(**params)

    def fitted(ctx):
        return ctx.fitted(("qa",), lambda: make(ctx).fit())

    def answers(model, ctx):
        result = model.predict(QUERY)
        return None if len(result) == 2 and all(isinstance(a, str) for a in result) else f"answers {result!r:.80}"

    cases = text_cases(
        group, "predict", lambda ctx, X: fitted(ctx).predict(X), "texts", only=[*PREDICT_X_SHORT, "tuple", "int"]
    )
    cases += text_cases(
        group,
        "predict_with_sources",
        lambda ctx, X: fitted(ctx).predict_with_sources(X),
        "texts",
        only=PREDICT_X_SHORT[:7],
    )
    cases += text_cases(
        group,
        "fit",
        lambda ctx, X: make(ctx).fit(X),
        "estimator",
        only=["None", "bare string", "None at row 1", "empty list"],
    )
    for case in cases:
        if case.name == "fit: None":  # fit() without questions is the documented use
            case.expect, case.check = "ok", check_output("estimator", 0)
    fit = lambda ctx, **p: make(ctx, **p).fit()  # noqa: E731
    for param, values in [
        ("k", int_values(1, huge="ok")),
        (
            "template",
            [
                ("without {context}", "Q: {question}", "raises"),
                ("without {question}", "C: {context}", "raises"),
                ("with {bogus}", "{context} {question} {bogus}", "raises"),
                ("int", 5, "raises"),
                ("{text} instead of {question}", "{context} {text}", "raises"),
            ],
        ),
    ]:
        cases += param_cases(group, "fit", fit, param, values, check=answers)
    for label, index, match in [
        ("None", lambda ctx: None, r"index"),
        ("unfitted", lambda ctx: make_index(ctx), r"index|fit"),
        ("a string", lambda ctx: "my-index", r"index"),
        ("a list of documents", lambda ctx: DOCS, r"index"),
    ]:
        cases.append(
            Case(
                group,
                f"fit: index={label}",
                label,
                lambda ctx, i=index: make(ctx, index=i(ctx)).fit(),
                "raises",
                (match,),
            )
        )
    for label, gen, expect, match in [
        ("a FineTuneClassifier", lambda ctx: skllm.FineTuneClassifier(ctx.bert), "raises", r"generator"),
        ("a ZeroShotClassifier", lambda ctx: skllm.ZeroShotClassifier(ctx.llama), "raises", r"generator"),
        ("5", lambda ctx: 5, "raises", r"generator"),
        ("a model folder name", lambda ctx: ctx.llama, "either", r"generator"),
        (
            "a fitted FineTuneGenerator",
            lambda ctx: skllm.FineTuneGenerator(ctx.llama, epochs=1, max_length=32, max_new_tokens=4).fit(
                BASE, ["a", "b", "c", "d"]
            ),
            "either",
            r"generator",
        ),
    ]:
        cases.append(
            Case(
                group,
                f"fit: generator={label}",
                label,
                lambda ctx, g=gen: make(ctx, generator=g(ctx)).fit(),
                expect,
                (match,),
                check=answers,
            )
        )
    cases.append(
        Case(
            group,
            "fit: y shorter than X",
            "2 questions, 1 answer",
            lambda ctx: make(ctx).fit(QUERY, ["x"]),
            "raises",
            (r"\b1\b", r"\b2\b"),
        )
    )
    cases.append(
        Case(
            group,
            "fit: y without X",
            "fit(None, ['x'])",
            lambda ctx: make(ctx).fit(None, ["x"]),
            "raises",
            (r"\bX\b|\by\b",),
        )
    )
    cases.append(
        Case(
            group,
            "score: y shorter than X",
            "2 questions, 1 answer",
            lambda ctx: fitted(ctx).score(QUERY, ["x"]),
            "raises",
            (r"\b1\b", r"\b2\b"),
        )
    )
    cases.append(
        Case(group, "score: y None", "y=None", lambda ctx: fitted(ctx).score(QUERY, None), "raises", (r"\by\b",))
    )
    for method in ("predict", "predict_with_sources"):
        cases.append(
            Case(
                group,
                f"{method} before fit",
                "unfitted",
                lambda ctx, m=method: getattr(make(ctx), m)(QUERY),
                "raises",
                (r"fit",),
            )
        )
    return cases


def all_cases(ctx):
    return index_cases(ctx) + qa_cases(ctx)


__all__ = ["all_cases", "float_values"]
