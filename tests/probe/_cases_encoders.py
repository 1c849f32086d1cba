"""Cases for the encoder estimators: TransformerEmbedder, FineTuneClassifier/Regressor (every method), RewardModel."""

import os

import numpy as np
import pandas as pd
from _context import Case
from _families import (
    BASE,
    CLASSES,
    INF,
    NAN,
    TRAIN_X,
    TRAIN_Y,
    check_output,
    float_values,
    int_values,
    label_cases,
    none_ok,
    param_cases,
    text_cases,
)

import skllm
from skllm.exceptions import CacheWarning, PrecisionWarning, TruncationWarning

METHOD_NAMES = ["head", "partial", "full", "lora", "prefix", "prompt", "adapter"]

FIT_X = [
    "None",
    "bare string",
    "empty list",
    "None at row 1",
    "NaN at row 2",
    "lone surrogate at row 1",
    "2-D array (n, 2)",
    "two-column DataFrame",
    "Series with shuffled int index",
    "empty string",
    "emoji and accents",
    "very long text",
]
PREDICT_X_SHORT = [
    "None",
    "bare string",
    "empty list",
    "None at row 1",
    "NaN in Series, index 20",
    "lone surrogate at row 1",
    "2-D array (n, 2)",
    "Series with shuffled int index",
    "empty string",
    "whitespace only",
    "very long text",
    "one-column DataFrame",
]
LABELS_SHORT = ["NaN at row 1", "single class", "one label shorter", "complex", "int labels", "three classes"]


def _alternating(X):
    n = len(X) if hasattr(X, "__len__") and not isinstance(X, (str, bytes)) else 4
    return (["pos", "neg"] * (n + 1))[: max(n, 0)]


def _method(name):
    """The method object used for ``name`` on the 1-layer tiny BERT (partial needs n_last_layers=1)."""
    if name == "partial":
        return skllm.PartialFineTuning(n_last_layers=1)
    if name == "head":
        return skllm.HeadTuning(hidden_layer_sizes=(8,))
    if name == "prefix":
        return skllm.PrefixTuning(n_prefix_tokens=4, projection_size=8)
    if name == "prompt":
        return skllm.PromptTuning(n_virtual_tokens=4)
    return name


_DEFAULT = object()


def build(cls, ctx, method=_DEFAULT, **params):
    """``cls`` on the tiny BERT with small settings; ``a__b`` parameters go through ``set_params``.

    ``method`` is LoRA unless given; an explicit ``method=None`` is passed on as it is.
    """
    base = dict(model_name=ctx.bert, max_length=16, cache_dir=ctx.cache)
    if cls is not skllm.TransformerEmbedder:
        base.update(epochs=1, batch_size=4, random_state=0)
        base["method"] = _method("lora" if method is _DEFAULT else method)
    nested = {k: params.pop(k) for k in list(params) if "__" in k}
    base.update(params)
    estimator = cls(**base)
    if nested:
        estimator.set_params(**nested)
    return estimator


def fitted_classifier(ctx, method):
    return ctx.fitted(("ftc", method), lambda: build(skllm.FineTuneClassifier, ctx, method).fit(TRAIN_X, TRAIN_Y))


def _fit_ok(classes=CLASSES):
    def check(model, ctx):
        predicted = model.predict(BASE)
        if len(predicted) != len(BASE):
            return f"{len(predicted)} predictions for {len(BASE)} texts"
        unknown = set(np.asarray(predicted).tolist()) - set(classes)
        return f"unknown labels {unknown}" if unknown else None

    return check


def _regression_ok(model, ctx):
    predicted = np.asarray(model.predict(BASE), dtype=float)
    return None if predicted.shape == (len(BASE),) and np.isfinite(predicted).all() else f"predictions {predicted!r}"


# -- cache_dir and model_name, shared by every estimator with those parameters -----------------


