"""The families of careless inputs (texts, labels, numbers) and the checks of a right result."""

import math
import re

import numpy as np
import pandas as pd
from _context import Case

TRAIN_X = ["great film", "loved it", "best movie", "awful film", "hated it", "worst movie"]
TRAIN_Y = ["pos", "pos", "pos", "neg", "neg", "neg"]
BASE = ["great film", "awful film", "loved it", "hated it"]
CLASSES = ("neg", "pos")
LONG = "great film and a long story " * 2000


# -- results ---------------------------------------------------------------------------------


def _length(result):
    if isinstance(result, tuple):  # predict_with_sources
        result = result[0]
    return result.shape[0] if hasattr(result, "shape") else len(result)


def check_output(kind, n, classes=CLASSES):
    """A check that the result has ``n`` rows of the right kind."""

    def check(result, ctx):
        if kind == "estimator":
            return None if hasattr(result, "fit") else f"fit returned {type(result).__name__}, not the estimator"
        if _length(result) != n:
            return f"{_length(result)} rows for {n} inputs"
        if kind == "vectors":
            array = np.asarray(result, dtype=float)
            if array.ndim != 2:
                return f"shape {array.shape}, not 2-D"
            if not np.isfinite(array).all():
                return "non-finite numbers in the output"
        elif kind == "scores":
            array = np.asarray(result, dtype=float)
            if array.ndim != 1 or not np.isfinite(array).all():
                return f"not {n} finite numbers: {array!r:.100}"
        elif kind == "proba":
            array = np.asarray(result, dtype=float)
            if not np.isfinite(array).all() or not np.allclose(array.sum(axis=1), 1, atol=1e-4):
                return "probabilities not finite or rows not summing to 1"
        elif kind == "labels":
            unknown = set(np.asarray(result).tolist()) - set(classes)
            if unknown:
                return f"labels {sorted(map(str, unknown))} that fit never saw"
        elif kind == "texts":
            values = result[0] if isinstance(result, tuple) else result
            if not all(isinstance(v, str) for v in values):
                return "answers that are not strings"
        elif kind == "hits":
            if not all(isinstance(hits, list) for hits in result):
                return "query did not return one list of hits per text"
        return None

    return check


def same_as(reference, kind):
    """A check that the result equals ``reference(ctx)`` (the output of the plain list)."""

    def check(result, ctx):
        expected = reference(ctx)
        if isinstance(result, tuple):
            result, expected = result[0], expected[0]
        if kind in ("vectors", "scores", "proba"):
            a, b = np.asarray(result, dtype=float), np.asarray(expected, dtype=float)
            if a.shape != b.shape or not np.allclose(a, b, atol=1e-4):
                return "rows differ from the same texts given as a list (order or content)"
        elif kind == "hits":
            a = [[(h.doc_id, h.chunk_id) for h in hits] for hits in result]
            b = [[(h.doc_id, h.chunk_id) for h in hits] for hits in expected]
            if a != b:
                return "hits differ from the same texts given as a list"
        else:
            if list(np.asarray(result).tolist()) != list(np.asarray(expected).tolist()):
                return "rows differ from the same texts given as a list (order or content)"
        return None

    return check


def both(*checks):
    def check(result, ctx):
        for c in checks:
            if c is None:
                continue
            problem = c(result, ctx)
            if problem:
                return problem
        return None

    return check


# -- texts -----------------------------------------------------------------------------------


