"""Read Roman numerals off page images with a labelled self-organising map (numpy only).

A page goes through these steps:
1. binarise (Otsu's global threshold; a page with no contrast has no ink and no numerals);
2. connected components (8-connected), dropping specks far smaller than the text;
3. group components into words: they share a text line and the gap between them is narrower
   than the letters are tall; short fragments worn off a letter rejoin it;
4. over-cut each word along its slant, at paper gaps and at thin joins where touching
   letters meet, and read every run of cuts that could be one symbol with the map;
5. a beam search over the cuts finds the cheapest reading, preferring standard numerals;
   a word that non-numeral letters explain clearly better (``THE`` cut into ``ILIL``) is text;
6. parse the symbols as a numeral: value, whether it is standard, and what is wrong if not.

Words with a piece the map calls unknown (rules, stains) are not reported either.

Example:
    >>> reader = NumeralReader()                          # doctest: +SKIP
    >>> [(r.text, r.value) for r in reader(load_image("page.png"))]   # doctest: +SKIP
    [('XIV', 14), ('MCMXCIV', 1994)]
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimvision.assets import NUMERALS_SOM
from slimvision.data.glyphs import glyph_vector
from slimvision.data.ink import binarize, connected_components
from slimvision.data.roman import SYMBOLS, parse_roman, printed_form
from slimvision.io.images import to_gray
from slimvision.models.som import SelfOrganizingMap

log = logging.getLogger(__name__)

#: The map that ships with slimvision (trained by the command in docs/numerals.md).
DEFAULT_MAP = NUMERALS_SOM.path()
#: A page below this spread of grey levels (1st to 99th percentile) is blank paper.
_MIN_CONTRAST = 40
#: Components smaller than this share of the page's largest component are specks of noise.
_SPECK_FRACTION = 0.02
#: Paper wider than this share of the letters' height parts two words. Letters of a word stand
#: 0.02-0.21 of the cap height apart in the fonts we render; a word space is about a third of
#: an em, 0.4-0.5 of the cap height. So ``Chapter XIV`` is two words and ``XIV`` is read alone.
_WORD_SPACE = 0.35
#: Widest each symbol is printed (width along the slant over height): about the 99th
#: percentile of the training fonts at the default wear (M: 1.66 there; bold Computer Modern's
#: is 1.5). A span wider than its symbol's limit is not that symbol: two touching X's are
#: never one M, and nothing wider than an M is one symbol.
_WIDE = 1.6
_WIDEST = {"I": 1.1, "V": 1.3, "X": 1.4, "L": 1.15, "C": 1.2, "D": 1.35, "M": _WIDE}
#: A component shorter than this share of its word's tallest is a fragment (a broken-off serif
#: or foot), joined to the nearest full-height component within this share of the height.
_FRAGMENT, _FRAGMENT_REACH = 0.6, 0.3
#: Paper narrower than this share of the height between two pieces of ink may lie inside one
#: broken letter (an M whose thin diagonal broke); wider paper always separates letters.
_TOUCH = 0.06
#: The same for a second reading of a word whose first reading is no standard numeral: hairlines
#: that break in worn print (the diagonals of a math italic M, the bowl of a C) leave paper as
#: wide as a quarter of the height inside a letter. Such a reading is kept only when every
#: symbol in it is no farther than ``_BROKEN_DISTANCE`` (unknown-distance units) from its node:
#: wrongly joined pieces (``in`` read as ``MI``) land at 0.88-0.98, right ones at 0.55-0.81.
_BROKEN_TOUCH, _BROKEN_DISTANCE = 0.25, 0.85
#: Widest a letter that is no numeral may be read in the text test (width along the slant over
#: height; W is 1.26 in the median training font). Wider spans are left to the numerals: two
#: typewriter X's joined at their serifs are as wide as 1.5-1.6, and the map took them for one
#: other letter, so ``MXX`` read as text.
_OTHER_WIDEST = 1.45
#: Most cut places one symbol may span (cuts inside a broken or oddly inked letter).
_MAX_PIECES = 12
#: Leans (shift per row up) below this are upright print; above that the largest believed.
_UPRIGHT, _MAX_SLANT = 0.08, 0.5
#: Most ink (share of the component's height) a column may hold to be a place to cut.
_THIN_JOIN = 0.3
#: A symbol under this share of its word's tallest is short: lower case at x-height, which only
#: v, x, c and m may be in a numeral (``xiv``); i, l and d reach higher.
_SHORT, _X_HEIGHT = 0.8, "VXCM"
#: A fragment whose bottom lies this share of the height below the word's baseline is punctuation.
_BELOW_BASELINE = 0.1
#: Punctuation after a word: shorter than this share of its line mates, its top lower than theirs
#: by this share of their height, and no farther from the word before it than this share.
_PUNCTUATION_HEIGHT, _BELOW_TEXT, _PUNCTUATION_GAP = 0.6, 0.5, 0.45
#: Nodes looked at per piece, labels kept per piece, readings kept per cut place.
_NEAREST, _LABELS_PER_PIECE, _BEAM = 24, 2, 40
#: A word whose best reading with letters that are no numerals beats its best numeral reading by
#: this much per symbol (in unknown-distance units) is text, not a numeral. Per symbol, since a
#: long numeral has more chances for one letter to look like something else.
_TEXT_MARGIN = 0.1
#: Taken off each symbol's distance when choosing among numeral readings. A plain sum favours
#: fewer symbols, so close-set ``III`` or ``XI`` read as one M; with the bonus, three good I's
#: beat one poor M. (The text test compares plain sums.)
_SYMBOL_BONUS = 0.2
#: How much more (in summed unknown-distance units) a standard numeral may cost than the
#: cheapest reading and still be preferred to it: a fixed part, and a part per symbol of the
#: cheapest reading. Each clean sans-serif M cut into ``IVI`` saves about 0.2, so ``MMMC``
#: read as ``IVIIVIIVIC`` beat it by more than a fixed 0.6.
_STANDARD_MARGIN, _STANDARD_MARGIN_PER_SYMBOL = 0.6, 0.1


#: An I is as wide at its head as at its foot (the widest row of the top and of the bottom
#: ``_I_END_BAND`` of it); a piece wider at the head by this factor is a T, a 7 or a comma.
#: Ink sticking out of the middle rows by more than ``_I_STUB`` of the height beyond the stem is
#: half an H.
_I_END_BAND, _I_TOP_HEAVY, _I_STUB = 0.2, 1.5, 0.1


Box = tuple[int, int, int, int]   # top, left, bottom, right (bottom and right exclusive): components, cuts
#: What readings report: [x0, y0, x1, y1] in pixels of the page as loaded, origin top-left, x1 and
#: y1 the exclusive right and bottom edges (the box convention of every slimvision output).
XYXY = tuple[int, int, int, int]
BOX_FORMAT = "xyxy"


@dataclass
class SymbolReading:
    symbol: str            # one of IVXLCDM
    box: XYXY              # x0, y0, x1, y1 (x1, y1 exclusive)
    confidence: float      # share of the BMU's training samples with this label
    distance: float        # distance to the BMU, in units of the map's unknown distance (<= 1)


@dataclass
class NumeralReading:
    """One numeral token found on a page; ``box`` is [x0, y0, x1, y1] (x1 and y1 exclusive)."""

    text: str
    value: int | None
    standard: bool
    problem: str | None
    box: XYXY
    confidence: float      # the least confident symbol's confidence
    symbols: list[SymbolReading] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON types; boxes as [x0, y0, x1, y1] lists (say ``"box_format": "xyxy"`` beside them)."""
        return json_ready(asdict(self))