def cache_dir_cases(group, run, *, uses_cache=True):
    """``run(ctx, cache_dir)`` fits (and uses) an estimator with each careless cache folder."""

    def a_file(ctx):
        path = ctx.path("cache-file")
        path.write_text("not a folder")
        return str(path)

    def a_link(ctx):
        target = ctx.path("cache-target")
        target.mkdir()
        link = ctx.path("cache-link")
        link.symlink_to(target)
        return str(link)

    def dangling(ctx):
        link = ctx.path("cache-dangling")
        link.symlink_to(ctx.path("nowhere"))
        return str(link)

    def loop(ctx):
        a, b = ctx.path("loop-a"), ctx.path("loop-b")
        a.symlink_to(b)
        b.symlink_to(a)
        return str(a)

    specs = [
        ("empty string", lambda ctx: "", "raises", r"cache_dir"),
        ("a file", a_file, "either", r"cache_dir|file|folder|director"),
        ("under /proc (unwritable)", lambda ctx: "/proc/skllm-probe-cache", "either", r"cache_dir|writ|permission"),
        ("a symlink to a folder", a_link, "ok", None),
        ("a dangling symlink", dangling, "raises", r"link|cache_dir"),
        ("a symlink loop", loop, "raises", r"link|loop|cache_dir"),
        ("None (no cache)", lambda ctx: None, "ok", None),
        ("a pathlib.Path", lambda ctx: ctx.path("cache-pathlib"), "ok", None),
        ("int 123", lambda ctx: 123, "raises", r"cache_dir"),
        ("NUL in the path", lambda ctx: str(ctx.path("bad")) + "\x00x", "raises", r"cache_dir|NUL|null"),
        ("a list", lambda ctx: [str(ctx.path("x"))], "raises", r"cache_dir"),
    ]
    cases = []
    for label, make, expect, match in specs:
        case = Case(
            group,
            f"cache_dir={label}",
            label,
            lambda ctx, make=make: run(ctx, make(ctx)),
            expect,
            (match,) if match else (),
            check=lambda result, ctx: None,
        )
        if uses_cache and (label.startswith("under /proc") or label == "a file"):
            case.warns = CacheWarning
        cases.append(case)
    return cases


def model_name_cases(group, run, *, causal=False):
    """``run(ctx, model_name)`` with folders and names that hold no usable model."""

    def no_tokenizer(ctx):
        folder = ctx.path("no-tokenizer")
        folder.mkdir()
        source = ctx.llama if causal else ctx.bert
        for name in ("config.json", "model.safetensors"):
            os.link(os.path.join(source, name), folder / name)
        return str(folder)

    def no_weights(ctx):
        folder = ctx.path("no-weights")
        folder.mkdir()
        source = ctx.llama if causal else ctx.bert
        for name in os.listdir(source):
            if name != "model.safetensors":
                os.link(os.path.join(source, name), folder / name)
        return str(folder)

    def empty_folder(ctx):
        folder = ctx.path("empty-model")
        folder.mkdir()
        return str(folder)

    def broken_config(ctx):
        folder = ctx.path("broken-config")
        folder.mkdir()
        source = ctx.llama if causal else ctx.bert
        for name in os.listdir(source):
            if name != "config.json":
                os.link(os.path.join(source, name), folder / name)
        (folder / "config.json").write_text("{not json")
        return str(folder)

    specs = [
        ("a missing folder", lambda ctx: str(ctx.path("no-such-model")), r"no-such-model"),
        ("a Hub id not in the cache", lambda ctx: "probe-org/no-such-model", r"probe-org/no-such-model"),
        ("empty string", lambda ctx: "", r"model_name"),
        ("None", lambda ctx: None, r"model_name"),
        ("int", lambda ctx: 5, r"model_name"),
        ("an empty folder", empty_folder, r"empty-model|config"),
        ("a folder without tokenizer", no_tokenizer, r"tokenizer"),
        ("a folder without weights", no_weights, r"weight|safetensors|no-weights"),
        ("a folder with broken config.json", broken_config, r"config"),
        ("the model's config.json file", lambda ctx: os.path.join(ctx.bert, "config.json"), r"config\.json|folder"),
    ]
    cases = [
        Case(group, f"model_name={label}", label, lambda ctx, make=make: run(ctx, make(ctx)), "raises", (match,))
        for label, make, match in specs
    ]
    other = "tiny BERT (an encoder)" if causal else None
    if other:
        cases.append(
            Case(
                group,
                f"model_name={other}",
                "the encoder folder where a causal LM is needed",
                lambda ctx: run(ctx, ctx.bert),
                "raises",
                (r"causal|decoder|generat|language model",),
            )
        )
    return cases


# -- TransformerEmbedder -----------------------------------------------------------------------