def text_families(xname="X"):
    """(name, X, expect, match, equiv) of careless text inputs; ``equiv`` is the list X stands for."""
    series_nan = pd.Series(["great film", np.nan, "loved it"], index=[10, 20, 30])
    name = rf"\b{xname}\b"
    return [
        # accepted forms: the same texts as the plain list, in the same order
        ("tuple", tuple(BASE), "ok", (), BASE),
        ("numpy unicode array", np.array(BASE), "ok", (), BASE),
        ("numpy object array", np.array(BASE, dtype=object), "ok", (), BASE),
        ("numpy column (n, 1)", np.array(BASE).reshape(-1, 1), "ok", (), BASE),
        ("Series with shuffled int index", pd.Series(BASE, index=[10, 3, 7, 0]), "ok", (), BASE),
        ("Series with str index", pd.Series(BASE, index=list("dcba")), "ok", (), BASE),
        ("Series of string dtype", pd.Series(BASE, dtype="string", index=[3, 2, 1, 0]), "ok", (), BASE),
        ("Series of category dtype", pd.Series(BASE, dtype="category"), "ok", (), BASE),
        ("one-column DataFrame", pd.DataFrame({"text": BASE}, index=[5, 4, 3, 2]), "ok", (), BASE),
        ("np.str_ elements", [np.str_(t) for t in BASE], "ok", (), BASE),
        ("single-text list", ["great film"], "ok", (), ["great film"]),
        ("empty string", ["great film", "", "hated it"], "ok", (), None),
        ("whitespace only", ["great film", "   \n\t ", "hated it"], "ok", (), None),
        ("emoji and accents", ["great film 😀", "café déjà vu", "日本語のテキスト"], "ok", (), None),
        ("control characters", ["great\x00film", "a\x1b[31mred", "tab\there"], "ok", (), None),
        ("very long text", ["great film", LONG], "ok", (), None),
        ("repeated text", ["great film"] * 5, "ok", (), None),
        ("generator", (t for t in BASE), "either", (name,), None),
        # refused forms
        ("None", None, "raises", (name,), None),
        ("int", 5, "raises", (name,), None),
        ("float NaN", float("nan"), "raises", (name,), None),
        ("bare string", "great film", "raises", (r"single|wrap it in a list",), None),
        ("bytes", b"great film", "raises", (r"single|bytes|wrap",), None),
        ("empty list", [], "raises", (r"empty|at least one",), None),
        ("None at row 1", ["great film", None, "hated it"], "raises", (r"None", r"\b1\b"), None),
        ("NaN at row 2", ["great film", "awful", float("nan")], "raises", (r"NaN", r"\b2\b"), None),
        ("float at row 0", [1.5, "awful film"], "raises", (r"float|1\.5", r"\b0\b"), None),
        ("int at row 1", ["great film", 7], "raises", (r"int|\b7\b", r"\b1\b"), None),
        ("bytes at row 1", ["great film", b"awful"], "raises", (r"bytes", r"\b1\b"), None),
        ("list at row 1", ["great film", ["awful", "film"]], "raises", (r"list", r"\b1\b"), None),
        ("pd.NA at row 1", ["great film", pd.NA], "raises", (r"NA|missing|not str", r"\b1\b"), None),
        (
            "lone surrogate at row 1",
            ["great film", "bad \ud800 text"],
            "raises",
            (r"surrogate|unicode", r"\b1\b"),
            None,
        ),
        ("NaN in Series, index 20", series_nan, "raises", (r"NaN", r"\b20\b"), None),
        ("2-D array (n, 2)", np.array([BASE[:2], BASE[2:]]), "raises", (r"1-D|shape|column",), None),
        ("3-D array", np.array(BASE).reshape(2, 1, 2), "raises", (r"1-D|shape",), None),
        ("0-d array", np.array("great film"), "raises", (r"single|0-d|1-D|shape|scalar|\bX\b",), None),
        ("two-column DataFrame", pd.DataFrame({"a": BASE, "b": BASE}), "raises", (r"column",), None),
        ("empty DataFrame", pd.DataFrame({"text": []}), "raises", (r"empty|at least one",), None),
        ("set", set(BASE), "raises", (r"set|order",), None),
        ("dict", dict.fromkeys(BASE, 1), "raises", (r"dict|order",), None),
        ("numeric array", np.array([1, 2, 3]), "raises", (r"str|text", r"\b0\b"), None),
        ("tokenized texts", [["great", "film"], ["awful"]], "raises", (r"list|str", r"\b0\b"), None),
    ]


