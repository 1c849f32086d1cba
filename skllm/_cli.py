"""The ``skllm`` command line: ``skllm compare DATA --text COLUMN --label COLUMN``."""

import argparse
import math
import numbers
import re
import sys
import warnings
from pathlib import Path

from ._api import OpenAIChat, _check_url
from ._compare import ALL_METHODS, check_folds, check_settings, check_targets, parse_duration
from ._targets import fits_int64
from ._validation import check_one_label_type, differing_by_spaces, is_collection, is_missing
from .exceptions import MissingDependencyError, SkllmWarning, TruncationWarning

OPTION_NAMES = {
    "cv": "--cv",
    "epochs": "--epochs",
    "max_length": "--max-length",
    "max_samples": "--max-samples",
    "time_budget": "--time-budget",
    "random_state": "--random-state",
    "cache_dir": "--cache-dir",
    "encoder": "--encoder",
    "llm": "--llm",
}
DEFAULT_TIME_BUDGET = "10m"


class InputError(Exception):
    """A problem with the user's data file or options (exit code 2)."""


# Compressions pandas infers from the last suffix; the one before names the format.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zip", ".zst")
_OPENERS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def read_table(path):
    """The rows of a CSV, TSV, JSON (lines or an array of records) or Parquet file, possibly compressed.

    Cells are read as they are written: a CSV's labels stay strings unless every one of a
    column's reads back the same as a number ("01" and "1" are two labels, not the number 1),
    and only empty cells are missing ("NA", "null" and "None" are values).
    """
    import lzma
    import zipfile

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    kind = (suffixes[-2] if len(suffixes) > 1 else "") if compressed else (suffixes[-1] if suffixes else "")
    try:
        if kind == ".parquet":
            return pd.read_parquet(path)
        if kind in (".jsonl", ".ndjson"):
            return _read_json(path, lines=True)
        if kind == ".json":  # an array of records, or JSON lines under the usual suffix
            try:
                return _read_json(path, lines=False)
            except ValueError:
                return _read_json(path, lines=True)
        return _read_delimited(path, "\t" if kind == ".tsv" else ",", suffixes[-1] if compressed else None)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path} is empty.") from exc
    except ImportError as exc:
        raise InputError(f"Reading {path} needs an extra package: {exc}") from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:  # damaged or not that format
        shown = f"{kind or 'CSV'}{' (compressed)' if compressed else ''}"
        raise InputError(f"{path} cannot be read as {shown}: {exc}") from exc


def _read_json(path, lines):
    import pandas as pd

    # As written: JSON strings stay strings ("01" is not 1), no column is read as dates and column
    # names stay strings ("1" is a name, not the number 1). From pandas 3, dtype=False covers the
    # dates (convert_dates is deprecated there); pandas 2 needs it said.
    dates = {"convert_dates": False} if int(pd.__version__.split(".")[0]) < 3 else {}
    # utf-8-sig: a byte-order mark, as some editors write, is read past (as for CSV), not refused.
    # precise_float: pandas' fast parser reads 0.3 as 0.30000000000000004, a label no one wrote.
    frame = pd.read_json(
        path, lines=lines, dtype=False, convert_axes=False, encoding="utf-8-sig", precise_float=True, **dates
    )
    if frame.shape[1] == 0:
        raise pd.errors.EmptyDataError("no rows")
    return frame


def _read_delimited(path, sep, compression=None):
    """A CSV or TSV file whose rows all have the header's fields, under distinct column names."""
    import pandas as pd

    _check_quotes(path, sep, compression)
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    repeated = sorted({str(h) for h in header if header.count(h) > 1})
    if repeated:  # pandas would rename the second "text" to "text.1" and read the first
        raise InputError(f"{path} names the column(s) {repeated} more than once; give each column its own name.")
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    if not isinstance(frame.index, pd.RangeIndex):
        # Rows with one field more than the header: pandas reads the first field as the row
        # index and shifts every column. Typically a text with an unquoted separator.
        raise InputError(
            f"{path}: rows have more fields than the header ({len(header)}); a text holding a "
            f"{'tab' if sep == chr(9) else 'comma'} must be quoted (as pandas' to_csv and Excel write it)."
        )
    headers = frame.index[(frame == frame.columns).all(axis=1)].tolist()
    if headers:
        raise InputError(
            f"{path}: rows {headers[:10]} repeat the header {list(frame.columns)} (files joined with their headers?); "
            f"remove them, or they would be read as data (if they are data, give the columns other names)."
        )
    return frame.apply(_as_numbers_if_exact)