def embedder_cases(ctx):
    group = "TransformerEmbedder"
    E = skllm.TransformerEmbedder

    def fitted(ctx):
        return ctx.fitted(("embedder",), lambda: build(E, ctx).fit())

    cases = text_cases(group, "transform", lambda ctx, X: fitted(ctx).transform(X), "vectors")
    for case in cases:
        if case.name.endswith("very long text"):
            case.warns = TruncationWarning
    cases += text_cases(group, "fit", lambda ctx, X: build(E, ctx).fit(X), "estimator", only=FIT_X)
    for case in cases:
        if case.name == "fit: None":  # fit(X=None) is the documented way to load without texts
            case.expect, case.check = "ok", check_output("estimator", 0)
    cases += text_cases(
        group, "fit_transform", lambda ctx, X: build(E, ctx).fit_transform(X), "vectors", only=FIT_X[:6]
    )

    def make(ctx, **params):
        return build(E, ctx, **params).fit().transform(BASE)

    ok = check_output("vectors", len(BASE))
    cases += param_cases(group, "fit", make, "max_length", int_values(1, huge="ok"), check=ok)
    cases += param_cases(group, "fit", make, "batch_size", int_values(1, huge="ok"), check=ok)
    for param, values in [
        (
            "pooling",
            [
                ("'bogus'", "bogus", "raises"),
                ("None", None, "raises"),
                ("'cls'", "cls", "ok"),
                ("'CLS'", "CLS", "either"),
            ],
        ),
        ("normalize", [("'yes'", "yes", "raises"), ("None", None, "raises"), ("0", 0, "either")]),
        (
            "device",
            [
                ("'gpu'", "gpu", "raises"),
                ("'cuda:99'", "cuda:99", "raises"),
                ("''", "", "raises"),
                ("0", 0, "raises"),
                ("'cpu'", "cpu", "ok"),
            ],
        ),
        (
            "dtype",
            [
                ("'float8'", "float8", "raises"),
                ("None", None, "raises"),
                ("'fp16'", "fp16", "either"),
                ("'float64'", "float64", "either"),
            ],
        ),
        ("revision", [("5", 5, "raises"), ("''", "", "either")]),
        ("verbose", [("'loud'", "loud", "raises"), ("-1", -1, "either"), ("NaN", NAN, "raises")]),
    ]:
        cases += param_cases(group, "fit", make, param, values, check=ok)
    cases.append(
        Case(
            group,
            "fit: dtype='float16' on the CPU",
            "dtype='float16'",
            lambda ctx: make(ctx, dtype="float16", device="cpu"),
            "ok",
            check=ok,
            warns=PrecisionWarning,
        )
    )
    cases += cache_dir_cases(group, lambda ctx, cache_dir: build(E, ctx, cache_dir=cache_dir).fit().transform(BASE))
    cases += model_name_cases(group, lambda ctx, name: build(E, ctx, model_name=name).fit().transform(BASE))

    def pandas_output(ctx):
        X = pd.Series(BASE, index=[10, 3, 7, 0])
        return X.index, build(E, ctx).set_output(transform="pandas").fit().transform(X)

    def same_index(result, ctx):
        index, frame = result
        if not isinstance(frame, pd.DataFrame):
            return f"set_output('pandas') gave {type(frame).__name__}"
        return None if list(frame.index) == list(index) else f"index {list(frame.index)} instead of {list(index)}"

    cases.append(
        Case(
            group,
            "set_output(pandas): index carried",
            "Series index [10, 3, 7, 0]",
            pandas_output,
            "ok",
            check=same_index,
        )
    )
    cases.append(
        Case(group, "transform before fit", "unfitted", lambda ctx: build(E, ctx).transform(BASE), "raises", (r"fit",))
    )
    cases.append(
        Case(
            group,
            "get_feature_names_out before fit",
            "unfitted",
            lambda ctx: build(E, ctx).get_feature_names_out(),
            "raises",
            (r"fit",),
        )
    )
    return cases


# -- FineTuneClassifier ------------------------------------------------------------------------


