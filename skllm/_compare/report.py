"""What ``skllm compare`` writes: the results table (CSV, Markdown), its plot, the labels and the best model."""

import json

import numpy as np

from .rows import write_whole

# Every file a run writes in its folder. An earlier run's are removed before this run's are written: a run
# that stops while writing leaves some of its own files, never one of the earlier run's beside them.
OUTPUTS = ("results.csv", "results.md", "results.png", "labels.json", "best_model.joblib", "best_model.joblib.partial")


def write_results(out, table, best, names):
    """Write the results of ``run_comparison`` in ``out`` and print them.

    ``best``: the refitted best estimator (or None); ``names``: the label columns of a
    multi-label comparison (or None).
    """
    import joblib

    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    plan = table.attrs["plan"]
    table.to_csv(out / "results.csv", index=False)
    shown = shown_table(table)
    tables = [out / "results.csv"]
    try:
        cells = shown.apply(lambda c: c.str.replace("|", "\\|") if c.dtype == object else c)  # a | ends a cell
        (out / "results.md").write_text(cells.to_markdown(index=False, floatfmt=".3g") + "\n")
        tables.append(out / "results.md")
    except ImportError:  # tabulate is in the [compare] extra; the results, the plot and the model do not need it
        print("results.md not written: it needs tabulate (pip install 'skllm-toolkit[compare]')")
    print(f"\n{plan['n']} texts, {plan['cv']}-fold cross-validation, same folds for every method:\n")
    print(shown.to_string(index=False))
    plot(table, out / "results.png")
    if names is not None:
        # The columns of the indicator matrix that best_model.joblib predicts.
        (out / "labels.json").write_text(json.dumps(names, indent=1) + "\n")
    if best is not None:
        ok = table[table["status"].isin(["computed", "reused"])]
        score = table.attrs["score"]
        name = ok.loc[ok[score].idxmax(), "method"]
        write_whole(out / "best_model.joblib", lambda partial: joblib.dump(best, partial))
        print(
            f"\nbest: {name} (by {score.removesuffix('_mean')}); refitted on all {plan['n']} texts and saved to "
            f"{out / 'best_model.joblib'}"
        )
    else:  # the exit status is 1: say why
        ok = table["status"].isin(["computed", "reused"]).any()
        why = (
            "the refit of the best method failed (its error is above)"
            if ok
            else "no method finished (see the status and error columns: failed, or skipped by the time budget)"
        )
        print(f"\nno model saved: {why}.")
    print(f"tables: {', '.join(map(str, tables))}")


def format_bytes(n):
    """``1234567`` as ``"1.2 MB"`` (decimal units); ``"-"`` for a missing value."""
    if n is None or n != n:
        return "-"
    if n < 1000:
        return f"{n:.0f} B"
    power = min(3, int(np.log10(n) // 3))
    return f"{n / 1000**power:.1f} {('kB', 'MB', 'GB')[power - 1]}"


def shown_table(table):
    """The results as people read them: mean ± std per metric, sizes in kB/MB/GB."""
    multilabel = table.attrs.get("multilabel", False)
    shown = table.copy()
    metrics = [("accuracy", "subset_accuracy" if multilabel else "accuracy"), ("f1_macro", "f1_macro")]
    if multilabel:
        metrics.append(("f1_micro", "f1_micro"))
    for metric, heading in metrics:
        shown[heading] = [
            f"{m:.3f} ± {s:.3f}" if m == m else "-" for m, s in zip(table[f"{metric}_mean"], table[f"{metric}_std"])
        ]
    sizes = {"fit_memory_bytes": "fit_memory", "trained_state_bytes": "trained_state", "model_bytes": "model_size"}
    if table["fit_gpu_memory_bytes"].notna().any():
        sizes = {"fit_memory_bytes": "fit_memory", "fit_gpu_memory_bytes": "fit_gpu_memory", **sizes}
    for column, heading in sizes.items():
        shown[heading] = [format_bytes(v) for v in table[column]]
    # Counts as whole numbers and times to 3 significant digits, "-" where a method has none (failed,
    # skipped): a NaN in a column would make it float, and the table would print 9028 as 9.03e+03.
    shown["trainable_params"] = ["-" if v != v else f"{int(v)}" for v in table["trainable_params"]]
    for column in ("fit_seconds", "predict_seconds_per_1000"):
        shown[column] = ["-" if v != v else f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}" for v in table[column]]
    return shown[
        [
            "method",
            *(heading for _, heading in metrics),
            "fit_seconds",
            "predict_seconds_per_1000",
            *sizes.values(),
            "trainable_params",
            "status",
            "error",
        ]
    ]


def figure(table, plt):
    """Quality against training time and, where measured, against peak training memory.

    One point per method that finished; ``None`` when none did. The memory panel uses the
    GPU peak where a fit ran on a GPU (``fit_gpu_memory_bytes``), else the resident
    memory the fit added on the CPU (``fit_memory_bytes``); each point is labelled with
    the trained state a saved model holds.
    """
    ok = table[table["status"].isin(["computed", "reused"])]
    if not len(ok):
        return None
    score = table.attrs.get("score", "accuracy_mean")
    metric = score.removesuffix("_mean")
    memory = None
    for column, where in (("fit_gpu_memory_bytes", "GPU"), ("fit_memory_bytes", "CPU")):
        if column in ok and (ok[column].fillna(0) > 0).any():
            memory = (column, where)
            break
    fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(12 if memory else 7, 4.5), squeeze=False)
    time_ax = axes[0, 0]
    time_ax.errorbar(ok["fit_seconds"], ok[score], yerr=ok[f"{metric}_std"], fmt="o")
    for _, row in ok.iterrows():
        time_ax.annotate(row["method"], (row["fit_seconds"], row[score]), textcoords="offset points", xytext=(5, 3))
    time_ax.set_xscale("log")
    time_ax.set_xlabel("training cost: fit seconds per fold (log scale)")
    time_ax.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over folds)")
    time_ax.set_title("Quality against training time")
    if memory:
        column, where = memory
        # A fit that added no measurable memory (a head on cached embeddings) sits at 1 MiB.
        mb = (ok[column].fillna(0) / 2**20).clip(lower=1.0)
        memory_ax = axes[0, 1]
        memory_ax.errorbar(mb, ok[score], yerr=ok[f"{metric}_std"], fmt="o", color="tab:orange")
        for (_, row), x in zip(ok.iterrows(), mb):
            state = row.get("trained_state_bytes")
            label = row["method"]
            if state is not None and state == state:  # not NaN
                label += f" ({_megabytes(state)} saved)"
            memory_ax.annotate(label, (x, row[score]), textcoords="offset points", xytext=(5, 3), fontsize=8)
        memory_ax.set_xscale("log")
        memory_ax.set_xlabel(f"peak training memory on the {where}, MiB (log scale)")
        memory_ax.set_title("Quality against training memory")
    fig.tight_layout()
    return fig


def _megabytes(n):
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def plot(table, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'skllm-toolkit[compare]')")
        return False
    fig = figure(table, plt)
    if fig is None:
        return False
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")
    return True
