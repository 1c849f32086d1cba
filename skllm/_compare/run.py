"""compare_methods: every way of using a pretrained transformer, on the same folds."""

import json
import logging
import math
import os
import time

import numpy as np

from .._cache import resolve_cache_dir
from .._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER, resolve_model
from .._validation import check_int, check_number, check_texts
from .._version import __version__
from .catalogue import MULTILABEL_UNSUPPORTED, check_methods, family, make_estimator, uses_encoder, uses_llm
from .folds import check_folds, check_targets, cut_folds, evaluate_fold, fold_row, plain, subsample
from .plan import SAFETY, format_plan, format_seconds, format_timing, plan_comparison
from .rows import (
    SavedRows,
    check_out_dir,
    data_digest,
    digest,
    estimator_settings,
    failed_row,
    model_identity,
    result_table,
    skipped_row,
)
from .timing import load_backbones, measure_costs

logger = logging.getLogger(__name__)


def check_settings(
    *,
    cv,
    epochs,
    max_length,
    max_samples,
    time_budget,
    random_state,
    cache_dir="auto",
    encoder=None,
    llm=None,
    names=None,
):
    """Validate the settings of a comparison: the numbers, the cache folder and the model folders.

    ``encoder`` and ``llm`` (``None``: not checked; the command line checks them, while
    ``compare_methods`` reports a missing model in its methods' rows) are refused only
    when they name a local folder that is missing or incomplete.

    ``names`` maps each setting to the name shown in errors (the command line's
    options); without it, the messages also say that ``None`` is allowed where it is.
    """
    api = names is None
    names = names or {}
    check_int(cv, names.get("cv", "cv"), 2)
    check_int(epochs, names.get("epochs", "epochs"), 1)
    check_int(max_length, names.get("max_length", "max_length"), 2)
    if max_samples is not None:
        check_int(max_samples, names.get("max_samples", "max_samples"), 2, allow_none=api)
    if time_budget is not None:
        check_number(time_budget, names.get("time_budget", "time_budget"), 0, low_inclusive=False, allow_none=api)
    check_int(random_state, names.get("random_state", "random_state"), 0, high=2**32 - 1)  # a NumPy seed
    try:
        resolve_cache_dir(cache_dir)
    except ValueError as exc:
        raise ValueError(f"{names['cache_dir']}: {exc}" if "cache_dir" in names else str(exc)) from None
    for param, name in (("encoder", encoder), ("llm", llm)):
        if isinstance(name, (str, os.PathLike)) and _looks_like_folder(os.fspath(name)):
            resolve_model(name, param=names.get(param, param))


def _looks_like_folder(name):
    return not name or name.startswith((".", "/", "~")) or os.path.exists(name)


