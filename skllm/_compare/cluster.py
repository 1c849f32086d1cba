"""A comparison on a Dask cluster: one task per (method, fold), the same rows as a local run."""

import time
import uuid

from .._dask import naming_the_worker, require, worker_threads
from .folds import evaluate_fold, fold_row
from .rows import failed_row, skipped_row


def _fold_task(template, texts, y, train, test, measure_model, multilabel=False):
    """Fit a clone of ``template`` on ``train`` and score it on ``test`` (one task of a comparison)."""
    with naming_the_worker(), worker_threads():
        return evaluate_fold(template, texts, y, train, test, multilabel=multilabel, measure_model=measure_model)


def _refit_task(template, texts, y):
    from sklearn.base import clone

    with naming_the_worker(), worker_threads():
        return clone(template).fit(list(texts), y)


def run_folds(
    client, todo, templates, folds, texts, y, *, deadline=None, verbose=1, on_row=None, report=print, multilabel=False
):
    """Run every (method, fold) of ``todo`` as one task on the cluster; return ``{method: row}``.

    The rows are what the local loop makes: the same folds and estimators, so the
    same scores. A method's row is complete (and handed to ``on_row``, which
    saves it for resuming) as soon as its last fold finishes; progress advances
    as each task completes, in whatever order. At ``deadline`` the unfinished
    tasks are cancelled and their methods reported as skipped.
    """
    distributed = require("Running a comparison on a Dask cluster")
    from tqdm.auto import tqdm

    # hash=False: keys of this call only. Hashed keys are shared with any client that
    # scattered the same data, whose release would then drop it from under these tasks
    # ("lost dependencies").
    texts_f, y_f = client.scatter([texts, y], broadcast=False, hash=False)
    futures = {}
    last = len(folds) - 1
    for name in todo:
        for i, (train, test) in enumerate(folds):
            future = client.submit(
                _fold_task,
                templates[name],
                texts_f,
                y_f,
                train,
                test,
                i == last,
                multilabel,
                key=f"skllm-compare-{name}-fold{i}-{uuid.uuid4().hex[:8]}",
            )
            futures[future] = (name, i)
    results = {name: [None] * len(folds) for name in todo}
    errors, rows = {}, {}
    remaining = {name: len(folds) for name in todo}
    # This client's loop: without it, as_completed looks for a default client, and the one
    # made from an address (the command line's --scheduler) is not one.
    completed = distributed.as_completed(list(futures), loop=client.loop, with_results=False)
    progress = tqdm(total=len(futures), desc="method x fold tasks", disable=not verbose)
    try:
        for future in _until(completed, deadline):
            name, i = futures[future]
            progress.update(1)
            if name in errors:
                continue
            try:
                results[name][i] = future.result()
            except Exception as exc:  # one method failing must not stop the others
                rows[name] = failed_row(name, exc)
                errors[name] = rows[name]["error"]
                for other, (n, _) in futures.items():
                    if n == name:
                        other.cancel()
                continue
            remaining[name] -= 1
            if remaining[name] == 0:
                rows[name] = fold_row(name, results[name])
                if on_row is not None:
                    on_row(name, rows[name])
    finally:
        progress.close()
    unfinished = [name for name in todo if name not in rows]
    if unfinished:
        report(f"{', '.join(unfinished)}: skipped, not finished within the time budget (tasks cancelled)")
        client.cancel([f for f, (n, _) in futures.items() if n in unfinished])
        for name in unfinished:
            rows[name] = skipped_row(name)
    return rows


def _until(completed, deadline):
    """The futures of ``completed`` as they finish, until ``deadline`` (``time.perf_counter``) passes."""
    if deadline is None:
        yield from completed
        return
    while not completed.is_empty():
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        batch = completed.next_batch(block=False)
        if batch:
            yield from batch
        else:
            time.sleep(min(0.2, left))


def refit(client, template, texts, y):
    """``clone(template).fit(texts, y)``: here without a ``client``, else on a worker (the fitted estimator
    comes back without its weights' backbone)."""
    if client is None:
        from sklearn.base import clone

        return clone(template).fit(list(texts), y)
    return client.submit(_refit_task, template, list(texts), y, pure=False).result()
