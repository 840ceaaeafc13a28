"""A thin, explicit wrapper around ``onnxruntime.InferenceSession``.

Every pipeline creates its sessions here so thread count, graph optimisation level and
execution providers are set in one place, and a provider that cannot start (a CUDA build
without its libraries, say) falls back to the CPU with a warning instead of failing.

Example:
    >>> from slimvision.inference.session import OnnxModel, SessionSettings
    >>> model = OnnxModel("model.onnx", SessionSettings(threads=2))   # doctest: +SKIP
    >>> (y,) = model.run({"x": x})                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from slimvision.errors import SlimvisionError

log = logging.getLogger(__name__)

Optimization = Literal["disable", "basic", "extended", "all"]
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU = "CPUExecutionProvider"
# Tried in this order when the caller asks for "auto"; CPU is always last.
_PREFERRED = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider")


@dataclass(frozen=True)
class SessionSettings:
    """How to run a model.

    Attributes:
        threads: intra-op threads; ``None`` lets ONNX Runtime use one per physical core.
        optimization: graph optimisation level ("all" fuses QDQ pairs into int8 kernels).
        providers: execution providers in priority order, or ``("auto",)`` for the best
            available accelerator followed by the CPU.
    """

    threads: int | None = None
    optimization: Optimization = "all"
    providers: tuple[str, ...] = ("auto",)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise SlimvisionError(f"threads must be >= 1, got {self.threads}")
        if self.optimization not in _OPT_LEVELS:
            raise SlimvisionError(
                f"optimization must be one of {', '.join(_OPT_LEVELS)}, got {self.optimization!r}"
            )

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = _OPT_LEVELS[self.optimization]
        options.log_severity_level = 3  # ORT's own warnings about unused initializers are noise
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        return options


def resolve_providers(requested: tuple[str, ...]) -> list[str]:
    """Turn a provider request into a list ONNX Runtime accepts, always ending with the CPU."""
    available = ort.get_available_providers()
    if requested == ("auto",):
        chosen = [name for name in _PREFERRED if name in available]
    else:
        chosen = []
        for name in requested:
            if name == CPU:
                continue
            if name in available:
                chosen.append(name)
            else:
                log.warning("%s is not available in this onnxruntime build; using the CPU", name)
    return [*chosen, CPU]


class OnnxModel:
    """One ONNX Runtime session with named inputs and outputs.

    Args:
        model: path to an ``.onnx`` file or its serialised bytes.
        settings: threads, optimisation level and providers.
        name: used in log and error messages.
    """

    def __init__(self, model: str | Path | bytes, settings: SessionSettings | None = None,
                 name: str | None = None) -> None:
        self.settings = settings or SessionSettings()
        self.name = name or (Path(model).name if not isinstance(model, bytes) else "model")
        self.session = self._create(model)
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.output_names = [item.name for item in self.session.get_outputs()]

    def _create(self, model: str | Path | bytes) -> ort.InferenceSession:
        source = model if isinstance(model, bytes) else str(model)
        providers = resolve_providers(self.settings.providers)
        options = self.settings.session_options()
        try:
            return ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises bare RuntimeErrors for provider failures
            if providers == [CPU]:
                raise SlimvisionError(f"{self.name}: onnxruntime cannot load the model ({exc})") from exc
            log.warning("%s: %s failed (%s); falling back to the CPU", self.name, providers[0], exc)
            return ort.InferenceSession(source, options, providers=[CPU])

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on named inputs and return every output."""
        return self.session.run(None, feeds)

    def input_shapes(self) -> dict[str, list[Any]]:
        """Declared input shapes; free dimensions appear as their names (e.g. "height")."""
        return {item.name: list(item.shape) for item in self.session.get_inputs()}
