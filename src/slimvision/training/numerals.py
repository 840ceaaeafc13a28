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
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slimvision.config import BaseConfig
from slimvision.data.numerals import FontFace, NoiseConfig, find_fonts, render_numerals, render_symbols, split_fonts
from slimvision.data.roman import MAX_STANDARD, SYMBOLS, to_roman
from slimvision.errors import ConfigError
from slimvision.models.som import SelfOrganizingMap, SOMConfig
from slimvision.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass
class NumeralTrainingConfig(BaseConfig):
    """Everything a numeral map is trained from; saved as ``training.json`` beside the map.

    Attributes:
        som: the map (its ``dim`` must be 1024: 32 x 32 glyphs).
        samples: rendered training symbols, spread evenly over the 7 symbols and the fonts.
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
        seed: seeds rendering (training and validation get different streams).
    """

    som: SOMConfig = field(default_factory=SOMConfig)
    samples: int = 14_000
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    validation_families: tuple[str, ...] = ("Computer Modern",)
    validation_samples: int = 2_100
    calibration_families: tuple[str, ...] = ("STIXGeneral",)
    unknown_quantile: float = 0.999
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        self.require_at_least(len(SYMBOLS), "samples", "validation_samples")
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
    started = time.perf_counter()
    data, labels = render_symbols(train_fonts, config.samples, seed=config.seed, noise=config.noise)
    rendered = time.perf_counter()
    calibration = calibrate_unknown_distance(config, train_fonts, data, labels)
    som = SelfOrganizingMap(config.som)
    history = som.fit(data, progress=progress)
    som.label(data, labels, tuple(SYMBOLS), unknown_quantile=config.unknown_quantile)
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
        "unknown_distance": som.unknown_distance,
        "calibration": calibration,
    }
    return som, report


def calibrate_unknown_distance(config: NumeralTrainingConfig, fonts: list[FontFace], data: np.ndarray,
                               labels: np.ndarray) -> dict[str, Any]:
    """Fit a map without the calibration families; measure how far their symbols land from it.

    ``render_symbols`` draws sample ``i`` in ``fonts[(i // 7) % len(fonts)]``, so each sample's
    family is known without rendering anything again.
    """
    families = np.array([fonts[(index // len(SYMBOLS)) % len(fonts)].family for index in range(len(data))])
    unseen = np.isin(families, config.calibration_families)
    if not unseen.any() or unseen.all():
        raise ConfigError(f"NumeralTrainingConfig.calibration_families {config.calibration_families} must name "
                          f"some but not all training families: {sorted(set(families.tolist()))}")
    som = SelfOrganizingMap(config.som)
    som.fit(data[~unseen], progress=False)
    som.label(data[~unseen], labels[~unseen], tuple(SYMBOLS))
    prediction = som.classify(data[unseen], unknown_distance=np.inf)
    distance = float(np.quantile(prediction.distance, config.unknown_quantile))
    return {"families": list(config.calibration_families), "samples": int(unseen.sum()),
            "accuracy_unseen": float(np.mean(prediction.label == labels[unseen])), "unknown_distance": distance}


def symbol_accuracy(som: SelfOrganizingMap, fonts: list[FontFace], count: int, *, seed: int,
                    noise: NoiseConfig) -> float:
    """Share of rendered symbols whose BMU label is right ("unknown" counts as wrong)."""
    data, labels = render_symbols(fonts, count, seed=seed, noise=noise)
    return float(np.mean(som.classify(data).label == labels))


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


def evaluation_numbers(count: int, seed: int) -> list[int]:
    """``count`` distinct integers spread over 1..3999 (all of them when ``count`` >= 3999)."""
    if count >= MAX_STANDARD:
        return list(range(1, MAX_STANDARD + 1))
    return sorted(np.random.default_rng(seed).choice(np.arange(1, MAX_STANDARD + 1), count, replace=False).tolist())


def noise_curve(som: SelfOrganizingMap, levels: list[float], *, symbols: int, numerals: int, seed: int,
                validation_families: tuple[str, ...] = ("Computer Modern",), progress: bool = True) -> list[dict[str, Any]]:
    """Symbol and whole-numeral accuracy on held-out fonts at each noise level."""
    from slimvision.inference.numerals import NumeralReader

    _, held_out = split_fonts(find_fonts(), validation_families=validation_families)
    reader = NumeralReader(som)
    numbers = evaluation_numbers(numerals, seed)
    rows = []
    for level in levels:
        noise = NoiseConfig(level=level)
        symbol = symbol_accuracy(som, held_out, symbols, seed=seed + 1, noise=noise)
        whole, misses = numeral_accuracy(reader, held_out, numbers, seed=seed + 2, noise=noise, progress=progress)
        rows.append({"noise": level, "symbol_accuracy": symbol, "numeral_accuracy": whole,
                     "symbols": symbols, "numerals": len(numbers), "misses": misses[:20]})
        log.info("noise %.2f: symbols %.4f, numerals %.4f", level, symbol, whole)
    return rows
