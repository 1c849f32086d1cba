import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skllm import FewShotClassifier, FewShotGenerator, ZeroShotClassifier
from skllm.exceptions import TruncationWarning

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_chat_llama(tiny_llama, tmp_path_factory):
    """The tiny Llama with a chat template, like an instruct model."""
    folder = tmp_path_factory.mktemp("tiny-chat-llama")
    shutil.copytree(tiny_llama, folder, dirs_exist_ok=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config))
    return str(folder)


@pytest.fixture(params=["plain", "chat"])
def lm(request, tiny_llama, tiny_chat_llama):
    return tiny_llama if request.param == "plain" else tiny_chat_llama


def naive_scores(clf, texts):
    """One full forward pass per (text, class): the reference for the cached scoring."""
    model, rows = clf.model_, []
    for ids in clf._prompts(texts):
        row = []
        for label in clf.label_ids_:
            full = torch.tensor([ids + label])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=full).logits[0].float(), dim=-1)
            score = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(label))
            row.append(score / len(label) if clf.length_normalize else score)
        rows.append(row)
    return np.array(rows)


@pytest.mark.parametrize("length_normalize", [False, True])
def test_cached_label_scoring_equals_one_pass_per_label(lm, length_normalize):
    words = {"pos": "great", "neg": "awful film", "mid": "ok thanks see you later"}
    clf = ZeroShotClassifier(lm, classes=["pos", "neg", "mid"], label_words=words, length_normalize=length_normalize)
    clf.set_params(batch_size=2).fit()
    assert max(len(ids) for ids in clf.label_ids_) > 1  # multi-token wordings are scored in full
    texts = ["the film was great", "hello", "a long and boring story that was not fun at all"]
    np.testing.assert_allclose(clf.decision_function(texts), naive_scores(clf, texts), atol=1e-4)


def test_predictions_are_always_classes_and_probabilities_sum_to_one(lm):
    clf = ZeroShotClassifier(lm).fit(["a", "b", "c"], ["spam", "ham", "spam"])
    X = ["win a free prize now", "see you later", ""]
    assert set(clf.predict(X)) <= {"ham", "spam"}
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.classes_[proba.argmax(1)].tolist() == clf.predict(X).tolist()
    assert clf.uses_chat_template_ == ("chat" in lm)


