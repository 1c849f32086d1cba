"""Write the prefix-tuned RoBERTa-like model that test_legacy.py loads: pickled before the text kept its positions.

Until then prefix tuning gave every model's text the position ids 0, 1, ...; a
RoBERTa-like model numbers them from ``padding_idx + 1``. This model, trained and
pickled by that version, must predict as it was trained (``FineTuningMethod.BUILD``).
Run from the repository root with that version of the package importable (7e12c83):

    git worktree add /tmp/skllm-before 7e12c83
    PYTHONPATH=/tmp/skllm-before python tests/legacy/make_prefix_roberta_model.py

It writes a tiny RoBERTa (tests/legacy/tiny-roberta, the tiny BERT's tokenizer),
named by a relative path.
"""

import json
import shutil
import sys
from pathlib import Path

import joblib
import torch
from transformers import RobertaConfig, RobertaModel

import skllm

HERE = Path("tests/legacy")
X = [f"{t} {i}" for i in range(3) for t in ["great film", "loved it", "good fun", "awful film", "hated it", "dull"]]
y = ["pos" if any(w in t for w in ("great", "loved", "good")) else "neg" for t in X]
QUERIES = ["great fun", "awful and dull", "loved the film", "boring"]


def main():
    folder = HERE / "tiny-roberta"
    if not folder.is_dir():
        folder.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(HERE / "tiny-bert" / name, folder)
        config = RobertaConfig(
            vocab_size=98, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
            max_position_embeddings=66, pad_token_id=0,
        )  # fmt: skip
        torch.manual_seed(0)
        RobertaModel(config).save_pretrained(folder)
    method = skllm.PrefixTuning(n_prefix_tokens=4, projection_size=8)
    model = skllm.FineTuneClassifier(
        str(folder), method=method, epochs=2, batch_size=4, random_state=0, cache_dir=None
    ).fit(X, y)
    joblib.dump(model, HERE / "finetune_prefix_roberta.joblib")
    expected = {"queries": QUERIES, "predict_proba": model.predict_proba(QUERIES).tolist()}
    (HERE / "finetune_prefix_roberta.json").write_text(json.dumps(expected))
    print("wrote finetune_prefix_roberta with skllm", skllm.__version__, "from", skllm.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()
