"""Write the models of tests/legacy/previous/: fitted estimators pickled before the training engine.

They hold the parameters and fitted attributes as they were before one training
loop served every estimator and before the names were made consistent
(``FineTuneGenerator`` without early stopping, ``PreferenceTuner`` without a
schedule, ``n_features_`` for the pooled width, ``FewShotClassifier(embedder_model=...)``).
Run from the repository root with that version of the package importable:

    git worktree add /tmp/skllm-previous 4f779a6 && \\
        PYTHONPATH=/tmp/skllm-previous python tests/legacy/make_previous_models.py

The tiny backbones are those of make_legacy_models.py (tests/legacy/tiny-*).
"""

import json
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

import skllm

HERE = Path("tests/legacy")
OUT = HERE / "previous"
X = [f"{t} {i}" for i in range(3) for t in ["great film", "loved it", "good fun", "awful film", "hated it", "dull"]]
y = ["pos" if any(w in t for w in ("great", "loved", "good")) else "neg" for t in X]
QUERIES = ["great fun", "awful and dull", "loved the film", "boring"]
PAIRS = pd.DataFrame({"prompt": ["the film was"] * 4, "chosen": X[:3] + X[6:7], "rejected": X[3:6] + X[9:10]})


def main():
    bert, llama = str(HERE / "tiny-bert"), str(HERE / "tiny-llama")
    common = {"epochs": 2, "batch_size": 4, "random_state": 0, "cache_dir": None}
    generator = skllm.FineTuneGenerator(llama, method=skllm.LoRA(r=2), epochs=1, max_new_tokens=2, random_state=0)
    models = {
        "finetune_lora": skllm.FineTuneClassifier(bert, method=skllm.LoRA(r=2), **common).fit(X, y),
        "finetune_prefix_bert": skllm.FineTuneClassifier(bert, method="prefix", **common).fit(X, y),
        "reward": skllm.RewardModel(bert, method="head", **common).fit(PAIRS),
        "sft": generator.fit(X, y),
        "dpo": skllm.PreferenceTuner(generator=generator, algorithm="dpo", batch_size=2, random_state=0).fit(PAIRS),
        "few_shot_nearest": skllm.FewShotClassifier(
            llama, n_examples=2, example_selection="nearest", embedder_model=bert, cache_dir=None
        ).fit(X, y),
    }
    OUT.mkdir(exist_ok=True)
    expected = {}
    for name, model in models.items():
        joblib.dump(model, OUT / f"{name}.joblib")
        if hasattr(model, "predict_proba"):
            out = model.predict_proba(QUERIES)
        elif name == "reward":
            out = model.predict([("the film was", q) for q in QUERIES])
        else:
            out = model.predict(QUERIES)
        expected[name] = np.asarray(out).tolist()
    (OUT / "expected.json").write_text(json.dumps({"queries": QUERIES, **expected}))
    print("wrote", sorted(models), "from", skllm.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()
