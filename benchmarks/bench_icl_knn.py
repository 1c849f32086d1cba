"""Does the LM's whole answer distribution do better than its label words? kNN prompting and a probe.

kNN prompting (Xu et al., 2023, "kNN Prompting: Beyond-Context Learning with
Calibration-Free Nearest Neighbor Inference") keeps, for labelled "anchor" texts,
the LM's next-token distribution after the prompt, and labels a text by its nearest
anchors in KL divergence, KL(p_anchor || p_text): no label words are scored, so no
calibration is needed. Measured here against the calibrated label-word scores
(the classifiers' defaults), on the tuning samples of bench_icl_choose_defaults.py
(120 balanced texts, disjoint from the test samples), with the first 256 pool texts
that are not demonstrations as anchors, for the zero-shot prompt and for the
few-shot prompt (4 balanced demonstrations as earlier chat turns). Also: a logistic
regression on the anchors' log-probabilities of their 200 most likely next tokens
(a supervised probe of the answer distribution), and one on the label words' alone.

    python benchmarks/bench_icl_knn.py [--datasets rt sms] [--anchors 256]
"""

import argparse
import time
import warnings

import numpy as np
from bench_icl_choose_defaults import cpu_model, datasets
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

WORDS = {"rt": {"fresh": "positive", "rotten": "negative"}, "sms": {"ham": "normal"}}


def next_token_logprobs(clf, prompts):
    """log p(next token | prompt) over the vocabulary, for each prompt: (n, vocab)."""
    import torch

    from skllm._tokens import pad_batch, pad_token_id

    model, pad = clf.model_, pad_token_id(clf.tokenizer_)
    out = np.empty((len(prompts), model.config.vocab_size), dtype=np.float32)
    order = np.argsort([-len(p) for p in prompts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), 8):
            batch = order[start : start + 8]
            ids, mask = pad_batch(prompts, batch, pad, "cpu", side="left")
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
            out[batch] = torch.log_softmax(logits[:, -1].float(), -1).numpy()
    return out


def knn_votes(D_text, D_anchor, y_anchor, k):
    """The majority label of the k anchors nearest in KL(p_anchor || p_text)."""
    P = np.exp(D_anchor)
    kl = (P * D_anchor).sum(1)[None, :] - D_text @ P.T
    nearest = np.argsort(kl, axis=1)[:, :k]
    votes = y_anchor[nearest]
    return np.array([max(sorted(set(v)), key=list(v).count) for v in votes])


def main():
    from skllm import FewShotClassifier, ZeroShotClassifier

    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="*", default=["rt", "sms"])
    parser.add_argument("--anchors", type=int, default=256)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torch

    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    data = datasets()
    print(
        "| dataset | prompt | calibrated label words | kNN k=1 | k=5 | k=25 | k=51 | LR, label words | "
        "LR, top-200 tokens (C=0.01 / 0.1 / 1) | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ds in args.datasets:
        (X_tune, y_tune), (X_pool, y_pool) = data[ds]
        y_tune = np.asarray(y_tune)
        for name in ["zero-shot", "few-shot, 4 balanced"]:
            start = time.perf_counter()
            if name == "zero-shot":
                clf = ZeroShotClassifier(label_words=WORDS[ds]).fit(X_pool, y_pool)
                shown = set()
            else:
                clf = FewShotClassifier(label_words=WORDS[ds], n_examples=4, random_state=0).fit(X_pool, y_pool)
                shown = set(clf.example_selection_.indices_)
            keep = [i for i in range(len(X_pool)) if i not in shown][: args.anchors]
            X_anchor, y_anchor = [X_pool[i] for i in keep], np.asarray([y_pool[i] for i in keep])
            D_text = next_token_logprobs(clf, clf._prompts(list(X_tune)))
            D_anchor = next_token_logprobs(clf, clf._prompts(X_anchor))
            calibrated = clf.classes_[clf._class_scores(list(X_tune)).argmax(1)]
            row = [balanced_accuracy_score(y_tune, calibrated)]
            row += [balanced_accuracy_score(y_tune, knn_votes(D_text, D_anchor, y_anchor, k)) for k in (1, 5, 25, 51)]
            words = [ids[0] for ids in clf.label_ids_]
            lr = LogisticRegression(class_weight="balanced").fit(D_anchor[:, words], y_anchor)
            row.append(balanced_accuracy_score(y_tune, lr.predict(D_text[:, words])))
            top = np.argsort(-np.exp(D_anchor).mean(0))[:200]
            probes = []
            for C in (0.01, 0.1, 1.0):
                lr = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(D_anchor[:, top], y_anchor)
                probes.append(balanced_accuracy_score(y_tune, lr.predict(D_text[:, top])))
            cells = " | ".join(f"{v:.3f}" for v in row)
            print(
                f"| {ds} | {name} | {cells} | {' / '.join(f'{v:.3f}' for v in probes)} | "
                f"{time.perf_counter() - start:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
