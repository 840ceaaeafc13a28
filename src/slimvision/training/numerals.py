"""Train and evaluate the Roman-numeral map (numpy only: no torch anywhere in this system).

Training data are symbols rendered with the training fonts; every score is measured on fonts
of families the map never saw (by default Computer Modern), so it says how the map reads a
typeface it was not fitted to.

Example:
    >>> config = NumeralTrainingConfig(som=SOMConfig(rows=8, cols=8), samples=700)   # doctest: +SKIP
    >>> som, report = train_numeral_map(config)                                        # doctest: +SKIP
    >>> report["symbol_accuracy"]                                                       # doctest: +SKIP
    0.99...
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slimvision.config import BaseConfig
from slimvision.data.numerals import (NOT_NUMERALS, FontFace, NoiseConfig, find_fonts, render_symbols, split_fonts,
                                     symbol_font)
from slimvision.data.roman import SYMBOLS
from slimvision.errors import ConfigError
from slimvision.models.som import SelfOrganizingMap, SOMConfig, TrainingHistory

log = logging.getLogger(__name__)

#: Below this many training fonts, the map is warned to read unseen typefaces worse.
_FEW_FONTS = 60
#: The map's class for glyphs that are not numeral symbols (other letters, digits).
NOT_A_NUMERAL = "other"
#: The map's classes: the seven symbols, then NOT_A_NUMERAL.
CLASSES = (*SYMBOLS, NOT_A_NUMERAL)


@dataclass
class NumeralTrainingConfig(BaseConfig):
    """Everything a numeral map is trained from; saved as ``training.json`` beside the map.

    Attributes:
        som: the map (its ``dim`` must be 1024: 32 x 32 glyphs). 30 x 30 nodes: the seven
            symbols and the other letters share the map, and each symbol needs room for many
            typefaces (20 x 20 read 1% fewer held-out symbols).
        samples: rendered training symbols, spread evenly over the 7 symbols and the fonts.
        other_samples: rendered letters and digits that are not numerals (``NOT_NUMERALS``),
            labelled ``"other"``: nodes they win tell the reader a glyph is no numeral symbol.
            Without them every node is a numeral, and a word like ``THE``, cut into bars and
            corners, reads as ``IIIL``. 0 trains a map of the seven symbols alone.
        noise: how worn the rendered print is (``NoiseConfig()`` is the default level).
        validation_families: font families held out of training and used for every score.
        validation_samples: held-out symbols rendered to measure symbol accuracy.
        calibration_families: training font families the unknown distance is calibrated on:
            a first map is fitted without them, and the distance within which it still knows
            ``unknown_quantile`` of their symbols becomes the final map's unknown distance. A
            threshold from the training fonts themselves is far too tight for a typeface the
            map has never seen (it rejected 2% of held-out symbols that the map read right).
        unknown_quantile: share of the calibration symbols the map must still call known; beyond
            that distance to the BMU a glyph is "unknown" (not a numeral).
        lvq_epochs: epochs of Kohonen's LVQ1 after labelling, which moves the prototypes'
            borders to where the classes part (0: the plain self-organised map).
        lvq_learning_rate: LVQ1's starting learning rate (it falls linearly to zero).
        seed: seeds rendering (training and validation get different streams).
    """

    som: SOMConfig = field(default_factory=lambda: SOMConfig(rows=30, cols=30, dim=1024))
    samples: int = 35_000
    other_samples: int = 21_000
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    validation_families: tuple[str, ...] = ("Computer Modern",)
    validation_samples: int = 2_100
    calibration_families: tuple[str, ...] = ("STIXGeneral",)
    unknown_quantile: float = 0.999
    lvq_epochs: int = 6
    lvq_learning_rate: float = 0.05
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        self.require_at_least(len(SYMBOLS), "samples", "validation_samples")
        self.require_at_least(0, "other_samples", "lvq_epochs")
        self.require_positive("lvq_learning_rate")
        if self.som.dim != 1024:
            raise ConfigError(f"NumeralTrainingConfig: som.dim must be 1024 (32 x 32 glyphs), got {self.som.dim}")
        if not 0 < self.unknown_quantile <= 1:
            raise ConfigError(f"NumeralTrainingConfig.unknown_quantile must be in (0, 1], got {self.unknown_quantile}")


def font_split(config: NumeralTrainingConfig) -> tuple[list[FontFace], list[FontFace]]:
    """(training fonts, held-out fonts) as the config splits them."""
    return split_fonts(find_fonts(), validation_families=config.validation_families)


def train_numeral_map(config: NumeralTrainingConfig, *, progress: bool = True) -> tuple[SelfOrganizingMap, dict[str, Any]]:
    """Render, fit, label and score a numeral map.

    Returns:
        The labelled map and a report: data sizes, fonts, time per stage, the error history
        and the symbol accuracy on held-out fonts.
    """
    train_fonts, held_out = font_split(config)
    if len(train_fonts) < _FEW_FONTS:
        log.warning("only %d training fonts found; the shipped map was trained on 106 (matplotlib's and "
                    "Debian's font packages: `make fonts`), and fewer typefaces read unseen ones worse",
                    len(train_fonts))
    started = time.perf_counter()
    data, labels, families = training_glyphs(config, train_fonts, progress=progress)
    rendered = time.perf_counter()
    calibration = calibrate_unknown_distance(config, data, labels, families, progress=progress)
    som, history = fit_labelled_map(config, data, labels, progress=progress)
    som.unknown_distance = max(som.unknown_distance, calibration["unknown_distance"])
    fitted = time.perf_counter()
    accuracy = symbol_accuracy(som, held_out, config.validation_samples, seed=config.seed + 1, noise=config.noise)
    report = {
        "training_fonts": [font.name for font in train_fonts],
        "held_out_fonts": [font.name for font in held_out],
        "samples": config.samples,
        "render_seconds": round(rendered - started, 2),
        "fit_seconds": round(fitted - rendered, 2),
        "history": history.to_dict(),
        "quantization_error": history.quantization_error[-1],
        "topographic_error": history.topographic_error[-1],
        "symbol_accuracy": accuracy,
        **({"other_rejected": other_rejection(som, held_out, config.validation_samples, seed=config.seed + 1,
                                              noise=config.noise)} if config.other_samples else {}),
        "unknown_distance": som.unknown_distance,
        "calibration": calibration,
    }
    return som, report


def training_glyphs(config: NumeralTrainingConfig, fonts: list[FontFace], *, progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Glyph vectors, class indices into the map's classes, and each glyph's font family."""
    data, labels = render_symbols(fonts, config.samples, seed=config.seed, noise=config.noise, progress=progress)
    families = _families(fonts, config.samples, len(SYMBOLS))
    if config.other_samples:
        # A seed of its own: sample i of this stream must not repeat sample i's wear above.
        others, _ = render_symbols(fonts, config.other_samples, seed=config.seed + 7919, noise=config.noise,
                                   alphabet=NOT_NUMERALS, progress=progress)
        data = np.concatenate([data, others])
        labels = np.concatenate([labels, np.full(config.other_samples, len(SYMBOLS), np.int64)])
        families = np.concatenate([families, _families(fonts, config.other_samples, len(NOT_NUMERALS))])
    return data, labels, families


