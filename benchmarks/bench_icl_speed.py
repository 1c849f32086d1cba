"""Prompting speed: zero- and few-shot scoring against the scoring they replaced and a plain forward pass.

On the balanced Rotten Tomatoes test texts of bench_icl.py (the first --n), the packaged
SmolLM2-135M-Instruct, the datasets' wordings, calibration off (the prior is one constant
row subtracted from every score, the same for both paths):

- zero-shot: prompts/s of ``decision_function`` (prompt building included), of the scoring
  it replaced (``old_score_prompts`` below, the library's code before, kept verbatim) on the
  same prompts, and of the forward-pass limit: one plain batched forward pass of the model
  over exactly the prompt tokens (sorted by length, ``batch_size`` per pass, left-padded,
  no label scoring), with all logits (what ``model(**batch)`` computes) and with the last
  position's only;
- few-shot with the 4 nearest demonstrations (MiniLM), from the 2,000-snippet pool and from
  a small pool (--small-pool texts, as many of each class), where texts share demonstrations;
- for every row, the mean prompt length, the tokens per prompt the scoring now computes
  (each shared run of leading tokens once), the largest difference of decision_function
  from the old scoring and whether every predicted label is the same.

    python benchmarks/bench_icl_speed.py [--n 100] [--small-pool 40] [--rows zero nearest small]
"""

import argparse
import os
import time
import warnings

import numpy as np
import torch
from bench_icl import WORDS, balanced
from bench_icl_choose_defaults import cpu_model

from skllm import FewShotClassifier, ZeroShotClassifier
from skllm._device import autocast
from skllm._lm import cache_kwarg, output_cache
from skllm._prefix_tree import prefix_tree
from skllm._tokens import pad_batch, pad_token_id
from skllm.datasets import load_rotten_tomatoes

# -- the scoring before: one shared prefix for all prompts, a deep copy of its cache per batch,
#    the logits of every position ------------------------------------------------------------
MIN_SHARED_PREFIX = 16


def _shared_prefix(prompts):
    if len(prompts) < 2:
        return 0
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
        if n < MIN_SHARED_PREFIX:
            return 0
    return n


def old_score_prompts(self, prompts):
    """The scoring of PromptClassifier._score_prompts before prefix trees (verbatim, without the API branch)."""
    import copy

    model, device = self.model_, torch.device(self.device_)
    label_ids, label_mask = self._label_tensors(device)  # the same padded labels as the current scoring
    n_labels, width = label_ids.shape
    pad = pad_token_id(self.tokenizer_)
    scores = np.empty((len(prompts), n_labels), dtype=np.float64)
    n_shared = _shared_prefix(prompts)
    kwarg = cache_kwarg(model)
    with torch.inference_mode(), autocast(device, self.dtype_):
        shared_cache = None
        if n_shared:
            shared = torch.tensor([prompts[0][:n_shared]], device=device)
            shared_cache = output_cache(model(input_ids=shared, use_cache=True))
            prompts = [p[n_shared:] for p in prompts]
        order = np.argsort([-len(p) for p in prompts], kind="stable")
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            # Left padding: every prompt ends at the same position, where the
            # label continuations start.
            ids, mask = pad_batch(prompts, batch, pad, device, side="left")
            positions = (mask.cumsum(1) - 1).clamp(min=0) + n_shared
            extra = {}
            if shared_cache is not None:
                cache = copy.deepcopy(shared_cache)
                cache.batch_repeat_interleave(len(batch))
                mask = torch.cat([torch.ones((len(batch), n_shared), dtype=mask.dtype, device=device), mask], 1)
                extra[kwarg] = cache
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=width > 1, **extra)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V)
            logp = first[:, label_ids[:, 0]].unsqueeze(-1)  # (B, L, 1)
            if width > 1:
                # One pass over all continuations, reusing the prompt's cache.
                cache = output_cache(out)
                cache.batch_repeat_interleave(n_labels)
                cont = label_ids[:, :-1].repeat(len(batch), 1)  # (B*L, width-1)
                cont_mask = label_mask[:, :-1].repeat(len(batch), 1)
                full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), cont_mask], dim=1)
                start_pos = positions[:, -1:].repeat_interleave(n_labels, 0) + 1
                cont_pos = start_pos + torch.arange(width - 1, device=device)
                logits = model(input_ids=cont, attention_mask=full_mask, position_ids=cont_pos, **{kwarg: cache}).logits
                rest = torch.log_softmax(logits.float(), dim=-1)
                targets = label_ids[:, 1:].repeat(len(batch), 1)
                rest = rest.gather(-1, targets.unsqueeze(-1)).squeeze(-1).view(len(batch), n_labels, width - 1)
                logp = torch.cat([logp, rest], dim=-1)
            logp = (logp * label_mask.unsqueeze(0)).sum(-1)
            if self.length_normalize:
                logp = logp / label_mask.sum(-1).unsqueeze(0)
            scores[batch] = logp.cpu().numpy()
    return scores


