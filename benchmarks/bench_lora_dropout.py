"""LoRA (or another method's) fits with and without dropout: test accuracy and fit seconds, alternating in one process.

Three recipes of LoRA (``--method adapter``: ``old`` and ``new`` of ``BottleneckAdapter``,
which has no dropout of its own, and ``--method prompt``, ``PromptTuning``: ``backbone_dropout=True``,
then its default; ``--method full`` or ``prefix``: ``FullFineTuning()`` or ``PrefixTuning()``,
then the same with ``backbone_dropout=False``), each seed
in turn (``random_state``), 3 epochs, batch size 16, the packaged MiniLM, model loading
inside the first fit's clock (the registry loads it once per process, so the first fit of
a run is the slower):

- ``old``: ``LoRA(dropout=0.1, backbone_dropout=True)``, every dropout on (MiniLM's 0.1 on
  its hidden states and attention, peft's ``lora_dropout=0.1``): LoRA's defaults before
  they turned dropout off;
- ``lora-drop``: ``LoRA(dropout=0.1, backbone_dropout=False)``, the backbone's off, LoRA's on;
- ``new``: ``LoRA()``, LoRA's defaults (no dropout in the backbone or the adapters).

Data as ``bench_probe_sample.py``: Rotten Tomatoes (1,000 training and 1,000 test
snippets, ``max_length=64``) or the 2016 debates (785 / 337 statements, ``max_length=128``).

    python benchmarks/bench_lora_dropout.py debates old,lora-drop,new 0,1,2
    python benchmarks/bench_lora_dropout.py rt old,lora-drop,new 0,1,2
    python benchmarks/bench_lora_dropout.py rt old,new 0,1,2 --method adapter
    python benchmarks/bench_lora_dropout.py rt old,new 0,1,2 --method full
    python benchmarks/bench_lora_dropout.py rt old,new 0,1,2 --method prompt
    python benchmarks/bench_lora_dropout.py rt old,new 0,1,2 --method prefix
    python benchmarks/bench_lora_dropout.py rt new 0,1,2 --dtype bfloat16     # LoRA's default under bfloat16
    python benchmarks/bench_lora_dropout.py rt new 0,1 --dtype bfloat16 --max-length 512   # a larger max_length
"""

import sys
import tempfile
import time
import warnings

from bench_finetune_defaults import cpu  # CPU model, torch capability, threads
from bench_probe_sample import data


def main(dataset, variants, seeds, method="lora", dtype="float32", max_length=None):
    from skllm import BottleneckAdapter, FineTuneClassifier, FullFineTuning, LoRA, PrefixTuning, PromptTuning

    warnings.simplefilter("ignore")
    recipes = {
        "old": LoRA(dropout=0.1, backbone_dropout=True),
        "lora-drop": LoRA(dropout=0.1, backbone_dropout=False),
        "new": LoRA(),
    }
    if method == "adapter":
        recipes = {"old": BottleneckAdapter(backbone_dropout=True), "new": BottleneckAdapter()}
    if method == "prompt":
        recipes = {"old": PromptTuning(backbone_dropout=True), "new": PromptTuning()}
    if method in ("full", "prefix"):  # they keep the backbone's dropout by default
        kind = {"full": FullFineTuning, "prefix": PrefixTuning}[method]
        recipes = {"old": kind(), "new": kind(backbone_dropout=False)}
    print(cpu(), flush=True)
    X, y, X_test, y_test, data_max_length = data(dataset)
    max_length = max_length or data_max_length
    print(f"max_length={max_length}", flush=True)
    print("| data | recipe | seed | test accuracy | fit s |\n|---|---|---|---|---|")
    for seed in seeds:
        for name in variants:
            clf = FineTuneClassifier(
                method=recipes[name], max_length=max_length, epochs=3, batch_size=16, random_state=seed,
                cache_dir=tempfile.mkdtemp(), device="cpu", dtype=dtype,
            )  # fmt: skip
            start = time.perf_counter()
            clf.fit(X, y)
            seconds = time.perf_counter() - start
            print(
                f"| {dataset} | {method} {name} | {seed} | {clf.score(X_test, y_test):.4f} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    options = dict(zip(sys.argv[4::2], sys.argv[5::2]))  # --method M, --dtype D, --max-length N
    method, dtype = options.get("--method", "lora"), options.get("--dtype", "float32")
    max_length = int(options["--max-length"]) if "--max-length" in options else None
    main(sys.argv[1], sys.argv[2].split(","), [int(s) for s in sys.argv[3].split(",")], method, dtype, max_length)
