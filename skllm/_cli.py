"""The ``skllm`` command line: ``skllm compare DATA --text COLUMN --label COLUMN``."""

import argparse
import sys
from pathlib import Path

from ._compare import ALL_METHODS, check_folds, check_settings, parse_duration
from .exceptions import MissingDependencyError

OPTION_NAMES = {
    "cv": "--cv",
    "epochs": "--epochs",
    "max_length": "--max-length",
    "max_samples": "--budget",
    "time_budget": "--time-budget",
    "random_state": "--random-state",
}
DEFAULT_TIME_BUDGET = "10m"


class InputError(Exception):
    """A problem with the user's data file or options (exit code 2)."""


def read_table(path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    suffix = "".join(path.suffixes[-2:]) if path.suffix in (".gz", ".bz2") else path.suffix
    try:
        if suffix.startswith(".parquet"):
            return pd.read_parquet(path)
        if suffix.startswith((".jsonl", ".json")):
            return pd.read_json(path, lines=True)
        if suffix.startswith(".tsv"):
            return pd.read_csv(path, sep="\t")
        return pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path} is empty.") from exc
    except ImportError as exc:
        raise InputError(f"Reading {path} needs an extra package: {exc}") from exc
    except ValueError as exc:
        raise InputError(f"{path} cannot be read as {suffix or 'CSV'}: {exc}") from exc


def load_xy(frame, text, label, path):
    for column, flag in ((text, "--text"), (label, "--label")):
        if column not in frame.columns:
            raise InputError(f"{path} has no column {column!r} ({flag}); its columns are {list(frame.columns)}.")
    if len(frame) == 0:
        raise InputError(f"{path} has no rows.")
    texts, labels = frame[text], frame[label]
    bad = [i for i, v in enumerate(texts) if not isinstance(v, str)]
    if bad:
        raise InputError(
            f"Column {text!r} must hold text; rows {bad[:10]} hold {texts.iloc[bad[0]]!r} and the like "
            f"({len(bad)} in all). Fill or drop them first."
        )
    missing = [i for i, v in enumerate(labels) if v is None or v != v]
    if missing:
        raise InputError(f"Column {label!r} has {len(missing)} missing label(s), rows {missing[:10]}.")
    if labels.nunique() < 2:
        raise InputError(f"Column {label!r} holds a single class ({labels.iloc[0]!r}); a comparison needs two or more.")
    return texts.tolist(), labels.tolist()


def parse_label_words(text, y):
    """``"ham=normal,spam=spam"`` as a dict keyed by the labels of ``y`` (matched by their text)."""
    by_text = {str(label): label for label in y}
    words = {}
    for item in text.split(","):
        key, sep, wording = item.partition("=")
        key, wording = key.strip(), wording.strip()
        if not sep or not key or not wording:
            raise ValueError(f"--label-words: {item!r} is not LABEL=WORDING (e.g. 'ham=normal,spam=spam').")
        if key not in by_text:
            raise ValueError(f"--label-words: {key!r} is not a label of the data; labels are {sorted(by_text)}.")
        words[by_text[key]] = wording
    return words