def text_cases(group, prefix, target, kind, *, xname="X", classes=CLASSES, only=None, skip=()):
    """Cases feeding each text family to ``target(ctx, X)``; ok results are checked by ``kind``."""
    cases = []
    for name, X, expect, match, equiv in text_families(xname):
        if (only is not None and name not in only) or name in skip:
            continue
        n = len(equiv) if equiv is not None else (len(X) if hasattr(X, "__len__") and expect == "ok" else None)
        check = None
        if expect != "raises":
            n = n if n is not None else len(BASE)
            check = check_output(kind, n, classes)
            if equiv is not None and kind != "estimator":
                ref_key = (group, prefix, tuple(equiv))
                reference = _reference(ref_key, target, equiv)
                check = both(check, same_as(reference, kind))
        cases.append(
            Case(
                group,
                f"{prefix}: {name}",
                _describe(X),
                _bind(target, X),
                expect=expect,
                match=match,
                check=check,
            )
        )
    return cases


def _reference(key, target, equiv):
    return lambda ctx: ctx.fitted(("reference", *key), lambda: target(ctx, list(equiv)))


def _bind(target, X):
    if hasattr(X, "__next__"):  # a generator is consumed by one run: make it afresh

        def run(ctx, items=None):
            if items is None:
                items = list(X)
            return target(ctx, (t for t in items))

        return run
    return lambda ctx: target(ctx, X)


def _describe(value):
    if isinstance(value, str) and len(value) > 60:
        return f"str of {len(value)} chars"
    if isinstance(value, list) and any(isinstance(v, str) and len(v) > 60 for v in value):
        return "[" + ", ".join(repr(v) if len(str(v)) <= 60 else f"<str of {len(v)} chars>" for v in value) + "]"
    if isinstance(value, (pd.Series, pd.DataFrame)):
        content = value.to_dict() if isinstance(value, pd.Series) else value.to_dict("list")
        return f"{type(value).__name__}({content!r:.120})"
    if isinstance(value, np.ndarray):
        return f"np.array(shape={value.shape}, dtype={value.dtype})"
    if hasattr(value, "__next__"):
        return "a generator of 4 texts"
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


# -- labels ----------------------------------------------------------------------------------


N_TRAIN = len(TRAIN_X)


