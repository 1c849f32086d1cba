"""The time plan: estimates of each method's seconds, and the folds, epochs and texts that fit a budget."""

import math
import re

from .._methods import METHODS
from .._probe import PROBE_MAX_ROWS
from .._prompt_classifier import CALIBRATION_TEXTS
from .catalogue import PROMPT_METHODS, family, uses_encoder

# What a fine-tuning fold costs besides the texts (building the network, copying the
# backbone), in seconds, when the timing did not measure it.
_FOLD_OVERHEAD = 1.0
# A fold of a method trained on cached features (HeadTuning): its epochs cost milliseconds.
_CACHED_FEATURES_FOLD = 1.5
# The plan aims below the budget: the measurements are short and machines are noisy.
SAFETY = 0.85
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)


def parse_duration(text, name="time_budget"):
    """Seconds in ``"90s"``, ``"10m"``, ``"1h"`` or ``"600"``; ``None`` for ``"none"``."""
    if text is None or str(text).strip().lower() in ("none", "off", "inf"):
        return None
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{name} must be a duration such as 90s, 10m, 1h, 600 (seconds) or none, got {text!r}.")
    unit = (match.group(2) or "s").lower()[0]
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def format_seconds(seconds):
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_seconds(name, costs, *, n, cv, epochs, n_classes):
    """Estimated seconds of one method's cross-validation on ``n`` texts, and of one refit on all.

    ``costs`` holds what ``measure_costs`` timed. The embeddings are shared through the
    cache: they are counted once, by ``_plan_cost``.
    """
    train_rows = n * (cv - 1)  # over all folds
    if name in ("logreg", "linear-svm"):
        return 0.1 * cv, 0.1
    if name == "xgboost":
        # Measured: about 0.5 s and 2 ms per training text per fold, per class beyond the first.
        per_class = max(1, n_classes - 1)
        return per_class * (0.5 * cv + 0.002 * train_rows), per_class * (0.5 + 0.002 * n)
    if name in METHODS:
        return _finetune_seconds(METHODS[name], costs, n=n, cv=cv, epochs=epochs)
    if name in PROMPT_METHODS:
        # Every text is prompted once as a test text, and each fit prompts up to
        # CALIBRATION_TEXTS of its training texts to estimate the label prior (the
        # classifiers' calibration="batch", which the comparison keeps).
        per_prompt = costs.get("prompt" if name == "zero-shot" else name, 0.0)
        fit_prompts = min(CALIBRATION_TEXTS, train_rows // cv)
        return (cv * fit_prompts + n) * per_prompt, min(CALIBRATION_TEXTS, n) * per_prompt
    return 0.0, 0.0


def _finetune_seconds(method, costs, *, n, cv, epochs):
    """``estimate_seconds`` of a fine-tuning method, from its class's facts and the timed reference."""
    if method.caches_features:
        return _CACHED_FEATURES_FOLD * cv, _CACHED_FEATURES_FOLD
    train_rows = n * (cv - 1)
    # Per fold: building the network; one forward pass over the training texts, at most
    # PROBE_MAX_ROWS of them (the output layer starts as a linear probe on their features);
    # the epochs, at the method's cost relative to full fine-tuning; and one forward pass
    # over the test texts.
    fold = costs.get("fold", _FOLD_OVERHEAD)
    forward = costs.get("predict", 2 * costs.get("embed", 0.0))
    step = costs.get("train", 0.0) * method.relative_cost
    probed = cv * min(train_rows // cv, PROBE_MAX_ROWS)
    return (
        cv * fold + probed * forward + train_rows * epochs * step + n * forward,
        fold + min(n, PROBE_MAX_ROWS) * forward + n * epochs * step,
    )


def _plan_cost(methods, costs, *, n, cv, epochs, n_classes, refit):
    per_method = {m: estimate_seconds(m, costs, n=n, cv=cv, epochs=epochs, n_classes=n_classes) for m in methods}
    total = sum(cv_s for cv_s, _ in per_method.values())
    if any(uses_encoder(m) for m in methods):
        total += n * costs.get("embed", 0.0)
    if refit and per_method:
        total += max(refit_s for _, refit_s in per_method.values())
    return total, {m: s[0] for m, s in per_method.items()}


def plan_comparison(methods, costs, *, n, min_n, cv, epochs, n_classes, seconds, refit=False):
    """Folds, epochs, sample size and methods that fit in ``seconds``, by shrinking in a fixed order.

    The order: folds down to 3, epochs down to 2, texts down to 200, folds down to 2,
    epochs down to 1, texts down to ``min_n`` (at least 100 where there are more).
    If that is not enough, the costliest method is skipped and the others are
    planned again from the settings asked, until they fit.
    """
    methods = list(methods)
    plan = {"n": n, "cv": cv, "epochs": epochs, "skipped": []}

    def cost(p=plan, ms=None):
        return _plan_cost(
            [m for m in (ms or methods) if m not in p["skipped"]],
            costs,
            n=p["n"],
            cv=p["cv"],
            epochs=p["epochs"],
            n_classes=n_classes,
            refit=refit,
        )[0]

    def fewer_texts(floor):
        floor = max(min_n, min(floor, plan["n"]))
        if cost() <= seconds or plan["n"] <= floor:
            return
        at_floor = cost({**plan, "n": floor})
        # The cost grows linearly with the number of texts.
        slope = (cost() - at_floor) / (plan["n"] - floor)
        fitting = floor + (seconds - at_floor) / slope if slope > 0 else floor
        plan["n"] = int(max(floor, min(plan["n"], 10 * math.floor(fitting / 10))))

    def shrink():
        plan.update(n=n, cv=cv, epochs=epochs)
        steps = [
            lambda: plan.update(cv=min(plan["cv"], 3)),
            lambda: plan.update(epochs=min(plan["epochs"], 2)),
            lambda: fewer_texts(200),
            lambda: plan.update(cv=min(plan["cv"], 2)),
            lambda: plan.update(epochs=1),
            lambda: fewer_texts(100),
        ]
        for step in steps:
            if cost() <= seconds:
                break
            step()

    shrink()
    while cost() > seconds and len(plan["skipped"]) < len(methods) - 1:
        running = [m for m in methods if m not in plan["skipped"]]
        alone = {m: cost({**plan, "skipped": [o for o in methods if o != m]}) for m in running}
        plan["skipped"].append(max(running, key=lambda m: (alone[m], -running.index(m))))
        shrink()  # the others may now fit with more texts, folds or epochs
    plan["seconds"] = cost()
    running = [m for m in methods if m not in plan["skipped"]]
    shape = dict(n=plan["n"], cv=plan["cv"], epochs=plan["epochs"], n_classes=n_classes)
    # The best method is known only at the end: the plan keeps the costliest refit's time.
    plan["refit_per_method"] = {m: estimate_seconds(m, costs, **shape)[1] for m in running} if refit else {}
    plan["refit_seconds"] = max(plan["refit_per_method"].values(), default=0.0)
    # Estimates of the skipped methods too, at the settings of the others; the shared
    # embeddings are counted with the first method that embeds, which computes them.
    plan["per_method"] = _plan_cost(methods, costs, **shape, refit=False)[1]
    first = next((m for m in running if uses_encoder(m)), None)
    if first is not None:
        plan["per_method"][first] += plan["n"] * costs.get("embed", 0.0)
    return plan


def format_plan(plan):
    """The plan as a few lines for people."""
    asked = plan["asked"]
    lines = []
    if plan["time_budget"] is None:
        lines.append("plan: no time budget, everything as asked")
    else:
        lines.append(
            f"plan for a time budget of {format_seconds(plan['time_budget'])} "
            f"(timed on this machine in {plan['measure_seconds']:.1f} s, "
            f"{plan.get('costs', {}).get('loading', 0.0):.1f} s of which loading the models):"
        )
    shrunk = []
    for key, what in (("n", "texts"), ("cv", "folds"), ("epochs", "epochs")):
        if plan[key] != asked[key]:
            shrunk.append(f"{what} {asked[key]} -> {plan[key]}")
    lines.append(
        f"  {plan['n']} texts, {plan['cv']}-fold cross-validation, {plan['epochs']} fine-tuning epoch(s)"
        + (f" (shrunk to fit: {', '.join(shrunk)})" if shrunk else "")
    )
    for name in plan["methods"]:
        if name in plan.get("unsupported", {}):
            what = f"skipped: {plan['unsupported'][name]}"
        elif name in plan["skipped"]:
            what = "skipped: does not fit in the time budget"
        elif name in plan.get("reused", ()):
            what = "reused from an earlier run"
        else:
            what = "run"
        estimate = plan["per_method"].get(name)
        shown = f"~{format_seconds(estimate)}" if estimate is not None else ""
        lines.append(f"  {name:<12} {shown:>10}  {what}")
    if plan.get("seconds") is not None:
        lines.append(
            f"  estimated total {format_seconds(plan['seconds'])}, shared embeddings"
            + (" and the refit of the best method" if plan.get("refit") else "")
            + " included"
        )
    return "\n".join(lines)


def format_timing(timing):
    """Planned against actual seconds, overall and per kind of method, as a few lines for people.

    ``timing`` is ``table.attrs["timing"]`` of ``compare_methods``: ``planned`` is the plan's
    estimate of the work done (the timing, the methods run, the refit of the best one).
    """
    took = timing["seconds"]
    if timing.get("planned") is None:
        return f"time: took {format_seconds(took)} (no time budget: nothing was planned)"
    planned = timing["planned"]
    ratio = f", {took / planned:.2f}x the plan" if planned > 0 else ""
    lines = [
        f"time: planned {format_seconds(planned)}, took {format_seconds(took)}{ratio} "
        f"(timing the methods beforehand: {format_seconds(timing['measure_seconds'])})"
    ]
    families = {}
    for name, (estimate, spent) in timing["methods"].items():
        entry = families.setdefault(family(name), [0.0, 0.0, []])
        entry[0] += estimate
        entry[1] += spent
        entry[2].append(name)
    for kind, (estimate, spent, names) in families.items():
        lines.append(
            f"  {kind:<12} planned {format_seconds(estimate):>8}, took {format_seconds(spent):>8}  ({', '.join(names)})"
        )
    if timing.get("refit") is not None:
        estimate, spent = timing["refit"]
        kept = timing.get("refit_reserved", 0.0)
        lines.append(
            f"  {'refit':<12} planned {format_seconds(estimate):>8}, took {format_seconds(spent):>8}  "
            f"(the best method, {timing['refit_method']}, on all the texts"
            + (f"; the plan kept {format_seconds(kept)} for the costliest refit)" if kept > estimate else ")")
        )
    return "\n".join(lines)
