"""Running on a Dask cluster: connecting, embedding a Dask column, worker-side helpers.

Estimators travel to the workers as pickles without weights (see ``_live.py``);
each worker process loads a backbone once per configuration through the
per-process registry of ``_models.load_backbone``, however many tasks it runs.
The comparison's tasks are in ``_compare/cluster.py``, built on these helpers.
"""

import contextlib
import logging
import os
import sys
import time

import numpy as np

from ._architecture import output_width
from ._models import _load_counts, name_this_process_with, resolve_model
from ._validation import check_texts
from .exceptions import MissingDependencyError

logger = logging.getLogger(__name__)

INSTALL = "pip install 'skllm-toolkit[dask]'"
# How long a client waits for a scheduler before saying that none answered.
CONNECT_TIMEOUT = 10.0


def require(feature, package="distributed"):
    """Import ``package`` (``distributed`` or ``dask.dataframe``), or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise MissingDependencyError(package.split(".")[0], feature, INSTALL) from exc


def worker_address():
    """The address of the Dask worker running this code, or ``None`` outside a worker.

    ``distributed`` is not imported for this: a process that never imported it
    runs no Dask worker.
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except (ValueError, AttributeError):
        return None
    return worker.address


def _worker_name():
    address = worker_address()
    return f"Dask worker {address}" if address else None


# A model missing on one machine of a cluster must say which machine.
name_this_process_with(_worker_name)


def task_threads():
    """Torch threads for one task on a Dask worker: one per Dask thread unless the worker's environment says more.

    A worker with ``nthreads=N`` runs up to N tasks at once; with one torch thread
    each, it uses at most N cores, and workers sharing a machine do not
    oversubscribe it. Dask's nanny sets ``OMP_NUM_THREADS=1`` in each worker (its
    ``distributed.nanny.pre-spawn-environ`` setting, which is where a larger value
    is given for workers that run one large task at a time).
    """
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


