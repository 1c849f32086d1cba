"""What a probe case is, and the shared state the cases run in (models, folders, fitted estimators)."""

import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Case:
    """One input and what a correct library does with it.

    ``expect`` is "raises", "ok" or "either". ``match``: regexes the error message must
    all contain. ``check(result, ctx)`` returns None when the result is right, else what
    is wrong. ``allow``: further exception types the docs promise (e.g. ``KeyError``).
    ``warns``: the warning class an "ok" result must come with. ``deep_ok``: packages an
    error may come from. ``signature``: the case calls with arguments the signature refuses,
    so Python's own ``TypeError`` at the call is the expected clear error.
    """

    group: str
    name: str
    input: str
    run: Callable[[Any], Any]
    expect: str = "raises"
    match: tuple = ()
    check: Callable | None = None
    allow: tuple = ()
    warns: type | None = None
    deep_ok: tuple = ()
    timeout: int | None = None
    signature: bool = False

    def __post_init__(self):
        assert self.expect in ("raises", "ok", "either"), self.expect
        if isinstance(self.match, str):
            self.match = (self.match,)

    def setup_failed(self, error):
        return isinstance(error, SetupError)


class SetupError(Exception):
    """Building a case's valid starting point (a fitted estimator, a saved index) failed."""


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Context:
    """Temporary folder with copies of the tiny models, a cache folder and fitted estimators."""

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="skllm-probe-"))
        self.bert = str(shutil.copytree(ROOT / "tests/legacy/tiny-bert", self.tmp / "tiny-bert"))
        self.llama = str(shutil.copytree(ROOT / "tests/legacy/tiny-llama", self.tmp / "tiny-llama"))
        self.cache = str(self.tmp / "cache")
        self.unreachable = f"http://127.0.0.1:{_closed_port()}/v1"
        self._memo = {}
        self._counter = 0
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        """A fresh path under the temporary folder (not created)."""
        self._counter += 1
        return self.tmp / f"{self._counter:04d}-{name}"

    def fitted(self, key, build):
        """``build()`` once per key (a fitted estimator, a reference output); failures are the harness's."""
        if key not in self._memo:
            try:
                self._memo[key] = ("ok", build())
            except Exception as error:
                self._memo[key] = ("error", error)
        state, value = self._memo[key]
        if state == "error":
            raise SetupError(f"{key}: {type(value).__name__}: {value}") from value
        return value
