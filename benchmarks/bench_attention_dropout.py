"""Full fine-tuning with MiniLM's attention dropout through eager attention and skllm's masks, or through SDPA.

Fits of ``FineTuneClassifier(method="full")`` (batch size 16, 3 epochs, model loading
inside the clock, the probe's features already in the run's embedding cache) on Rotten
Tomatoes (1,000 / 1,000 snippets, ``max_length=64``) or the 2016 debates (785 / 337
statements, ``max_length=128``), as ``bench_probe_sample.py`` takes them, two ways per
seed in one process, the order alternating from one seed to the next:

- ``eager``: what skllm ships (``skllm._attention.training_attention``): a model that
  trains with attention dropout runs transformers' eager attention, whose dropout
  (``torch.nn.functional.dropout``) draws skllm's cheaper masks (``skllm._dropout``);
- ``sdpa``: as before, PyTorch's SDPA, which on the CPU computes the attention as eager
  does when it has dropout, but draws its mask with torch's ``bernoulli_`` (under
  bfloat16, eager attention for batches of at most 256 positions, with torch's masks).

The two ways draw other masks, so they give other models: the script prints test
accuracy, fit seconds and the mean of each, with the CPU model.

    python benchmarks/bench_attention_dropout.py --data rt --seeds 0 1 2
    python benchmarks/bench_attention_dropout.py --data debates --seeds 0 1 2
"""

import argparse
import contextlib
import warnings

import numpy as np

WAYS = ("eager", "sdpa")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["rt", "debates"], default="rt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    import peft  # noqa: F401  (imported before any clock)
    from bench_probe_sample import alternating_fits

    from skllm import _attention, _dropout

    warnings.simplefilter("ignore")
    shipped, routed = _attention._implementation, _dropout.thread_functional_dropout

    def before(model, width, bf16):  # the choice as it was: by width under bfloat16 only
        return "eager" if bf16 and width is not None and width <= _attention.EAGER_MAX_WIDTH else "sdpa"

    @contextlib.contextmanager
    def patched(way):
        _attention._implementation = shipped if way == "eager" else before
        # "sdpa": eager attention's functional dropout (bfloat16, short batches) with torch's masks, as before
        _dropout.thread_functional_dropout = routed if way == "eager" else contextlib.nullcontext
        try:
            yield
        finally:
            _attention._implementation, _dropout.thread_functional_dropout = shipped, routed

    times, scores, _ = alternating_fits(args.data, WAYS, patched, method="full", dtype=args.dtype, seeds=args.seeds)
    ratios = [s / e for s, e in zip(times["sdpa"], times["eager"])]
    print(f"means: eager {np.mean(times['eager']):.1f} s, {np.mean(scores['eager']):.4f}; sdpa "
          f"{np.mean(times['sdpa']):.1f} s, {np.mean(scores['sdpa']):.4f}; sdpa / eager per seed: "
          f"{', '.join(f'{r:.2f}' for r in ratios)}")  # fmt: skip


if __name__ == "__main__":
    main()
