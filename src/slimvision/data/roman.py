"""Roman numerals both ways, with a clear verdict on tokens that are not standard.

Standard (subtractive) form: the 13 units M CM D CD C XC L XL X IX V IV I, largest first, each
used as often as it fits, so every integer 1..3999 has exactly one spelling. Old books also use
additive forms (``IIII`` on clock faces, ``VIIII``, ``XXXXX``) and typesetters err (``IIX``,
``IC``). :func:`parse_roman` reads those too, by the usual rule (smaller symbols before a larger
one are subtracted), and says that the token is not standard and what the standard form is.

Example:
    >>> to_roman(1994)
    'MCMXCIV'
    >>> parse_roman("XIV").value
    14
    >>> parse_roman("IIII")
    RomanParse(token='IIII', value=4, standard=False, problem='non-standard numeral: IIII reads as 4, written IV')
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

#: The seven symbols, in the order of their values.
SYMBOLS = "IVXLCDM"
SYMBOL_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
#: Largest value standard form can write (MMMCMXCIX).
MAX_STANDARD = 3999

_UNITS = (
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
    (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
)
_STANDARD = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
#: What printers set besides standard form: additive fours (``IIII``, ``VIIII``, ``XXXX``) and a
#: doubled subtraction (``IIX``, ``XXC``), each decade still written largest first. ``IMXL`` or
#: ``VDIIIIIIC`` are in no book: they are what cutting an ordinary word into bars and bowls gives.
#: Subtraction across a decade (``IC`` for 99) is left out too: :func:`parse_roman` reads it, but
#: it is rare in print and common in cut words (``The`` in italics reads ``DIC``).
_PRINTED = re.compile(r"M{0,4}(C{1,2}M|C{1,2}D|D?C{0,4})(X{1,2}C|X{1,2}L|L?X{0,4})(I{1,2}X|I{1,2}V|V?I{0,4})")


def to_roman(number: int) -> str:
    """1..3999 -> its standard numeral. Any integer type counts (``numpy.int64`` too), bools do not.

    Raises:
        ValueError: ``number`` is not an integer in 1..3999.
    """
    if isinstance(number, bool) or not isinstance(number, numbers.Integral) or not 1 <= number <= MAX_STANDARD:
        raise ValueError(f"to_roman: {number!r} is not an integer in 1..{MAX_STANDARD}")
    number = int(number)
    parts = []
    for value, letters in _UNITS:
        count, number = divmod(number, value)
        parts.append(letters * count)
    return "".join(parts)


@dataclass(frozen=True)
class RomanParse:
    """What a token says: ``value`` (None when unreadable), whether it is standard, and why not."""

    token: str
    value: int | None
    standard: bool
    problem: str | None = None


def parse_roman(token: str) -> RomanParse:
    """Read one numeral token (upper or lower case).

    Returns a standard reading, a non-standard one with its value and the standard spelling,
    or ``value=None`` with the problem (empty token, a letter that is not a numeral).
    """
    text = token.strip().upper()
    if not text:
        return RomanParse(token, None, False, "empty token")
    bad = sorted({char for char in text if char not in SYMBOL_VALUES})
    if bad:
        return RomanParse(token, None, False, f"not a Roman numeral: {''.join(bad)!r} in {token!r}")
    if _STANDARD.fullmatch(text):
        return RomanParse(token, _lenient_value(text), True)
    value = _lenient_value(text)
    if 1 <= value <= MAX_STANDARD:
        problem = f"non-standard numeral: {text} reads as {value}, written {to_roman(value)}"
    else:
        problem = f"non-standard numeral: {text} reads as {value}, which has no standard form"
    return RomanParse(token, value if value >= 1 else None, False, problem)


def printed_form(token: str) -> bool:
    """Whether a token is a numeral as books print them: standard, or one of the old forms
    :func:`parse_roman` reads (``IIII``, ``VIIII``, ``IIX``), decades largest first.

    A token can have a value by the lenient rule and still be no numeral anyone printed:
    ``IMXL`` "reads" as 1039, but it is ``PART`` cut into pieces.

    Example:
        >>> printed_form("IIII"), printed_form("xiv"), printed_form("IMXL"), printed_form("IVI")
        (True, True, False, False)
    """
    text = token.strip().upper()
    return bool(text) and _PRINTED.fullmatch(text) is not None


def _lenient_value(text: str) -> int:
    """Sum of the runs of equal symbols, subtracting each run that stands before a larger one.

    Runs, not single symbols, so ``IIX`` reads as 8 (the old printers' reading), not 10.
    """
    runs = [(SYMBOL_VALUES[match.group()[0]], len(match.group())) for match in re.finditer(r"(.)\1*", text)]
    total = 0
    for index, (value, length) in enumerate(runs):
        following = runs[index + 1][0] if index + 1 < len(runs) else 0
        total += -value * length if value < following else value * length
    return total
