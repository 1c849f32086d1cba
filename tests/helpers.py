"""Helpers shared by the test modules."""

import ast
import inspect
import re
from pathlib import Path


def count_rows(model):
    """Attach a hook counting the texts that go through ``model``'s forward pass.

    Returns the list that collects each call's batch size, and the hook handle.
    """
    seen = []

    def hook(module, args, kwargs, output):
        seen.append(kwargs["input_ids"].shape[0])

    handle = model.register_forward_hook(hook, with_kwargs=True)
    return seen, handle


# -- the lists of names that the README and the docs show, checked against the code --------

ROOT = Path(__file__).resolve().parent.parent
# Pages where a reader picks a method from a list: each needs one list naming every method.
PAGES_LISTING_EVERY_METHOD = ["README.md", "docs/api.md", "docs/finetuning.md", "docs/index.md", "docs/compare.md"]
# Pages that name every estimator; docs/api.md also names every other public object.
PAGES_LISTING_EVERY_ESTIMATOR = ["README.md", "docs/index.md", "docs/api.md"]
# Records of runs: their lists and tables are what was measured then, not the methods of today.
RECORD_PAGES = ["docs/benchmarks.md", "docs/results.md"]
# A list is four method names or more (fewer are examples), quoted or not, separated by
# commas, "or", "and" or "/"; a name may carry a number ("lora 1e-3") or a remark in brackets.
_MIN_LISTED = 4
_SEPARATOR = r"(?:,?\s+or\s+|,?\s+and\s+|,\s+|\s+/\s+)"
_NUMBER = r"\d+(?:\.\d+)?(?:e-?\d+)?"


def doc_list_problems(methods=None, public=None):
    """What README.md and docs/*.md leave out or misstate about methods, estimators, parameters.

    ``methods`` is a registry like ``skllm._methods.METHODS`` (name -> method class), the
    real one by default; ``public`` the names of ``skllm.__all__`` (the default) or a dict
    name -> object. Returns one sentence per problem, naming the page; ``[]`` when all agree:

    - every list of four or more method names (on any page but ``RECORD_PAGES``) is the whole registry or the
      methods that one class fact selects (``supports_generation``, ``caches_features``),
      and the pages in ``PAGES_LISTING_EVERY_METHOD`` each have one list of all of them;
    - a number after a method name in such a list is its ``default_learning_rate``, and
      the guide's ``epochs=None`` sentence gives each ``default_epochs``;
    - a table row ``| "name" | Class(...) |`` shows the registered class with its signature;
    - the guide's "Adding a method" names every member of the ``FineTuningMethod`` contract;
    - docs/api.md names every public object, and README.md and docs/index.md every estimator;
    - the signatures in docs/api.md's code blocks have the code's parameters and defaults.

    (That the API reference renders every public object is checked on the built site, by
    ``tests/test_site.py``.)
    """
    import skllm
    from skllm._methods import METHODS

    methods = METHODS if methods is None else methods
    public = skllm.__all__ if public is None else public
    if not isinstance(public, dict):
        public = {name: getattr(skllm, name, None) for name in public}
    pages = {page: (ROOT / page).read_text() for page in _doc_pages()}
    problems = []
    for page, text in pages.items():
        if page in RECORD_PAGES:
            continue
        problems += _method_list_problems(page, text, methods, needs_all=page in PAGES_LISTING_EVERY_METHOD)
        problems += _method_table_problems(page, text, methods)
    problems += _epoch_problems("docs/finetuning.md", pages["docs/finetuning.md"], methods)
    problems += _contract_problems("docs/finetuning.md", pages["docs/finetuning.md"])
    for name, obj in public.items():
        if name.startswith("__"):
            continue
        for page in PAGES_LISTING_EVERY_ESTIMATOR if _is_estimator(obj) else ["docs/api.md"]:
            if not re.search(rf"(?<![\w.])(skllm\.)?{re.escape(name)}\b", pages[page]):
                problems.append(f"{page} does not name skllm.{name}")
    problems += _signature_problems("docs/api.md", pages["docs/api.md"], public)
    return problems