def _check_quotes(path, sep, compression):
    """Refuse a quote that opens a field and closes inside a later text: the lines between would merge into one."""
    import csv
    import importlib

    if compression is not None and compression not in _OPENERS:
        return  # zip and zstd: pandas reads them, the check is skipped
    opener = importlib.import_module(_OPENERS[compression]).open if compression else open
    limit = csv.field_size_limit(sys.maxsize)  # a long text is no error here (pandas reads it)
    unquoted = []  # lines with a field like '"The Matrix" is great'
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=sep, strict=True)
            while True:
                start = reader.line_num + 1
                try:
                    next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    if reader.line_num == start:
                        unquoted.append(start)  # one line, read as one row by pandas too, without those quotes
                        continue
                    raise InputError(
                        f'{path}, lines {start} to {reader.line_num}: {exc}. A field that starts with a quote (") '
                        f"runs to the next quote, over line breaks: a stray quote at the start of a text merges the "
                        f"lines after it into one row. Quote the whole field and double the quotes inside (as pandas' "
                        f"to_csv and Excel write it), or remove it."
                    ) from None
    finally:
        csv.field_size_limit(limit)
    if unquoted:
        warnings.warn(
            f'{path}, line(s) {unquoted[:10]}{" ..." if len(unquoted) > 10 else ""}: a field starts with a quote (") '
            f"and goes on after the quote that closes it (as in '\"The Matrix\" is great'). It is read as CSV "
            f"reads it, without those quotes ('The Matrix is great'). To keep them, quote the whole field and "
            f"double the quotes inside (as pandas' to_csv and Excel write it).",
            SkllmWarning,
            stacklevel=4,  # read_table's caller
        )


def _as_numbers_if_exact(column):
    """``column`` (strings) as integers or floats when every value reads back as written, else as it is."""
    import pandas as pd

    if column.isna().any():
        return column
    for parse in (int, float):
        try:
            numbers = [parse(v) for v in column]
        except ValueError:
            continue
        # "nan" and "inf" stay text (as numbers, nan would be a missing value); ints are always finite.
        if all(repr(n) == v and (parse is int or math.isfinite(n)) for n, v in zip(numbers, column)):
            return pd.Series(numbers, index=column.index, name=column.name)
    return column