def _families(fonts: list[FontFace], count: int, alphabet_size: int) -> np.ndarray:
    """The font family of each of ``count`` samples :func:`render_symbols` drew."""
    return np.array([symbol_font(fonts, index, alphabet_size).family for index in range(count)])


def fit_labelled_map(config: NumeralTrainingConfig, data: np.ndarray, labels: np.ndarray, *,
                     progress: bool) -> tuple[SelfOrganizingMap, TrainingHistory]:
    """Fit the map, label its nodes by majority vote, sharpen the class borders with LVQ1, relabel."""
    som = SelfOrganizingMap(config.som)
    history = som.fit(data, progress=progress)
    som.label(data, labels, _classes(config), unknown_quantile=config.unknown_quantile)
    if config.lvq_epochs:
        som.fine_tune(data, labels, epochs=config.lvq_epochs, learning_rate=config.lvq_learning_rate,
                      seed=config.seed, progress=progress)
        som.label(data, labels, _classes(config), unknown_quantile=config.unknown_quantile)
    return som, history


def _classes(config: NumeralTrainingConfig) -> tuple[str, ...]:
    return CLASSES if config.other_samples else tuple(SYMBOLS)


def calibrate_unknown_distance(config: NumeralTrainingConfig, data: np.ndarray, labels: np.ndarray,
                               families: np.ndarray, *, progress: bool = False) -> dict[str, Any]:
    """Fit a map without the calibration families; measure how far their symbols land from it."""
    unseen = np.isin(families, config.calibration_families)
    if not unseen.any() or unseen.all():
        raise ConfigError(f"NumeralTrainingConfig.calibration_families {config.calibration_families} must name "
                          f"some but not all training families: {sorted(set(families.tolist()))}")
    if progress:
        print(f"calibrating the unknown distance: a map without {', '.join(config.calibration_families)}",
              file=sys.stderr)
    som, _ = fit_labelled_map(config, data[~unseen], labels[~unseen], progress=progress)
    symbols = unseen & (labels < len(SYMBOLS))
    prediction = som.classify(data[symbols], unknown_distance=np.inf)
    distance = float(np.quantile(prediction.distance, config.unknown_quantile))
    return {"families": list(config.calibration_families), "samples": int(symbols.sum()),
            "accuracy_unseen": float(np.mean(prediction.label == labels[symbols])), "unknown_distance": distance}


def symbol_accuracy(som: SelfOrganizingMap, fonts: list[FontFace], count: int, *, seed: int,
                    noise: NoiseConfig) -> float:
    """Share of rendered symbols whose BMU label is right ("unknown" counts as wrong)."""
    data, labels = render_symbols(fonts, count, seed=seed, noise=noise)
    return float(np.mean(som.classify(data).label == labels))


def other_rejection(som: SelfOrganizingMap, fonts: list[FontFace], count: int, *, seed: int,
                    noise: NoiseConfig) -> float:
    """Share of rendered letters and digits that are no numerals which the map does not call a numeral symbol."""
    data, _ = render_symbols(fonts, count, seed=seed, noise=noise, alphabet=NOT_NUMERALS)
    label = som.classify(data).label
    return float(np.mean((label < 0) | (label >= len(SYMBOLS))))
