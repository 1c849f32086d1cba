"""Cases for the datasets helpers, compare_methods and the ``skllm compare`` command line,
LabelEncodedClassifier, dask_embed, the example selections and the small public functions."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _context import Case
from _families import BASE, NAN, TRAIN_X, TRAIN_Y, int_values, param_cases

import skllm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

COMPARE_X = [f"{t} {i}" for i in range(3) for t in TRAIN_X]
COMPARE_Y = [y for _ in range(3) for y in TRAIN_Y]


# -- datasets ----------------------------------------------------------------------------------


def dataset_cases(ctx):
    group = "datasets"
    d = skllm.datasets

    def xy_ok(result, ctx):
        X, y = result
        if len(X) != len(y) or len(X) == 0:
            return f"{len(X)} texts and {len(y)} labels"
        if pd.Series(list(X)).isna().any() or not all(isinstance(t, str) for t in X):
            return "texts that are missing or not strings"
        return None

    def frame_ok(result, ctx):
        return None if len(result) > 0 else "empty"

    cases = []
    for loader in ("load_sms_spam", "load_debate_statements", "load_rotten_tomatoes"):
        fn = getattr(d, loader)
        cases.append(
            Case(
                group,
                f"{loader}(return_X_y=True)",
                "return_X_y=True",
                lambda ctx, fn=fn: fn(return_X_y=True),
                "either",
                check=xy_ok,
            )
        )
        cases.append(Case(group, f"{loader}()", "defaults", lambda ctx, fn=fn: fn(), "either", check=frame_ok))
        for label, value in [("'yes'", "yes")]:
            cases.append(
                Case(
                    group,
                    f"{loader}(return_X_y={label})",
                    f"return_X_y={value!r}",
                    lambda ctx, fn=fn, v=value: fn(return_X_y=v),
                    "raises",
                    (r"return_X_y",),
                )
            )
        cases.append(
            Case(
                group,
                f"{loader}(True) positional",
                "a positional argument",
                lambda ctx, fn=fn: fn(True),
                "raises",
                (r"positional|return_X_y",),
                signature=True,
            )
        )
    for label, value in [("'no'", "no")]:
        cases.append(
            Case(
                group,
                f"load_sms_spam(drop_duplicates={label})",
                f"drop_duplicates={value!r}",
                lambda ctx, v=value: d.load_sms_spam(drop_duplicates=v),
                "raises",
                (r"drop_duplicates",),
            )
        )
    cases.append(
        Case(
            group,
            "load_sms_spam(drop_duplicates=True) keeps no duplicate",
            "drop_duplicates=True, return_X_y=True",
            lambda ctx: d.load_sms_spam(drop_duplicates=True, return_X_y=True),
            "ok",
            check=lambda r, ctx: None if len(set(r[0])) == len(r[0]) else "duplicates left",
        )
    )
    cases.append(
        Case(group, "load_movie_plots()", "defaults", lambda ctx: d.load_movie_plots(), "either", check=frame_ok)
    )
    cases.append(
        Case(
            group,
            "load_movie_plots(return_X_y=True)",
            "an argument it does not take",
            lambda ctx: d.load_movie_plots(return_X_y=True),
            "raises",
            (r"return_X_y|argument",),
            signature=True,
        )
    )
    return cases


# -- compare_methods ---------------------------------------------------------------------------


def compare_cases(ctx):
    group = "compare_methods"

    def run(ctx, X=COMPARE_X, y=COMPARE_Y, **params):
        base = dict(
            methods=["logreg"],
            cv=2,
            encoder=ctx.bert,
            llm=ctx.llama,
            epochs=1,
            max_length=16,
            cache_dir=ctx.cache,
            verbose=0,
            time_budget=None,
        )
        base.update(params)
        return skllm.compare_methods(X, y, **base)

    def table_ok(result, ctx):
        return None if isinstance(result, pd.DataFrame) and len(result) > 0 else f"{type(result).__name__}"

    cases = [Case(group, "a small valid run", "logreg, cv=2", lambda ctx: run(ctx), "ok", check=table_ok, timeout=180)]
    for label, X, y, match in [
        ("X None", None, COMPARE_Y, (r"\bX\b",)),
        ("X a bare string", "great film", COMPARE_Y, (r"single|wrap|\bX\b",)),
        ("NaN text at row 3", [*COMPARE_X[:3], NAN, *COMPARE_X[4:]], COMPARE_Y, (r"NaN|missing", r"\b3\b")),
        ("y one label short", COMPARE_X, COMPARE_Y[:-1], (r"\b17\b", r"\b18\b")),
        ("y NaN at row 2", COMPARE_X, [*COMPARE_Y[:2], NAN, *COMPARE_Y[3:]], (r"NaN|missing", r"\b2\b")),
        ("y None", COMPARE_X, None, (r"\by\b",)),
        ("a single class", COMPARE_X, ["pos"] * 18, (r"class",)),
        ("y continuous", COMPARE_X, [0.1 * i + 0.05 for i in range(18)], (r"continuous|class|regress",)),
    ]:
        cases.append(Case(group, f"fit data: {label}", label, lambda ctx, X=X, y=y: run(ctx, X, y), "raises", match))
    for param, values in [
        (
            "methods",
            [
                ("['bogus']", ["bogus"], "raises"),
                ("'logreg' (bare string)", "logreg", "either"),
                ("[]", [], "raises"),
                ("[5]", [5], "raises"),
            ],
        ),
        (
            "cv",
            [
                ("1", 1, "raises"),
                ("0", 0, "raises"),
                ("'3'", "3", "raises"),
                ("2.5", 2.5, "raises"),
                ("100 (more than a class has)", 100, "raises"),
            ],
        ),
        (
            "max_samples",
            [
                ("1", 1, "raises"),
                ("-5", -5, "raises"),
                ("0.5", 0.5, "either"),
                ("1000 (more than the texts)", 1000, "ok"),
            ],
        ),
        ("epochs", [("0", 0, "raises"), ("-1", -1, "raises"), ("1.5", 1.5, "raises")]),
        ("max_length", [("1", 1, "raises"), ("0", 0, "raises"), ("'16'", "16", "raises")]),
        (
            "time_budget",
            [
                ("'abc'", "abc", "raises"),
                ("-5", -5, "raises"),
                ("0", 0, "raises"),
                ("NaN", NAN, "raises"),
                ("'90s'", "90s", "either"),
            ],
        ),
        ("random_state", [("-1", -1, "raises"), ("'a'", "a", "raises")]),
        ("label_words", [("an unknown label", {"meh": "so-so"}, "raises"), ("a string", "pos=good", "raises")]),
        ("cache_dir", [("''", "", "raises"), ("123", 123, "raises")]),
    ]:
        cases += param_cases(group, "call", run, param, values, check=table_ok)
    for case in cases:
        if case.expect != "raises":
            case.timeout = 180

    def out_dir_file(ctx):
        path = ctx.path("out-file")
        path.write_text("x")
        return run(ctx, out_dir=str(path))

    cases.append(
        Case(
            group,
            "call: out_dir an existing file",
            "out_dir=<a file>",
            out_dir_file,
            "raises",
            (r"out|file|folder|director",),
        )
    )
    return cases


# -- the command line --------------------------------------------------------------------------


def _cli(ctx, args, data=None, timeout=240):
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", OPENAI_BASE_URL=ctx.unreachable, OPENAI_API_KEY="sk-probe", TRANSFORMERS_VERBOSITY="error"
    )
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE / "netguard_site"), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    cwd = ctx.path("cli")
    cwd.mkdir()
    command = [sys.executable, "-m", "skllm", "compare"] + [
        a.replace("{bert}", ctx.bert).replace("{llama}", ctx.llama).replace("{cache}", ctx.cache) for a in args
    ]
    if data is not None:
        command.insert(4, str(data(ctx, cwd)))
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


class CLIError(Exception):
    """``skllm compare`` exited with an error: the exit code and the end of standard error."""

    def __init__(self, code, stderr):
        self.code = code
        self.stderr = stderr
        super().__init__(f"exit {code}: {stderr.strip()[-1500:]}")


def _judge_cli(completed):
    if completed.returncode == 0:
        return completed.stdout[-300:]
    raise CLIError(completed.returncode, completed.stderr)


def _csv(rows, name="data.csv", sep=","):
    def make(ctx, cwd):
        path = cwd / name
        if isinstance(rows, (bytes, str)):
            path.write_bytes(rows if isinstance(rows, bytes) else rows.encode())
        else:
            pd.DataFrame(rows).to_csv(path, index=False, sep=sep)
        return path

    return make


GOOD = {"text": COMPARE_X, "label": COMPARE_Y}


def cli_cases(ctx):
    group = "skllm compare (CLI)"
    fast = [
        "--methods",
        "logreg",
        "--cv",
        "2",
        "--encoder",
        "{bert}",
        "--llm",
        "{llama}",
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--cache-dir",
        "{cache}",
        "--time-budget",
        "none",
    ]
    cols = ["--text", "text", "--label", "label"]
    specs = [
        ("a small valid run", cols + fast, _csv(GOOD), "ok", ()),
        ("a missing file", cols + fast, lambda ctx, cwd: cwd / "missing.csv", "raises", (r"missing\.csv",)),
        ("a folder as the data", cols + fast, lambda ctx, cwd: cwd, "raises", (r"folder|director|file",)),
        ("an empty file", cols + fast, _csv(b""), "raises", (r"empty",)),
        ("only a header", cols + fast, _csv("text,label\n"), "raises", (r"empty|no row|rows",)),
        ("the text column missing", ["--text", "body", "--label", "label", *fast], _csv(GOOD), "raises", (r"body",)),
        (
            "the label column missing",
            ["--text", "text", "--label", "target", *fast],
            _csv(GOOD),
            "raises",
            (r"target",),
        ),
        (
            "binary garbage named .xlsx",
            cols + fast,
            _csv(bytes(range(256)) * 4, name="data.xlsx"),
            "raises",
            (r"xlsx|format|read|CSV",),
        ),
        (
            "binary garbage as .csv",
            cols + fast,
            _csv(bytes(range(256)) * 4),
            "raises",
            (r"data\.csv|read|column|text",),
        ),
        ("a single class", cols + fast, _csv({"text": COMPARE_X, "label": ["pos"] * 18}), "raises", (r"class",)),
        (
            "a missing label at row 4",
            cols + fast,
            _csv({"text": COMPARE_X, "label": [*COMPARE_Y[:4], None, *COMPARE_Y[5:]]}),
            "raises",
            (r"missing|empty", r"\b4\b|\b5\b|\b6\b"),
        ),
        (
            "a missing text at row 2",
            cols + fast,
            _csv({"text": [*COMPARE_X[:2], None, *COMPARE_X[3:]], "label": COMPARE_Y}),
            "raises",
            (r"missing|empty|text", r"\b2\b|\b3\b|\b4\b"),
        ),
        (
            "a numeric text column",
            ["--text", "n", "--label", "label", *fast],
            _csv({"n": list(range(18)), "label": COMPARE_Y}),
            "raises",
            (r"\bn\b|text|string",),
        ),
        (
            "the same column for text and label",
            ["--text", "text", "--label", "text", *fast],
            _csv(GOOD),
            "raises",
            (r"text|label|same|class",),
        ),
        ("--cv 1", cols + fast + ["--cv", "1"], _csv(GOOD), "raises", (r"--cv|cv",)),
        ("--cv abc", cols + fast + ["--cv", "abc"], _csv(GOOD), "raises", (r"--cv|cv",)),
        ("--cv 100", cols + fast + ["--cv", "100"], _csv(GOOD), "raises", (r"--cv|cv",)),
        ("--max-samples 1", cols + fast + ["--max-samples", "1"], _csv(GOOD), "raises", (r"max-samples",)),
        ("--max-samples -5", cols + fast + ["--max-samples", "-5"], _csv(GOOD), "raises", (r"max-samples",)),
        ("--epochs 0", cols + fast + ["--epochs", "0"], _csv(GOOD), "raises", (r"epochs",)),
        ("--max-length 1", cols + fast + ["--max-length", "1"], _csv(GOOD), "raises", (r"max-length",)),
        ("--random-state -1", cols + fast + ["--random-state", "-1"], _csv(GOOD), "raises", (r"random-state",)),
        ("--time-budget abc", cols + fast + ["--time-budget", "abc"], _csv(GOOD), "raises", (r"time-budget",)),
        ("--time-budget -5s", cols + fast + ["--time-budget=-5s"], _csv(GOOD), "raises", (r"time-budget",)),
        ("--time-budget 0", cols + fast + ["--time-budget", "0"], _csv(GOOD), "raises", (r"time-budget",)),
        ("--methods bogus", cols + fast + ["--methods", "bogus"], _csv(GOOD), "raises", (r"bogus|methods",)),
        ("--label-words without =", cols + fast + ["--label-words", "pos"], _csv(GOOD), "raises", (r"label-words|=",)),
        (
            "--label-words of an unknown label",
            cols + fast + ["--label-words", "meh=so-so"],
            _csv(GOOD),
            "raises",
            (r"meh",),
        ),
        ("--out an existing file", cols + fast + ["--out", "data.csv"], _csv(GOOD), "raises", (r"data\.csv|out",)),
        ("--cache-dir ''", cols + fast + ["--cache-dir", ""], _csv(GOOD), "raises", (r"cache",)),
        (
            "--encoder a missing folder",
            cols + fast + ["--encoder", "/nonexistent/probe-encoder"],
            _csv(GOOD),
            "raises",
            (r"probe-encoder",),
        ),
        ("an unknown flag", cols + fast + ["--bogus-flag"], _csv(GOOD), "raises", (r"bogus-flag",)),
        ("no arguments", [], None, "raises", (r"usage|required|data",)),
        ("--text missing", ["--label", "label", *fast], _csv(GOOD), "raises", (r"--text",)),
        ("a semicolon CSV", cols + fast, _csv(GOOD, sep=";"), "raises", (r"text|column|;",)),
    ]
    cases = []
    for label, args, data, expect, match in specs:

        def run(ctx, args=args, data=data):
            return _judge_cli(_cli(ctx, args, data))

        case = Case(
            group,
            label,
            " ".join(args[:4] + args[len(cols) + len(fast) :]) or "(none)",
            run,
            expect,
            match,
            timeout=300,
        )
        cases.append(case)
    return cases


# -- LabelEncodedClassifier, dask_embed, selections, small functions ---------------------------


def misc_cases(ctx):
    from sklearn.linear_model import LogisticRegression

    cases = []
    group = "LabelEncodedClassifier"
    features = np.arange(12, dtype=float).reshape(6, 2)
    for label, estimator, y, expect, match in [
        ("estimator None", None, TRAIN_Y, "raises", (r"estimator",)),
        ("estimator a string", "logreg", TRAIN_Y, "raises", (r"estimator",)),
        (
            "estimator without predict",
            skllm.TransformerEmbedder(),
            TRAIN_Y,
            "raises",
            (r"estimator|predict|classifier|TransformerEmbedder",),
        ),
        ("y with NaN", LogisticRegression(), [*TRAIN_Y[:2], NAN, *TRAIN_Y[3:]], "raises", (r"NaN|missing|\by\b",)),
        ("y one short", LogisticRegression(), TRAIN_Y[:5], "raises", (r"\b5\b", r"\b6\b")),
        ("string labels", LogisticRegression(), TRAIN_Y, "ok", ()),
    ]:
        cases.append(
            Case(
                group,
                f"fit: {label}",
                label,
                lambda ctx, e=estimator, y=y: skllm.LabelEncodedClassifier(e).fit(features, y),
                expect,
                match,
                check=lambda m, ctx: None if set(m.predict(features)) <= set(TRAIN_Y) else "unknown labels",
            )
        )
    cases.append(
        Case(
            group,
            "predict before fit",
            "unfitted",
            lambda ctx: skllm.LabelEncodedClassifier(LogisticRegression()).predict(features),
            "raises",
            (r"fit",),
        )
    )

    group = "dask_embed"

    def dask_series(texts):
        import dask.dataframe as dd

        return dd.from_pandas(pd.Series(texts, index=[9, 2, 5, 1][: len(texts)]), npartitions=2, sort=False)

    def embedded(ctx, texts, embedder="bert"):
        emb = skllm.TransformerEmbedder(ctx.bert, cache_dir=ctx.cache) if embedder == "bert" else embedder
        return skllm.dask_embed(texts, emb).compute(scheduler="sync")

    cases += [
        Case(
            group,
            "a Dask Series",
            "4 texts, index [9, 2, 5, 1]",
            lambda ctx: embedded(ctx, dask_series(BASE)),
            "ok",
            check=lambda r, ctx: (
                None if list(r.index) == [9, 2, 5, 1] and np.isfinite(r.to_numpy()).all() else f"index {list(r.index)}"
            ),
        ),
        Case(
            group,
            "a list instead of a Dask Series",
            "list of 4 texts",
            lambda ctx: embedded(ctx, BASE),
            "raises",
            (r"dask|Series|texts",),
        ),
        Case(group, "None", "None", lambda ctx: embedded(ctx, None), "raises", (r"texts|dask|None",)),
        Case(
            group,
            "a pandas Series",
            "pd.Series",
            lambda ctx: embedded(ctx, pd.Series(BASE)),
            "either",
            (r"dask|texts",),
            check=lambda r, ctx: None,
        ),
        Case(
            group,
            "a NaN text",
            "Dask Series with NaN at index 2",
            lambda ctx: embedded(ctx, dask_series(["great film", NAN, "loved it"])),
            "raises",
            (r"NaN|missing", r"\b2\b"),
        ),
        Case(
            group,
            "embedder an int",
            "embedder=5",
            lambda ctx: embedded(ctx, dask_series(BASE), embedder=5),
            "raises",
            (r"embedder",),
        ),
        Case(
            group,
            "a two-column DataFrame",
            "dd.DataFrame with 2 columns",
            lambda ctx: embedded(ctx, _dask_frame()),
            "raises",
            (r"column",),
        ),
    ]

    group = "selections"

    def few_shot(ctx, selection):
        return (
            skllm.FewShotClassifier(
                ctx.llama, n_examples=2, example_selection=selection, max_length=256, cache_dir=ctx.cache
            )
            .fit(TRAIN_X, TRAIN_Y)
            .predict(BASE)
        )

    for label, make, expect, match in [
        ("NearestSelection(embedder=5)", lambda ctx: skllm.NearestSelection(embedder=5), "raises", (r"embedder",)),
        (
            "NearestSelection(retrieval='bogus')",
            lambda ctx: skllm.NearestSelection(embedder=ctx.bert, retrieval="bogus"),
            "raises",
            (r"retrieval",),
        ),
        (
            "NearestSelection(balance='x')",
            lambda ctx: skllm.NearestSelection(embedder=ctx.bert, balance="x"),
            "raises",
            (r"balance",),
        ),
        (
            "NearestSelection(retrieval='lexical')",
            lambda ctx: skllm.NearestSelection(embedder=ctx.bert, retrieval="lexical"),
            "ok",
            (),
        ),
        ("BalancedSelection()", lambda ctx: skllm.BalancedSelection(), "ok", ()),
        ("FirstSelection()", lambda ctx: skllm.FirstSelection(), "ok", ()),
        (
            "an ExampleSelection (the base class)",
            lambda ctx: skllm.ExampleSelection(),
            "raises",
            (r"select|ExampleSelection|abstract|implement",),
        ),
    ]:
        cases.append(
            Case(
                group,
                f"FewShotClassifier(example_selection={label})",
                label,
                lambda ctx, m=make: few_shot(ctx, m(ctx)),
                expect,
                match,
                check=lambda r, ctx: None if set(r) <= {"pos", "neg"} and len(r) == 4 else f"{r!r}",
            )
        )
    cases.append(
        Case(
            group,
            "NearestSelection.select before fit",
            "unfitted",
            lambda ctx: skllm.NearestSelection(embedder=ctx.bert).select(BASE, 2),
            "raises",
            (r"fit",),
        )
    )

    group = "functions"

    def env_cache(value):
        def run(ctx):
            saved = os.environ.get("SKLLM_CACHE_DIR")
            os.environ["SKLLM_CACHE_DIR"] = value
            try:
                return skllm.default_cache_dir()
            finally:
                if saved is None:
                    os.environ.pop("SKLLM_CACHE_DIR")
                else:
                    os.environ["SKLLM_CACHE_DIR"] = saved

        return run

    cases += [
        Case(
            group,
            "default_cache_dir()",
            "no arguments",
            lambda ctx: skllm.default_cache_dir(),
            "ok",
            check=lambda r, ctx: None if str(r) else "empty",
        ),
        Case(
            group,
            "default_cache_dir() with $SKLLM_CACHE_DIR set",
            "SKLLM_CACHE_DIR=/tmp/x",
            env_cache("/tmp/skllm-probe-env"),
            "ok",
            check=lambda r, ctx: None if str(r) == "/tmp/skllm-probe-env" else f"{r}",
        ),
        Case(
            group,
            "default_cache_dir() with $SKLLM_CACHE_DIR empty",
            "SKLLM_CACHE_DIR=''",
            env_cache(""),
            "either",
            (r"SKLLM_CACHE_DIR",),
            check=lambda r, ctx: None if str(r) not in ("", ".") else f"{r!r}: the working folder",
        ),
        Case(
            group,
            "trusted_types()",
            "no arguments",
            lambda ctx: skllm.trusted_types(),
            "ok",
            check=lambda r, ctx: None if len(r) > 0 else "empty",
        ),
        Case(group, "clear_model_registry()", "no arguments", lambda ctx: skllm.clear_model_registry(), "ok"),
        Case(
            group,
            "clear_model_registry('x')",
            "an argument it does not take",
            lambda ctx: skllm.clear_model_registry("x"),
            "raises",
            (r"argument",),
            signature=True,
        ),
    ]

    group = "clone and set_params"
    for name in [
        "TransformerEmbedder",
        "FineTuneClassifier",
        "ZeroShotClassifier",
        "DocumentIndex",
        "RewardModel",
        "PreferenceTuner",
        "RetrievalQA",
        "FewShotGenerator",
    ]:
        cls = getattr(skllm, name)
        cases.append(
            Case(
                group,
                f"{name}.set_params(bogus=1)",
                "an unknown parameter",
                lambda ctx, cls=cls: cls().set_params(bogus=1),
                "raises",
                (r"bogus",),
            )
        )
    return cases


def _dask_frame():
    import dask.dataframe as dd

    return dd.from_pandas(pd.DataFrame({"a": BASE, "b": BASE}), npartitions=1)


def all_cases(ctx):
    return dataset_cases(ctx) + compare_cases(ctx) + misc_cases(ctx) + cli_cases(ctx)


__all__ = ["all_cases", "int_values"]
