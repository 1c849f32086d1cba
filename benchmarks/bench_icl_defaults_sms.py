"""Zero-shot on SMS spam: the current defaults against the defaults of skllm 0.1 (and each change alone).

python benchmarks/bench_icl_defaults_sms.py
"""

import time
import warnings

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from skllm import ZeroShotClassifier
from skllm._prompt_classifier import LEGACY_TEMPLATE
from skllm.datasets import load_sms_spam

warnings.simplefilter("ignore")
X, y = load_sms_spam(drop_duplicates=True, return_X_y=True)
X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=200, stratify=y, random_state=0)
X_test, y_test = list(X_test), np.asarray(y_test)
fitX, fity = list(X_rest[:200]), np.asarray(y_rest[:200])
SETTINGS = [
    ("new defaults (batch)", {}),
    (
        "0.1 defaults (legacy template, no norm, no calibration)",
        {"template": LEGACY_TEMPLATE, "length_normalize": False, "calibration": None},
    ),
    ("legacy template + batch calibration", {"template": LEGACY_TEMPLATE, "length_normalize": False}),
    ("new template, no calibration", {"calibration": None}),
]
for name, kw in SETTINGS:
    t = time.time()
    clf = ZeroShotClassifier(**kw).fit(fitX, fity)
    p = clf.predict(X_test)
    f1 = f1_score(y_test, p, average="macro")
    print(f"{name}: acc {np.mean(p == y_test):.3f} macro-F1 {f1:.3f} ({time.time() - t:.0f} s)", flush=True)