def compare_methods(
    X,
    y,
    methods=None,
    *,
    cv=5,
    encoder=DEFAULT_ENCODER,
    llm=DEFAULT_CAUSAL_LM,
    label_words=None,
    epochs=3,
    max_length=64,
    max_samples=None,
    time_budget=None,
    cache_dir="auto",
    random_state=0,
    out_dir=None,
    client=None,
    verbose=1,
):
    """Cross-validate several methods on the same folds and return one row per method.

    Parameters
    ----------
    X : sequence of str
    y : sequence of labels, or indicator matrix of shape (n_texts, n_labels)
        One label per text, or several: a 0/1 indicator matrix (dense or sparse,
        e.g. from ``sklearn.preprocessing.MultiLabelBinarizer``). Multi-label
        folds are plain (not stratified), the heads on frozen embeddings are one
        classifier per label (``OneVsRestClassifier``), the fine-tuned
        classifiers learn all labels at once, and the prompting methods are
        skipped (they pick one label per text; their row says so).
    methods : sequence of str, default=None
        Names from ``ALL_METHODS``: ``"logreg"``, ``"linear-svm"``, ``"xgboost"``
        (frozen embeddings and a classifier), every registered fine-tuning method
        of :class:`~skllm.FineTuneClassifier` (``"head"``, ``"full"``, ``"lora"``, ...)
        and ``"zero-shot"``, ``"few-shot"`` (prompting; few-shot shows the 4 nearest
        training texts, not the classifier's default 8 balanced ones). ``None``: all.
    cv : int, default=5
        Stratified folds, shared by every method; at least 2, and no more than
        the texts of the smallest class (multi-label: no more than the texts).
    encoder, llm : str
        The encoder (embeddings, fine-tuning, few-shot example selection) and
        the causal LM (prompting); ``llm`` may also be an :class:`~skllm.OpenAIChat`
        (a model behind an OpenAI-compatible endpoint), whose rows then report
        the tokens it used (``api_tokens``, summed over the folds).
    label_words : dict, default=None
        What the prompting methods ask the LM to answer for each label, e.g.
        ``{"ham": "normal", "spam": "spam"}`` (the packaged datasets' ``label_words``);
        a label without a wording is shown as itself.
    epochs, max_length : int
        Fine-tuning epochs (the ``"head"`` method trains 10) and tokens per text.
    max_samples : int, default=None
        Use a stratified sample of at most this many texts.
    time_budget : float, default=None
        Seconds the comparison may take: the methods are timed on a few texts, and
        the folds, epochs and texts shrunk (at last the costliest methods skipped)
        until the estimate fits. ``None`` runs everything as asked.
    cache_dir : str, "auto" or None
        Embedding cache. The embedding methods, ``"head"`` and the few-shot
        example selection share its entries: each text is embedded once.
    random_state : int, default=0
        Seeds the sample, the folds and the methods.
    out_dir : str or Path, default=None
        Where each finished row is stored (``rows/<method>.json``) with a fingerprint
        of what produced it (texts, labels, folds, settings, hyperparameters): a
        later run reuses a row only when its fingerprint matches.
    client : distributed.Client or str, default=None
        Run the (method, fold) tasks on this Dask cluster (a client, or a
        scheduler's address such as ``"tcp://host:8786"``): same folds, same
        scores. A ``time_budget`` is planned here as for one process, and the
        tasks unfinished at its end are cancelled. Needs
        ``pip install 'skllm-toolkit[dask]'``; see "Running on a cluster".
    verbose : int, default=1
        Progress over methods and folds, the time plan, and at the end the
        planned against the actual seconds.

    Returns
    -------
    pandas.DataFrame
        Columns ``method``, ``accuracy_mean``, ``accuracy_std`` (subset accuracy
        for a multi-label ``y``: every label of a text right), ``f1_macro_mean``,
        ``f1_macro_std``, ``f1_micro_mean``, ``f1_micro_std`` (multi-label only),
        ``fit_seconds`` (mean per fold), ``predict_seconds_per_1000``,
        ``fit_memory_bytes`` (the peak resident memory a fit added on the CPU,
        largest over the folds), ``fit_gpu_memory_bytes`` (the same for the
        memory torch allocated on CUDA GPUs; empty when none was used),
        ``trainable_params``, ``trained_state_bytes`` (bytes of those trained
        parameters as the model stores them), ``model_bytes`` (pickle size),
        ``status`` (``"computed"``, ``"reused"``, ``"skipped"`` or ``"failed"``)
        and ``error`` (why a method failed, the others going on, or why it was
        skipped as unable to do the task; empty otherwise).
        ``attrs["reused_rows"]`` counts the rows read back from ``out_dir``;
        ``attrs["plan"]`` holds the texts, folds and epochs really used, the
        skipped methods and the estimates; ``attrs["score"]`` names the column
        that ranks the methods (``accuracy_mean``, or ``f1_micro_mean`` for a
        multi-label ``y``); ``attrs["timing"]`` the seconds taken against those
        planned, overall and per method run here.

    Examples
    --------
    >>> from skllm import compare_methods
    >>> X = ["a great film", "loved it", "wonderful acting", "a joy to watch", "brilliant", "so much fun",
    ...      "dull and long", "awful", "a waste of time", "boring plot", "terrible acting", "I hated it"]
    >>> y = ["pos"] * 6 + ["neg"] * 6
    >>> table = compare_methods(X, y, methods=["logreg"], cv=2, verbose=0)
    >>> table[["method", "status"]]
       method    status
    0  logreg  computed
    >>> table.attrs["reused_rows"], bool(table.loc[0, "accuracy_mean"] >= 0.5)
    (0, True)
    >>> int(table.loc[0, "trained_state_bytes"])  # 384 weights and a bias, float32
    1540
    """
    # Every argument, passed on by name.
    return run_comparison(**locals())[0]


