"""A thin, explicit wrapper around ``onnxruntime.InferenceSession``.

Every pipeline creates its sessions here so thread count, graph optimisation level and
execution providers are set in one place, and a provider that cannot start (a CUDA build
without its libraries, say) falls back to the CPU with a warning instead of failing.

Example:
    >>> from slimvision.graph.session import OnnxModel, SessionSettings
    >>> model = OnnxModel("model.onnx", SessionSettings(threads=2))   # doctest: +SKIP
    >>> (y,) = model.run({"x": x})                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from slimvision import ORT_LOADED_FIRST
from slimvision.errors import SlimvisionError

log = logging.getLogger(__name__)

if ORT_LOADED_FIRST:
    # slimvision's __init__ turns ONNX Runtime's telemetry off, but only a process that loads
    # onnxruntime after it: this one loaded it first (see slimvision/__init__.py).
    log.warning("onnxruntime was imported before slimvision, so its telemetry may be on in this process: "
                "import slimvision first, or set ORT_DISABLE_TELEMETRY=1 before starting Python")

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
        memory_arena: keep freed CPU memory in ONNX Runtime's arena for the next run (fastest
            for one model run again and again; many sessions would each hold their own peak).
        allow_spinning: after a run, the intra-op pool threads busy-wait for the next one. That
            is fastest for one model run back to back, but where several sessions, or numpy and
            Pillow work, take turns, the spinning threads take the cores from them (MTCNN's
            three networks ran 2-3x slower on 2 cores with it).
    """

    threads: int | None = None
    optimization: Optimization = "all"
    providers: tuple[str, ...] = ("auto",)
    memory_arena: bool = True
    allow_spinning: bool = True

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
        options.enable_cpu_mem_arena = self.memory_arena
        if not self.allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


@lru_cache(maxsize=1)
def machine_fingerprint() -> str:
    """ONNX Runtime version + CPU architecture and features: what an optimised graph depends on."""
    parts = [ort.__version__, platform.machine()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            parts += sorted({line for line in handle if line.startswith(("flags", "model name"))})
    except OSError:
        parts.append(platform.processor())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


class OnnxModel:
    """One ONNX Runtime session with named inputs and outputs.

    Args:
        model: path to an ``.onnx`` file or its serialised bytes.
        settings: threads, optimisation level and providers.
        name: used in log and error messages.
        cache_key: a name unique to this model's content; when given, the graph ONNX Runtime
            optimised for the CPU is cached on disk and later sessions skip the optimiser
            (session creation for the style transformer drops from ~120 ms to ~40 ms).
    """

    def __init__(self, model: str | Path | bytes, settings: SessionSettings | None = None,
                 name: str | None = None, cache_key: str | None = None) -> None:
        self.settings = settings or SessionSettings()
        self.name = name or (Path(model).name if not isinstance(model, bytes) else "model")
        self.cache_key = cache_key
        self.session = self._create(model)
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.output_names = [item.name for item in self.session.get_outputs()]

    def _create(self, model: str | Path | bytes) -> ort.InferenceSession:
        source = model if isinstance(model, bytes) else str(model)
        providers = resolve_providers(self.settings.providers)
        options = self.settings.session_options()
        if self.cache_key and providers == [CPU] and self.settings.optimization == "all":
            session = self._create_cached(source, options)
            if session is not None:
                return session
        try:
            return ort.InferenceSession(source, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises bare RuntimeErrors for provider failures
            if providers == [CPU]:
                raise SlimvisionError(f"{self.name}: onnxruntime cannot load the model ({exc})") from exc
            log.warning("%s: %s failed (%s); falling back to the CPU", self.name, providers[0], exc)
            return ort.InferenceSession(source, options, providers=[CPU])

    def _create_cached(self, source: str | bytes, options: ort.SessionOptions) -> ort.InferenceSession | None:
        """Load the cached CPU-optimised graph, or create the session and cache its graph.

        The optimised graph may use kernels specific to this CPU (NCHWc layouts), so the cache
        entry is keyed by the machine fingerprint as well as the model.
        """
        from slimvision.graph.rewrite import cache_dir, read_cache_entry, write_cache_entry

        # Checksummed like every cache entry (graph.read_cache_entry): a damaged file is rebuilt.
        key = f"{self.cache_key}-cpu-{machine_fingerprint()}.optimized"
        cached = read_cache_entry(key)
        if cached is not None:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                return ort.InferenceSession(cached, options, providers=[CPU])
            except Exception as exc:  # noqa: BLE001 - a stale entry is rebuilt below
                log.debug("ignoring cached %s (%s)", key, exc)
                options = self.settings.session_options()
        temporary = cache_dir() / f".{key}.{os.getpid()}.tmp"
        try:
            temporary.parent.mkdir(parents=True, exist_ok=True)
            options.optimized_model_filepath = str(temporary)
            session = ort.InferenceSession(source, options, providers=[CPU])
            write_cache_entry(key, temporary.read_bytes())
            temporary.unlink()
            return session
        except Exception as exc:  # noqa: BLE001 - no cache (read-only home...) is not an error
            log.debug("cannot cache the optimised %s (%s)", self.name, exc)
            return None

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on named inputs and return every output."""
        return self.session.run(None, feeds)

    def input_shapes(self) -> dict[str, list[Any]]:
        """Declared input shapes; free dimensions appear as their names (e.g. "height")."""
        return {item.name: list(item.shape) for item in self.session.get_inputs()}
