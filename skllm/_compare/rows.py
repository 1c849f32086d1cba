"""The rows of a comparison: their columns, their fingerprints, and the saved rows a later run reuses."""

import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .._models import model_identity as _weights_identity
from .._models import resolve_model
from ..exceptions import SkllmWarning
from .folds import plain

COLUMNS = [
    "method",
    "accuracy_mean",
    "accuracy_std",
    "f1_macro_mean",
    "f1_macro_std",
    "f1_micro_mean",
    "f1_micro_std",
    "fit_seconds",
    "predict_seconds_per_1000",
    "fit_memory_bytes",
    "fit_gpu_memory_bytes",
    "trainable_params",
    "trained_state_bytes",
    "model_bytes",
    "api_tokens",
    "status",
    "error",
]


def write_whole(path, write):
    """``write(partial)`` writes the file aside, then it is renamed ``path``: an interrupted or failed write
    never leaves half a file under the real name (nor the partial one behind, where it failed)."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def skipped_row(name, why="does not fit in the time budget"):
    return {"method": name, "status": "skipped", "error": why}


def failed_row(name, exc):
    # One line: a table cell (results.md, the printed table) cannot hold a line break.
    return {"method": name, "status": "failed", "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:300]}


def result_table(rows, methods, **attrs):
    """The rows of ``methods``, in that order, as the DataFrame ``compare_methods`` returns."""
    import pandas as pd

    table = pd.DataFrame([rows[name] for name in methods]).reindex(columns=COLUMNS)
    table["error"] = table["error"].fillna("")
    table.attrs.update(attrs)
    return table


# -- fingerprints of rows and plans -------------------------------------------------------------
def digest(value):
    blob = json.dumps(value, sort_keys=True, default=repr).encode("utf-8", "surrogatepass")
    return hashlib.sha256(blob).hexdigest()


def data_digest(texts, y):
    # In full: NumPy abbreviates an array of over 1,000 values ("..."), so two label rows of a wide
    # indicator matrix that differ in the middle would share a fingerprint (and a stale row be reused).
    with np.printoptions(threshold=sys.maxsize):
        return digest([list(texts), [repr(plain(v)) for v in y]])


def model_identity(name):
    if hasattr(name, "identity"):  # an OpenAIChat: its endpoint and model, never its key
        return name.identity()
    try:
        return _weights_identity(resolve_model(name))
    except Exception:  # a missing model fails in its method's row, not here
        return name


def _setting(value):
    """A hyperparameter as JSON can hold it: plain values as they are, others as their repr."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def estimator_settings(estimator):
    """Every leaf hyperparameter of ``estimator`` that can change its scores."""
    settings = {}
    for key, value in estimator.get_params(deep=True).items():
        if key.endswith(("cache_dir", "verbose")) or hasattr(value, "get_params") or key == "steps":
            continue
        settings[key] = _setting(value)
        if key.endswith("method") and isinstance(value, str):
            # A method named by a string stands for that method's defaults, which can
            # change between versions of the code: they are part of the fingerprint.
            settings[key + "_defaults"] = _method_defaults(value)
    return settings


def _method_defaults(name):
    from .._methods import resolve_method

    try:
        method = resolve_method(name)
    except Exception:  # not a fine-tuning method: its own row reports the error
        return None
    return {
        "class": type(method).__qualname__,
        "params": {key: _setting(value) for key, value in method.get_params().items()},
        "learning_rate": method.default_learning_rate,
        "epochs": method.default_epochs,
    }


def check_out_dir(path, name="out_dir"):
    """``path`` as a ``Path``, once checked to be a folder that exists and can be written in, or can be created.

    Nothing is created here. A ``ValueError`` names ``name``, the path and the problem:
    a file where the folder (or one above it) should be, or a folder that cannot be
    written in (``path`` itself, or the nearest existing folder above it).
    """
    import tempfile

    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise ValueError(f"{name} {str(path)!r} {where}, not a folder; give a folder (it is created if missing).")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        why = "cannot write in this folder" if existing == path else f"cannot create it in {existing}"
        raise ValueError(f"{name} {str(path)!r}: {why} ({exc.strerror or exc}).") from None
    return path


class SavedRows:
    """The rows saved in ``<out_dir>/rows/<method>.json``, each with the fingerprint of what produced it.

    Each file also holds a checksum of its content (its fingerprint and row): a file
    changed after it was saved, or saved without one, is not reused but recomputed,
    with a warning naming it. Without ``out_dir`` nothing is read or written.
    """

    def __init__(self, out_dir):
        self.folder = None if out_dir is None else out_dir / "rows"
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)  # out_dir too

    def reuse(self, name, fingerprint):
        """The saved row of ``name`` (status ``"reused"``) if intact and its fingerprint matches, else ``None``."""
        saved = None if self.folder is None else self.folder / f"{name}.json"
        if saved is None or not saved.is_file():
            return None
        try:
            stored = json.loads(saved.read_text())
        except OSError as exc:
            return _not_reused(saved, f"it cannot be read ({exc.strerror or exc})")
        except ValueError as exc:
            return _not_reused(saved, f"it cannot be read as JSON ({exc})")
        content = {k: stored.get(k) for k in ("fingerprint", "row")} if isinstance(stored, dict) else None
        if content is None or not isinstance(content["row"], dict):
            return _not_reused(saved, "it does not hold a saved row")
        if "checksum" not in stored:
            return _not_reused(saved, "it has no checksum (saved by an older skllm, or written by hand)")
        if stored["checksum"] != digest(content):
            return _not_reused(saved, "its content does not match its checksum (it was changed after it was saved)")
        if content["fingerprint"] != fingerprint:
            return None  # saved for other data or settings: recomputed and overwritten, as expected
        return {**content["row"], "status": "reused"}

    def save(self, name, fingerprint, row):
        """Store a computed row with its checksum, so that a later run with the same fingerprint reuses it."""
        if self.folder is None or row["status"] != "computed":
            return
        # Read back as JSON first: the checksum is of what a later run will read.
        content = json.loads(
            json.dumps({"fingerprint": fingerprint, "row": {k: v for k, v in row.items() if k != "status"}})
        )
        text = json.dumps({**content, "checksum": digest(content)})
        write_whole(self.folder / f"{name}.json", lambda partial: partial.write_text(text))


def _not_reused(path, why):
    warnings.warn(
        f"The saved comparison row {path} is not reused: {why}. It is computed again.", SkllmWarning, stacklevel=4
    )
    return None