def classifier_cases(ctx):
    cases = []
    C = skllm.FineTuneClassifier
    for method in METHOD_NAMES:
        group = f"FineTuneClassifier[{method}]"
        full = method in ("lora", "head")
        predict = lambda ctx, X, m=method: fitted_classifier(ctx, m).predict(X)  # noqa: E731
        cases += text_cases(group, "predict", predict, "labels", only=None if full else PREDICT_X_SHORT)
        if full:
            proba = lambda ctx, X, m=method: fitted_classifier(ctx, m).predict_proba(X)  # noqa: E731
            cases += text_cases(group, "predict_proba", proba, "proba", only=PREDICT_X_SHORT[:8])
        fit = lambda ctx, X, m=method: build(C, ctx, m).fit(X, _alternating(X))  # noqa: E731
        cases += text_cases(group, "fit", fit, "estimator", only=FIT_X)
        for case in cases:
            if case.group == group and case.name.endswith("very long text") and case.expect == "ok":
                case.warns = TruncationWarning
        make_fit = lambda ctx, y, m=method: build(C, ctx, m).fit(TRAIN_X, y)  # noqa: E731
        cases += label_cases(
            group, "fit", make_fit, skip=() if full else [n for n in _label_names() if n not in LABELS_SHORT]
        )
        cases.append(
            Case(
                group,
                "fit: y multi-label indicator",
                "0/1 matrix (6, 3)",
                lambda ctx, m=method: build(C, ctx, m).fit(TRAIN_X, np.array([[1, 0, 1], [0, 1, 0]] * 3)),
                "ok",
                check=lambda model, ctx: (
                    None if np.asarray(model.predict(BASE)).shape == (4, 3) else "not a (4, 3) indicator"
                ),
            )
        )
        cases.append(
            Case(
                group,
                "score: y with a label fit never saw",
                "y=['pos', 'neg', 'meh', 'pos']",
                lambda ctx, m=method: fitted_classifier(ctx, m).score(BASE, ["pos", "neg", "meh", "pos"]),
                "either",
                check=lambda s, ctx: None if 0 <= s <= 0.75 else f"score {s}",
            )
        )
        cases.append(
            Case(
                group,
                "score: y shorter than X",
                "4 texts, 3 labels",
                lambda ctx, m=method: fitted_classifier(ctx, m).score(BASE, ["pos", "neg", "pos"]),
                "raises",
                (r"\b3\b", r"\b4\b"),
            )
        )
        cases.append(
            Case(
                group,
                "predict before fit",
                "unfitted",
                lambda ctx, m=method: build(C, ctx, m).predict(BASE),
                "raises",
                (r"fit",),
            )
        )
    cases += _method_param_cases()
    cases += _decoder_cases()
    cases += _hyperparameter_cases(C, "FineTuneClassifier[lora]", _fit_ok())
    group = "FineTuneClassifier[lora]"
    cases += cache_dir_cases(
        "FineTuneClassifier[head]", lambda ctx, d: build(C, ctx, "head", cache_dir=d).fit(TRAIN_X, TRAIN_Y)
    )
    cases += model_name_cases(group, lambda ctx, name: build(C, ctx, model_name=name).fit(TRAIN_X, TRAIN_Y))
    for label, value, expect, match in [
        ("'bogus'", "bogus", "raises", r"method"),
        ("None", None, "raises", r"method"),
        ("5", 5, "raises", r"method"),
        ("'LoRA' (capitalised)", "LoRA", "either", r"method"),
        ("' lora' (space)", " lora", "either", r"method"),
        ("the LoRA class, not an instance", skllm.LoRA, "either", r"method|instance|class"),
        ("a FineTuneClassifier", skllm.FineTuneClassifier(), "raises", r"method"),
        ("['lora', 'head'] (list)", ["lora", "head"], "raises", r"method"),
    ]:
        cases.append(
            Case(
                group,
                f"fit: method={label}",
                f"method={value!r}",
                lambda ctx, value=value: skllm.FineTuneClassifier(
                    ctx.bert, method=value, epochs=1, max_length=16, cache_dir=ctx.cache
                ).fit(TRAIN_X, TRAIN_Y),
                expect,
                (match,),
                check=_fit_ok(),
            )
        )
    cases.append(
        Case(
            group,
            "set_params(method__r=4) with method given by name",
            "method='lora', method__r=4",
            lambda ctx: skllm.FineTuneClassifier(ctx.bert, method="lora").set_params(method__r=4),
            "either",
            (r"method",),
            check=lambda est, ctx: None,
        )
    )
    cases.append(
        Case(
            "FineTuneClassifier[partial]",
            "fit: default n_last_layers=2 on a 1-layer model",
            "method='partial' on a 1-block BERT",
            lambda ctx: skllm.FineTuneClassifier(
                ctx.bert, method="partial", epochs=1, max_length=16, cache_dir=ctx.cache
            ).fit(TRAIN_X, TRAIN_Y),
            "raises",
            (r"n_last_layers",),
        )
    )
    return cases


def _decoder_cases():
    """Every method on the tiny Llama (a decoder backbone), and the texts a decoder tokenizes to nothing."""
    cases = []
    for method in METHOD_NAMES:
        group = f"FineTuneClassifier[{method}]"

        def fitted(ctx, m=method):
            return ctx.fitted(
                ("ftc-llama", m),
                lambda: build(skllm.FineTuneClassifier, ctx, m, model_name=ctx.llama).fit(TRAIN_X, TRAIN_Y),
            )

        for label, X in [
            ("plain texts", BASE),
            ("empty strings", ["", "great film", ""]),
            ("whitespace only", ["  ", "\n"]),
            ("lone surrogate at row 1", ["great film", "bad \ud800"]),
        ]:
            bad = "surrogate" in label
            cases.append(
                Case(
                    group,
                    f"decoder backbone: predict {label}",
                    repr(X),
                    lambda ctx, X=X, f=fitted: f(ctx).predict(X),
                    "raises" if bad else "ok",
                    (r"surrogate|unicode", r"\b1\b") if bad else (),
                    check=None if bad else check_output("labels", len(X)),
                )
            )
    return cases


def _label_names():
    from _families import label_families

    return [name for name, *_ in label_families()]


