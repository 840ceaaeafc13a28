"""Evaluate a trained Roman-numeral map as a reader: whole numerals, numerals in lines of text,
ordinary words read as numerals, per noise level (``slimvision numerals eval``).

Every score is measured on fonts of families the map never saw (by default Computer Modern).
Training's own scores (symbols, rejection of other letters) are in
:mod:`slimvision.training.numerals`; these need the reader, so they sit beside inference.

Example:
    >>> rows = noise_curve(som, [0.0, 1.0], symbols=2100, numerals=600, seed=0)   # doctest: +SKIP
    >>> rows[0]["numeral_accuracy"]                                                # doctest: +SKIP
    0.97...
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from slimvision.data.numerals import FontFace, NoiseConfig, find_fonts, render_numerals, render_text, split_fonts, word_space
from slimvision.data.roman import MAX_STANDARD, to_roman
from slimvision.inference.numerals import NumeralReader
from slimvision.models.som import SelfOrganizingMap
from slimvision.progress import progress_bar
from slimvision.training.numerals import symbol_accuracy

log = logging.getLogger(__name__)

#: Most lines of text (``Chapter XIV``) :func:`noise_curve` reads per level.
_LINES = 500


def numeral_accuracy(reader: Any, fonts: list[FontFace], numbers: list[int], *, seed: int, noise: NoiseConfig,
                     progress: bool = False) -> tuple[float, list[dict[str, Any]]]:
    """Share of rendered whole numerals the reader reads as exactly one token of the right value.

    Returns:
        The accuracy and, for each miss, the number and what was read instead.
    """
    misses = []
    patches = render_numerals(fonts, numbers, seed=seed, noise=noise)
    with progress_bar(len(patches), enabled=progress, desc="reading numerals", unit="numeral", leave=False) as bar:
        for patch, number in patches:
            readings = reader(patch)
            if len(readings) != 1 or readings[0].value != number or readings[0].text != to_roman(number):
                misses.append({"number": number, "expected": to_roman(number),
                               "read": [reading.text for reading in readings]})
            bar.update()
    return 1.0 - len(misses) / max(len(patches), 1), misses


#: Ordinary words a page holds beside its numerals: none of them is a numeral, so every one read
#: as a numeral is a false alarm. Words made only of the letters IVXLCDM (``MIX``, ``DID``,
#: ``civil``) are left out: they are numeral tokens by shape. The last five were reported read as
#: numerals (issue 29: ``The`` as ILC, ``fox`` as ILX, a comma as I), so the eval counts them.
TEXT_WORDS = ("CHAPTER", "PART", "BOOK", "SECTION", "Page", "Index", "Preface", "Contents", "Volume", "NOTES",
              "APPENDIX", "THE", "and", "of", "the", "to", "in", "is", "that", "with", "for", "as", "was", "on",
              "figure", "TABLE", "plate", "London", "Paris", "ONE", "TWO", "three", "FOUR", "five", "SEVEN",
              "eight", "NINE", "ten", "Mr", "Dr", "St", "etc", "see", "also", "House", "Abbey", "Queen", "Street",
              "1994", "2024", "17", "A", "B", "E", "H", "N", "O", "P", "R", "T", "W",
              "The", "fox", "jumps,", "dog.", ",")


def text_false_alarms(reader: Any, fonts: list[FontFace], *, seed: int, noise: NoiseConfig,
                      repeats: int = 2) -> tuple[float, list[dict[str, Any]]]:
    """Share of ordinary words (``TEXT_WORDS``, each printed ``repeats`` times) read as any numeral.

    Returns:
        The share and, for each false alarm, the word, the font and what was read.
    """
    alarms, count = [], 0
    for index, word in enumerate(TEXT_WORDS * repeats):
        rng = np.random.default_rng([seed, index])
        font = fonts[index % len(fonts)]
        patch = render_text(word, font, cap_height=int(rng.integers(24, 65)), rng=rng, noise=noise)
        readings, count = reader(patch), count + 1
        if readings:
            alarms.append({"word": word, "font": font.name, "read": [reading.text for reading in readings]})
    return len(alarms) / count, alarms


#: Words a numeral follows in running text, for :func:`line_accuracy`.
LINE_PREFIXES = ("Chapter", "CHAPTER", "Book", "PART", "Page", "Section", "Volume", "Act", "Psalm", "Canto")


def line_accuracy(reader: Any, fonts: list[FontFace], numbers: list[int], *, seed: int, noise: NoiseConfig
                  ) -> tuple[float, list[dict[str, Any]]]:
    """Share of lines like ``Chapter XIV`` from which the reader reads exactly the numeral.

    Fonts without a word space (math italic sets ``Chapter XIV`` as ``ChapterXIV``) are skipped:
    no running text is set in them.

    Returns:
        The share and, for each miss, the line, the font and what was read.
    """
    fonts = [font for font in fonts if word_space(font) > 0.1]
    misses = []
    for index, number in enumerate(numbers):
        rng = np.random.default_rng([seed, index])
        font, line = fonts[index % len(fonts)], f"{LINE_PREFIXES[index % len(LINE_PREFIXES)]} {to_roman(number)}"
        readings = reader(render_text(line, font, cap_height=int(rng.integers(24, 65)), rng=rng, noise=noise))
        if [(reading.text, reading.value) for reading in readings] != [(to_roman(number), number)]:
            misses.append({"line": line, "font": font.name, "read": [reading.text for reading in readings]})
    return 1.0 - len(misses) / max(len(numbers), 1), misses


def evaluation_numbers(count: int, seed: int) -> list[int]:
    """``count`` distinct integers spread over 1..3999 (all of them when ``count`` >= 3999)."""
    if count >= MAX_STANDARD:
        return list(range(1, MAX_STANDARD + 1))
    return sorted(np.random.default_rng(seed).choice(np.arange(1, MAX_STANDARD + 1), count, replace=False).tolist())


def noise_curve(som: SelfOrganizingMap, levels: list[float], *, symbols: int, numerals: int, seed: int,
                validation_families: tuple[str, ...] = ("Computer Modern",), progress: bool = True) -> list[dict[str, Any]]:
    """Per noise level, on held-out fonts: symbol and whole-numeral accuracy, numerals read out of
    lines of text (up to ``_LINES`` of them), and ordinary words read as numerals."""
    _, held_out = split_fonts(find_fonts(), validation_families=validation_families)
    reader = NumeralReader(som)
    numbers = evaluation_numbers(numerals, seed)
    line_numbers = evaluation_numbers(min(numerals, _LINES), seed + 4)
    rows = []
    for level in levels:
        noise = NoiseConfig(level=level)
        symbol = symbol_accuracy(som, held_out, symbols, seed=seed + 1, noise=noise)
        whole, misses = numeral_accuracy(reader, held_out, numbers, seed=seed + 2, noise=noise, progress=progress)
        alarms, alarmed = text_false_alarms(reader, held_out, seed=seed + 3, noise=noise)
        lines, line_misses = line_accuracy(reader, held_out, line_numbers, seed=seed + 4, noise=noise)
        rows.append({"noise": level, "symbol_accuracy": symbol, "numeral_accuracy": whole, "line_accuracy": lines,
                     "text_false_alarms": alarms, "symbols": symbols, "numerals": len(numbers),
                     "lines": len(line_numbers), "words": 2 * len(TEXT_WORDS),
                     "misses": misses[:20], "line_misses": line_misses[:20], "alarms": alarmed[:20]})
        log.info("noise %.2f: symbols %.4f, numerals %.4f, in lines %.4f, words read as numerals %.4f",
                 level, symbol, whole, lines, alarms)
    return rows
