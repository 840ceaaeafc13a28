"""Roman numerals both ways: every standard numeral, non-standard forms, tokens that are not numerals."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.data.roman import MAX_STANDARD, parse_roman, to_roman


def test_every_integer_round_trips_through_its_standard_form():
    spellings = [to_roman(number) for number in range(1, MAX_STANDARD + 1)]
    assert len(set(spellings)) == MAX_STANDARD
    for number, spelling in enumerate(spellings, start=1):
        parsed = parse_roman(spelling)
        assert (parsed.value, parsed.standard, parsed.problem) == (number, True, None), spelling


@pytest.mark.parametrize("number,spelling", [(4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"),
                                             (400, "CD"), (1994, "MCMXCIV"), (3999, "MMMCMXCIX")])
def test_known_spellings(number, spelling):
    assert to_roman(number) == spelling


def test_numpy_integers_are_integers():
    assert to_roman(np.int64(1994)) == "MCMXCIV" and to_roman(np.uint16(4)) == "IV"


@pytest.mark.parametrize("bad", [0, -3, 4000, 2.0, True, "12", np.float64(3.0), np.int64(0)])
def test_to_roman_rejects_what_has_no_standard_form(bad):
    with pytest.raises(ValueError, match="1..3999"):
        to_roman(bad)


@pytest.mark.parametrize("token,value,standard_form", [("IIII", 4, "IV"), ("VIIII", 9, "IX"), ("IIX", 8, "VIII"),
                                                       ("IC", 99, "XCIX"), ("XXXXX", 50, "L"), ("VV", 10, "X")])
def test_non_standard_tokens_are_read_and_reported(token, value, standard_form):
    parsed = parse_roman(token)
    assert parsed.value == value and not parsed.standard
    assert f"written {standard_form}" in parsed.problem


def test_lower_case_reads_like_upper_case():
    assert parse_roman("xiv").value == 14 and parse_roman("xiv").standard


@pytest.mark.parametrize("token,problem", [("", "empty"), ("  ", "empty"), ("XIVB", "'B'"), ("12", "not a Roman")])
def test_invalid_tokens_have_no_value_and_say_why(token, problem):
    parsed = parse_roman(token)
    assert parsed.value is None and not parsed.standard
    assert problem in parsed.problem


def test_beyond_3999_is_non_standard():
    parsed = parse_roman("MMMM")
    assert parsed.value == 4000 and "no standard form" in parsed.problem