def _hyperparameter_cases(cls, group, ok_check, *, skip=()):
    def make(ctx, **params):
        return build(cls, ctx, "lora", **params).fit(
            TRAIN_X, TRAIN_Y if cls is not skllm.FineTuneRegressor else [0.5, 1, 2, 3, 4, 5.5]
        )

    def make_es(ctx, **params):
        return make(ctx, early_stopping=True, **params)

    specs = [
        ("max_length", int_values(1, huge="ok"), make),
        ("epochs", none_ok(int_values(1, huge=None)), make),
        ("batch_size", int_values(1, huge="ok"), make),
        ("learning_rate", float_values(0, low_ok=False, none_ok=True), make),
        ("weight_decay", float_values(0), make),
        ("warmup_ratio", float_values(0, 1), make),
        ("max_grad_norm", float_values(0, low_ok=False, none_ok=True), make),
        ("validation_fraction", float_values(0, 1, low_ok=False), make_es),
        ("n_iter_no_change", int_values(1, huge="ok"), make_es),
        ("threshold", float_values(0, 1, low_ok=False), make),
    ]
    cases = []
    for param, values, runner in specs:
        if param in skip:
            continue
        cases += param_cases(group, "fit", runner, param, values, check=ok_check)
    for param, values in [
        (
            "random_state",
            [
                ("-1", -1, "raises"),
                ("1.5", 1.5, "raises"),
                ("'3'", "3", "raises"),
                ("NaN", NAN, "raises"),
                ("2**40", 2**40, "raises"),
                ("RandomState(0)", np.random.RandomState(0), "ok"),
            ],
        ),
        (
            "pooling",
            [("'bogus'", "bogus", "raises"), ("None", None, "raises"), ("'last' on an encoder", "last", "either")],
        ),
        ("head_init", [("'bogus'", "bogus", "raises"), ("None", None, "raises")]),
        ("early_stopping", [("'yes'", "yes", "raises"), ("None", None, "raises")]),
        ("warm_start", [("'no'", "no", "raises")]),
        ("device", [("'gpu'", "gpu", "raises"), ("'cuda:99'", "cuda:99", "raises")]),
        ("dtype", [("'float8'", "float8", "raises")]),
        ("verbose", [("'loud'", "loud", "raises")]),
    ]:
        if param in skip:
            continue
        cases += param_cases(group, "fit", make, param, values, check=ok_check)
    if cls is skllm.FineTuneClassifier:
        cases += param_cases(
            group,
            "fit",
            make,
            "class_weight",
            [
                ("'bogus'", "bogus", "raises"),
                ("{'pos': 2} (a class missing)", {"pos": 2.0}, "either"),
                ("{'x': 1, ...} (unknown class)", {"x": 1.0, "pos": 1.0, "neg": 1.0}, "raises"),
                ("negative weight", {"pos": -1.0, "neg": 1.0}, "raises"),
                ("NaN weight", {"pos": NAN, "neg": 1.0}, "raises"),
                ("inf weight", {"pos": INF, "neg": 1.0}, "raises"),
                ("list", [1.0, 2.0], "raises"),
                ("'balanced'", "balanced", "ok"),
            ],
            check=ok_check,
        )
    return cases