def _doc_pages():
    return ["README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md")))]


def _line(text, position):
    return text.count("\n", 0, position) + 1


def _fact_subsets(methods):
    """The sets of method names a page may list instead of all: those a class fact selects."""
    subsets = {"every method": set(methods)}
    for fact in ("supports_generation", "caches_features"):
        for value in (True, False):
            subsets[f"{fact}={value}"] = {name for name, cls in methods.items() if getattr(cls, fact) is value}
    return subsets


def _name_pattern(methods):
    return "|".join(sorted(map(re.escape, methods), key=len, reverse=True))


def _method_lists(text, methods):
    """``(position, [(name, number or None), ...])`` for each list of method names in ``text``."""
    word = _name_pattern(methods)
    item = rf"[`\"']*(?:{word})s?[`\"']*(?:\s+{_NUMBER})?(?:\s+\([^)]*\))?"
    lists = re.compile(rf"(?<![\w-]){item}(?:{_SEPARATOR}{item}){{{_MIN_LISTED - 1},}}(?![\w-])", re.I)
    named = re.compile(rf"(?<![\w-])({word})s?[`\"']*(?:\s+({_NUMBER}))?", re.I)
    found = [
        (match.start(), [(name.lower(), number or None) for name, number in named.findall(match.group())])
        for match in lists.finditer(text)
    ]
    for position, rows in _method_tables(text, methods):
        found.append((position, [(name, None) for name, _ in rows]))
    return found


def _method_tables(text, methods):
    """``(position, [(name, rest of the row), ...])`` for tables whose rows start with method names."""
    row = re.compile(rf"^\|\s*[`\"]*({_name_pattern(methods)})[`\"]*\s*\|(.*)$", re.I | re.M)
    for table in re.finditer(r"(?:^\|.*\n)+", text, flags=re.M):
        rows = [(match.group(1).lower(), match.group(2)) for match in row.finditer(table.group())]
        if len(rows) >= _MIN_LISTED:
            yield table.start(), rows


def _method_list_problems(page, text, methods, needs_all):
    problems, subsets = [], _fact_subsets(methods)
    lists = _method_lists(text, methods)
    for position, items in lists:
        where, listed = f"{page}:{_line(text, position)}", {name for name, _ in items}
        if listed not in subsets.values():
            # The nearest set, preferring one the list only falls short of.
            closest = min(subsets, key=lambda key: (len(listed - subsets[key]), len(subsets[key] - listed)))
            missing, extra = sorted(subsets[closest] - listed), sorted(listed - subsets[closest])
            problems.append(
                f"{where} lists the methods {sorted(listed)}; for {closest} it misses {missing}"
                + (f" and should not have {extra}" if extra else "")
            )
        for name, number in items:
            if number is not None and float(number) != methods[name].default_learning_rate:
                problems.append(
                    f"{where} gives {name} the learning rate {number}; "
                    f"{methods[name].__name__}.default_learning_rate is {methods[name].default_learning_rate:g}"
                )
    if needs_all and not any({name for name, _ in items} == set(methods) for _, items in lists):
        problems.append(f"{page} has no list of every method (the registry has {sorted(methods)})")
    return problems


def _method_table_problems(page, text, methods):
    """A row ``| "lora" | `LoRA(r=8, ...)` |`` shows the registered class with its signature."""
    problems = []
    for position, rows in _method_tables(text, methods):
        for name, rest in rows:
            shown = re.match(r"\s*`(\w+)\((.*?)\)`\s*\|", rest)
            if not shown:
                continue
            where, cls = f"{page}:{_line(text, position)}", methods[name]
            if shown.group(1) != cls.__name__:
                problems.append(f"{where} shows {shown.group(1)} for {name!r}; the registry has {cls.__name__}")
            else:
                problems += _signature_mismatch(where, cls.__name__, shown.group(2), cls)
    return problems


