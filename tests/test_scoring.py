"""The scorers of generated texts: exact match and chrF."""

import pytest

from skllm._scoring import SCORERS, chrf, exact_match, normalize_answer


def test_exact_match_strips_or_normalises():
    assert exact_match([" good ", "bad"], ["good", "Bad"]) == 0.5
    assert exact_match(["The Eiffel Tower!", "no"], ["eiffel tower", "yes"], normalize=normalize_answer) == 0.5


def test_chrf_is_one_for_equal_texts_and_low_for_unrelated_ones():
    assert chrf(["the cat sat", ""], ["the cat sat", ""]) == pytest.approx(1.0)
    assert chrf(["zzzz"], ["the cat sat"]) < 0.1
    assert 0 < chrf(["the cat"], ["the cat sat"]) < 1


@pytest.mark.parametrize("scorer", list(SCORERS.values()))
def test_scorers_refuse_texts_and_references_of_different_lengths(scorer):
    with pytest.raises(ValueError, match="X has 3 texts but y has 1"):
        scorer(["a", "b", "c"], ["a"])


def test_chrf_stays_importable_from_the_generator_module():
    from skllm._sft import chrf as sft_chrf

    assert sft_chrf is chrf