def _method_param_cases():
    ok = _fit_ok()

    def runner(method):
        def make(ctx, **params):
            estimator = skllm.FineTuneClassifier(
                ctx.bert, method=method(), epochs=1, max_length=16, batch_size=4, cache_dir=ctx.cache, random_state=0
            )
            estimator.set_params(**params)
            return estimator.fit(TRAIN_X, TRAIN_Y)

        return make

    specs = [
        ("lora", skllm.LoRA, "method__r", int_values(1, huge=None)),
        ("lora", skllm.LoRA, "method__alpha", float_values(0, low_ok=False, huge="either")),
        ("lora", skllm.LoRA, "method__dropout", float_values(0, 1)),
        (
            "lora",
            skllm.LoRA,
            "method__target_modules",
            [
                ("['nonexistent']", ["nonexistent"], "raises"),
                ("[]", [], "raises"),
                ("5", 5, "raises"),
                ("'query'", "query", "either"),
            ],
        ),
        ("lora", skllm.LoRA, "method__merge_for_inference", [("'yes'", "yes", "raises")]),
        ("prefix", lambda: skllm.PrefixTuning(projection_size=8), "method__n_prefix_tokens", int_values(1, huge=None)),
        ("prefix", lambda: skllm.PrefixTuning(n_prefix_tokens=4), "method__projection_size", int_values(1, huge=None)),
        (
            "prefix",
            lambda: skllm.PrefixTuning(n_prefix_tokens=4, projection_size=8),
            "method__reparametrize",
            [("'yes'", "yes", "raises")],
        ),
        (
            "prefix",
            lambda: skllm.PrefixTuning(n_prefix_tokens=4, projection_size=8),
            "method__n_prefix_tokens",
            [("60", 60, "either"), ("100 (more than the 64 positions)", 100, "either")],
        ),
        ("prompt", skllm.PromptTuning, "method__n_virtual_tokens", int_values(1, huge=None)),
        (
            "prompt",
            skllm.PromptTuning,
            "method__n_virtual_tokens",
            [("60 (leaves 4 positions)", 60, "either"), ("100 (more than the positions)", 100, "raises")],
        ),
        ("adapter", skllm.BottleneckAdapter, "method__reduction_factor", int_values(1, huge="either")),
        ("adapter", skllm.BottleneckAdapter, "method__reduction_factor", [("32 (above the width 16)", 32, "either")]),
        (
            "adapter",
            skllm.BottleneckAdapter,
            "method__activation",
            [("'bogus'", "bogus", "raises"), ("None", None, "raises")],
        ),
        ("adapter", skllm.BottleneckAdapter, "method__variant", [("'bogus'", "bogus", "raises")]),
        (
            "adapter",
            skllm.BottleneckAdapter,
            "method__target_modules",
            [("['nonexistent']", ["nonexistent"], "raises")],
        ),
        (
            "partial",
            lambda: skllm.PartialFineTuning(n_last_layers=1),
            "method__n_last_layers",
            int_values(1, huge=None),
        ),
        (
            "partial",
            lambda: skllm.PartialFineTuning(n_last_layers=1),
            "method__n_last_layers",
            [("5 (more than the 1 block)", 5, "raises")],
        ),
        ("partial", lambda: skllm.PartialFineTuning(n_last_layers=1), "method__cache_frozen", [("'x'", "x", "raises")]),
        (
            "head",
            skllm.HeadTuning,
            "method__hidden_layer_sizes",
            [
                ("(0,)", (0,), "raises"),
                ("(-1,)", (-1,), "raises"),
                ("(1.5,)", (1.5,), "raises"),
                ("'256'", "256", "raises"),
                ("(NaN,)", (NAN,), "raises"),
                ("() (no hidden layer)", (), "either"),
                ("None", None, "either"),
                ("8 (int, not tuple)", 8, "either"),
            ],
        ),
        ("head", lambda: skllm.HeadTuning(hidden_layer_sizes=(8,)), "method__dropout", float_values(0, 1)),
        ("head", lambda: skllm.HeadTuning(hidden_layer_sizes=(8,)), "method__residual", [("'x'", "x", "raises")]),
        ("head", lambda: skllm.HeadTuning(hidden_layer_sizes=(8,)), "method__normalize", [("'x'", "x", "raises")]),
        ("full", skllm.FullFineTuning, "method__bogus", [("1 (no such parameter)", 1, "raises")]),
    ]
    cases = []
    for method, factory, param, values in specs:
        group = f"FineTuneClassifier[{method}]"
        cases += param_cases(group, "fit", runner(factory), param, values, check=ok)
    return cases


# -- FineTuneRegressor -------------------------------------------------------------------------


def regressor_cases(ctx):
    R = skllm.FineTuneRegressor
    cases = []
    y_ok = [0.5, 1.0, 2.0, 3.0, 4.0, 5.5]
    for method in ["lora", "head", "full"]:
        group = f"FineTuneRegressor[{method}]"

        def fitted(ctx, m=method):
            return ctx.fitted(("ftr", m), lambda: build(R, ctx, m).fit(TRAIN_X, y_ok))

        cases += text_cases(
            group,
            "predict",
            lambda ctx, X, f=fitted: f(ctx).predict(X),
            "scores",
            only=None if method == "lora" else PREDICT_X_SHORT,
        )
        cases += text_cases(
            group,
            "fit",
            lambda ctx, X, m=method: build(R, ctx, m).fit(
                X,
                [float(i) for i in range(len(X))]
                if hasattr(X, "__len__") and not isinstance(X, (str, bytes))
                else y_ok[:4],
            ),
            "estimator",
            only=FIT_X[:8],
        )
        targets = [
            ("NaN at row 1", [0.5, NAN, 2, 3, 4, 5], "raises", (r"NaN|missing|finite", r"\b1\b")),
            ("inf at row 2", [0.5, 1, INF, 3, 4, 5], "raises", (r"inf|finite", r"\b2\b")),
            ("-inf", [0.5, 1, 2, -INF, 4, 5], "raises", (r"inf|finite",)),
            ("None", None, "raises", (r"\by\b",)),
            ("None at row 0", [None, 1, 2, 3, 4, 5], "raises", (r"None|missing", r"\b0\b")),
            ("strings", TRAIN_Y, "raises", (r"number|numeric|float|str",)),
            ("numeric strings", ["1", "2", "3", "4", "5", "6"], "either", (r"number|numeric|str",)),
            ("mixed str and float", [1.0, "2", 3.0, 4.0, 5.0, 6.0], "either", (r"number|numeric|str",)),
            ("complex", [1 + 1j] * 6, "raises", (r"complex",)),
            ("2-D (n, 2)", np.ones((6, 2)), "raises", (r"shape|one number",)),
            ("one value shorter", y_ok[:5], "raises", (r"\b5\b", r"\b6\b")),
            ("constant", [4.0] * 6, "ok", ()),
            ("near float64 max", [1e308, -1e308] * 3, "ok", ()),
            ("tiny values", [1e-300, 2e-300, 3e-300, 4e-300, 5e-300, 6e-300], "ok", ()),
            ("ints", [1, 2, 3, 4, 5, 6], "ok", ()),
            ("bool", [True, False] * 3, "either", (r"bool|number",)),
            ("Series with other index", pd.Series(y_ok, index=range(50, 56)), "ok", ()),
            ("column (n, 1)", np.array(y_ok).reshape(-1, 1), "either", (r"shape|column",)),
        ]
        for label, y, expect, match in targets:
            cases.append(
                Case(
                    group,
                    f"fit: y {label}",
                    repr(y) if not isinstance(y, np.ndarray) else f"np.array(shape={y.shape})",
                    lambda ctx, y=y, m=method: build(R, ctx, m).fit(TRAIN_X, y),
                    expect,
                    match,
                    check=_regression_ok,
                )
            )
        cases.append(
            Case(
                group,
                "predict before fit",
                "unfitted",
                lambda ctx, m=method: build(R, ctx, m).predict(BASE),
                "raises",
                (r"fit",),
            )
        )
    cases += _hyperparameter_cases(
        R,
        "FineTuneRegressor[lora]",
        _regression_ok,
        skip=(
            "threshold",
            "validation_fraction",
            "warm_start",
            "device",
            "dtype",
            "verbose",
            "head_init",
            "early_stopping",
        ),
    )
    return cases


