"""The numeral reader's evaluation: the numbers it draws, and whole numerals read with the shipped map."""

from __future__ import annotations

from slimvision.bench.numerals import evaluation_numbers, numeral_accuracy
from slimvision.data.numerals import NoiseConfig, find_fonts, split_fonts
from slimvision.data.roman import MAX_STANDARD
from slimvision.inference.numerals import NumeralReader


def test_evaluation_numbers_are_distinct_sorted_seeded_and_all_when_asked_for_more():
    numbers = evaluation_numbers(50, seed=3)
    assert numbers == sorted(set(numbers)) and len(numbers) == 50
    assert 1 <= numbers[0] and numbers[-1] <= MAX_STANDARD
    assert evaluation_numbers(50, seed=3) == numbers and evaluation_numbers(50, seed=4) != numbers
    assert evaluation_numbers(MAX_STANDARD + 1, seed=0) == list(range(1, MAX_STANDARD + 1))


def test_the_shipped_map_reads_clean_held_out_numerals_and_misses_name_what_was_read():
    _, held_out = split_fonts(find_fonts())
    numbers = [4, 9, 14, 1999, 3888]
    accuracy, misses = numeral_accuracy(NumeralReader(), held_out, numbers, seed=0, noise=NoiseConfig(level=0.0))
    assert accuracy == 1.0 - len(misses) / len(numbers)
    assert accuracy >= 0.6  # the shipped map reads 97.7% of noisy held-out numerals (docs/numerals.md)
    assert all(set(miss) == {"number", "expected", "read"} for miss in misses)