def label_families(n=N_TRAIN):
    """(name, y, expect, match, classes) of careless classification targets for ``n`` texts."""
    half = n // 2
    return [
        ("bool labels", [True] * half + [False] * (n - half), "ok", (), (False, True)),
        ("int labels", [1] * half + [0] * (n - half), "ok", (), (0, 1)),
        ("integral floats", [1.0] * half + [2.0] * (n - half), "ok", (), (1.0, 2.0)),
        ("np.int64 labels", [np.int64(3)] * half + [np.int64(7)] * (n - half), "ok", (), (3, 7)),
        ("Series with other index", pd.Series(TRAIN_Y[:n], index=range(100, 100 + n)), "ok", (), CLASSES),
        ("three classes", (["a", "b", "c"] * n)[:n], "ok", (), ("a", "b", "c")),
        ("empty-string label", [""] * half + ["x"] * (n - half), "either", (), ("", "x")),
        ("None", None, "raises", (r"\by\b",), None),
        ("NaN at row 1", [TRAIN_Y[0], np.nan, *TRAIN_Y[2:n]], "raises", (r"NaN|missing", r"\b1\b"), None),
        ("None at row 2", [*TRAIN_Y[:2], None, *TRAIN_Y[3:n]], "raises", (r"None|missing", r"\b2\b"), None),
        ("single class", ["pos"] * n, "raises", (r"class",), None),
        ("one label shorter", TRAIN_Y[: n - 1], "raises", (rf"\b{n - 1}\b", rf"\b{n}\b"), None),
        ("one label longer", [*TRAIN_Y[:n], "pos"], "raises", (rf"\b{n + 1}\b", rf"\b{n}\b"), None),
        ("str and int mixed", ["pos", 1] * half + ["neg"] * (n - 2 * half), "raises", (r"mix|type",), None),
        ("complex", [1 + 2j] * half + [3j] * (n - half), "raises", (r"complex",), None),
        ("continuous floats", [0.1 * i + 0.05 for i in range(n)], "raises", (r"continuous|regress",), None),
        ("2-D (n, 2) strings", np.array([["a", "b"]] * n), "raises", (r"shape|2-D|1-D|multi",), None),
        ("bare string", "pn" * (n // 2), "raises", (r"sequence|string|\by\b",), None),
        ("list labels", [["a"], ["b"]] * (n // 2), "raises", (r"hashable|list|multi|indicator",), None),
        ("dict", dict(enumerate(TRAIN_Y[:n])), "either", (r"dict|\by\b",), CLASSES),
        ("inf label", [np.inf] * half + [1.0] * (n - half), "raises", (r"inf|finite",), None),
    ]


def label_cases(group, prefix, make_fit, *, n=N_TRAIN, skip=(), overrides=None):
    """Cases fitting ``make_fit(ctx, y)`` for each label family; ok results must predict only seen labels."""
    cases = []
    for name, y, expect, match, classes in label_families(n):
        if name in skip:
            continue
        if overrides and name in overrides:
            expect, match = overrides[name]
        check = None
        if expect != "raises":
            check = _predicts_within(classes)
        cases.append(
            Case(group, f"{prefix}: y {name}", _describe(y), lambda ctx, y=y: make_fit(ctx, y), expect, match, check)
        )
    return cases


def _predicts_within(classes):
    def check(model, ctx):
        predicted = model.predict(BASE)
        unknown = set(np.asarray(predicted).ravel().tolist()) - set(classes)
        if unknown:
            return f"predicted labels {sorted(map(repr, unknown))} that are not among {list(classes)}"
        learned = set(np.asarray(model.classes_).tolist())
        if learned != set(classes):
            return f"classes_ {sorted(map(repr, learned))}, expected {list(classes)}"
        return None

    return check


# -- numbers ---------------------------------------------------------------------------------

NAN = float("nan")
INF = float("inf")


def int_values(low=1, huge="either"):
    """(label, value, expect) for an integer parameter that must be >= ``low``."""
    values = [
        (f"{low - 1}", low - 1, "raises"),
        ("-1", -1, "raises") if low - 1 != -1 else ("-5", -5, "raises"),
        ("NaN", NAN, "raises"),
        ("inf", INF, "raises"),
        ("1.5 (float for int)", low + 0.5, "raises"),
        ("'2' (str)", "2", "raises"),
        ("True (bool)", True, "raises" if low > 1 else "either"),
        ("None", None, "raises"),
    ]
    if huge:
        values.append(("10**12 (huge)", 10**12, huge))
    return values


def none_ok(values):
    """``values`` with None expected to work (the parameter's documented default)."""
    return [(label, value, "ok" if value is None else expect) for label, value, expect in values]


def float_values(low, high=None, *, low_ok=True, huge="either", none_ok=False):
    """(label, value, expect) for a real parameter in [low, high) (``low_ok``: low itself allowed)."""
    values = [
        ("NaN", NAN, "raises"),
        ("inf", INF, "raises"),
        ("-inf", -INF, "raises"),
        ("'0.1' (str)", "0.1", "raises"),
        (f"{low} (lower bound)", low, "either" if low_ok else "raises"),
        ("-1", -1.0, "raises") if low >= 0 else ("-1e30", -1e30, "either"),
        ("None", None, "ok" if none_ok else "raises"),
        ("complex", 1 + 1j, "raises"),
    ]
    if high is not None:
        values.append((f"{high} (upper bound)", high, "either"))
        values.append((f"{high + 1} (above)", high + 1, "raises"))
    elif huge:
        values.append(("1e12 (huge)", 1e12, huge))
    return values


def param_cases(group, prefix, make, param, values, *, check=None, match=None, overrides=None):
    """Cases running ``make(ctx, **{param: value})`` for each value; errors must name ``param``."""
    leaf = param.split("__")[-1]
    pattern = match or rf"\b{re.escape(leaf)}\b"
    cases = []
    for label, value, expect in values:
        if overrides and label in overrides:
            expect = overrides[label]
        if expect is None:
            continue
        cases.append(
            Case(
                group,
                f"{prefix}: {param}={label}",
                f"{param}={value!r}",
                lambda ctx, value=value: make(ctx, **{param: value}),
                expect,
                (pattern,),
                check if expect != "raises" else None,
            )
        )
    return cases


def is_finite_number(x):
    return isinstance(x, float) and math.isfinite(x)