# -- RewardModel -------------------------------------------------------------------------------

PAIRS = pd.DataFrame(
    {
        "prompt": ["a review"] * 4,
        "chosen": ["great film", "loved it", "best movie", "fun story"],
        "rejected": ["awful film", "hated it", "worst movie", "dull story"],
    }
)
RANKED = pd.DataFrame(
    {
        "prompt": ["a review"] * 3 + ["a movie"] * 3,
        "response": ["great film", "ok film", "awful film", "best movie", "a movie", "worst movie"],
        "rank": [1, 2, 3, 1, 2, 3],
    }
)


def _with(frame, column, row, value):
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[frame.index[row], column] = value
    return frame


def reward_cases(ctx):
    group = "RewardModel"
    M = skllm.RewardModel

    def make(ctx, method="lora", **params):
        return build(M, ctx, method, **params)

    def fitted(ctx):
        return ctx.fitted(("reward",), lambda: make(ctx).fit(PAIRS))

    def rewards_ok(model, ctx):
        values = np.asarray(model.predict(BASE), dtype=float)
        return None if values.shape == (4,) and np.isfinite(values).all() else f"rewards {values!r}"

    ranked_ties = RANKED.assign(rank=[1, 1, 2, 1, 2, 2])
    schemas = [
        ("pairs", PAIRS, "ok", ()),
        ("pairs without prompt", PAIRS.drop(columns="prompt"), "ok", ()),
        ("pairs with shuffled index", PAIRS.set_index(pd.Index([7, 3, 9, 1])), "ok", ()),
        ("ranked lists", RANKED, "ok", ()),
        ("ranked lists with ties", ranked_ties, "ok", ()),
        ("both schemas' columns", PAIRS.assign(response="x", rank=1), "either", (r"column|schema|response|chosen",)),
        ("None", None, "raises", (r"\bX\b|DataFrame|pairs",)),
        ("list of texts", BASE, "raises", (r"DataFrame|pairs|chosen",)),
        (
            "list of (prompt, chosen, rejected) tuples",
            list(PAIRS.itertuples(index=False, name=None)),
            "either",
            (r"DataFrame|pairs|chosen",),
        ),
        ("dict of columns", PAIRS.to_dict("list"), "either", (r"DataFrame|pairs|chosen",)),
        ("empty DataFrame", PAIRS.iloc[:0], "raises", (r"empty|no pair|at least",)),
        ("missing rejected column", PAIRS.drop(columns="rejected"), "raises", (r"rejected",)),
        ("misspelled column 'choosen'", PAIRS.rename(columns={"chosen": "choosen"}), "raises", (r"chosen",)),
        (
            "chosen equal to rejected at row 1",
            _with(PAIRS, "chosen", 1, "hated it"),
            "raises",
            (r"equal|same|identical", r"\b1\b"),
        ),
        ("NaN chosen at row 1", _with(PAIRS, "chosen", 1, NAN), "raises", (r"NaN|missing|None", r"\b1\b")),
        ("None rejected at row 2", _with(PAIRS, "rejected", 2, None), "raises", (r"None|missing", r"\b2\b")),
        ("None prompt at row 0", _with(PAIRS, "prompt", 0, None), "raises", (r"None|missing|prompt", r"\b0\b")),
        ("int chosen at row 3", _with(PAIRS, "chosen", 3, 7), "raises", (r"int|str|text", r"\b3\b")),
        (
            "lone surrogate in rejected",
            _with(PAIRS, "rejected", 0, "bad \ud800"),
            "raises",
            (r"surrogate|unicode", r"\b0\b"),
        ),
        ("empty-string rejected", _with(PAIRS, "rejected", 0, ""), "either", (r"empty",)),
        ("ranked: every rank equal", RANKED.assign(rank=1), "raises", (r"rank|pair|tie",)),
        ("ranked: NaN rank", _with(RANKED, "rank", 1, NAN), "raises", (r"rank", r"NaN|missing")),
        ("ranked: str ranks", RANKED.assign(rank=["1", "2", "3", "1", "2", "3"]), "either", (r"rank",)),
        ("ranked: one response per prompt", RANKED.iloc[[0, 3]], "raises", (r"rank|pair",)),
        ("ranked: missing rank column", RANKED.drop(columns="rank"), "raises", (r"rank",)),
        ("ranked: inf rank", _with(RANKED, "rank", 2, INF), "either", (r"rank|finite|inf",)),
    ]
    cases = []
    for label, X, expect, match in schemas:
        cases.append(
            Case(
                group,
                f"fit: {label}",
                _describe_frame(X),
                lambda ctx, X=X: make(ctx).fit(X),
                expect,
                match,
                check=rewards_ok,
            )
        )
    # a DataFrame needs a 'response' column here (documented), so no one-column DataFrame
    cases += text_cases(
        group,
        "predict",
        lambda ctx, X: fitted(ctx).predict(X),
        "scores",
        only=PREDICT_X_SHORT,
        skip=["one-column DataFrame"],
    )
    for label, X, expect, match in [
        ("(prompt, response) tuples", [("a review", "great film"), ("a review", "awful film")], "ok", ()),
        (
            "DataFrame prompt/response",
            pd.DataFrame({"prompt": ["a", "b"], "response": ["great film", "awful film"]}),
            "ok",
            (),
        ),
        (
            "DataFrame without response",
            pd.DataFrame({"prompt": ["a"], "answer": ["great film"]}),
            "raises",
            (r"response",),
        ),
        ("3-tuples", [("a", "great film", "extra")], "raises", (r"tuple|pair|prompt", r"\b0\b|3")),
        ("tuples and texts mixed", [("a review", "great film"), "awful film"], "either", (r"tuple|mix|row|\b1\b",)),
        ("tuple with None response", [("a review", None)], "raises", (r"None|missing", r"\b0\b")),
        ("pairs DataFrame (fit's schema)", PAIRS, "raises", (r"response",)),
    ]:
        cases.append(
            Case(
                group,
                f"predict: {label}",
                _describe_frame(X),
                lambda ctx, X=X: fitted(ctx).predict(X),
                expect,
                match,
                check=lambda r, ctx, X=X: (
                    None if len(r) == len(X) and np.isfinite(np.asarray(r, float)).all() else f"{r!r}"
                ),
            )
        )
    ok = lambda model, ctx: rewards_ok(model, ctx)  # noqa: E731
    for param, values in [
        ("max_length", int_values(1, huge="ok")),
        ("batch_size", int_values(1, huge="ok")),
        ("epochs", none_ok(int_values(1, huge=None))),
        ("learning_rate", float_values(0, low_ok=False, none_ok=True)),
        ("warmup_ratio", float_values(0, 1)),
        ("method", [("'bogus'", "bogus", "raises"), ("None", None, "raises")]),
        ("head_init", [("'bogus'", "bogus", "raises")]),
    ]:
        cases += param_cases(group, "fit", lambda ctx, **p: make(ctx, **p).fit(PAIRS), param, values, check=ok)
    for method in METHOD_NAMES:
        cases.append(
            Case(
                group,
                f"fit: method={method}",
                f"method={method!r}",
                lambda ctx, m=method: build(M, ctx, m).fit(PAIRS),
                "ok",
                check=rewards_ok,
            )
        )
    cases.append(
        Case(group, "predict before fit", "unfitted", lambda ctx: make(ctx).predict(BASE), "raises", (r"fit",))
    )
    return cases


def _describe_frame(X):
    if isinstance(X, pd.DataFrame):
        text = f"DataFrame{X.to_dict('list')!r}"
    else:
        text = repr(X)
    return text if len(text) <= 200 else text[:197] + "..."


def all_cases(ctx):
    return embedder_cases(ctx) + classifier_cases(ctx) + regressor_cases(ctx) + reward_cases(ctx)