def load_xy(frame, text, label, path, multilabel=None):
    """Texts and labels from ``frame``; with ``multilabel`` (a separator), ``(texts, indicator, label names)``."""
    import pandas as pd

    for column, flag in ((text, "--text"), (label, "--label")):
        if column not in frame.columns:
            raise InputError(f"{path} has no column {column!r} ({flag}); its columns are {list(frame.columns)}.")
    if len(frame) == 0:
        raise InputError(f"{path} has no rows.")
    texts, labels = frame[text], frame[label]
    bad = [i for i, v in enumerate(texts) if not isinstance(v, str)]
    present = texts.dropna()
    if len(bad) == len(texts) and len(present) and pd.api.types.is_numeric_dtype(texts):
        raise InputError(
            f"Column {text!r} holds only numbers (such as {present.iloc[0]!s}), no texts: is it the column of "
            f"texts? Pass the column of texts as --text."
        )
    if bad:
        raise InputError(
            f"Column {text!r} must hold text; rows {bad[:10]} hold {texts.iloc[bad[0]]!r} and the like "
            f"({len(bad)} in all). Fill or drop them first."
        )
    if multilabel is not None:
        return (texts.tolist(), *split_labels(labels, multilabel, label))
    missing = [i for i, v in enumerate(labels) if is_missing(v)]
    if missing:
        raise InputError(f"Column {label!r} has {len(missing)} missing label(s), rows {missing[:10]}.")
    nested = [i for i, v in enumerate(labels) if is_collection(v)]
    if nested:
        raise InputError(
            f"Column {label!r} must hold one label per row; rows {nested[:10]} hold {labels.iloc[nested[0]]!r} and "
            f"the like. For several labels per text, join them with a separator and pass --multilabel SEP."
        )
    spaced = differing_by_spaces(labels.unique())
    if spaced:  # " pos" and "pos" would be two classes
        raise InputError(
            f"Column {label!r} holds labels that differ only by surrounding spaces: {spaced[:5]}; strip them "
            f"first (e.g. df[{label!r}].str.strip())."
        )
    if labels.nunique() < 2:
        raise InputError(f"Column {label!r} holds a single class ({labels.iloc[0]!r}); a comparison needs two or more.")
    numeric = all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in labels)
    if numeric and not all(map(_a_class_number, labels)):
        # A column of 3.5 stars, or of ids past int64, read as numbers: no class can be such a number, and a
        # CSV cannot say "text". Their text is kept instead: a CSV's as written (the reader made numbers of exact
        # ones only), other formats' as numpy prints the number. A column mixing numbers and strings is left
        # as it is: refused later, not merged.
        return texts.tolist(), [str(v) for v in labels.to_numpy()]
    return texts.tolist(), labels.tolist()


def _a_class_number(value):
    """Whether ``value`` can be a class label as a number: whole, and within int64."""
    if isinstance(value, numbers.Integral):
        return fits_int64(int(value))
    return math.isfinite(value) and float(value).is_integer() and fits_int64(value)


def split_labels(column, separator, name="label"):
    """``(indicator matrix, label names)`` of a column of ``separator``-joined labels.

    An empty cell is a text without any label; spaces around each label are dropped.
    """
    from sklearn.preprocessing import MultiLabelBinarizer

    if not separator:
        raise InputError("--multilabel needs a separator, e.g. --multilabel '|'.")
    try:  # list cells keep their items' types: 1 and "1" would become one label
        check_one_label_type([part for v in column if is_collection(v) for part in v], f"Column {name!r}")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    cells = [str(v) for v in column if not is_collection(v) and not is_missing(v)]
    if len(cells) > 1 and not any(separator in cell for cell in cells):
        warnings.warn(
            f"No cell of column {name!r} holds the separator {separator!r}: every text has one label. Check "
            f"--multilabel's separator.",
            SkllmWarning,
            stacklevel=2,
        )
    sets = []
    for v in column:
        if is_collection(v):  # a list of labels (JSON Lines, Parquet): its items, not its printed form
            sets.append({str(part).strip() for part in v} - {""})
        elif is_missing(v):  # an empty cell
            sets.append(set())
        else:
            sets.append({part.strip() for part in str(v).split(separator)} - {""})
    binarizer = MultiLabelBinarizer()
    indicator = binarizer.fit_transform(sets)
    names = [str(c) for c in binarizer.classes_]
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise InputError(
            f"Column {name!r} split on {separator!r} holds {found}; a multi-label comparison needs two labels or more."
        )
    return indicator, names


def parse_label_words(text, y):
    """``"ham=normal,spam=spam"`` as a dict keyed by the labels of ``y`` (matched by their text)."""
    by_text = {str(label): label for label in y}
    words = {}
    for item in text.split(","):
        # A label may hold "=" itself ("a=b"): the split is where the text before it is a label.
        splits = [(item[:i].strip(), item[i + 1 :].strip()) for i, c in enumerate(item) if c == "="]
        known = [(k, w) for k, w in splits if k in by_text]
        if len(known) > 1:
            raise ValueError(
                f"--label-words: {item!r} reads as more than one LABEL=WORDING ({', '.join(f'{k!r}' for k, _ in known)}"
                f" are labels of the data); rename the labels so that one is meant."
            )
        key, wording = known[0] if known else (splits[0] if splits else ("", ""))
        sep = bool(splits)
        if not sep or not key or not wording:
            raise ValueError(f"--label-words: {item!r} is not LABEL=WORDING (e.g. 'ham=normal,spam=spam').")
        if key not in by_text:
            raise ValueError(f"--label-words: {key!r} is not a label of the data; labels are {sorted(by_text)}.")
        if by_text[key] in words:
            raise ValueError(f"--label-words names {key!r} twice ({words[by_text[key]]!r}, {wording!r}); give one.")
        words[by_text[key]] = wording
    return words