def compare(args):
    import joblib

    from ._compare import run_comparison

    frame = read_table(args.data)
    X, y = load_xy(frame, args.text, args.label, args.data)
    try:
        check_folds(y, args.cv, max_samples=args.budget, random_state=args.random_state, names=OPTION_NAMES)
    except ValueError as exc:
        args.parser.error(str(exc))
    label_words = None
    if args.label_words is not None:
        try:
            label_words = parse_label_words(args.label_words, y)
        except ValueError as exc:
            args.parser.error(str(exc))
    if args.budget is not None and len(X) > args.budget:
        print(f"sub-sampling {args.budget} of {len(X)} rows (stratified), as --budget asks")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table, best = run_comparison(
        X,
        y,
        args.methods,
        cv=args.cv,
        encoder=args.encoder,
        llm=args.llm,
        label_words=label_words,
        epochs=args.epochs,
        max_length=args.max_length,
        max_samples=args.budget,
        time_budget=args.time_budget,
        cache_dir=args.cache_dir,
        random_state=args.random_state,
        out_dir=out,
        verbose=1,
        refit=True,
        report=print,
        client=args.scheduler,
    )
    plan = table.attrs["plan"]
    table.to_csv(out / "results.csv", index=False)
    shown = table.copy()
    for metric in ("accuracy", "f1_macro"):
        shown[metric] = [
            f"{m:.3f} ± {s:.3f}" if m == m else "-" for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])
        ]
    shown = shown[
        [
            "method",
            "accuracy",
            "f1_macro",
            "fit_seconds",
            "predict_seconds_per_1000",
            "trainable_params",
            "model_bytes",
            "status",
            "error",
        ]
    ]
    (out / "results.md").write_text(shown.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(f"\n{plan['n']} texts, {plan['cv']}-fold cross-validation, same folds for every method:\n")
    print(shown.to_string(index=False))
    _plot(table, out / "results.png")

    if best is not None:
        ok = table[table["status"].isin(["computed", "reused"])]
        name = ok.loc[ok["accuracy_mean"].idxmax(), "method"]
        joblib.dump(best, out / "best_model.joblib")
        print(f"\nbest: {name}; refitted on all {plan['n']} texts and saved to {out / 'best_model.joblib'}")
    print(f"tables: {out / 'results.csv'}, {out / 'results.md'}")
    return 0 if best is not None else 1


def _plot(table, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'skllm-toolkit[compare]')")
        return
    ok = table[table["status"].isin(["computed", "reused"])]
    if not len(ok):
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(ok["fit_seconds"], ok["accuracy_mean"], yerr=ok["accuracy_std"], fmt="o")
    for _, row in ok.iterrows():
        ax.annotate(
            row["method"], (row["fit_seconds"], row["accuracy_mean"]), textcoords="offset points", xytext=(5, 3)
        )
    ax.set_xscale("log")
    ax.set_xlabel("training cost: fit seconds per fold (log scale)")
    ax.set_ylabel("accuracy (mean ± std over folds)")
    ax.set_title("Quality against training cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")


def main(argv=None):
    from ._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER

    parser = argparse.ArgumentParser(
        prog="skllm", description="Adapting pretrained transformers, the scikit-learn way."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="compare every method on a labelled text file")
    cmp.add_argument("data", help="CSV, TSV, Parquet or JSON lines file")
    cmp.add_argument("--text", required=True, help="column holding the texts")
    cmp.add_argument("--label", required=True, help="column holding the labels")
    cmp.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=None, help="default: all")
    cmp.add_argument("--cv", type=int, default=5, help="stratified folds, 2 or more (default 5)")
    cmp.add_argument(
        "--budget", type=int, default=None, help="at most this many texts, 2 or more (stratified sub-sample)"
    )
    cmp.add_argument(
        "--time-budget",
        default=DEFAULT_TIME_BUDGET,
        help=f"time the comparison may take: 90s, 10m, 1h, seconds, or none to run everything as asked "
        f"(default {DEFAULT_TIME_BUDGET}); folds, epochs and texts shrink to fit, and the plan is printed first",
    )
    cmp.add_argument("--out", default="skllm-compare", help="output folder (default skllm-compare)")
    cmp.add_argument("--encoder", default=DEFAULT_ENCODER)
    cmp.add_argument("--llm", default=DEFAULT_CAUSAL_LM)
    cmp.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs, 1 or more (default 3)")
    cmp.add_argument("--max-length", type=int, default=64, help="tokens per text, 2 or more (default 64)")
    cmp.add_argument("--cache-dir", default="auto")
    cmp.add_argument("--random-state", type=int, default=0, help="seed, 0 or more (default 0)")
    cmp.add_argument(
        "--label-words",
        default=None,
        metavar="LABEL=WORDING,...",
        help="what the prompting methods ask the LM to answer for each label, e.g. 'ham=normal,spam=spam' "
        "(default: the labels themselves)",
    )
    cmp.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the method x fold tasks on the Dask cluster of this scheduler (e.g. tcp://host:8786); "
        "needs pip install 'skllm-toolkit[dask]'",
    )
    args = parser.parse_args(argv)
    args.parser = cmp
    try:
        args.time_budget = parse_duration(args.time_budget, "--time-budget")
        check_settings(
            cv=args.cv,
            epochs=args.epochs,
            max_length=args.max_length,
            max_samples=args.budget,
            time_budget=args.time_budget,
            random_state=args.random_state,
            names=OPTION_NAMES,
        )
    except ValueError as exc:
        cmp.error(str(exc))
    try:
        return compare(args)
    except (InputError, ConnectionError, MissingDependencyError) as exc:
        print(f"skllm compare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
