"""Grid search and comparison on a Dask LocalCluster: 1 worker x 2 threads against 2 workers x 1 thread.

Rotten Tomatoes snippets (stratified sample), the packaged MiniLM. Two workloads:

- grid: GridSearchCV of FineTuneClassifier, LoRA r in (4, 8) x learning_rate in
  (2e-4, 1e-3), 5 folds (20 fits), via ``joblib.parallel_backend("dask")``;
- compare: ``compare_methods(client=...)`` of logreg, head, lora and prompt,
  5 folds (20 tasks).

Each runs on a LocalCluster of 1 worker x 2 threads and of 2 workers x 1 thread
(and, with --baseline, first in 1 process here: n_jobs=1, torch's default
threads). Every run starts with a fresh cluster and an empty embedding cache, so
loading the model on each worker is part of the wall time. Reported: wall time,
speed-up over 1 worker x 2 threads, CPU utilisation (CPU seconds of the processes
doing the work / (wall x cores)), the whole machine's busy share over the run
(others' work included), backbone loads per worker, and whether the scores equal
the local run's.

    python benchmarks/bench_dask.py                    # 300 texts, 1 epoch, max_length 48
    python benchmarks/bench_dask.py --texts 100 --max-length 32 --only grid --baseline
"""

import argparse
import os
import platform
import resource
import tempfile
import time
import warnings

import numpy as np

CORES = os.cpu_count()


def data(n):
    from sklearn.model_selection import train_test_split

    from skllm.datasets import load_rotten_tomatoes

    X, y = load_rotten_tomatoes(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, train_size=n, stratify=y, random_state=0)
    return X.tolist(), np.asarray(y)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def own_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def grid_search(X, y, epochs, max_length):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skllm import FineTuneClassifier, LoRA

    clf = FineTuneClassifier(
        method=LoRA(), epochs=epochs, max_length=max_length, batch_size=16, random_state=0, cache_dir=None
    )
    grid = {"method__r": [4, 8], "learning_rate": [2e-4, 1e-3]}
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return GridSearchCV(clf, grid, cv=folds, n_jobs=-1, refit=False)


def run(workload, X, y, *, epochs, max_length, workers, threads):
    """One timed run; ``workers=0`` is the local baseline (one process)."""
    import joblib

    from skllm import compare_methods
    from skllm._dask import backbone_loads

    client = cluster = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None, memory_limit=None
        )
        client = Client(cluster)
        # Workers import torch and transformers before the clock starts, as a running cluster would have.
        client.run(lambda: __import__("transformers").AutoModel and None)
        cpu_before = sum(client.run(own_cpu_seconds).values())
    else:
        cpu_before = own_cpu_seconds()
    busy0, total0 = machine_busy()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache_dir:
        if workload == "grid":
            search = grid_search(X, y, epochs, max_length)
            if client is not None:
                with joblib.parallel_backend("dask"):
                    search.fit(X, y)
            else:
                search.n_jobs = 1
                search.fit(X, y)
            scores = np.round(search.cv_results_["mean_test_score"], 6).tolist()
        else:
            table = compare_methods(
                X,
                y,
                methods=["logreg", "head", "lora", "prompt"],
                cv=5,
                epochs=epochs,
                max_length=max_length,
                cache_dir=cache_dir,
                client=client,
                verbose=0,
            )
            scores = np.round(table["accuracy_mean"], 6).tolist()
    wall = time.perf_counter() - start
    busy1, total1 = machine_busy()
    if client is not None:
        cpu = sum(client.run(own_cpu_seconds).values()) - cpu_before
        loads = [sum(counts.values()) for counts in client.run(backbone_loads).values()]
        client.close()
        cluster.close()
    else:
        cpu = own_cpu_seconds() - cpu_before
        loads = None
    return {
        "wall": wall,
        "cpu_share": cpu / (wall * CORES),
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        "loads": loads,
        "scores": scores,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--only", nargs="+", choices=["grid", "compare"], default=["grid", "compare"])
    parser.add_argument("--baseline", action="store_true", help="also run in one process, without Dask")
    args = parser.parse_args()
    import torch

    warnings.simplefilter("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"CPU: {cpu_model()}, {CORES} cores; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    print(f"{args.texts} Rotten Tomatoes snippets, {args.epochs} epoch(s), max_length {args.max_length}")
    print(f"load average before: {os.getloadavg()}\n")
    X, y = data(args.texts)
    for workload in args.only:
        results = {}
        setups = [("1 worker x 2 threads", 1, 2), ("2 workers x 1 thread", 2, 1)]
        if args.baseline:
            setups.insert(0, ("local, 1 process", 0, 0))
        for label, workers, threads in setups:
            r = results[label] = run(
                workload, X, y, epochs=args.epochs, max_length=args.max_length, workers=workers, threads=threads
            )
            base = results["1 worker x 2 threads"] if "1 worker x 2 threads" in results else r
            first = results[setups[0][0]]
            print(
                f"{workload:<8} {label:<22} wall {r['wall']:7.1f} s  speed-up x{base['wall'] / r['wall']:.2f}  "
                f"CPU {100 * r['cpu_share']:3.0f}% of {CORES} cores (machine busy {100 * r['machine_busy']:3.0f}%)  "
                f"loads per worker {r['loads']}  same scores as {setups[0][0]}: {r['scores'] == first['scores']}",
                flush=True,
            )
            print(f"  scores {r['scores']}", flush=True)
        print()


if __name__ == "__main__":
    main()