def parse_llm(spec):
    """``--llm``: ``openai:MODEL[@BASE_URL]`` is an :class:`~skllm.OpenAIChat`, anything else a model name.

    What follows an ``@`` is the URL where it has a scheme, a ``:`` or a ``/`` (a host and
    port), and must then be an http(s) URL: ``openai:m@127.0.0.1:8000/v1`` is refused, not
    read as the model ``m@127.0.0.1:8000/v1`` on the default endpoint, where the texts would go.

    >>> parse_llm("openai:llama3.2@http://127.0.0.1:11434/v1")
    OpenAIChat(base_url='http://127.0.0.1:11434/v1', model='llama3.2')
    """
    match = re.fullmatch(r"openai:(?P<model>.+?)(?:@(?P<url>(?:\w[\w+.-]*://|[^@]*[:/]).*))?", spec, re.DOTALL)
    if match is None:
        return spec
    if match["url"] is not None:
        _check_url(match["url"], f"the URL of --llm {spec!r}")
    return OpenAIChat(match["model"], base_url=match["url"])


def compare(args):

    from ._compare import run_comparison
    from ._compare.report import OUTPUTS, write_results
    from ._compare.rows import check_out_dir

    try:
        # Before the data is read: a folder that cannot hold the results fails at once (nothing created).
        out = check_out_dir(args.out, "--out")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    data = Path(args.data).resolve()
    for name in OUTPUTS:
        if (out / name).resolve() == data:
            raise InputError(
                f"--out {str(out)!r} would write {name} over the data file {args.data}: give another folder."
            )
    frame = read_table(args.data)
    names = None
    if args.multilabel is not None:
        if args.label_words is not None:
            args.parser.error("--label-words is for the prompting methods, which do not take --multilabel data.")
        X, y, names = load_xy(frame, args.text, args.label, args.data, multilabel=args.multilabel)
        print(
            f"multi-label: {len(names)} labels ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}), "
            f"{y.sum() / len(y):.2f} per text on average"
        )
    else:
        X, y = load_xy(frame, args.text, args.label, args.data)
    try:
        check_targets(y, len(X))  # what the labels are, before how they split into folds
        check_folds(
            y, args.cv, max_samples=args.max_samples, random_state=args.random_state, names=OPTION_NAMES, texts=X
        )
    except ValueError as exc:
        args.parser.error(str(exc))
    label_words = None
    if args.label_words is not None:
        try:
            label_words = parse_label_words(args.label_words, y)
        except ValueError as exc:
            args.parser.error(str(exc))
    if args.max_samples is not None and len(X) > args.max_samples:
        how = "at random" if names is not None else "stratified"
        print(f"sub-sampling {args.max_samples} of {len(X)} rows ({how}), as --max-samples asks")
    out.mkdir(parents=True, exist_ok=True)
    cut, show = [], warnings.showwarning

    def count_cuts(message, category, *rest):  # said by every method and fold: counted, and said once below
        if issubclass(category, TruncationWarning):
            cut.append(str(message))
        else:
            show(message, category, *rest)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", TruncationWarning)
            warnings.showwarning = count_cuts
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
                max_samples=args.max_samples,
                time_budget=args.time_budget,
                cache_dir=args.cache_dir,
                random_state=args.random_state,
                out_dir=out,
                verbose=1,
                refit=True,
                report=print,
                client=args.scheduler,
            )
    except ValueError as exc:  # settings that only the comparison itself can check (e.g. the labels)
        raise InputError(str(exc)) from None
    if cut:
        print(
            f"note: texts longer than --max-length {args.max_length} tokens were cut ({len(cut)} truncation warnings "
            f"across methods and folds; the first: {cut[0]}). Raise --max-length to read more of them."
        )
    write_results(out, table, best, names)
    return 0 if best is not None else 1


