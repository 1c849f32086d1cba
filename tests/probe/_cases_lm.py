"""Cases for the causal-LM estimators: zero/few-shot classifiers, the two generators,
PreferenceTuner, and OpenAIChat (against a closed port of 127.0.0.1 only)."""

import numpy as np
import pandas as pd
from _cases_encoders import FIT_X, METHOD_NAMES, PAIRS, PREDICT_X_SHORT, RANKED, cache_dir_cases, model_name_cases
from _context import Case
from _families import (
    BASE,
    CLASSES,
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
from skllm.exceptions import APIRequestError

LM = dict(max_length=256, batch_size=4)
LABELS_LM = [
    "None",
    "NaN at row 1",
    "None at row 2",
    "single class",
    "one label shorter",
    "str and int mixed",
    "complex",
    "2-D (n, 2) strings",
    "bare string",
    "int labels",
    "Series with other index",
]


def _estimator(cls, ctx, **params):
    base = dict(model_name=ctx.llama, cache_dir=ctx.cache, **LM)
    nested = {k: params.pop(k) for k in list(params) if "__" in k}
    base.update(params)
    estimator = cls(**base)
    if nested:
        estimator.set_params(**nested)
    return estimator


def _classifies(model, ctx):
    predicted = np.asarray(model.predict(BASE)).tolist()
    if len(predicted) != len(BASE):
        return f"{len(predicted)} predictions for {len(BASE)} texts"
    unknown = set(predicted) - set(model.classes_.tolist())
    return f"labels {unknown} outside classes_" if unknown else None


def _answers(model, ctx):
    answers = model.predict(BASE)
    if len(answers) != len(BASE) or not all(isinstance(a, str) for a in answers):
        return f"answers {answers!r:.100}"
    return None


def _fits(model, ctx):
    return None if hasattr(model, "fit") else f"fit returned {model!r:.60}"


# -- ZeroShotClassifier ------------------------------------------------------------------------


def zero_shot_cases(ctx):
    group = "ZeroShotClassifier"
    Z = skllm.ZeroShotClassifier

    def make(ctx, **params):
        params.setdefault("classes", ["pos", "neg"])
        return _estimator(Z, ctx, **params)

    def fitted(ctx):
        return ctx.fitted(("zero-shot",), lambda: make(ctx).fit())

    cases = text_cases(group, "predict", lambda ctx, X: fitted(ctx).predict(X), "labels")
    cases += text_cases(
        group, "predict_proba", lambda ctx, X: fitted(ctx).predict_proba(X), "proba", only=PREDICT_X_SHORT[:8]
    )
    cases += text_cases(
        group,
        "fit",
        lambda ctx, X: make(ctx, classes=None).fit(
            X,
            (["pos", "neg"] * 9)[: len(X)]
            if hasattr(X, "__len__") and not isinstance(X, (str, bytes))
            else TRAIN_Y[:4],
        ),
        "estimator",
        only=FIT_X[:9],
    )
    for case in cases:
        if case.name == "fit: None":  # X=None is fit's default: y alone may name the classes
            case.expect = "either"
    cases += label_cases(
        group,
        "fit",
        lambda ctx, y: make(ctx, classes=None).fit(TRAIN_X, y),
        skip=[n for n in _label_names() if n not in LABELS_LM],
    )
    for label, classes, expect, match in [
        ("None and no y", None, "raises", (r"classes",)),
        ("one class", ["pos"], "raises", (r"class",)),
        ("empty list", [], "raises", (r"classes",)),
        ("a string", "pos", "raises", (r"classes",)),
        ("duplicates", ["pos", "neg", "pos"], "raises", (r"pos", r"duplicate|twice|more than once|repeated")),
        ("None among them", ["pos", None], "raises", (r"None|missing",)),
        ("NaN among them", ["pos", NAN], "raises", (r"NaN|missing",)),
        ("str and int mixed", ["pos", 1], "either", (r"mix|type",)),
        ("an empty-string class", ["pos", ""], "either", (r"empty",)),
        ("a numpy array", np.array(["pos", "neg"]), "ok", ()),
        ("a set", {"pos", "neg"}, "either", (r"classes", r"set|order")),
        ("ints", [0, 1], "ok", ()),
        ("whitespace-only class", ["pos", "  "], "either", (r"empty|blank|whitespace",)),
    ]:
        cases.append(
            Case(
                group,
                f"fit: classes={label}",
                repr(classes),
                lambda ctx, c=classes: make(ctx, classes=c).fit(),
                expect,
                match,
                check=_classifies,
            )
        )
    cases.append(
        Case(
            group,
            "fit: y with a label outside classes",
            "classes=['pos', 'neg'], y has 'meh'",
            lambda ctx: make(ctx).fit(TRAIN_X, [*TRAIN_Y[:5], "meh"]),
            "raises",
            (r"meh",),
        )
    )
    cases += _prompt_param_cases(group, lambda ctx, **p: make(ctx, **p).fit(), _classifies)
    cases += param_cases(
        group,
        "fit",
        lambda ctx, **p: make(ctx, **p).fit(),
        "max_length",
        [*int_values(1, huge="ok"), ("8 (no room for the template)", 8, "raises")],
        check=_classifies,
    )
    cases += param_cases(
        group, "fit", lambda ctx, **p: make(ctx, **p).fit(), "batch_size", int_values(1, huge="ok"), check=_classifies
    )
    cases += cache_dir_cases(group, lambda ctx, d: make(ctx, cache_dir=d).fit().predict(BASE), uses_cache=False)
    cases += model_name_cases(group, lambda ctx, name: make(ctx, model_name=name).fit().predict(BASE), causal=True)
    cases.append(
        Case(
            group,
            "score: y with a label fit never saw",
            "y has 'meh'",
            lambda ctx: fitted(ctx).score(BASE, ["pos", "neg", "meh", "pos"]),
            "either",
            check=lambda s, ctx: None if 0 <= s <= 0.75 else f"score {s}",
        )
    )
    cases += _not_fitted(group, make(ctx), ["predict", "predict_proba", "decision_function"])
    return cases


def _prompt_param_cases(group, make, ok):
    """template, label_words, calibration and the boolean switches of the prompt classifiers."""
    cases = []
    for param, values, match in [
        (
            "template",
            [
                ("without {text}", "Classify this.", "raises"),
                ("with an unknown {field}", "{text} {bogus}", "raises"),
                ("unbalanced brace", "Text: {text", "raises"),
                ("positional {0}", "{0} {text}", "raises"),
                ("empty", "", "raises"),
                ("int", 5, "raises"),
                ("with {labels}", "{text} Options: {labels}", "ok"),
            ],
            r"template",
        ),
        (
            "label_words",
            [
                ("one class named", {"pos": "good"}, "ok"),
                ("an unknown class", {"pos": "good", "neg": "bad", "meh": "so-so"}, "raises"),
                ("an empty wording", {"pos": "", "neg": "bad"}, "raises"),
                ("a whitespace wording", {"pos": "  ", "neg": "bad"}, "raises"),
                ("the same wording twice", {"pos": "good", "neg": "good"}, "raises"),
                ("an int wording", {"pos": 5, "neg": "bad"}, "raises"),
                ("None wording", {"pos": None, "neg": "bad"}, "raises"),
                ("a list", ["good", "bad"], "raises"),
                ("a string", "good", "raises"),
                ("lists of synonyms", {"pos": ["good", "great"], "neg": ["bad"]}, "either"),
            ],
            r"label_words",
        ),
        (
            "calibration",
            [("'bogus'", "bogus", "raises"), ("None", None, "ok"), ("'domain'", "domain", "ok"), ("5", 5, "raises")],
            r"calibration",
        ),
        ("length_normalize", [("'yes'", "yes", "raises"), ("None", None, "raises")], r"length_normalize"),
        ("use_chat_template", [("'x'", "x", "raises")], r"use_chat_template"),
        ("device", [("'gpu'", "gpu", "raises")], r"device"),
        ("dtype", [("'float8'", "float8", "raises")], r"dtype"),
    ]:
        cases += param_cases(group, "fit", make, param, values, check=ok, match=match)
    # the messages for label_words should also name the class at fault
    for case in cases:
        if "label_words=an unknown class" in case.name:
            case.match = (r"label_words", r"meh")
        elif "label_words=an empty wording" in case.name or "label_words=an int wording" in case.name:
            case.match = (r"label_words", r"pos")
    return cases


def _label_names():
    from _families import label_families

    return [name for name, *_ in label_families()]


def _not_fitted(group, estimator, methods, args=(BASE,)):
    return [
        Case(group, f"{m} before fit", "unfitted", lambda ctx, m=m: getattr(estimator, m)(*args), "raises", (r"fit",))
        for m in methods
    ]


# -- FewShotClassifier -------------------------------------------------------------------------


def few_shot_cases(ctx):
    group = "FewShotClassifier"
    F = skllm.FewShotClassifier

    def make(ctx, **params):
        params.setdefault("n_examples", 2)
        params.setdefault("random_state", 0)
        return _estimator(F, ctx, **params)

    def fitted(ctx):
        return ctx.fitted(("few-shot",), lambda: make(ctx).fit(TRAIN_X, TRAIN_Y))

    def fit_xy(ctx, X):
        y = (["pos", "neg"] * 9)[: len(X)] if hasattr(X, "__len__") and not isinstance(X, (str, bytes)) else TRAIN_Y[:4]
        return make(ctx).fit(X, y)

    cases = text_cases(
        group,
        "predict",
        lambda ctx, X: fitted(ctx).predict(X),
        "labels",
        only=[*PREDICT_X_SHORT, "tuple", "generator", "set"],
    )
    cases += text_cases(group, "fit", fit_xy, "estimator", only=FIT_X)
    cases += label_cases(
        group,
        "fit",
        lambda ctx, y: make(ctx).fit(TRAIN_X, y),
        skip=[n for n in _label_names() if n not in [*LABELS_LM, "three classes", "bool labels"]],
    )
    fit = lambda ctx, **p: make(ctx, **p).fit(TRAIN_X, TRAIN_Y)  # noqa: E731
    cases += param_cases(
        group, "fit", fit, "n_examples", [v for v in int_values(0, huge="ok") if v[0] != "None"], check=_classifies
    )
    cases += param_cases(
        group,
        "fit",
        fit,
        "example_selection",
        [
            ("'bogus'", "bogus", "raises"),
            ("5", 5, "raises"),
            ("None", None, "either"),
            ("'random'", "random", "ok"),
            ("'first'", "first", "ok"),
            ("RandomSelection()", skllm.RandomSelection(), "ok"),
            ("the RandomSelection class", skllm.RandomSelection, "either"),
            ("'Balanced' (capitalised)", "Balanced", "either"),
        ],
        check=_classifies,
    )
    cases += param_cases(
        group,
        "fit",
        lambda ctx, **p: make(ctx, example_selection="nearest", embedder=ctx.bert, **p).fit(TRAIN_X, TRAIN_Y),
        "balance_nearest",
        [("'x'", "x", "raises"), ("True", True, "ok")],
        check=_classifies,
    )
    cases += param_cases(
        group,
        "fit",
        lambda ctx, **p: make(ctx, example_selection="nearest", **p).fit(TRAIN_X, TRAIN_Y),
        "embedder",
        [
            ("5", 5, "raises"),
            ("a missing folder", "/nonexistent/probe-encoder", "raises"),
            ("the tiny BERT folder", None, None),
        ],
        check=_classifies,
        match=r"embedder|probe-encoder",
    )
    cases.append(
        Case(
            group,
            "fit: example_selection='nearest' with the tiny BERT",
            "embedder=<tiny BERT folder>",
            lambda ctx: make(ctx, example_selection="nearest", embedder=ctx.bert).fit(TRAIN_X, TRAIN_Y),
            "ok",
            check=_classifies,
        )
    )
    cases += param_cases(
        group,
        "fit",
        fit,
        "example_template",
        [
            ("without {label}", "Text: {text}\n", "raises"),
            ("without {text}", "Label: {label}\n", "raises"),
            ("with {bogus}", "{text} {label} {bogus}", "raises"),
            ("int", 5, "raises"),
            ("a good one", "Text: {text}\nCategory: {label}\n\n", "ok"),
        ],
        check=_classifies,
        match=r"example_template",
    )
    cases += param_cases(
        group,
        "fit",
        fit,
        "random_state",
        [("-1", -1, "raises"), ("'3'", "3", "raises"), ("1.5", 1.5, "raises")],
        check=_classifies,
    )
    cases += _prompt_param_cases(group, fit, _classifies)[:12]
    cases += param_cases(
        group,
        "fit",
        lambda ctx, **p: make(ctx, **p).fit(TRAIN_X, TRAIN_Y),
        "embedder_model",
        [("a model name (deprecated)", "/nonexistent/probe-encoder", "either")],
        check=_classifies,
        match=r"embedder|probe-encoder",
    )
    cases += _not_fitted(group, make(ctx), ["predict", "predict_proba"])
    return cases


# -- FineTuneGenerator -------------------------------------------------------------------------

ANSWERS = ["yes", "no", "yes", "no", "yes", "no"]


def generator_cases(ctx):
    group = "FineTuneGenerator"
    G = skllm.FineTuneGenerator

    def make(ctx, **params):
        params.setdefault("epochs", 1)
        params.setdefault("max_length", 32)
        params.setdefault("max_new_tokens", 4)
        params.setdefault("random_state", 0)
        return _estimator(G, ctx, **params)

    def fitted(ctx):
        return ctx.fitted(("generator",), lambda: make(ctx).fit(TRAIN_X, ANSWERS))

    cases = text_cases(group, "predict", lambda ctx, X: fitted(ctx).predict(X), "texts")

    def fit_x(ctx, X):
        n = len(X) if hasattr(X, "__len__") and not isinstance(X, (str, bytes)) else 4
        return make(ctx).fit(X, (ANSWERS * 9)[:n])

    cases += text_cases(group, "fit", fit_x, "estimator", only=FIT_X)
    fit = lambda ctx, **p: make(ctx, **p).fit(TRAIN_X, ANSWERS)  # noqa: E731
    for label, y, expect, match in [
        ("None", None, "raises", (r"\by\b",)),
        ("NaN at row 1", ["yes", NAN, "yes", "no", "yes", "no"], "raises", (r"NaN|missing", r"\b1\b")),
        ("None at row 0", [None, *ANSWERS[1:]], "raises", (r"None|missing", r"\b0\b")),
        ("ints", [1, 0, 1, 0, 1, 0], "either", (r"\by\b|str|text",)),
        ("one answer shorter", ANSWERS[:5], "raises", (r"\b5\b", r"\b6\b")),
        ("2-D (n, 2)", np.array([["a", "b"]] * 6), "raises", (r"1-D|shape|\by\b",)),
        ("bare string", "yesno", "raises", (r"single|wrap|\by\b",)),
        (
            "lone surrogate at row 2",
            ["yes", "no", "bad \ud800", "no", "yes", "no"],
            "raises",
            (r"surrogate|unicode", r"\b2\b"),
        ),
        ("empty answers", [""] * 6, "either", (r"empty",)),
        ("very long answers", ["yes " * 500] * 6, "either", (r"max_length|long",)),
        ("Series with other index", pd.Series(ANSWERS, index=range(60, 66)), "ok", ()),
    ]:
        cases.append(
            Case(
                group,
                f"fit: y {label}",
                repr(y)[:120],
                lambda ctx, y=y: make(ctx).fit(TRAIN_X, y),
                expect,
                match,
                check=_answers,
            )
        )
    for param, values in [
        ("max_new_tokens", int_values(1, huge="either")),
        ("max_length", [*int_values(1, huge="ok"), ("4 (no room)", 4, "either")]),
        ("epochs", none_ok(int_values(1, huge=None))),
        ("batch_size", int_values(1, huge="ok")),
        ("learning_rate", float_values(0, low_ok=False, none_ok=True)),
        ("warmup_ratio", float_values(0, 1)),
        ("metric", [("'bogus'", "bogus", "raises"), ("None", None, "raises"), ("'chrf'", "chrf", "either")]),
        ("do_sample", [("'yes'", "yes", "raises")]),
        ("stop_at_newline", [("'x'", "x", "raises")]),
        ("use_chat_template", [("'x'", "x", "raises")]),
        (
            "template",
            [
                ("without {text}", "Answer:", "raises"),
                ("with {bogus}", "{text} {bogus}", "raises"),
                ("int", 5, "raises"),
                ("unbalanced", "{text", "raises"),
            ],
        ),
    ]:
        cases += param_cases(group, "fit", fit, param, values, check=_answers)
    sample = lambda ctx, **p: make(ctx, do_sample=True, **p).fit(TRAIN_X, ANSWERS)  # noqa: E731
    cases += param_cases(group, "fit (do_sample)", sample, "temperature", float_values(0, low_ok=False), check=_answers)
    cases += param_cases(group, "fit (do_sample)", sample, "top_p", float_values(0, 1, low_ok=False), check=_answers)
    for method in METHOD_NAMES:
        generates = method in ("full", "lora", "prompt", "adapter")
        cases.append(
            Case(
                group,
                f"fit: method={method}",
                f"method={method!r}",
                lambda ctx, m=method: make(ctx, method=m).fit(TRAIN_X, ANSWERS),
                "ok" if generates else "raises",
                (r"method", rf"{method}"),
                check=_answers,
            )
        )
    cases += param_cases(
        group, "fit", fit, "method", [("'bogus'", "bogus", "raises"), ("None", None, "raises")], check=_answers
    )
    cases += model_name_cases(group, lambda ctx, name: make(ctx, model_name=name).fit(TRAIN_X, ANSWERS), causal=True)
    cases.append(
        Case(
            group,
            "score: y shorter than X",
            "4 texts, 3 answers",
            lambda ctx: fitted(ctx).score(BASE, ["yes", "no", "yes"]),
            "raises",
            (r"\b3\b", r"\b4\b"),
        )
    )
    cases.append(
        Case(group, "score: y None", "y=None", lambda ctx: fitted(ctx).score(BASE, None), "raises", (r"\by\b",))
    )
    cases += _not_fitted(group, make(ctx), ["predict"])
    return cases


# -- FewShotGenerator --------------------------------------------------------------------------


def few_shot_generator_cases(ctx):
    group = "FewShotGenerator"
    G = skllm.FewShotGenerator

    def make(ctx, **params):
        params.setdefault("n_examples", 2)
        params.setdefault("max_new_tokens", 4)
        return _estimator(G, ctx, **params)

    def fitted(ctx):
        return ctx.fitted(("few-shot-generator",), lambda: make(ctx).fit(TRAIN_X, ANSWERS))

    cases = text_cases(
        group,
        "predict",
        lambda ctx, X: fitted(ctx).predict(X),
        "texts",
        only=[*PREDICT_X_SHORT, "tuple", "set", "generator", "int"],
    )

    def fit_x(ctx, X):
        n = len(X) if hasattr(X, "__len__") and not isinstance(X, (str, bytes)) else 4
        return make(ctx).fit(X, (ANSWERS * 9)[:n])

    cases += text_cases(group, "fit", fit_x, "estimator", only=FIT_X[:8])
    fit = lambda ctx, **p: make(ctx, **p).fit(TRAIN_X, ANSWERS)  # noqa: E731
    for label, y, expect, match in [
        ("None", None, "raises", (r"\by\b",)),
        ("NaN at row 1", ["yes", NAN, "yes", "no", "yes", "no"], "raises", (r"NaN|missing", r"\b1\b")),
        ("one answer shorter", ANSWERS[:5], "raises", (r"\b5\b", r"\b6\b")),
        ("ints", [1, 0, 1, 0, 1, 0], "either", (r"\by\b|str|text",)),
    ]:
        cases.append(
            Case(
                group,
                f"fit: y {label}",
                repr(y)[:120],
                lambda ctx, y=y: make(ctx).fit(TRAIN_X, y),
                expect,
                match,
                check=_answers,
            )
        )
    for param, values in [
        ("n_examples", [v for v in int_values(0, huge="ok") if v[0] != "None"]),
        ("max_new_tokens", int_values(1, huge="either")),
        ("max_length", int_values(1, huge="ok")),
        ("batch_size", int_values(1, huge="ok")),
        ("stop_at_newline", [("'x'", "x", "raises")]),
        (
            "example_template",
            [
                ("without {label}", "Input: {text}\n", "raises"),
                ("without {text}", "Output: {label}\n", "raises"),
                ("int", 5, "raises"),
            ],
        ),
        ("template", [("with {bogus}", "{text} {bogus}", "raises"), ("int", 5, "raises")]),
        ("example_selection", [("'bogus'", "bogus", "raises"), ("'random'", "random", "ok"), ("5", 5, "raises")]),
        ("random_state", [("-1", -1, "raises"), ("'3'", "3", "raises")]),
    ]:
        cases += param_cases(group, "fit", fit, param, values, check=_answers)
    cases.append(
        Case(
            group,
            "fit without y",
            "fit(X)",
            lambda ctx: make(ctx).fit(TRAIN_X),
            "either",
            (r"\by\b",),
            check=_answers,
            signature=True,
        )
    )
    cases += _not_fitted(group, make(ctx), ["predict"])
    return cases


# -- PreferenceTuner ---------------------------------------------------------------------------


def _brevity(prompts, completions):
    return [-float(len(c)) for c in completions]


def preference_cases(ctx):
    group = "PreferenceTuner"
    P = skllm.PreferenceTuner

    def policy(ctx, **params):
        base = dict(max_new_tokens=4, max_length=32, random_state=0)
        base.update(params)
        return _estimator(skllm.FineTuneGenerator, ctx, **base)

    def make(ctx, **params):
        params.setdefault("reward", _brevity)
        params.setdefault("algorithm", "rloo")
        params.setdefault("batch_size", 2)
        params.setdefault("n_generations", 2)
        params.setdefault("random_state", 0)
        if "generator" not in params:
            params["generator"] = policy(ctx)
        return P(**params)

    def fitted(ctx):
        return ctx.fitted(("preference",), lambda: make(ctx).fit(BASE))

    prompts = ["a review", "a movie", "a story", "a film"]
    cases = text_cases(group, "fit (rloo)", lambda ctx, X: make(ctx).fit(X), "estimator", only=FIT_X[:9], xname="X")
    cases += text_cases(group, "predict", lambda ctx, X: fitted(ctx).predict(X), "texts", only=PREDICT_X_SHORT[:8])
    fit = lambda ctx, **p: make(ctx, **p).fit(prompts)  # noqa: E731
    for param, values in [
        (
            "algorithm",
            [
                ("'bogus'", "bogus", "raises"),
                ("None", None, "raises"),
                ("'RLOO'", "RLOO", "either"),
                ("'ppo'", "ppo", "ok"),
                ("'trpo'", "trpo", "raises"),
            ],
        ),
        ("target_kl", float_values(0, low_ok=False, none_ok=True)),
        ("validation_fraction", float_values(0, 1, low_ok=False, none_ok=True)),
        ("eval_every", int_values(1, huge="ok")),
        ("kl_coef", float_values(0, huge="either")),
        ("n_generations", int_values(2, huge=None)),
        ("batch_size", int_values(1, huge="ok")),
        ("epochs", none_ok(int_values(1, huge=None))),
        ("temperature", float_values(0, low_ok=False)),
        ("max_new_tokens", none_ok(int_values(1, huge="either"))),
        ("learning_rate", float_values(0, low_ok=False, none_ok=True)),
        ("warmup_ratio", float_values(0, 1)),
        ("max_grad_norm", float_values(0, low_ok=False, none_ok=True)),
        ("random_state", [("-1", -1, "raises"), ("'3'", "3", "raises")]),
        ("verbose", [("'loud'", "loud", "raises")]),
    ]:
        cases += param_cases(group, "fit", fit, param, values, check=_answers)
    ppo = lambda ctx, **p: make(ctx, algorithm="ppo", **p).fit(prompts)  # noqa: E731
    for param, values in [
        ("ppo_epochs", int_values(1, huge=None)),
        ("clip_range", float_values(0, low_ok=False)),
        ("gae_lambda", float_values(0, 1)),
    ]:
        cases += param_cases(group, "fit (ppo)", ppo, param, values, check=_answers)
    rewards = [
        ("None (RLOO needs one)", None, "raises", (r"reward",)),
        ("NaN rewards", lambda p, c: [NAN] * len(c), "raises", (r"reward", r"NaN|finite")),
        ("inf rewards", lambda p, c: [float("inf")] * len(c), "raises", (r"reward", r"inf|finite")),
        ("one reward too few", lambda p, c: [0.0] * (len(c) - 1), "raises", (r"reward", r"\d")),
        ("str rewards", lambda p, c: ["high"] * len(c), "raises", (r"reward",)),
        ("None rewards", lambda p, c: None, "raises", (r"reward",)),
        ("a scalar reward", lambda p, c: 1.0, "raises", (r"reward",)),
        ("2-D rewards", lambda p, c: [[0.0, 1.0]] * len(c), "raises", (r"reward",)),
        (
            "huge rewards 1e300",
            lambda p, c: [1e300 * (i % 2) for i in range(len(c))],
            "raises",
            (r"reward|loss|finite",),
        ),
        ("an int", 5, "raises", (r"reward",)),
        ("an unfitted RewardModel", "unfitted", "raises", (r"fit|reward",)),
        ("bool rewards", lambda p, c: [True] * len(c), "either", (r"reward",)),
    ]
    for label, reward, expect, match in rewards:

        def run(ctx, reward=reward):
            if reward == "unfitted":
                reward = skllm.RewardModel(ctx.bert, method="head", epochs=1)
            return make(ctx, reward=reward).fit(prompts)

        cases.append(Case(group, f"fit: reward={label}", label, run, expect, match, check=_answers))

    def user_error(p, c):
        return [1 / 0 for _ in c]

    cases.append(
        Case(
            group,
            "fit: reward raising its own error",
            "reward raises ZeroDivisionError",
            lambda ctx: make(ctx, reward=user_error).fit(prompts),
            "raises",
            (),
            allow=(ZeroDivisionError,),
        )
    )
    for label, generator, expect, match in [
        ("5", lambda ctx: 5, "raises", (r"generator",)),
        ("a missing folder", lambda ctx: "/nonexistent/probe-llm", "raises", (r"probe-llm",)),
        ("a FineTuneClassifier", lambda ctx: skllm.FineTuneClassifier(ctx.llama), "raises", (r"generator",)),
        ("the tiny BERT (encoder)", lambda ctx: ctx.bert, "raises", (r"causal|decoder|generat",)),
        ("a model folder name", lambda ctx: ctx.llama, "ok", ()),
    ]:
        cases.append(
            Case(
                group,
                f"fit: generator={label}",
                label,
                lambda ctx, g=generator: make(ctx, generator=g(ctx)).fit(prompts),
                expect,
                match,
                check=_answers,
            )
        )

    def fitted_policy_with_method(ctx):
        generator = ctx.fitted(("policy",), lambda: policy(ctx, epochs=1).fit(TRAIN_X, ANSWERS))
        return make(ctx, generator=generator, method="lora").fit(prompts)

    cases.append(
        Case(
            group,
            "fit: method with a fitted generator",
            "method='lora' and a fitted generator",
            fitted_policy_with_method,
            "raises",
            (r"method",),
        )
    )
    cases += param_cases(
        group,
        "fit",
        fit,
        "method",
        [("'head' (cannot generate)", "head", "raises"), ("'bogus'", "bogus", "raises")],
        check=_answers,
    )
    dpo = lambda ctx, X: make(ctx, algorithm="dpo", reward=None).fit(X)  # noqa: E731
    for label, X, expect, match in [
        ("pairs", PAIRS, "ok", ()),
        ("ranked lists", RANKED, "ok", ()),
        ("a list of prompts", prompts, "raises", (r"chosen|pairs|DataFrame",)),
        ("missing chosen", PAIRS.drop(columns="chosen"), "raises", (r"chosen",)),
        ("chosen equal to rejected", PAIRS.assign(chosen=PAIRS["rejected"]), "raises", (r"equal|same|identical",)),
        (
            "NaN rejected at row 2",
            PAIRS.assign(rejected=["awful film", "hated it", NAN, "dull story"]),
            "raises",
            (r"NaN|missing", r"\b2\b"),
        ),
        ("empty DataFrame", PAIRS.iloc[:0], "raises", (r"empty|no pair|at least",)),
        ("None", None, "raises", (r"\bX\b|pairs|DataFrame",)),
    ]:
        cases.append(
            Case(
                group,
                f"fit (dpo): {label}",
                repr(X)[:120] if not isinstance(X, pd.DataFrame) else f"DataFrame{X.to_dict('list')!r:.120}",
                lambda ctx, X=X: dpo(ctx, X),
                expect,
                match,
                check=_answers,
            )
        )
    cases.append(
        Case(
            group,
            "fit (rloo): a pairs DataFrame",
            "pairs DataFrame with algorithm='rloo'",
            lambda ctx: make(ctx).fit(PAIRS),
            "raises",
            (r"prompt|rloo|dpo|DataFrame",),
        )
    )
    cases += _not_fitted(group, make(ctx), ["predict"])
    return cases


# -- OpenAIChat --------------------------------------------------------------------------------


def api_cases(ctx):
    group = "OpenAIChat"

    def chat(ctx, **params):
        base = dict(
            model="probe-model", base_url=ctx.unreachable, api_key="sk-probe", max_retries=0, timeout=2.0, backoff=0.01
        )
        base.update(params)
        return skllm.OpenAIChat(**base)

    def classifier(ctx, **params):
        # no calibration: fit then sends nothing, so that parameters are judged by fit alone
        return skllm.ZeroShotClassifier(
            model_name=chat(ctx, **params), classes=["pos", "neg"], calibration=None, cache_dir=None
        )

    cases = []
    unreachable = (r"127\.0\.0\.1|connect|endpoint|reach",)
    cases.append(
        Case(
            group,
            "ZeroShotClassifier.predict, endpoint unreachable",
            "closed port",
            lambda ctx: classifier(ctx).fit().predict(BASE),
            "raises",
            unreachable,
            timeout=90,
        )
    )
    cases.append(
        Case(
            group,
            "ZeroShotClassifier.predict, retries, unreachable",
            "closed port, max_retries=2",
            lambda ctx: classifier(ctx, max_retries=2).fit().predict(BASE),
            "raises",
            unreachable,
            timeout=90,
        )
    )
    cases.append(
        Case(
            group,
            "FewShotClassifier.predict, endpoint unreachable",
            "closed port",
            lambda ctx: (
                skllm.FewShotClassifier(model_name=chat(ctx), n_examples=2, cache_dir=None)
                .fit(TRAIN_X, TRAIN_Y)
                .predict(BASE)
            ),
            "raises",
            unreachable,
            timeout=90,
        )
    )
    cases.append(
        Case(
            group,
            "FewShotGenerator.predict, endpoint unreachable",
            "closed port",
            lambda ctx: (
                skllm.FewShotGenerator(model_name=chat(ctx), n_examples=2, cache_dir=None)
                .fit(TRAIN_X, ANSWERS)
                .predict(BASE)
            ),
            "raises",
            unreachable,
            timeout=90,
        )
    )
    cases.append(
        Case(
            group,
            "ZeroShotClassifier.predict, endpoint unreachable, with a cache",
            "closed port, cache_dir set",
            lambda ctx: (
                skllm.ZeroShotClassifier(
                    model_name=chat(ctx), classes=["pos", "neg"], calibration=None, cache_dir=str(ctx.path("api-cache"))
                )
                .fit()
                .predict(BASE)
            ),
            "raises",
            unreachable,
            timeout=90,
        )
    )
    cases += text_cases(
        group,
        "ZeroShotClassifier.predict",
        lambda ctx, X: classifier(ctx).fit().predict(X),
        "labels",
        only=["None", "bare string", "None at row 1", "lone surrogate at row 1", "empty list"],
    )

    def fit(ctx, **params):
        return classifier(ctx, **params).fit()

    for param, values in [
        ("temperature", float_values(0, huge="either")),
        ("max_tokens", none_ok(int_values(1, huge="either"))),
        ("max_concurrency", int_values(1, huge="either")),
        ("timeout", float_values(0, low_ok=False, none_ok=False)),
        ("max_retries", int_values(0, huge="either")),
        ("backoff", float_values(0)),
        ("logprobs", [("'yes'", "yes", "raises"), ("None", None, "raises")]),
        ("verbose", [("'x'", "x", "raises")]),
        (
            "unparsed",
            [
                ("'bogus' (not a class)", "bogus", "raises"),
                ("'error'", "error", "ok"),
                ("'pos' (a class)", "pos", "ok"),
                ("None", None, "either"),
            ],
        ),
        ("model", [("None", None, "raises"), ("''", "", "raises"), ("5", 5, "raises")]),
        (
            "base_url",
            [
                ("'not a url'", "not a url", "raises"),
                ("'ftp://127.0.0.1/v1'", "ftp://127.0.0.1/v1", "raises"),
                ("5", 5, "raises"),
                ("''", "", "raises"),
            ],
        ),
        ("api_key", [("5", 5, "raises"), ("''", "", "either")]),
    ]:
        cases += param_cases(group, "ZeroShotClassifier.fit", fit, param, values, check=_fits)
    cases.append(
        Case(
            group,
            "nested model_name__temperature=-1",
            "set_params(model_name__temperature=-1)",
            lambda ctx: classifier(ctx).set_params(model_name__temperature=-1.0).fit(),
            "raises",
            (r"temperature",),
        )
    )
    cases.append(
        Case(
            group,
            "OpenAIChat as the generator of a FineTuneGenerator",
            "FineTuneGenerator(model_name=OpenAIChat(...))",
            lambda ctx: skllm.FineTuneGenerator(model_name=chat(ctx), epochs=1).fit(TRAIN_X, ANSWERS),
            "raises",
            (r"OpenAIChat|endpoint|model_name|local",),
        )
    )
    cases.append(
        Case(
            group,
            "OpenAIChat as the backbone of a FineTuneClassifier",
            "FineTuneClassifier(model_name=OpenAIChat(...))",
            lambda ctx: skllm.FineTuneClassifier(model_name=chat(ctx), epochs=1).fit(TRAIN_X, TRAIN_Y),
            "raises",
            (r"OpenAIChat|endpoint|model_name|local",),
        )
    )
    cases.append(
        Case(
            group,
            "OpenAIChat as the embedder of a TransformerEmbedder",
            "TransformerEmbedder(model_name=OpenAIChat(...))",
            lambda ctx: skllm.TransformerEmbedder(model_name=chat(ctx)).fit().transform(BASE),
            "raises",
            (r"OpenAIChat|endpoint|model_name|local",),
        )
    )
    cases.append(
        Case(
            group,
            "a key missing",
            "api_key=None, no $OPENAI_API_KEY, OpenAI's URL",
            lambda ctx: _no_key(ctx, chat),
            "raises",
            (r"OPENAI_API_KEY|key",),
            allow=(APIRequestError,),
        )
    )
    return cases


def _no_key(ctx, chat):
    import os

    saved = {k: os.environ.pop(k, None) for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    try:
        clf = skllm.ZeroShotClassifier(
            model_name=chat(ctx, api_key=None, base_url=None), classes=["pos", "neg"], cache_dir=None
        )
        return clf.fit().predict(BASE)
    finally:
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v


def all_cases(ctx):
    return (
        zero_shot_cases(ctx)
        + few_shot_cases(ctx)
        + generator_cases(ctx)
        + few_shot_generator_cases(ctx)
        + preference_cases(ctx)
        + api_cases(ctx)
    )


__all__ = ["CLASSES", "all_cases", "check_output"]
