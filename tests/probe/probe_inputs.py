"""Bad-input probe: careless inputs against every public estimator and function of skllm.

Run from the repository root::

    HF_HUB_OFFLINE=1 python tests/probe/probe_inputs.py [--out results.json] [--only SUBSTRING]

Each case declares what a correct library does with its input:

- ``raises``: an exception of a clear type (``ValueError``, ``TypeError``, ``NotFittedError``,
  a file error, a ``skllm.exceptions`` class, or a type the docs promise) raised by skllm
  (or scikit-learn's validation), not from inside torch/transformers/numpy, whose message
  matches every regex of the case (the parameter's name, the row, ...);
- ``ok``: a result that passes the case's check (length, order, labels, finite numbers,
  the documented warning);
- ``either``: a result passing the check, or a clear error as above.

Outcomes: ``pass``; ``SILENT`` (no error where one was due, or a wrong result);
``UNHELPFUL`` (an error, but not a clear one: an internal type, raised deep inside a
dependency, a message without the named thing, an error where a result was due, or no
answer within the time limit); ``HARNESS`` (the case itself is broken).

The tiny models of ``tests/legacy`` are copied to a temporary folder; nothing touches the
network: Hugging Face is offline, ``OpenAIChat`` only ever points at a closed port of
127.0.0.1, and sockets to any other address are refused in this process and in the
command-line subprocesses.
"""

import argparse
import contextlib
import io
import json
import os
import re
import signal
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# One torch thread: the probe judges behaviour, not speed, and on a shared machine two
# threads per process spin against each other (about three times slower under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import _netguard  # noqa: E402

_netguard.install()

from _context import Context, SetupError  # noqa: E402

CASE_TIMEOUT_S = 60

DEEP_PACKAGES = (
    "torch",
    "transformers",
    "numpy",
    "tokenizers",
    "peft",
    "safetensors",
    "faiss",
    "scipy",
    "pandas",
    "openai",
    "httpx",
    "httpcore",
    "dask",
    "distributed",
    "sqlite3",
    "json",
    "xgboost",
    "pyarrow",
    "huggingface_hub",
    "joblib",
)
INTERNAL_TYPES = (
    KeyError,
    AttributeError,
    IndexError,
    OverflowError,
    ZeroDivisionError,
    AssertionError,
    NameError,
    RecursionError,
    MemoryError,
    StopIteration,
    NotImplementedError,
    UnicodeError,
)


class CaseTimeout(BaseException):
    """A case ran past ``CASE_TIMEOUT_S``."""


def _clear_types():
    from sklearn.exceptions import NotFittedError

    import skllm.exceptions as ex

    own = tuple(getattr(ex, name) for name in ex.__all__ if isinstance(getattr(ex, name), type))
    own = tuple(t for t in own if issubclass(t, BaseException))
    return (
        *own,
        ValueError,
        TypeError,
        NotFittedError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        OSError,  # how transformers and skllm say that a model folder cannot be loaded
    )


def origin(exc):
    """Where ``exc`` was raised: ("skllm" | "harness" | "sklearn" | a package | "python", "file:line")."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "python", "?"
    frame = frames[-1]
    path = frame.filename.replace("\\", "/")
    where = f"{Path(path).name}:{frame.lineno}"
    if "/tests/probe/" in path:
        return "harness", where
    if "/skllm/" in path and "site-packages" not in path:
        return "skllm", f"skllm/{path.split('/skllm/', 1)[1]}:{frame.lineno}"
    match = re.search(r"(?:site|dist)-packages/([^/]+)", path)
    if match:
        package = match.group(1).split(".")[0]
        if package == "skllm":
            return "skllm", where
        return package, f"{package}/.../{where}"
    match = re.search(r"/python3\.\d+/([^/]+)", path)
    if match:
        name = match.group(1).removesuffix(".py")
        return name, where
    return "python", where


def _signature_error(exc):
    """Python's own TypeError for a call that does not fit a signature (names the parameter)."""
    return isinstance(exc, TypeError) and re.search(
        r"(positional argument|keyword argument|required (keyword-only )?argument)", str(exc)
    )


def exception_message(exc):
    text = f"{type(exc).__name__}: {exc}"
    for note in getattr(exc, "__notes__", ()) or ():
        text += f"\n{note}"
    return text


