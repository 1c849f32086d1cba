"""The ``skllm`` command line: ``skllm compare DATA --text COLUMN --label COLUMN``."""

import argparse
import sys
from pathlib import Path

from ._compare import ALL_METHODS


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


def compare(args):
    import joblib
    import numpy as np
    from sklearn.model_selection import train_test_split

    from ._compare import compare_methods, make_estimator

    frame = read_table(args.data)
    X, y = load_xy(frame, args.text, args.label, args.data)
    if args.budget and len(X) > args.budget:
        X, _, y, _ = train_test_split(X, y, train_size=args.budget, stratify=y, random_state=args.random_state)
        print(f"sub-sampled {args.budget} of {len(frame)} rows (stratified) to fit the budget (--budget)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"encoder": args.encoder, "llm": args.llm, "epochs": args.epochs, "max_length": args.max_length}
    table = compare_methods(
        X,
        y,
        methods=args.methods,
        cv=args.cv,
        random_state=args.random_state,
        out_dir=out,
        cache_dir=args.cache_dir,
        **settings,
    )
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
            "error",
        ]
    ]
    (out / "results.md").write_text(shown.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(f"\n{len(X)} texts, {args.cv}-fold cross-validation, same folds for every method:\n")
    print(shown.to_string(index=False))
    _plot(table, out / "results.png")

    ok = table[table["error"].fillna("") == ""]
    if len(ok):
        best = ok.loc[ok["accuracy_mean"].idxmax(), "method"]
        model = make_estimator(best, random_state=args.random_state, cache_dir=args.cache_dir, **settings)
        joblib.dump(model.fit(X, np.asarray(y)), out / "best_model.joblib")
        print(f"\nbest: {best}; refitted on all {len(X)} texts and saved to {out / 'best_model.joblib'}")
    print(f"tables: {out / 'results.csv'}, {out / 'results.md'}")
    return 0 if len(ok) else 1


def _plot(table, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'skllm-toolkit[compare]')")
        return
    ok = table[table["error"].fillna("") == ""]
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
    cmp.add_argument("--cv", type=int, default=5, help="folds (default 5)")
    cmp.add_argument("--budget", type=int, default=None, help="at most this many texts (stratified sub-sample)")
    cmp.add_argument("--out", default="skllm-compare", help="output folder (default skllm-compare)")
    cmp.add_argument("--encoder", default=DEFAULT_ENCODER)
    cmp.add_argument("--llm", default=DEFAULT_CAUSAL_LM)
    cmp.add_argument("--epochs", type=int, default=3)
    cmp.add_argument("--max-length", type=int, default=64)
    cmp.add_argument("--cache-dir", default="auto")
    cmp.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return compare(args)
    except InputError as exc:
        print(f"skllm compare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