def run_comparison(
    X,
    y,
    methods,
    *,
    cv,
    encoder,
    llm,
    label_words=None,
    epochs,
    max_length,
    max_samples,
    time_budget,
    cache_dir,
    random_state,
    out_dir,
    verbose,
    refit=False,
    report=None,
    client=None,
):
    """``compare_methods``, and with ``refit`` also the best method refitted on all the texts used.

    Returns ``(table, best)``; ``best`` is ``None`` without ``refit``, when every method failed, or when
    the refit failed (``table.attrs["refit_error"]`` says why).
    ``report`` receives the lines meant for people (default: printed when ``verbose``).
    ``client``: a ``distributed.Client`` or a scheduler address (the tasks run on that cluster).
    """
    owned = False
    if client is not None:
        from .._dask import connect

        # First: an address that does not answer fails in seconds, before any model is timed.
        client, owned = connect(client)
    started = time.perf_counter()
    try:
        comparison = _Comparison(
            X,
            y,
            methods,
            cv=cv,
            label_words=label_words,
            epochs=epochs,
            max_samples=max_samples,
            time_budget=time_budget,
            random_state=random_state,
            out_dir=out_dir,
            verbose=verbose,
            settings={"encoder": encoder, "llm": llm, "max_length": max_length, "cache_dir": cache_dir},
        )
        return comparison.run(started, refit=refit, client=client, report=report)
    finally:
        if owned:
            client.close()


def _check_label_words(label_words, y, multilabel):
    if label_words is not None and multilabel:
        raise ValueError("label_words is for the prompting methods, which do not take a multi-label y; leave it out.")
    if label_words is not None:
        if not isinstance(label_words, dict):
            raise ValueError(f"label_words must be a dict mapping labels to their wording, got {label_words!r}.")
        unknown = sorted(repr(k) for k in label_words if k not in set(y.tolist()))
        if unknown:
            raise ValueError(f"label_words names labels that are not in y: {', '.join(unknown)}.")