def judge_exception(case, exc, clear_types):
    """(outcome, reason) for a case whose call raised ``exc``."""
    where, location = origin(exc)
    message = exception_message(exc)
    if isinstance(exc, CaseTimeout):
        return "UNHELPFUL", f"no answer within {case.timeout or CASE_TIMEOUT_S} s"
    if type(exc).__name__ == "CLIError":
        return judge_cli(case, exc)
    if case.allow and isinstance(exc, case.allow):  # e.g. the user's own callable failing, passed through
        return "pass", ""
    if where == "harness" and not (case.signature and _signature_error(exc)):
        return "HARNESS", f"the case's own code raised at {location}: {message}"
    if case.expect == "ok":
        kind = "a clear error" if isinstance(exc, clear_types) else "an error"
        return "UNHELPFUL", f"{kind} where a result was due (raised at {location})"
    allowed = isinstance(exc, case.allow) if case.allow else False
    if not allowed:
        if isinstance(exc, INTERNAL_TYPES) and not _is_not_fitted(exc) and not isinstance(exc, UnicodeError):
            return "UNHELPFUL", f"internal {type(exc).__name__} raised at {location}"
        if not isinstance(exc, clear_types):
            return "UNHELPFUL", f"{type(exc).__name__} is not a clear error type (raised at {location})"
        if type(exc) is RuntimeError:
            return "UNHELPFUL", f"bare RuntimeError raised at {location}"
    if where in DEEP_PACKAGES and where not in case.deep_ok:
        return "UNHELPFUL", f"raised inside {where} ({location}), not where the input enters"
    missing = [
        pattern
        for pattern in case.match
        if not re.search(pattern, str(exc) + " ".join(getattr(exc, "__notes__", ()) or ()), re.I | re.S)
    ]
    if missing:
        return "UNHELPFUL", f"the message does not name the problem (wanted /{'/, /'.join(missing)}/)"
    return "pass", ""


