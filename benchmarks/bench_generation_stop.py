"""FewShotGenerator with ``stop_at_newline=True`` (its default): generation stopped at the line break, or not.

Rotten Tomatoes snippets (the first ``--n`` test texts of bench_icl.py's balanced sample) answered with
the dataset's label ("fresh" or "rotten") after 4 fixed demonstrations, by the packaged SmolLM2-135M-Instruct,
greedily, ``max_new_tokens=64`` (the default), ``batch_size=8``:

- "now": each answer's generation stops at the token that ends its first line (``line_end_stop``);
- "before": the generation before it, every answer generated to ``max_new_tokens`` (or the end of turn)
  and then cut at its first line break, as the library did.

Both with plain prompts (``use_chat_template=False``: the model goes on after the answer's line) and with
the chat template (the answer usually ends with the end of turn, where both stop). The two run alternately,
``--rounds`` times; the median seconds are reported, the tokens each batch generated (its widest answer, per
prompt) and whether every answer is the same.

    python benchmarks/bench_generation_stop.py [--n 24] [--rounds 2]
"""

import argparse
import os
import time
import warnings

import numpy as np
from bench_finetune_defaults import cpu
from bench_icl import balanced

from skllm import FewShotGenerator, _generator
from skllm.datasets import load_rotten_tomatoes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(cpu(), f"| load average {os.getloadavg()[0]:.2f}", flush=True)
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_test, _ = balanced(X[2000:], y[2000:], args.n, 0)
    X_demo, y_demo = balanced(X[:2000], y[:2000], 4, 0)
    stop = _generator.line_end_stop
    print("| prompts | way | median s | prompts/s | tokens generated per prompt | same answers |")
    print("|---|---|---|---|---|---|")
    for chat in (False, True):
        gen = FewShotGenerator(n_examples=4, use_chat_template=chat, batch_size=8, random_state=None)
        gen.fit(X_demo, y_demo)
        gen.predict(X_test[:2])  # the model loaded and warm
        times, answers, widths = {"now": [], "before": []}, {}, {"now": [], "before": []}
        generate = gen.model_.generate
        for _ in range(args.rounds):
            for way in ("before", "now"):
                _generator.line_end_stop = stop if way == "now" else (lambda tokenizer, stop_at_newline: {})

                def counted(way=way, generate=generate, widths=widths, **kwargs):
                    out = generate(**kwargs)
                    widths[way].append((out.shape[1] - kwargs["input_ids"].shape[1]) * len(out))
                    return out

                gen.model_.generate = counted
                start = time.perf_counter()
                answers[way] = gen.predict(X_test).tolist()
                times[way].append(time.perf_counter() - start)
        _generator.line_end_stop = stop
        del gen.model_.generate
        same = answers["now"] == answers["before"]
        for way in ("before", "now"):
            seconds, tokens = float(np.median(times[way])), sum(widths[way]) / (args.rounds * args.n)
            print(
                f"| {'chat' if chat else 'plain'} | {way} | {seconds:.1f} | {args.n / seconds:.2f} | {tokens:.1f} | "
                f"{same} |"
            )
        print(f"answers (first 6): {answers['now'][:6]}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