@contextlib.contextmanager
def worker_threads():
    """Inside a Dask worker, run the block with ``task_threads()`` torch threads (restored after)."""
    if worker_address() is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(task_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def backbone_loads():
    """``{model location: times read from disk}`` in this process (run on each worker with ``client.run``)."""
    counts = {}
    for (location, _revision, _device, _kind), n in _load_counts.items():
        counts[location] = counts.get(location, 0) + n
    return counts


@contextlib.contextmanager
def naming_the_worker():
    """Re-raise an error on a worker with the worker's address in its message, keeping its type."""
    try:
        yield
    except Exception as exc:
        address = worker_address()
        if address is None or address in str(exc):
            raise
        try:
            named = type(exc)(f"{exc} [on Dask worker {address}]")
        except Exception:  # an exception type with another signature: keep it as it is
            raise exc from None
        raise named.with_traceback(exc.__traceback__) from exc


# -- connecting ---------------------------------------------------------------------------------
def check_address(address, param="client"):
    """Raise a ``ValueError`` naming ``param`` unless ``address`` reads as a scheduler address.

    Nothing is contacted: this is the check of the address's form, before any work starts.
    """
    require("Running on a Dask cluster")
    if isinstance(address, str) and address.strip():
        from distributed.comm.addressing import parse_address, parse_host_port

        try:
            scheme, location = parse_address(address)
            if scheme in ("tcp", "tls"):
                parse_host_port(location)
            return
        except ValueError as exc:
            reason = f" ({exc})"
    else:
        reason = ""
    shown = "a distributed.Client or a scheduler address" if param == "client" else "a scheduler address"
    raise ValueError(f"{param} must be {shown} such as 'tcp://host:8786', got {address!r}{reason}.")


def connect(client, *, param="client", timeout=None):
    """``(client, owned)``: a ``distributed.Client`` as given, or a new one connected to an address.

    ``owned`` is True when the client was made here (and is closed by the caller).
    A scheduler that does not answer raises a ``ConnectionError`` within ``timeout`` seconds.
    """
    distributed = require("Running on a Dask cluster")
    if isinstance(client, distributed.Client):
        return client, False
    check_address(client, param)
    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    started = time.perf_counter()
    try:
        return distributed.Client(client, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"No Dask scheduler answered at {client!r} within {time.perf_counter() - started:.0f} s ({exc}). "
            f"Check the address and that the scheduler runs (dask scheduler) and is reachable from here."
        ) from None


# -- embedding a Dask column --------------------------------------------------------------------
def _embedding_columns(embedder):
    if hasattr(embedder, "embedding_dim_"):
        dim = embedder.embedding_dim_
    else:
        from transformers import AutoConfig

        source = resolve_model(embedder.model_name, embedder.revision, cache_dir=embedder.cache_dir)
        dim = output_width(AutoConfig.from_pretrained(source.location))
    # The names of get_feature_names_out (ClassNamePrefixFeaturesOutMixin).
    prefix = type(embedder).__name__.lower()
    return [f"{prefix}{i}" for i in range(dim)]


def _embed_partition(texts, embedder, columns, partition_info=None):
    import pandas as pd
    from sklearn.base import clone

    with naming_the_worker(), worker_threads():
        if not hasattr(embedder, "model_identity_"):
            # fit() only finds the model: the registry of this process holds its weights after the first partition.
            embedder = clone(embedder).fit()
        try:
            if len(texts):  # an empty partition (of a filtered series) is no error
                check_texts(texts, estimator=embedder)
        except ValueError as exc:  # a text it refuses: its position counts from this partition's start
            where = f"partition {partition_info['number']}" if partition_info else "a partition"
            raise ValueError(
                f"In {where} of the texts (positions within it; the index labels are the texts'): {exc}"
            ) from None
        # Other errors (a model folder gone from this worker, parameters set since fit, checked where the
        # tasks run: a model_name set since may name a folder only the workers hold) are the embedder's own.
        vectors = embedder.transform(texts) if len(texts) else np.empty((0, len(columns)), dtype=np.float32)
    return pd.DataFrame(vectors, index=texts.index, columns=columns)


def dask_embed(texts, embedder=None):
    """Embed a Dask Series (or one-column DataFrame) of texts, partition by partition, on the cluster.

    Each partition is embedded by one task on a worker; the result is a lazy Dask
    DataFrame with the same partitions, row order and index, and one float32
    column per embedding dimension (named like the embedder's
    ``get_feature_names_out``). Nothing is gathered in the calling process:
    write it with ``to_parquet`` or reduce it on the cluster. Each worker loads
    the model once (the embedder travels without weights) and stores every
    embedding in its machine's persistent cache, so a second pass, or a
    ``TransformerEmbedder`` with the same settings in a pipeline later, reads
    them back instead of computing them.

    Parameters
    ----------
    texts : dask.dataframe.Series or dask.dataframe.DataFrame with one column
        The texts (strings, no missing values).
    embedder : TransformerEmbedder, default=None
        Its settings say how to embed (model, pooling, cache folder...); fitted
        or not. ``None`` is ``TransformerEmbedder()``. Without a fitted
        embedder, the model's configuration (not its weights) is read here to
        know the embedding size.

    Returns
    -------
    dask.dataframe.DataFrame
        One row per text, same index and partitions as ``texts``.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from skllm import TransformerEmbedder, dask_embed
    >>> texts = dd.from_pandas(pd.Series(["a great film", "dull", "loved it"], index=[10, 20, 30]), npartitions=2)
    >>> embeddings = dask_embed(texts, TransformerEmbedder())
    >>> frame = embeddings.compute(scheduler="synchronous")  # a Client's cluster when one is connected
    >>> frame.shape, frame.index.tolist()
    ((3, 384), [10, 20, 30])
    """
    dd = require("dask_embed", "dask.dataframe")
    from ._embed import TransformerEmbedder

    embedder = TransformerEmbedder() if embedder is None else embedder
    if not isinstance(embedder, TransformerEmbedder):
        raise TypeError(f"embedder must be a TransformerEmbedder or None, got {type(embedder).__name__}.")
    if isinstance(texts, dd.DataFrame):
        if len(texts.columns) != 1:
            raise ValueError(
                f"texts must be a Dask Series or a Dask DataFrame with one column; this one has "
                f"{len(texts.columns)}: {list(texts.columns)}. Pass the column, e.g. frame['text']."
            )
        texts = texts[texts.columns[0]]
    if not isinstance(texts, dd.Series):
        raise TypeError(
            f"texts must be a Dask Series or one-column Dask DataFrame, got {type(texts).__name__}; "
            f"TransformerEmbedder.transform takes in-memory texts."
        )
    embedder._validate_params()
    import pandas as pd

    columns = _embedding_columns(embedder)
    meta = pd.DataFrame(
        {c: np.empty(0, dtype=np.float32) for c in columns}, index=texts._meta.index[:0], columns=columns
    )
    return texts.map_partitions(_embed_partition, embedder, columns, meta=meta)