def main(argv=None):
    from ._models import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER

    parser = argparse.ArgumentParser(
        prog="skllm", description="Adapting pretrained transformers, the scikit-learn way."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="compare every method on a labelled text file")
    cmp.add_argument("data", help="CSV, TSV, Parquet, JSON lines or JSON array file, possibly compressed")
    cmp.add_argument("--text", required=True, help="column holding the texts")
    cmp.add_argument("--label", required=True, help="column holding the labels")
    cmp.add_argument(
        "--multilabel",
        default=None,
        metavar="SEP",
        help="the label column holds several labels per text joined by SEP (e.g. 'sports|politics'; an empty cell "
        "is no label): a multi-label comparison, scored by micro- and macro-F1 and subset accuracy",
    )
    cmp.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=None, help="default: all")
    cmp.add_argument(
        "--cv", type=int, default=5, help="folds, 2 or more (default 5): stratified, but plain with --multilabel"
    )
    cmp.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="at most this many texts, 2 or more (stratified sub-sample); compare_methods' max_samples",
    )
    # Its former name, kept for one release (a note on standard error says so).
    cmp.add_argument("--budget", type=int, default=None, help=argparse.SUPPRESS)
    cmp.add_argument(
        "--time-budget",
        default=DEFAULT_TIME_BUDGET,
        help=f"time the comparison may take: 90s, 10m, 1h, seconds, or none to run everything as asked "
        f"(default {DEFAULT_TIME_BUDGET}); folds, epochs and texts shrink to fit, and the plan is printed first",
    )
    cmp.add_argument("--out", default="skllm-compare", help="output folder (default skllm-compare)")
    cmp.add_argument(
        "--encoder", default=DEFAULT_ENCODER, help="the encoder of the embedding and fine-tuning rows: a name or folder"
    )
    cmp.add_argument(
        "--llm",
        default=DEFAULT_CAUSAL_LM,
        help="the causal LM of the prompting rows: a model name or folder, or openai:MODEL[@BASE_URL] for a model "
        "behind an OpenAI-compatible endpoint (key from OPENAI_API_KEY; pip install 'skllm-toolkit[api]')",
    )
    cmp.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs, 1 or more (default 3)")
    cmp.add_argument("--max-length", type=int, default=64, help="tokens per text, 2 or more (default 64)")
    cmp.add_argument(
        "--cache-dir", default="auto", help="embedding cache folder (default auto: the default cache folder)"
    )
    cmp.add_argument("--random-state", type=int, default=0, help="seed, 0 to 2**32 - 1 (default 0)")
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
    if getattr(args, "budget", None) is not None:
        if args.max_samples is not None:
            cmp.error("--budget is the former name of --max-samples: give one of them.")
        print("note: --budget is now --max-samples; --budget will be removed in the next release.", file=sys.stderr)
        args.max_samples = args.budget
    try:
        args.time_budget = parse_duration(args.time_budget, "--time-budget")
        args.llm = parse_llm(args.llm)  # an OpenAIChat for openai:MODEL@URL, else the name
        check_settings(
            cv=args.cv,
            epochs=args.epochs,
            max_length=args.max_length,
            max_samples=args.max_samples,
            time_budget=args.time_budget,
            random_state=args.random_state,
            cache_dir=args.cache_dir,
            encoder=args.encoder,
            llm=args.llm,
            names=OPTION_NAMES,
        )
        if args.scheduler is not None:
            from ._dask import check_address

            check_address(args.scheduler, "--scheduler")
    except ValueError as exc:
        cmp.error(str(exc))
    except MissingDependencyError as exc:
        print(f"skllm compare: error: {exc}", file=sys.stderr)
        return 2
    try:
        return compare(args)
    except (InputError, ConnectionError, MissingDependencyError) as exc:
        print(f"skllm compare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