class _Comparison:
    """One comparison, checked: its plan, its folds and its rows, computed here or reused, then the table."""

    def __init__(
        self,
        X,
        y,
        methods,
        *,
        cv,
        label_words,
        epochs,
        max_samples,
        time_budget,
        random_state,
        out_dir,
        verbose,
        settings,
    ):
        self.texts = np.asarray(check_texts(X), dtype=object)
        self.y, self.multilabel = check_targets(y, len(self.texts))
        self.methods = check_methods(methods)
        check_settings(
            cv=cv,
            epochs=epochs,
            max_length=settings["max_length"],
            max_samples=max_samples,
            time_budget=time_budget,
            random_state=random_state,
            cache_dir=settings["cache_dir"],
        )
        check_int(verbose, "verbose", 0)
        check_folds(self.y, cv, max_samples=max_samples, random_state=random_state, texts=self.texts)
        _check_label_words(label_words, self.y, self.multilabel)
        self.cv, self.epochs, self.max_samples, self.time_budget = cv, epochs, max_samples, time_budget
        self.random_state, self.verbose = random_state, verbose
        self.out_dir = None if out_dir is None else check_out_dir(out_dir, "out_dir")
        self.unsupported = {
            m: MULTILABEL_UNSUPPORTED[m] for m in self.methods if self.multilabel and m in MULTILABEL_UNSUPPORTED
        }
        self.settings = dict(settings)
        if label_words is not None:  # numpy keys (from numpy.unique(y)) as the plain values they hold
            self.settings["label_words"] = {plain(k): v for k, v in dict(label_words).items()}
        planned = [m for m in self.methods if m not in self.unsupported]
        self.identities = {
            "encoder": model_identity(settings["encoder"]) if any(uses_encoder(m) for m in planned) else None,
            "llm": model_identity(settings["llm"]) if any(uses_llm(m) for m in planned) else None,
        }

    def run(self, started, *, refit, client, report):
        """``(table, best)``: see ``run_comparison``."""
        self.started, self.refit = started, refit
        self.report = report if report is not None else (print if self.verbose else logger.info)
        saved = SavedRows(self.out_dir)
        self.plan, measure_seconds = self._plan()
        index, self.y_used = subsample(self.y, self.plan["n"], self.random_state, self.texts, self.plan["cv"])
        self.plan["n"], self.texts_used = len(index), self.texts[index]  # n: more where a class needed more texts
        if self.plan["n"] < len(self.y):
            check_folds(self.y_used, self.plan["cv"], random_state=self.random_state)
        y, cv, seed = self.y_used, self.plan["cv"], self.random_state
        self.folds = cut_folds(y, cv, multilabel=self.multilabel, random_state=seed, texts=self.texts_used)
        rows = self._prepare_rows(saved)
        reused = [name for name, row in rows.items() if row["status"] == "reused"]
        self.plan["reused"] = reused
        self.report(format_plan(self.plan))
        if saved.folder is not None:
            self.report(
                f"reused {len(reused)} of {len(self.methods)} row(s) saved in {saved.folder} "
                "(same data, folds and settings)"
            )
        todo = [name for name in self.methods if name not in rows]
        self.spent = {}  # seconds each method computed here took
        self.ran = list(todo) if client is not None else []  # the methods started
        if client is None:
            rows.update(self._run_here(todo, saved))
        else:
            rows.update(self._run_on_cluster(client, todo, saved))
        table = result_table(
            rows,
            self.methods,
            reused_rows=len(reused),
            plan={k: v for k, v in self.plan.items() if k != "methods"},
            multilabel=self.multilabel,
            # What "best" means: subset accuracy is too strict a ranking for several labels per text.
            score="f1_micro_mean" if self.multilabel else "accuracy_mean",
        )
        best, refit_timing = self._refit_best(table, client)
        table.attrs["timing"] = self._timing(measure_seconds, refit_timing)
        self.report(format_timing(table.attrs["timing"]))
        return table, best

    # -- the plan ----------------------------------------------------------------------------
    def _plan(self):
        """``(plan, seconds spent timing)``: the plan an interrupted run saved for the same request, or a new one."""
        n_asked = len(self.y) if self.max_samples is None else min(self.max_samples, len(self.y))
        # The plan depends on timings: a resumed run reuses the plan it made, so that its rows match.
        request = digest(
            {
                "data": data_digest(self.texts, self.y),
                "methods": self.methods,
                "cv": self.cv,
                "epochs": self.epochs,
                "max_samples": self.max_samples,
                "time_budget": self.time_budget,
                "refit": self.refit,
                "random_state": self.random_state,
                "settings": {k: v for k, v in self.settings.items() if k != "cache_dir"},
                "identities": self.identities,
            }
        )
        plan_file = self.out_dir / "plan.json" if self.out_dir is not None else None
        if plan_file is not None and plan_file.is_file():
            try:
                saved = json.loads(plan_file.read_text())
                plan = saved["plan"] if saved.get("request") == request else None
            except (ValueError, KeyError):
                plan = None
            if plan is not None:
                self.report(f"resuming with the plan saved in {plan_file}")
                return plan, 0.0
        plan = self._new_plan(n_asked)
        if plan_file is not None:
            plan_file.write_text(json.dumps({"request": request, "plan": plan}, indent=1))
        return plan, plan["measure_seconds"]

    def _new_plan(self, n_asked):
        planned = [m for m in self.methods if m not in self.unsupported]
        plan = {"n": n_asked, "cv": self.cv, "epochs": self.epochs, "skipped": [], "per_method": {}, "seconds": None}
        measure_seconds = 0.0
        if self.time_budget is not None:
            costs = measure_costs(list(self.texts), self.y, planned, random_state=self.random_state, **self.settings)
            measure_seconds = time.perf_counter() - self.started
            if self.multilabel:
                # Per label, its texts (at least one, for the planning's arithmetic).
                n_classes, counts = self.y.shape[1], np.maximum(self.y.sum(axis=0), 1)
            else:
                n_classes, counts = len(np.unique(self.y)), np.unique(self.y, return_counts=True)[1]
            plan = plan_comparison(
                planned,
                costs,
                n=n_asked,
                # Enough texts that every class keeps a text per fold.
                min_n=min(n_asked, max(100, math.ceil(3 * len(self.y) / counts.min()))),
                cv=self.cv,
                epochs=self.epochs,
                n_classes=n_classes,
                seconds=SAFETY * max(self.time_budget - measure_seconds, 0.0),
                refit=self.refit,
            )
            plan["costs"] = costs
        plan.update(
            time_budget=self.time_budget,
            measure_seconds=measure_seconds,
            asked={"n": n_asked, "cv": self.cv, "epochs": self.epochs},
            methods=self.methods,
            refit=self.refit,
            unsupported=self.unsupported,
        )
        return plan

    # -- the rows ----------------------------------------------------------------------------
    def _prepare_rows(self, saved):
        """The rows known before running (unsupported, skipped, failed to build, reused), and every template."""
        # What every row depends on; each method adds its hyperparameters (encoder, llm,
        # epochs and max_length among them) and the identity of the weights it uses.
        # The version stands for the defaults that a method named by a string (e.g. "lora") brings.
        common = {
            "version": __version__,
            "data": data_digest(self.texts_used, self.y_used),
            "folds": digest([test.tolist() for _, test in self.folds]),
            "random_state": self.random_state,
            "cv": self.plan["cv"],
        }
        rows, self.templates, self.fingerprints = {}, {}, {}
        for name in self.methods:
            if name in self.unsupported:
                rows[name] = skipped_row(name, self.unsupported[name])
                continue
            # A method the budget leaves out still takes a row saved by an earlier run: reusing it costs nothing.
            skipped = name in self.plan["skipped"]
            try:
                template = make_estimator(
                    name,
                    epochs=self.plan["epochs"],
                    random_state=self.random_state,
                    multilabel=self.multilabel,
                    **self.settings,
                )
            except Exception as exc:  # e.g. a missing optional dependency: that row fails, the others go on
                rows[name] = skipped_row(name) if skipped else failed_row(name, exc)
                continue
            uses = {
                "encoder": self.identities["encoder"] if uses_encoder(name) else None,
                "llm": self.identities["llm"] if uses_llm(name) else None,
            }
            key = {**common, "method": name, "params": estimator_settings(template), "weights": uses}
            self.templates[name], self.fingerprints[name] = template, digest(key)
            row = saved.reuse(name, self.fingerprints[name])
            if row is not None:
                rows[name] = row
            elif skipped:
                rows[name] = skipped_row(name)
        return rows

    # -- running -----------------------------------------------------------------------------
    def _deadline(self):
        if self.time_budget is None:
            return None
        return self.started + self.time_budget - self.plan.get("refit_seconds", 0.0)

    def _run_on_cluster(self, client, todo, saved):
        from .cluster import run_folds

        return run_folds(
            client,
            todo,
            {name: self.templates[name] for name in todo},
            self.folds,
            self.texts_used,
            self.y_used,
            deadline=self._deadline(),
            verbose=self.verbose,
            on_row=lambda name, row: saved.save(name, self.fingerprints[name], row),
            report=self.report,
            multilabel=self.multilabel,
        )

    def _run_here(self, todo, saved):
        """The rows of ``todo``, one method after the other in this process, within the time budget.

        The estimates come from a few seconds of timing: while running, the time each kind
        of method really takes corrects them, and a method that would end after the budget
        is skipped (before it starts, or between its folds).
        """
        from tqdm.auto import tqdm

        if todo:
            load_backbones(todo, **{k: self.settings[k] for k in ("encoder", "llm", "cache_dir")})
        deadline = self._deadline()
        spent, estimated, rows = {}, {}, {}
        for name in tqdm(todo, desc="methods", disable=not self.verbose):
            kind = family(name)
            if estimated.get(kind):
                drift = spent[kind] / estimated[kind]
            else:
                drift = sum(spent.values()) / sum(estimated.values()) if sum(estimated.values()) else 1.0
            expected = self.plan["per_method"].get(name, 0.0) * drift
            if deadline is not None and time.perf_counter() + expected > deadline:
                self.report(f"{name}: skipped, its ~{format_seconds(expected)} would end after the time budget")
                rows[name] = skipped_row(name)
                continue
            method_start = time.perf_counter()
            self.ran.append(name)
            rows[name] = self._run_method(name, deadline)
            if rows[name]["status"] == "skipped":  # stopped between two folds
                continue
            self.spent[name] = time.perf_counter() - method_start
            spent[kind] = spent.get(kind, 0.0) + self.spent[name]
            estimated[kind] = estimated.get(kind, 0.0) + self.plan["per_method"].get(name, 0.0)
            saved.save(name, self.fingerprints[name], rows[name])
        return rows

    def _run_method(self, name, deadline):
        """The row of one method: its folds one after the other, stopped between two if the budget would end."""
        from tqdm.auto import tqdm

        method_start = time.perf_counter()
        results = []
        try:
            for i, (train, test) in enumerate(tqdm(self.folds, desc=name, leave=False, disable=not self.verbose)):
                if deadline is not None and i:
                    per_fold = (time.perf_counter() - method_start) / i
                    if time.perf_counter() + per_fold * (len(self.folds) - i) > deadline:
                        self.report(
                            f"{name}: stopped after {i} of {len(self.folds)} folds, it would end after the time budget"
                        )
                        return skipped_row(name)
                results.append(
                    evaluate_fold(
                        self.templates[name],
                        self.texts_used,
                        self.y_used,
                        train,
                        test,
                        multilabel=self.multilabel,
                        measure_model=i == len(self.folds) - 1,
                    )
                )
            return fold_row(name, results)
        except Exception as exc:  # one method failing must not stop the others
            logger.warning("method %s failed: %s", name, exc)  # the row says so; the traceback for debugging
            logger.debug("method %s failed", name, exc_info=True)
            return failed_row(name, exc)

    # -- after the folds ---------------------------------------------------------------------
    def _refit_best(self, table, client):
        """``(best, (its name, planned seconds, actual seconds))``: the best method refitted on all the texts."""
        ok = table[table["status"].isin(["computed", "reused"])]
        if not self.refit or not len(ok):
            return None, None
        name = ok.loc[ok[table.attrs["score"]].idxmax(), "method"]
        start = time.perf_counter()
        try:
            from .cluster import refit

            best = refit(client, self.templates[name], self.texts_used, self.y_used)
        except Exception as exc:  # the folds' results stand: the table is still returned, without a model
            table.attrs["refit_error"] = failed_row(name, exc)["error"]
            self.report(f"The refit of {name} on all the texts failed, so no model is returned: {exc}")
            logger.debug("refit of %s failed", name, exc_info=True)
            return None, None
        estimate = self.plan.get("refit_per_method", {}).get(name, self.plan.get("refit_seconds", 0.0))
        return best, (name, estimate, time.perf_counter() - start)

    def _timing(self, measure_seconds, refit_timing):
        """Planned against actual seconds: overall, per method run here, and the refit."""
        seconds = time.perf_counter() - self.started
        logger.info("comparison took %.1f s", seconds)
        per_method = self.plan["per_method"]
        timing = {
            "seconds": seconds,
            "planned": None,
            "measure_seconds": measure_seconds,
            "methods": {name: (per_method.get(name, 0.0), s) for name, s in self.spent.items()},
            "refit": None,
            "refit_reserved": self.plan.get("refit_seconds", 0.0),
        }
        if refit_timing is not None:
            name, estimate, spent = refit_timing
            timing.update(refit=(estimate, spent), refit_method=name)
        if self.plan.get("seconds") is not None:
            # The plan's estimate of the work done: not of the methods reused or skipped, and
            # the refit of the best method rather than the costliest one, kept in reserve.
            refit_estimate = timing["refit"][0] if timing["refit"] is not None else 0.0
            timing["planned"] = measure_seconds + sum(per_method.get(m, 0.0) for m in self.ran) + refit_estimate
        return timing
