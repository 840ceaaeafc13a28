"""Read Roman numerals off page images with a labelled self-organising map (numpy only).

A page goes through five steps:
1. binarise (Otsu's global threshold; a page with no contrast has no ink and no numerals);
2. connected components (8-connected), dropping specks far smaller than the text;
3. group components into words: they share a text line and the gap between them is narrower
   than the letters are tall;
4. classify each component with the map; a component the map does not know or that is too wide
   for one symbol (serifs that touch: ``XX`` printed as one blob) is cut at ink valleys, and the
   cut whose pieces the map knows best wins;
5. parse the symbols as a numeral: value, whether it is standard, and what is wrong if not.

Words with a symbol the map calls unknown are not numerals (ordinary text, stains) and are
not reported.

Example:
    >>> reader = NumeralReader()                          # doctest: +SKIP
    >>> [(r.text, r.value) for r in reader(load_image("page.png"))]   # doctest: +SKIP
    [('XIV', 14), ('MCMXCIV', 1994)]
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from slimvision.data.glyphs import glyph_vector
from slimvision.data.numerals import binarize, connected_components
from slimvision.data.roman import parse_roman
from slimvision.models.som import SelfOrganizingMap

log = logging.getLogger(__name__)

#: The map that ships with slimvision (trained by the command in docs/numerals.md).
DEFAULT_MAP = Path(__file__).resolve().parent.parent / "weights" / "numerals-som"
#: A page below this spread of grey levels (1st to 99th percentile) is blank paper.
_MIN_CONTRAST = 40
#: Components smaller than this share of the page's largest component are specks of noise.
_SPECK_FRACTION = 0.02
#: A component wider than this many times its height is tried as several touching symbols
#: (the widest single symbol, M, is about 1.3 in the fonts we render).
_WIDE = 1.45
#: Most pieces one component is cut into, and most cut candidates tried.
_MAX_PIECES, _MAX_CUTS = 4, 8
#: Most ink (share of the component's height) a column may hold to be a place to cut.
_THIN_JOIN = 0.3
#: A component read as one symbol this close to a node (in unknown-distance units) is not cut.
_SURE = 0.6
#: Nodes looked at per piece, labels kept per piece, readings kept per component and per word.
_NEAREST, _LABELS_PER_PIECE, _OPTIONS, _BEAM = 8, 2, 12, 40
#: How much more (in summed unknown-distance units) a standard numeral may cost than the
#: cheapest reading and still be preferred to it.
_STANDARD_MARGIN = 0.6


Box = tuple[int, int, int, int]   # top, left, bottom, right (bottom and right exclusive)


@dataclass
class SymbolReading:
    symbol: str            # one of IVXLCDM
    box: Box
    confidence: float      # share of the BMU's training samples with this label
    distance: float        # distance to the BMU, in units of the map's unknown distance (<= 1)


@dataclass
class NumeralReading:
    """One numeral token found on a page."""

    text: str
    value: int | None
    standard: bool
    problem: str | None
    box: Box
    confidence: float      # the least confident symbol's confidence
    symbols: list[SymbolReading] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


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
        gray = _to_gray(page)
        if np.subtract(*np.percentile(gray, [99, 1])) < _MIN_CONTRAST:
            return []
        ink = binarize(gray)
        labels, boxes, areas = connected_components(ink)
        components = self._text_components(boxes, areas)
        readings = []
        for word in _group_words(components, boxes):
            reading = self._read_word(word, labels, boxes)
            if reading is not None:
                readings.append(reading)
        return sorted(readings, key=lambda reading: (reading.box[0] // max(reading.box[2] - reading.box[0], 1),
                                                     reading.box[1]))

    # ------------------------------------------------------------- pieces
    def _text_components(self, boxes: list[Box], areas: np.ndarray) -> list[int]:
        """Indices of components big enough to be symbols."""
        if not len(boxes):
            return []
        floor = max(4, _SPECK_FRACTION * float(np.max(areas)))
        return [index for index, (box, area) in enumerate(zip(boxes, areas))
                if area >= floor and box[2] - box[0] >= self.min_height]

    def _read_word(self, word: list[int], labels: np.ndarray, boxes: list[Box]) -> NumeralReading | None:
        """Best reading of a word: the cheapest standard numeral close to the cheapest reading at all.

        Each component offers a few readings (itself as one symbol, or cut into touching
        symbols, each piece with its one or two likeliest labels). A beam search joins them
        left to right. Symbols alone cannot tell an M cut into ``IVI`` from an honest ``IVI``;
        the numeral can, so a standard numeral wins unless it costs clearly more.
        """
        beam: list[tuple[float, list[SymbolReading]]] = [(0.0, [])]
        for index in sorted(word, key=lambda i: boxes[i][1]):
            top, left, bottom, right = boxes[index]
            options = self._component_options(labels[top:bottom, left:right] == index + 1, (top, left))
            if not options:
                return None
            beam = sorted(((cost + _cost(option), symbols + option) for cost, symbols in beam for option in options),
                          key=lambda state: state[0])[:_BEAM]
        cheapest_cost, cheapest = beam[0]
        standard = [(cost, symbols) for cost, symbols in beam
                    if parse_roman("".join(s.symbol for s in symbols)).standard]
        if standard and standard[0][0] <= cheapest_cost + _STANDARD_MARGIN:
            cheapest = standard[0][1]
        return _reading(cheapest)

    def _component_options(self, mask: np.ndarray, origin: tuple[int, int]) -> list[list[SymbolReading]]:
        """Readings of one component, cheapest first: itself as one symbol, or its best cuts."""
        height, width = mask.shape
        options = self._piece_options([mask], origin, [0])
        if options and width <= _WIDE * height and _cost(options[0]) <= _SURE:
            return options   # a clear single symbol of a plausible width: no cut can beat it
        for cuts in _cut_sets(mask):
            edges = [0, *cuts, width]
            options += self._piece_options([mask[:, a:b] for a, b in zip(edges, edges[1:])], origin, edges[:-1])
        return sorted(options, key=_cost)[:_OPTIONS]

    def _piece_options(self, pieces: list[np.ndarray], origin: tuple[int, int], offsets: list[int]
                       ) -> list[list[SymbolReading]]:
        """Readings of side-by-side pieces, each with its likeliest labels; [] if a piece is unknown."""
        if any(not piece.any() for piece in pieces):
            return []
        boxes = [_ink_box(piece, origin, offset) for piece, offset in zip(pieces, offsets)]
        if any(_too_wide(box) for box in boxes):
            return []
        vectors = np.stack([glyph_vector(piece) for piece in pieces])
        nodes, distances = self.som.bmu(vectors, k=min(_NEAREST, self.som.config.nodes))
        nodes, distances = nodes.reshape(len(pieces), -1), distances.reshape(len(pieces), -1)
        per_piece = []
        for box, piece_nodes, piece_distances in zip(boxes, nodes, distances):
            choices, seen = [], set()
            for node, distance in zip(piece_nodes, piece_distances):
                label = int(self.som.node_labels[node])
                if label in seen or distance > self.som.unknown_distance or len(choices) == _LABELS_PER_PIECE:
                    continue
                seen.add(label)
                choices.append(SymbolReading(symbol=self.som.classes[label], box=box,
                                             confidence=float(self.som.node_confidence[node]),
                                             distance=float(distance) / self.som.unknown_distance))
            if not choices:
                return []
            per_piece.append(choices)
        return [list(combination) for combination in itertools.product(*per_piece)]


def _reading(symbols: list[SymbolReading]) -> NumeralReading:
    text = "".join(symbol.symbol for symbol in symbols)
    parsed = parse_roman(text)
    box = (min(s.box[0] for s in symbols), min(s.box[1] for s in symbols),
           max(s.box[2] for s in symbols), max(s.box[3] for s in symbols))
    return NumeralReading(text=text, value=parsed.value, standard=parsed.standard, problem=parsed.problem,
                          box=box, confidence=min(s.confidence for s in symbols), symbols=symbols)


def _too_wide(box: Box) -> bool:
    """Wider than any Roman capital (a rule, a smudge, or several letters): no single symbol."""
    top, left, bottom, right = box
    return right - left > _WIDE * (bottom - top)


def _ink_box(piece: np.ndarray, origin: tuple[int, int], offset: int) -> Box:
    rows, cols = np.nonzero(piece)
    top, left = origin[0] + int(rows.min()), origin[1] + offset + int(cols.min())
    return top, left, origin[0] + int(rows.max()) + 1, origin[1] + offset + int(cols.max()) + 1


def _cost(symbols: list[SymbolReading]) -> float:
    """Sum of the symbols' distances (in unknown-distance units): fewer, closer symbols cost less."""
    return float(sum(symbol.distance for symbol in symbols))