def test_templates_change_the_prompt_and_are_validated(tiny_llama):
    a = ZeroShotClassifier(tiny_llama, classes=["x", "y"]).fit()
    b = ZeroShotClassifier(tiny_llama, classes=["x", "y"], template="Is it {labels}? {text} ->").fit()
    assert a._prompts(["hello"]) != b._prompts(["hello"])
    for template, message in [
        ("no text field", r"missing \['text'\]"),
        ("{text} {oops}", r"unknown fields \['oops'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            ZeroShotClassifier(tiny_llama, classes=["x", "y"], template=template).fit()


@pytest.mark.parametrize(
    "params, fit_args, message",
    [
        ({}, (None, None), "needs the classes"),
        ({"classes": ["x"]}, (None, None), "at least 2 classes"),
        ({"classes": ["x", "y"], "label_words": {"z": "zed"}}, (None, None), "not classes"),
        ({"classes": ["x", "y"], "label_words": {"x": "same", "y": "same"}}, (None, None), "same wording"),
        ({}, (["a", "b"], ["x", None]), r"missing label\(s\)"),
        ({"batch_size": 0}, (["a", "b"], ["x", "y"]), "batch_size must be an integer >= 1"),
    ],
)
def test_zero_shot_bad_input(tiny_llama, params, fit_args, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier(tiny_llama, **params).fit(*fit_args)


def test_unfitted_and_bad_texts(tiny_llama):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ZeroShotClassifier(tiny_llama).predict(["a"])
    clf = ZeroShotClassifier(tiny_llama, classes=["x", "y"]).fit()
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        clf.predict(["a", None])


@pytest.fixture
def pool(texts):
    return texts


def test_few_shot_balanced_and_random_selection_are_reproducible(tiny_llama, pool):
    X, y = pool
    balanced = FewShotClassifier(tiny_llama, n_examples=4, random_state=0).fit(X, y)
    labels = [y[i] for i in balanced.fixed_examples_]
    assert sorted(labels) == ["neg", "neg", "pos", "pos"]
    again = FewShotClassifier(tiny_llama, n_examples=4, random_state=0).fit(X, y)
    assert again.fixed_examples_ == balanced.fixed_examples_
    random = FewShotClassifier(tiny_llama, n_examples=4, example_selection="random", random_state=1).fit(X, y)
    assert len(set(random.fixed_examples_)) == 4
    prompt = balanced.tokenizer_.decode(balanced._prompts(["hello"])[0])
    assert all(X[i] in prompt for i in balanced.fixed_examples_) and "Category: pos" in prompt


def test_few_shot_nearest_picks_the_most_similar_examples(tiny_llama, tiny_bert, pool, cache_dir):
    X, y = pool
    clf = FewShotClassifier(
        tiny_llama, n_examples=2, example_selection="nearest", embedder_model=tiny_bert, cache_dir=cache_dir
    ).fit(X, y)
    query = X[5]  # a pool text: it is its own nearest neighbour, rendered last
    chosen = clf._selected([query])[0]
    assert X[chosen[-1]] == query
    both = FewShotClassifier(
        tiny_llama,
        n_examples=2,
        example_selection="nearest",
        balance_nearest=True,
        embedder_model=tiny_bert,
        cache_dir=cache_dir,
    ).fit(X, y)
    assert sorted(y[i] for i in both._selected([query])[0]) == ["neg", "pos"]
    assert set(clf.predict(X[:4])) <= {"neg", "pos"}


def test_long_prompts_drop_demonstrations_not_the_text(tiny_llama, pool):
    X, y = pool
    text = "hello see you later"
    full = FewShotClassifier(tiny_llama, n_examples=8, random_state=0).fit(X, y)
    n_full = len(full._prompts([text])[0])
    clf = clone(full).set_params(max_length=n_full - 10).fit(X, y)
    with pytest.warns(TruncationWarning, match="1 of 1 prompts .* demonstrations were left out"):
        (ids,) = clf._prompts([text])
    assert len(ids) <= clf.prompt_budget_
    decoded = clf.tokenizer_.decode(ids)
    assert decoded.startswith("Classify the text") and decoded.rstrip().endswith(f"Text: {text}\nCategory:")
    # Without any demonstration the text still does not fit: its start is kept.
    zero = ZeroShotClassifier(tiny_llama, classes=["neg", "pos"]).fit()
    n_base = len(zero._prompts([""])[0])
    zero.set_params(max_length=n_base + 12).fit()
    with pytest.warns(TruncationWarning, match="even without demonstrations"):
        (ids,) = zero._prompts([text * 5])
    decoded = zero.tokenizer_.decode(ids)
    assert decoded.startswith("Classify the text") and "Text: hello" in decoded
    with pytest.raises(ValueError, match="leaves no room for the text"):
        zero.set_params(max_length=n_base - 5).fit().predict(["hello"])


def test_numpy_labels_and_mixed_classes(tiny_llama, pool):
    X, y = pool
    clf = FewShotClassifier(tiny_llama, n_examples=2, random_state=0).fit(X, np.array(y))
    assert set(clf.predict(X[:3])) <= {"neg", "pos"}
    with pytest.raises(ValueError, match="cannot be ordered"):
        ZeroShotClassifier(tiny_llama, classes=["spam", 0]).fit()


def test_pickle_holds_no_weights(tiny_llama, pool):
    X, y = pool
    clf = FewShotClassifier(tiny_llama, n_examples=2, random_state=0).fit(X, y)
    blob = pickle.dumps(clf)
    assert len(blob) < 20_000
    restored = pickle.loads(blob)
    np.testing.assert_allclose(restored.predict_proba(X[:3]), clf.predict_proba(X[:3]), atol=1e-6)


def test_generator_is_deterministic_and_bounded(lm):
    X = ["great film", "awful film", "loved it"]
    y = ["film great", "film awful", "it loved"]
    gen = FewShotGenerator(lm, n_examples=2, max_new_tokens=5).fit(X, y)
    out = gen.predict(["hated it", "best movie"])
    assert out.shape == (2,) and all(isinstance(s, str) for s in out)
    # Greedy decoding: a shorter budget gives a prefix of the longer answer.
    short = clone(gen).set_params(max_new_tokens=2).fit(X, y).predict(["hated it", "best movie"])
    # (A random tiny model may stop inside a multi-byte character, decoded as U+FFFD.)
    assert all(long.startswith(s.rstrip("\ufffd")) for s, long in zip(short, out))
    assert out.tolist() == gen.predict(["hated it", "best movie"]).tolist()
    assert gen.fixed_examples_ == [0, 1]
    with pytest.raises(ValueError, match="X has 3 texts but y has 2"):
        FewShotGenerator(lm).fit(X, y[:2])