def json_ready(value: object) -> object:
    """Tuples (boxes) as lists, recursively, so the dict is what ``json.dumps`` writes back."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


class NumeralReader:
    """Finds and reads Roman numerals on a page with a labelled :class:`SelfOrganizingMap`.

    Args:
        som: a labelled map, or the folder of one; default: the map that ships with slimvision.
        min_height: words shorter than this (pixels) are ignored: page noise, not numbers.
    """

    def __init__(self, som: SelfOrganizingMap | str | Path | None = None, min_height: int = 8) -> None:
        if som is None or isinstance(som, (str, Path)):
            som = SelfOrganizingMap.load(DEFAULT_MAP if som is None else som)
        if som.node_labels is None:
            raise ValueError("NumeralReader needs a labelled map (SelfOrganizingMap.label)")
        self.som = som
        self.min_height = min_height

    def __call__(self, page: np.ndarray) -> list[NumeralReading]:
        """(H, W) or (H, W, 3) uint8 page -> the numerals on it, top to bottom, left to right."""
        gray = to_gray(page)
        if np.subtract(*np.percentile(gray, [99, 1])) < _MIN_CONTRAST:
            return []
        ink = binarize(gray)
        labels, boxes, areas = connected_components(ink)
        components = self._text_components(boxes, areas)
        readings = []
        words = _group_words(components, boxes)
        word_boxes = [_union_box([boxes[index] for index in word]) for word in words]
        for word, box in zip(words, word_boxes):
            if _below_the_text(box, word_boxes):
                continue   # a comma or full stop beside words: it would read as an I
            reading = self._read_word(word, labels, boxes)
            if reading is not None:
                readings.append(reading)
        # Top to bottom by text line (a line is about one box high), then left to right.
        return sorted(readings, key=lambda reading: (reading.box[1] // max(reading.box[3] - reading.box[1], 1),
                                                     reading.box[0]))

    # ------------------------------------------------------------- pieces
    def _text_components(self, boxes: list[Box], areas: np.ndarray) -> list[int]:
        """Indices of components big enough to be symbols."""
        if not len(boxes):
            return []
        floor = max(4, _SPECK_FRACTION * float(np.max(areas)))
        return [index for index, (box, area) in enumerate(zip(boxes, areas))
                if area >= floor and box[2] - box[0] >= self.min_height]

    def _read_word(self, word: list[int], labels: np.ndarray, boxes: list[Box]) -> NumeralReading | None:
        """Best reading of a word, or None when it is no numeral.

        The word is over-cut: its ink is split at every gap between letters and at every thin
        join where touching letters may meet, measured along the text's slant so italic
        letters part cleanly. Each run of neighbouring cuts is a candidate symbol; the map
        reads them all in one batch, and a beam search over the cuts finds the cheapest
        readings. The slant is measured from the glyphs' moments, which stroke contrast can
        fool, so upright cuts are tried too and the cheaper reading wins. A word that reads as no
        standard numeral is read once more with wider paper allowed inside a letter.
        """
        pixels = [_glyph_pixels(glyph, labels, boxes) for glyph in _attach_fragments(word, boxes)]
        inks = [_WordInk.gather(pixels, slant) for slant in sorted({0.0, _slant(pixels)})]
        best = self._read_inks(inks, _TOUCH)
        if best is None or not _standard(best[1]):
            # A letter broken at a hairline (math italic M) leaves paper as wide as that between
            # letters, so no reading of its pieces is a numeral. Read again with such paper
            # allowed inside a symbol; keep that reading only when it is a standard numeral
            # whose every symbol is clearly recognised (a looser cut has more ways to go wrong).
            loose = self._read_inks(inks, _BROKEN_TOUCH)
            if (loose is not None and _standard(loose[1])
                    and max(symbol.distance for symbol in loose[1]) <= _BROKEN_DISTANCE):
                best = loose
        return None if best is None else _reading(best[1])

    def _read_inks(self, inks: list[_WordInk], touch: float) -> tuple[float, list[SymbolReading]] | None:
        """The cheapest numeral reading of the word cut along any of its slants, with paper up
        to ``touch`` of the height allowed inside a symbol."""
        best: tuple[float, list[SymbolReading]] | None = None
        for ink in inks:
            found = self._read_ink(ink, touch)
            if found is not None and (best is None or found[0] < best[0]):
                best = found
        return best

    def _read_ink(self, ink: _WordInk, touch: float = _TOUCH) -> tuple[float, list[SymbolReading]] | None:
        """(cost, symbols) of the word's best numeral reading, or None if it reads better as text.

        Symbols alone cannot tell an M cut into ``IVI`` from an honest ``IVI``; the numeral
        can, so a standard numeral wins unless it costs clearly more. Every span may also be
        read as the nearest letter or digit that is no numeral; when such a reading of the
        word beats the best numeral by ``_TEXT_MARGIN`` per symbol, the word is text (``THE``
        could be cut into ``ILIL``, but reads far better as three non-numeral letters).

        Returns:
            The cost (summed distance less ``_SYMBOL_BONUS`` per symbol) and the symbols.
        """
        spans = ink.candidate_spans(touch)
        if not spans:
            return None
        numerals, others = self._span_choices(ink, spans)
        end = len(ink.cuts) - 1
        beam = _cheapest_paths(numerals, end, bonus=_SYMBOL_BONUS)
        if not beam:
            return None
        cheapest_cost, cheapest = beam[0]
        standard = [(cost, symbols) for cost, symbols in beam if _standard(symbols)]
        margin = _STANDARD_MARGIN + _STANDARD_MARGIN_PER_SYMBOL * len(cheapest)
        if standard and standard[0][0] <= cheapest_cost + margin:
            cheapest_cost, cheapest = standard[0]
        if not printed_form("".join(symbol.symbol for symbol in cheapest)) or _mixed_heights(cheapest):
            return None   # IMXL, VDIIIIIIC, fox as DIX: an ordinary word cut into bars and bowls
        mixed = {span: numerals.get(span, []) + others.get(span, []) for span in numerals.keys() | others.keys()}
        text = _cheapest_paths(mixed, end, beam_width=1)
        summed = cheapest_cost + _SYMBOL_BONUS * len(cheapest)
        # One symbol alone is a plain choice of the nearer node; the margin is for longer numerals,
        # where one of many symbols may lie near some other letter by chance (T read as I: 0.71
        # from an I node, 0.68 from an other one, and kept as I by a margin it had no need of).
        margin = _TEXT_MARGIN * len(cheapest) if len(cheapest) > 1 else 0.0
        if text and text[0][0] + margin < summed:
            return None
        return cheapest_cost, cheapest

    def _span_choices(self, ink: _WordInk, spans: dict[tuple[int, int], float]
                      ) -> tuple[dict[tuple[int, int], list[SymbolReading]], dict[tuple[int, int], list[SymbolReading]]]:
        """Each span's likeliest numeral symbols (up to ``_LABELS_PER_PIECE``) and its nearest non-numeral.

        Only readings within the map's unknown distance count; a span with none is absent. Spans
        read before for this ink (the looser second reading of a word repeats the first one's)
        come from ``ink.span_readings``; only the new ones go to the map.
        """
        new = [span for span in spans if span not in ink.span_readings]
        if new:
            pieces = [ink.piece(start, stop) for start, stop in new]
            nodes, distances = self.som.bmu(np.stack([glyph_vector(mask) for mask, _ in pieces]),
                                            k=min(_NEAREST, self.som.config.nodes))
            nodes, distances = nodes.reshape(len(pieces), -1), distances.reshape(len(pieces), -1)
            for span, (mask, box), piece_nodes, piece_distances in zip(new, pieces, nodes, distances):
                ink.span_readings[span] = self._span_reading(spans[span], box, piece_nodes, piece_distances,
                                                             gapped=ink.paper_inside(*span) > 0,
                                                             can_be_i=_can_be_an_i(mask))
        numerals, others = {}, {}
        for span in spans:
            options, other = ink.span_readings[span]
            if options:
                numerals[span] = options
            if other is not None:
                others[span] = [other]
        return numerals, others

    def _span_reading(self, aspect: float, box: Box, nodes: np.ndarray, distances: np.ndarray, *,
                      gapped: bool = False, can_be_i: bool = True) -> tuple[list[SymbolReading], SymbolReading | None]:
        """One span's numeral options and its nearest non-numeral (None if too far or too wide).

        A span with paper inside (``gapped``: pieces that do not touch) is read as one numeral
        symbol only within ``_BROKEN_DISTANCE`` of its node, as in the second reading: a letter
        broken by wear still looks like itself, while two letters side by side (``of``, ``fi``)
        land near an M node only loosely (0.89-0.91 of the unknown distance). A span whose shape
        no I has (``can_be_i`` False, see :func:`_can_be_an_i`) is not read as I.
        """
        options, other, seen = [], None, set()
        for node, distance in zip(nodes, distances):
            label = int(self.som.node_labels[node])
            if label in seen or distance > self.som.unknown_distance:
                continue
            seen.add(label)
            reading = SymbolReading(symbol=self.som.classes[label], box=_xyxy(box),
                                    confidence=float(self.som.node_confidence[node]),
                                    distance=float(distance) / self.som.unknown_distance)
            if reading.symbol not in SYMBOLS:
                if aspect <= _OTHER_WIDEST and other is None:
                    other = reading
            elif (len(options) < _LABELS_PER_PIECE and aspect <= _WIDEST[reading.symbol]
                  and not (gapped and reading.distance > _BROKEN_DISTANCE)
                  and (can_be_i or reading.symbol != "I")):
                options.append(reading)
        return options, other


def _cheapest_paths(choices: dict[tuple[int, int], list[SymbolReading]], end: int, beam_width: int = _BEAM,
                    bonus: float = 0.0) -> list[tuple[float, list[SymbolReading]]]:
    """The cheapest ways to read the cuts 0..end, each a run of spans; cheapest first.

    A way costs the sum of its symbols' distances, less ``bonus`` per symbol.
    """
    beams: dict[int, list[tuple[float, list[SymbolReading]]]] = {0: [(0.0, [])]}
    for (start, stop), options in sorted(choices.items()):
        if start not in beams:
            continue
        extended = [(cost + option.distance - bonus, symbols + [option])
                    for cost, symbols in beams[start] for option in options]
        beams[stop] = sorted(beams.get(stop, []) + extended, key=lambda state: state[0])[:beam_width]
    return beams.get(end, [])


def _can_be_an_i(mask: np.ndarray) -> bool:
    """Whether a piece of ink has the shape of an I: a bar as wide at its foot as at its head,
    with nothing sticking out of its middle.

    Serifs, if any, sit at both ends of an I. Wider at the head than at the foot is a T, a 7 or
    a comma (each read as I by the map in some fonts: a slab-serif T lies 0.68 from an I node
    and 0.69 from an other one); a bar with a stub at mid-height is half of an H cut at its
    crossbar (``H`` read as ``II``).
    """
    height = mask.shape[0]
    inked = mask.any(axis=1)
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    extent = np.where(inked, last - first, 0)                    # (H,) width of each row's ink
    band = max(1, round(_I_END_BAND * height))
    head, foot = extent[:band].max(), extent[-band:].max()
    if head > _I_TOP_HEAVY * foot + 1:
        return False
    stem = float(np.median(extent[inked]))
    middle = extent[round(0.3 * height): round(0.7 * height) + 1]
    return not (len(middle) and middle.max() - stem > _I_STUB * height)


def _glyph_pixels(glyph: list[int], labels: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) on the page of the ink of a glyph's components."""
    top, left, bottom, right = _union_box([boxes[index] for index in glyph])
    rows, cols = np.nonzero(np.isin(labels[top:bottom, left:right], np.add(glyph, 1)))
    return rows + top, cols + left


@dataclass
class _WordInk:
    """A word's ink pixels with their columns measured along the text's slant, and where to cut them.

    ``cuts`` are slanted columns, ascending, from the left edge to past the right edge;
    ``paper`` is the width of the paper gap each cut lies in, as a share of the height (0 at a
    thin join, infinite at the ends). Paper wider than ``_TOUCH`` lies between letters.
    """

    rows: np.ndarray       # page row of each ink pixel, sorted by slanted column
    cols: np.ndarray       # page column of each ink pixel
    slanted: np.ndarray    # column after removing the slant, ascending
    height: int            # the tallest glyph's height
    cuts: np.ndarray
    paper: np.ndarray
    #: span -> (numeral options, nearest non-numeral), filled by NumeralReader._span_choices
    span_readings: dict = field(default_factory=dict, repr=False)

    @classmethod
    def gather(cls, pixels: list[tuple[np.ndarray, np.ndarray]], slant: float) -> _WordInk:
        """The word from its glyphs' (rows, cols) ink pixels, columns sheared by ``slant``."""
        height = max(int(rows.max() - rows.min()) + 1 for rows, _ in pixels)
        rows, cols = np.concatenate([rows for rows, _ in pixels]), np.concatenate([cols for _, cols in pixels])
        slanted = cols - slant * (rows.max() - rows)
        order = np.argsort(slanted, kind="stable")
        rows, cols, slanted = rows[order], cols[order], slanted[order]
        cuts, paper = _cut_columns(slanted, height)
        return cls(rows, cols, slanted, height, cuts, paper)

    def candidate_spans(self, touch: float = _TOUCH) -> dict[tuple[int, int], float]:
        """Every run of cuts (start, stop) that may hold exactly one symbol, with its width-to-height
        ratio; no paper wider than ``touch`` of the height lies inside one."""
        spans = {}
        for start in range(len(self.cuts) - 1):
            inside = 0.0
            for stop in range(start + 1, min(start + _MAX_PIECES, len(self.cuts) - 1) + 1):
                if stop - 1 > start:
                    inside = max(inside, float(self.paper[stop - 1]))
                    if inside > touch:
                        break   # a symbol never straddles the paper between two letters
                if self.cuts[stop] - self.cuts[start] > 2 * _WIDE * self.height:
                    break   # (cuts lie mid-gap, so a span is wider than its ink)
                aspect = self._plausible_aspect(start, stop)
                if aspect is not None:
                    spans[start, stop] = aspect
        return spans

    def paper_inside(self, start: int, stop: int) -> float:
        """The widest paper gap inside the span (a share of the height; 0: its pieces all touch)."""
        return float(self.paper[start + 1: stop].max()) if stop - start > 1 else 0.0

    def _plausible_aspect(self, start: int, stop: int) -> float | None:
        """Width (along the slant) over height of the ink between two cuts; None unless it has at
        least a fragment's height and is no wider than the widest capital."""
        low, high = np.searchsorted(self.slanted, self.cuts[[start, stop]])
        if high - low < 2:
            return None
        rows = self.rows[low:high]
        tall = rows.max() - rows.min() + 1
        aspect = float(self.slanted[high - 1] - self.slanted[low] + 1) / float(tall)
        return aspect if tall >= _FRAGMENT * self.height and aspect <= _WIDE else None

    def piece(self, start: int, stop: int) -> tuple[np.ndarray, Box]:
        """The ink between two cuts as a mask of its box, and the box on the page."""
        low, high = np.searchsorted(self.slanted, self.cuts[[start, stop]])
        rows, cols = self.rows[low:high], self.cols[low:high]
        box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        mask = np.zeros((box[2] - box[0], box[3] - box[1]), bool)
        mask[rows - box[0], cols - box[1]] = True
        return mask, box


def _slant(glyphs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """How far the text leans: the shift right per row up that makes its glyphs upright.

    Each glyph's ink is centred on its own centroid and the shear that removes the
    covariance of column and height (the moment deskew used for handwritten digits) is
    fitted over all of them together. Upright capitals are near 0 (X, V and M are
    symmetric), italic ones 0.2-0.3; a lean below ``_UPRIGHT`` is treated as none.
    """
    covariance = variance = 0.0
    for rows, cols in glyphs:
        up, right = rows.mean() - rows, cols - cols.mean()
        covariance += float(np.dot(up, right))
        variance += float(np.dot(up, up))
    slant = covariance / variance if variance > 0 else 0.0
    return 0.0 if abs(slant) < _UPRIGHT else float(np.clip(slant, -_MAX_SLANT, _MAX_SLANT))


def _cut_columns(slanted: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut places along the slanted columns (the middle of each paper gap, and thin joins) and
    the width of the paper at each (a share of the height; 0 at a join, infinite at the ends).

    Touching letters meet at thin places (serifs, hairlines): a column inked for more than
    ``_THIN_JOIN`` of the height is inside a stroke, and cutting there would slice a solid
    blob into bars that look like I's.
    """
    base = np.floor(slanted.min())
    profile = np.bincount((np.floor(slanted) - base).astype(np.int64)).astype(np.float64)
    width = len(profile)
    cuts, paper = [0.0], [np.inf]
    column = 0
    while column < width:
        if profile[column] == 0:
            end = column
            while profile[end] == 0:
                end += 1
            cuts.append((column + end) / 2)
            paper.append((end - column) / height)
            column = end
        column += 1
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    valleys = [column for column in range(1, width - 1)
               if 0 < profile[column] and smooth[column] <= _THIN_JOIN * height
               and smooth[column] <= smooth[column - 1] and smooth[column] <= smooth[column + 1]]
    # A thin stretch (a hairline diagonal, a long serif) has many minima; the lowest one within
    # a sixth of the height stands for them all.
    spacing = max(2, height // 6)
    kept: list[int] = []
    for column in sorted(valleys, key=lambda c: (smooth[c], c)):
        if all(abs(column - other) >= spacing for other in kept):
            kept.append(column)
    for column in kept:
        cuts.append(column + 0.5)
        paper.append(0.0)
    cuts.append(float(width))
    paper.append(np.inf)
    order = np.argsort(cuts, kind="stable")
    return np.asarray(cuts)[order] + base, np.asarray(paper)[order]


def _attach_fragments(word: list[int], boxes: list[Box]) -> list[list[int]]:
    """The word's glyphs, left to right: each full-height component with the fragments it lost.

    Worn print breaks hairlines, so a serif, the foot of an L or the tail of a C comes off as
    a short component of its own. A component shorter than ``_FRAGMENT`` of the word's
    tallest joins the full-height component it overlaps most, or the nearest one within
    ``_FRAGMENT_REACH`` of the height; farther away it is a speck and is left out, and so is a
    piece hanging below the baseline (a comma).
    """
    tallest = max(boxes[index][2] - boxes[index][0] for index in word)
    is_fragment = {index: boxes[index][2] - boxes[index][0] < _FRAGMENT * tallest for index in word}
    glyphs = {index: [index] for index in sorted(word, key=lambda i: boxes[i][1]) if not is_fragment[index]}
    # Wear breaks pieces off within a letter's rows; a short piece hanging below the letters'
    # baseline is a comma beside them (``I,`` read as L), not a foot that came off.
    baseline = float(np.median([boxes[index][2] for index in glyphs])) if glyphs else 0.0
    for fragment in (index for index in word if is_fragment[index]):
        if boxes[fragment][2] > baseline + _BELOW_BASELINE * tallest:
            continue
        gaps = {index: _gap(boxes[index], boxes[fragment]) for index in glyphs}
        nearest = min(gaps, key=gaps.get, default=None)
        if nearest is not None and gaps[nearest] <= _FRAGMENT_REACH * tallest:
            glyphs[nearest].append(fragment)
    return list(glyphs.values())


def _gap(a: Box, b: Box) -> int:
    """Horizontal gap between two boxes (negative: they overlap by that many columns)."""
    return max(a[1], b[1]) - min(a[3], b[3])


def _xyxy(box: Box) -> XYXY:
    top, left, bottom, right = box
    return left, top, right, bottom


def _union_box(boxes: list[Box]) -> Box:
    """The box around boxes (either order: the first two are minima, the last two maxima)."""
    return (min(box[0] for box in boxes), min(box[1] for box in boxes),
            max(box[2] for box in boxes), max(box[3] for box in boxes))


def _below_the_text(box: Box, word_boxes: list[Box]) -> bool:
    """Whether a word is punctuation hanging off the word before it: a comma or a full stop.

    Such a mark is small, starts near the baseline, and follows its word with next to no space
    (at most a monospaced cell: 0.37 of the words' height in DejaVu Sans Mono). Its line mates are
    the words its rows overlap; their tops lie at the cap height, the ascenders or at least the
    x-height. A lone lower-case ``x`` stands about a third of their height lower, and is kept.
    """
    top, left, bottom, _ = box
    height = bottom - top
    mates = [other for other in word_boxes if other is not box and min(bottom, other[2]) - max(top, other[0]) > 0]
    if not mates:
        return False
    mate_top = float(np.median([mate[0] for mate in mates]))
    mate_height = float(np.median([mate[2] - mate[0] for mate in mates]))
    follows = any(-0.5 * (mate[2] - mate[0]) <= left - mate[3] <= _PUNCTUATION_GAP * (mate[2] - mate[0])
                  for mate in mates)
    return follows and height < _PUNCTUATION_HEIGHT * mate_height and top - mate_top > _BELOW_TEXT * mate_height


def _mixed_heights(symbols: list[SymbolReading]) -> bool:
    """Whether a symbol stands clearly shorter than the word's tallest without being a letter that
    lower case sets at x-height (v, x, c, m).

    Capitals share one height, and so do numerals in lower case, but for ``i``, ``l`` and ``d``,
    which reach above the x-height. A short I, L or D is a piece of an ordinary word: ``fox``
    read as ``DIX`` has its ``o`` for the I.
    """
    heights = [symbol.box[3] - symbol.box[1] for symbol in symbols]
    tallest = max(heights)
    return any(height < _SHORT * tallest and symbol.symbol not in _X_HEIGHT
               for symbol, height in zip(symbols, heights))


def _standard(symbols: list[SymbolReading]) -> bool:
    return parse_roman("".join(symbol.symbol for symbol in symbols)).standard


def _reading(symbols: list[SymbolReading]) -> NumeralReading:
    text = "".join(symbol.symbol for symbol in symbols)
    parsed = parse_roman(text)
    box = _union_box([symbol.box for symbol in symbols])
    return NumeralReading(text=text, value=parsed.value, standard=parsed.standard, problem=parsed.problem,
                          box=box, confidence=min(s.confidence for s in symbols), symbols=symbols)


def _group_words(components: list[int], boxes: list[Box]) -> list[list[int]]:
    """Components on one line with gaps narrower than their height form a word."""
    parent = {index: index for index in components}

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    ordered = sorted(components, key=lambda i: boxes[i][1])
    tallest = max((boxes[i][2] - boxes[i][0] for i in components), default=0)
    for position, a in enumerate(ordered):
        top_a, left_a, bottom_a, right_a = boxes[a]
        for b in ordered[position + 1:]:
            top_b, left_b, bottom_b, right_b = boxes[b]
            height = max(bottom_a - top_a, bottom_b - top_b)
            if left_b - right_a > _WORD_SPACE * height:
                # Too far for this pair; a later, taller component may still be near enough.
                if left_b - right_a > _WORD_SPACE * tallest:
                    break   # sorted by left edge: every later component starts even farther right
                continue
            overlap = min(bottom_a, bottom_b) - max(top_a, top_b)
            if overlap >= 0.5 * min(bottom_a - top_a, bottom_b - top_b):
                parent[root(b)] = root(a)
    words: dict[int, list[int]] = {}
    for index in components:
        words.setdefault(root(index), []).append(index)
    return list(words.values())


def annotate(page: np.ndarray, readings: list[NumeralReading]) -> np.ndarray:
    """A copy of the page (RGB uint8) with each numeral boxed and its value written above it.

    Green: a standard numeral; orange: readable but not standard (``IIII``); red: no value.
    """
    from PIL import Image, ImageDraw

    page = np.asarray(page)
    rgb = np.repeat(page[..., None], 3, axis=2) if page.ndim == 2 else page[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 500))
    for reading in readings:
        left, top, right, bottom = reading.box
        colour = (0, 170, 0) if reading.standard else (230, 130, 0) if reading.value is not None else (220, 0, 0)
        draw.rectangle((left - 3, top - 3, right + 2, bottom + 2), outline=colour, width=width)
        label = f"{reading.text} = {reading.value}" if reading.value is not None else f"{reading.text} = ?"
        draw.text((left, max(0, top - 14 - width)), label, fill=colour)
    return np.asarray(image)