def _cut_sets(mask: np.ndarray) -> list[tuple[int, ...]]:
    """Candidate ways to cut a blob into 2.._MAX_PIECES symbols at columns with little ink."""
    height, width = mask.shape
    ink = mask.sum(axis=0).astype(np.float64)
    smooth = np.convolve(ink, np.ones(3) / 3, mode="same")
    margin = max(2, height // 5)   # no symbol is narrower than a fifth of its height (I is ~0.2-0.3)
    inner = np.arange(margin, width - margin)
    if not len(inner):
        return []
    # Touching letters meet at thin places (serifs, hairlines): a column inked for more than
    # _THIN_JOIN of the height is inside a stroke, and cutting there would slice a solid blob
    # into bars that look like I's.
    valleys = [int(c) for c in inner if smooth[c] <= smooth[max(c - 1, 0)] and smooth[c] <= smooth[min(c + 1, width - 1)]
               and smooth[c] <= _THIN_JOIN * height]
    valleys = sorted(valleys, key=lambda c: smooth[c])[:_MAX_CUTS]
    cut_sets = []
    for count in range(1, _MAX_PIECES):
        for cuts in itertools.combinations(sorted(valleys), count):
            edges = [0, *cuts, width]
            if min(b - a for a, b in zip(edges, edges[1:])) >= margin:
                cut_sets.append(cuts)
    return cut_sets


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
            if left_b - right_a > 0.6 * height:
                # Too far for this pair; a later, taller component may still be near enough.
                if left_b - right_a > 0.6 * tallest:
                    break   # sorted by left edge: every later component starts even farther right
                continue
            overlap = min(bottom_a, bottom_b) - max(top_a, top_b)
            if overlap >= 0.5 * min(bottom_a - top_a, bottom_b - top_b):
                parent[root(b)] = root(a)
    words: dict[int, list[int]] = {}
    for index in components:
        words.setdefault(root(index), []).append(index)
    return list(words.values())


def _to_gray(page: np.ndarray) -> np.ndarray:
    page = np.asarray(page)
    if page.ndim == 3 and page.shape[2] in (3, 4):
        rgb = page[..., :3].astype(np.float32)
        return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    if page.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) page, got shape {page.shape}")
    return page.astype(np.uint8)


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
        top, left, bottom, right = reading.box
        colour = (0, 170, 0) if reading.standard else (230, 130, 0) if reading.value is not None else (220, 0, 0)
        draw.rectangle((left - 3, top - 3, right + 2, bottom + 2), outline=colour, width=width)
        label = f"{reading.text} = {reading.value}" if reading.value is not None else f"{reading.text} = ?"
        draw.text((left, max(0, top - 14 - width)), label, fill=colour)
    return np.asarray(image)