def _epoch_problems(page, text, methods):
    """The ``epochs=None`` sentence: "10 for the head ..., 3 for every other method"."""
    problems = []
    for paragraph in re.findall(r"`epochs=None`.*?(?:\n\n|$)", text, flags=re.S):
        said = {name: int(n) for n, name in re.findall(r"(\d+) for the (\w+)", paragraph) if name in methods}
        other = re.search(r"(\d+) for every other method", paragraph)
        for name, cls in methods.items():
            n = said.get(name, int(other.group(1)) if other else None)
            if n is not None and n != cls.default_epochs:
                problems.append(
                    f"{page} gives {name} {n} epochs by default; {cls.__name__}.default_epochs is {cls.default_epochs}"
                )
    return problems


def _contract_problems(page, text):
    """The "Adding a method" section names every member of the method contract."""
    from skllm._methods import FineTuningMethod

    section = text.split("## Adding a method", 1)[-1]
    return [
        f"{page}, Adding a method, does not name FineTuningMethod.{member}"
        for member in vars(FineTuningMethod)
        if not member.startswith("_") and not re.search(rf"`{member}\b", section)
    ]


def _signature_problems(page, text, public):
    """Signatures in plain code blocks, ``Name(param=default, ...)``, against the code's."""
    problems = []
    for block in re.findall(r"^```\n(.*?)^```", text, flags=re.S | re.M):
        for match in re.finditer(r"^(\w+)\(", block, flags=re.M):
            name, depth = match.group(1), 0
            if public.get(name) is None:
                continue
            for end in range(match.end() - 1, len(block)):
                depth += {"(": 1, ")": -1}.get(block[end], 0)
                if depth == 0:
                    break
            shown = block[match.end() : end]
            # "<the parameters of FineTuneRegressor>" stands for that class's parameters.
            same_as = re.search(r"<the parameters of\s+(\w+)>", shown)
            problems += _signature_mismatch(
                page, name, shown, public[name], same_as=public[same_as.group(1)] if same_as else None
            )
    return problems


def _signature_mismatch(where, name, shown, obj, same_as=None):
    """How ``shown``, the text between a signature's brackets, differs from ``obj``'s."""
    shown = re.sub(r"\*,\s*|<the parameters of\s+\w+>,?", "", shown)
    call = ast.parse(f"f({shown})", mode="eval").body
    documented = {arg.id: inspect.Parameter.empty for arg in call.args}
    documented.update({keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords})
    actual = inspect.signature(obj).parameters
    expected = set(actual) - (set(inspect.signature(same_as).parameters) if same_as else set())
    problems = [
        f"{where}: the signature of {name} lacks {param}={actual[param].default!r}"
        for param in sorted(expected - set(documented))
    ]
    for param, default in documented.items():
        if param not in actual:
            problems.append(f"{where}: the signature of {name} shows {param}, which {name} does not take")
        elif default is not ... and default != actual[param].default:
            problems.append(
                f"{where}: the signature of {name} shows {param}={default!r}; the default is {actual[param].default!r}"
            )
    return problems


def _is_estimator(obj):
    """A public estimator, as opposed to the method and selection objects passed to one."""
    from sklearn.base import BaseEstimator

    from skllm import ExampleSelection, FineTuningMethod

    return (
        isinstance(obj, type)
        and issubclass(obj, BaseEstimator)
        and not issubclass(obj, (FineTuningMethod, ExampleSelection))
    )


def untrained_generator(*model_name, **params):
    """A FineTuneGenerator ready to predict without a training step: the pretrained model as it is.

    ``fit`` trains at least one epoch; the tests of masks, losses and generation
    need the model unchanged.
    """
    from skllm import FineTuneGenerator

    generator = FineTuneGenerator(*model_name, **params)
    generator._setup(generator._validate_params(), 0)
    return generator