def plain_forward(clf, prompts, last_only):
    """The limit: the model over exactly the prompt tokens, batched as the classifier batches, no label scoring."""
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    pad = pad_token_id(clf.tokenizer_)
    extra = {"logits_to_keep": 1} if last_only else {}
    with torch.inference_mode():
        for start in range(0, len(order), clf.batch_size):
            ids, mask = pad_batch(prompts, order[start : start + clf.batch_size], pad, "cpu", side="left")
            clf.model_(input_ids=ids, attention_mask=mask, **extra)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def compare(name, clf, texts, rows, profile):
    """Time decision_function and the old scoring of the same prompts; record the row."""
    clf._class_scores(texts[:2])  # warm-up
    new, t_new = timed(clf._class_scores, texts)
    prompts, t_prompts = timed(clf._prompts, texts)
    old, t_old = timed(old_score_prompts, clf, prompts)
    t_old += t_prompts
    same = bool((new.argmax(1) == old.argmax(1)).all())
    diff = float(np.abs(new - old).max())
    n = len(texts)
    tokens = np.mean([len(p) for p in prompts])
    nodes = prefix_tree(prompts)  # what the scoring now computes: each shared run once, then each prompt's rest
    computed = sum(node.end - node.start + sum(len(prompts[i]) - node.end for i in node.leaves) for node in nodes) / n
    rows[name] = n / t_new
    print(
        f"| {name} | {tokens:.0f} | {computed:.0f} | {n / t_old:.2f} | **{n / t_new:.2f}** | {t_old / t_new:.2f}x | "
        f"{diff:.1e} | {'yes' if same else 'NO'} |",
        flush=True,
    )
    profile[name] = f"building the prompts (demonstrations chosen, tokenised) took {t_prompts / t_new:.1%} of it"
    return prompts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--small-pool", type=int, default=40)
    parser.add_argument("--rows", nargs="*", default=["zero", "nearest", "small"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"torch threads {torch.get_num_threads()}; load average at start {os.getloadavg()}")
    X, y = load_rotten_tomatoes(return_X_y=True)
    X_500 = balanced(X, y, 500, seed=0)[0]
    X_test, rest = X_500[: args.n], ~X.isin(X_500)  # the pool as in bench_icl.py
    X_pool, y_pool = X[rest].tolist()[:2000], y[rest].tolist()[:2000]
    small_X, small_y = balanced(X[rest].iloc[2000:], y[rest].iloc[2000:], args.small_pool, seed=2)
    common = dict(label_words=WORDS, calibration=None)
    rows, profile = {}, {}
    print(f"\n{args.n} test texts\n")
    print(
        "| scoring | tokens | computed | before, prompts/s | now, prompts/s | speed-up | max abs diff | same labels |"
    )
    print("|---|---|---|---|---|---|---|---|")
    if "zero" in args.rows:
        zero = ZeroShotClassifier(**common).fit(X_pool, y_pool)
        prompts = compare("zero-shot", zero, X_test, rows, profile)
        _, t_all = timed(plain_forward, zero, prompts, False)
        _, t_last = timed(plain_forward, zero, prompts, True)
        rows["limit, all logits"], rows["limit, last logits"] = args.n / t_all, args.n / t_last
        print(f"| forward-pass limit, all logits | | | | {args.n / t_all:.2f} | | | |", flush=True)
        print(f"| forward-pass limit, last position's logits | | | | {args.n / t_last:.2f} | | | |", flush=True)
    for row, pool in [("nearest", (X_pool, y_pool)), ("small", (small_X, small_y))]:
        if row not in args.rows:
            continue
        few = FewShotClassifier(n_examples=4, example_selection="nearest", random_state=0, **common).fit(*pool)
        compare(f"few-shot, 4 nearest of {len(pool[0])}", few, X_test, rows, profile)
    print(f"\nload average at the end {os.getloadavg()}")
    for name, line in profile.items():
        print(f"{name}: {line}")
    zero_rate = rows.get("zero-shot")
    if zero_rate:
        for name in ("limit, all logits", "limit, last logits"):
            print(f"zero-shot / {name}: {zero_rate / rows[name]:.2f}")
        for name, rate in rows.items():
            if name.startswith("few-shot"):
                print(f"{name} / zero-shot: {rate / zero_rate:.2f}")


if __name__ == "__main__":
    main()