def judge_cli(case, exc):
    """A command that exited with an error: clear when exit code 2, no traceback, the problem named."""
    if case.expect == "ok":
        return "UNHELPFUL", f"exit code {exc.code} where a result was due"
    if "Traceback (most recent call last)" in exc.stderr:
        raised = [line for line in exc.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", line)]
        last = raised[-1] if raised else exc.stderr.strip().splitlines()[-1]
        return "UNHELPFUL", f"a Python traceback ending in {last[:300]}"
    if exc.code != 2:
        return "UNHELPFUL", f"exit code {exc.code} (bad input exits with 2)"
    missing = [pattern for pattern in case.match if not re.search(pattern, exc.stderr, re.I | re.S)]
    if missing:
        return "UNHELPFUL", f"the message does not name the problem (wanted /{'/, /'.join(missing)}/)"
    return "pass", ""


def _is_not_fitted(exc):
    from sklearn.exceptions import NotFittedError

    return isinstance(exc, NotFittedError)


def short(value, limit=160):
    try:
        text = repr(value)
    except Exception as error:
        text = f"<repr failed: {error!r}>"
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _on_alarm(signum, frame):
    raise CaseTimeout()


def run_case(case, ctx, clear_types):
    """Run one case; return its record (a dict)."""
    record = {
        "group": case.group,
        "name": case.name,
        "input": case.input,
        "expect": case.expect,
        "outcome": None,
        "reason": "",
        "message": "",
        "warnings": [],
    }
    start = time.perf_counter()
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(case.timeout or CASE_TIMEOUT_S)
        result, error, problem = None, None, None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                result = case.run(ctx)
                if case.expect != "raises":
                    # the check uses the result (predicts with a fitted model...): inside the
                    # time limit and the warning capture, and its errors are the library's
                    try:
                        problem = case.check(result, ctx) if case.check else None
                    except Exception as exc:
                        if isinstance(exc, SetupError) or origin(exc)[0] == "harness":
                            record["outcome"] = "HARNESS"
                            record["reason"] = f"the check failed: {exception_message(exc)[:300]}"
                        else:  # accepted at fit, failing later: not raised where the input entered
                            record["outcome"] = "UNHELPFUL"
                            record["reason"] = f"accepted, but using the result raised at {origin(exc)[1]}"
                            record["message"] = exception_message(exc)[:2000]
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            result, error = None, exc
        finally:
            signal.alarm(0)
        warned = [w.category for w in caught]
        if error is None and problem is None and record["outcome"] is None and case.expect != "raises":
            if case.warns is not None and not any(issubclass(w, case.warns) for w in warned):
                problem = f"no {case.warns.__name__} (documented)"
    record["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
    if error is not None:
        record["message"] = exception_message(error)[:2000]
        record["raised_at"] = "{} ({})".format(*origin(error))
        if case.setup_failed(error):
            record["outcome"], record["reason"] = "HARNESS", "setup failed: " + record["message"][:300]
        else:
            record["outcome"], record["reason"] = judge_exception(case, error, clear_types)
    elif case.expect == "raises":
        record["outcome"] = "SILENT"
        record["reason"] = f"no error; returned {short(result)}"
        if record["warnings"]:
            record["reason"] += f" (warned: {record['warnings'][0]})"
    else:
        if record["outcome"] is None:
            if problem:
                record["outcome"], record["reason"] = "SILENT", f"wrong result: {problem}"
            else:
                record["outcome"] = "pass"
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def summarize(records):
    outcomes = ["pass", "SILENT", "UNHELPFUL", "HARNESS"]
    by_group = defaultdict(Counter)
    for r in records:
        by_group[r["group"]][r["outcome"]] += 1
    width = max(len(g) for g in by_group) + 2
    lines = [f"{'estimator / function':<{width}}" + "".join(f"{o:>11}" for o in outcomes) + f"{'total':>8}"]
    total = Counter()
    for group in sorted(by_group):
        counts = by_group[group]
        total.update(counts)
        lines.append(f"{group:<{width}}" + "".join(f"{counts[o]:>11}" for o in outcomes) + f"{sum(counts.values()):>8}")
    lines.append(f"{'TOTAL':<{width}}" + "".join(f"{total[o]:>11}" for o in outcomes) + f"{sum(total.values()):>8}")
    return "\n".join(lines), total


def listing(records, outcome):
    lines = []
    for r in records:
        if r["outcome"] != outcome:
            continue
        lines.append(f"- [{r['group']}] {r['name']}: input {r['input']}")
        lines.append(f"    {r['reason']}")
        if r["message"]:
            message = r["message"].replace("\n", " ")
            lines.append(f"    message: {message[:400]}")
    return "\n".join(lines)


def markdown(records, headline, table, total):
    """The summary table and every case that did not pass, as Markdown."""
    lines = [
        "# skllm bad-input probe",
        "",
        "Command: `HF_HUB_OFFLINE=1 python tests/probe/probe_inputs.py --out results.json`",
        "",
        headline,
        "",
        "```",
        table,
        "```",
    ]
    for outcome in ["SILENT", "UNHELPFUL", "HARNESS"]:
        chosen = [r for r in records if r["outcome"] == outcome]
        if not chosen:
            continue
        lines += ["", f"## {outcome} ({total[outcome]})", ""]
        for r in chosen:
            lines.append(f"- **[{r['group']}] {r['name']}** — input `{r['input']}`")
            lines.append(f"  - {r['reason']}")
            if r["message"]:
                message = r["message"].replace("\n", " ").replace("`", "'")
                lines.append(f"  - message: `{message[:400]}`")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write every case's record to this JSON file")
    parser.add_argument("--only", default=None, help="run only cases whose group or name contains this")
    parser.add_argument("--report", default=None, help="also write the summary and the lists as Markdown here")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    args = parser.parse_args(argv)

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    import _cases

    with Context() as ctx:
        cases = _cases.all_cases(ctx)
        names = Counter((c.group, c.name) for c in cases)
        duplicates = [k for k, n in names.items() if n > 1]
        if duplicates:
            raise SystemExit(f"duplicate case names: {duplicates[:5]}")
        if args.only:
            cases = [c for c in cases if args.only in c.group or args.only in c.name]
        if args.list:
            for c in cases:
                print(f"[{c.group}] {c.name}: {c.expect} {c.input}")
            print(len(cases), "cases")
            return 0
        clear_types = _clear_types()
        records = []
        started = time.perf_counter()
        for i, case in enumerate(cases, 1):
            record = run_case(case, ctx, clear_types)
            records.append(record)
            mark = "." if record["outcome"] == "pass" else record["outcome"][0]
            print(mark, end="" if i % 80 else f" {i}/{len(cases)}\n", flush=True)
        elapsed = time.perf_counter() - started
    print()
    table, total = summarize(records)
    report = [
        f"{len(records)} inputs in {elapsed:.0f} s: "
        + ", ".join(f"{total[o]} {o}" for o in ["pass", "SILENT", "UNHELPFUL", "HARNESS"]),
        "",
        table,
    ]
    for outcome in ["SILENT", "UNHELPFUL", "HARNESS"]:
        listed = listing(records, outcome)
        if listed:
            report += ["", f"{outcome} ({total[outcome]}):", listed]
    print("\n".join(report))
    if args.report:
        Path(args.report).write_text(markdown(records, report[0], table, total))
        print(f"\nwrote {args.report}")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"total": len(records), "counts": dict(total), "seconds": round(elapsed), "cases": records}, indent=1
            )
        )
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
