"""Write the prefix-tuned model that test_legacy.py loads: pickled before prefix tuning used peft.

Until then skllm fed the prefixes through its own attention function (registered in
transformers' attention registry); this model, trained and pickled by that version,
must predict the same through peft. Run from the repository root with that version of
the package importable (the parent of the commit "Prefix tuning through peft"):

    git worktree add /tmp/skllm-hook <commit>
    PYTHONPATH=/tmp/skllm-hook python tests/legacy/make_prefix_hook_model.py

It uses the tiny BERT of make_legacy_models.py, named by a relative path.
"""

import json
import sys
from pathlib import Path

import joblib

import skllm
from skllm._methods import _prefix

HERE = Path("tests/legacy")
X = [f"{t} {i}" for i in range(3) for t in ["great film", "loved it", "good fun", "awful film", "hated it", "dull"]]
y = ["pos" if any(w in t for w in ("great", "loved", "good")) else "neg" for t in X]
QUERIES = ["great fun", "awful and dull", "loved the film", "boring"]


def main():
    assert hasattr(_prefix, "ATTENTION_NAME"), "run this with the version of skllm that had the attention hook"
    method = skllm.PrefixTuning(n_prefix_tokens=4, projection_size=8)  # the MLP dropped after training
    model = skllm.FineTuneClassifier(
        str(HERE / "tiny-bert"), method=method, epochs=2, batch_size=4, random_state=0, cache_dir=None
    ).fit(X, y)
    joblib.dump(model, HERE / "finetune_prefix_bert_hook.joblib")
    expected = {"queries": QUERIES, "predict_proba": model.predict_proba(QUERIES).tolist()}
    (HERE / "finetune_prefix_bert_hook.json").write_text(json.dumps(expected))
    print("wrote finetune_prefix_bert_hook with skllm", skllm.__version__, "from", skllm.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()
