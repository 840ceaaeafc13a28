"""Post-training quantization of ONNX models with ONNX Runtime, and an honest report of the cost.

Three ways to shrink a float model, each written atomically next to nothing it could clobber:

* :func:`quantize_int8_static`: int8 weights (per channel by default) and int8 activations
  in the QDQ format, with activation ranges calibrated on sample inputs. The format the
  shipped Magenta transformer uses; ONNX Runtime fuses the Q/DQ pairs into int8 kernels.
* :func:`quantize_int8_dynamic`: int8 weights, activations quantized on the fly per run. Pays
  off for MatMul/Gemm-heavy models (heads, embeddings); convolutions rarely gain.
* :func:`convert_fp16`: float16 storage (half the bytes); inputs and outputs stay float32.
* :func:`store_weights_fp16`: float16 *storage* only (Casts to float32 that ONNX Runtime folds
  at load): half the bytes, float speed, about 1e-3 relative rounding.
* :func:`quantize_weights_int8`: int8 *storage* only: each Conv/Gemm weight becomes int8 with
  one scale per output channel behind a DequantizeLinear, activations stay float. A quarter of
  the bytes; ``slimvision.graph.precision.with_float_weights`` folds the weights back to
  float at load time, so it runs at float speed (the right trade on CPUs without VNNI).

When the float model has an artifact card (:mod:`slimvision.export.card`), each of these writes
one beside its output too (:func:`derive_card`): the same tensors and preprocessing, the
float graph as provenance and the parity against the float graph. For static int8 that parity
is measured on feeds the calibration never saw (given, or a seeded draw in the card's input
ranges), since the calibration feeds themselves are the ones whose ranges it fits best.

Whether int8 is *faster* depends on the CPU (VNNI or not): on our AVX2 box the shipped int8
style transformer is 1.3x slower than its float twin. So :func:`compare_models` reports the
agreement, and speed is left to the benchmarks, which decide what ships.

Example:
    >>> feeds = [{"image": np.random.rand(1, 3, 64, 64).astype(np.float32)} for _ in range(8)]
    >>> quantize_int8_static("model.onnx", feeds, "model.int8.onnx")            # doctest: +SKIP
    >>> report = quantization_report("model.onnx", "model.int8.onnx", feeds)     # doctest: +SKIP
    >>> print(report.summary())                                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slimvision.errors import InputError, SlimvisionError
from slimvision.export.card import card_path, read_card, write_card
from slimvision.io.atomic import atomic_write

log = logging.getLogger(__name__)

Feeds = dict[str, np.ndarray]
CalibrationMethod = Literal["minmax", "entropy", "percentile"]
#: How many held-out feeds the static int8 card's parity is measured on (when none are given).
PARITY_FEEDS = 8
#: The seed of that held-out draw (fixed, so a re-export writes the same card).
PARITY_SEED = 8128


def _check_model_file(model: str | Path) -> Path:
    path = Path(model)
    if not path.is_file():
        raise InputError(path, "model file not found")
    return path


class _FeedReader:
    """ONNX Runtime's CalibrationDataReader protocol over any iterable of feeds."""

    def __init__(self, feeds: Iterable[Feeds]) -> None:
        self._feeds: Iterator[Feeds] = iter(feeds)
        self.count = 0

    def get_next(self) -> Feeds | None:
        feeds = next(self._feeds, None)
        if feeds is not None:
            self.count += 1
        return feeds

    def rewind(self) -> None:  # ORT calls it for some methods; our stream is read once
        pass


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI int8 dot products (Linux flags; elsewhere assume not)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def quantize_int8_static(model: str | Path, calibration: Iterable[Feeds], output: str | Path, *,
                         per_channel: bool = True, method: CalibrationMethod = "minmax",
                         activations: Literal["uint8", "int8"] = "uint8", reduce_range: bool | None = None,
                         exclude_nodes: Sequence[str] = (), overwrite: bool = False,
                         parity: Iterable[Feeds] | None = None) -> Path:
    """Static int8 QDQ quantization with activation ranges calibrated on ``calibration``.

    Args:
        model: the float ONNX model.
        calibration: input feeds (name -> array), typically 50-500 representative samples.
        output: where to write the quantized model.
        per_channel: one weight scale per output channel (much more accurate for convolutions
            whose filters differ in magnitude; the shipped Magenta models use it).
        method: how activation ranges are chosen: "minmax" (the observed range), "entropy"
            (KL divergence, clips outliers) or "percentile" (99.999th).
        activations: uint8 (asymmetric, ORT's CPU default) or int8 (symmetric).
        reduce_range: 7-bit weights. Without VNNI, x86 CPUs multiply uint8 by int8 with an
            instruction (pmaddubsw) whose pairwise sums saturate at 16 bits, so full-range
            weights lose accuracy: on a test net, per-channel int8 had 4x the mean error of
            7-bit weights (0.0038 vs 0.0009). Default: on when this CPU lacks VNNI.
        exclude_nodes: node names to leave in float (e.g. a sensitive first or last layer).
        parity: held-out feeds for the card's parity against the float graph (default: a seeded
            draw of :data:`PARITY_FEEDS` feeds in the card's input ranges, shaped as the first
            calibration feed). A feed that is also a calibration feed is left out of it.
    """
    from onnxruntime.quantization import CalibrationMethod as Method
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    source = _check_model_file(model)
    methods = {"minmax": Method.MinMax, "entropy": Method.Entropy, "percentile": Method.Percentile}
    if method not in methods:
        raise SlimvisionError(f"calibration method must be one of {', '.join(methods)}, got {method!r}")
    seen: list[Feeds] = []
    digests: set[str] = set()
    reader = _FeedReader(_remember(calibration, seen, digests))
    activation_type = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    with atomic_write(Path(output), overwrite=overwrite, protected=[source]) as temp, _quiet_ort_quantizer():
        quantize_static(str(source), str(temp), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, reduce_range=reduce_range, activation_type=activation_type,
                        weight_type=QuantType.QInt8, calibrate_method=methods[method],
                        nodes_to_exclude=list(exclude_nodes))
        if reader.count == 0:
            raise SlimvisionError("calibration gave no samples: pass at least one input feed")
        # Chosen before the graph is written, so that parity feeds that cannot be used leave no output.
        held_out = _held_out(read_card(card_path(source)), parity, seen[0], digests) \
            if card_path(source).is_file() else None
    log.info("quantized %s -> %s (static int8, %d calibration samples)", source, output, reader.count)
    if held_out is not None:
        derive_card(source, Path(output), "int8 static QDQ (ONNX Runtime), calibrated", *held_out)
    return Path(output)


def _remember(feeds: Iterable[Feeds], first: list[Feeds], digests: set[str]) -> Iterator[Feeds]:
    """``feeds`` unchanged, keeping the first in ``first`` and every one's digest (the stream is read once)."""
    for feed in feeds:
        if not first:
            first.append(feed)
        digests.add(_digest(feed))
        yield feed


def _digest(feed: Feeds) -> str:
    """A feed's identity: its names, dtypes, shapes and bytes."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(feed):
        array = np.ascontiguousarray(feed[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _held_out(card: Any, given: Iterable[Feeds] | None, example: Feeds,
              calibration: set[str]) -> tuple[list[Feeds], str]:
    """The feeds the static int8 card's parity is measured on, none of them a calibration feed,
    and the words the card says that with."""
    if given is not None:
        feeds, words = list(given), "held out: feeds given for the parity check"
    else:
        shapes = {name: tuple(np.shape(array)) for name, array in example.items()}
        feeds = card_feeds(card, PARITY_FEEDS, seed=PARITY_SEED, shapes=shapes)
        words = (f"held out: {PARITY_FEEDS} random feeds (seed {PARITY_SEED}) in the card's input ranges, "
                 "shaped as the calibration feeds")
    kept = [feed for feed in feeds if _digest(feed) not in calibration]
    if not kept:
        raise SlimvisionError("every parity feed is also a calibration feed: give held-out feeds (parity=...)")
    return kept, f"{words}; none used for calibration"


def derive_card(source: Path, output: Path, method: str, parity_feeds: Sequence[Feeds] | None = None,
                parity_inputs: str = "given") -> Path | None:
    """Write ``output``'s card from ``source``'s, if the float model has one; return its path.

    The tensors, preprocessing, licence and remake command stay; ``files`` names the new graph;
    the provenance names the float graph (file and sha256) and how it was compressed; the parity
    is the new graph against the float one on ``parity_feeds`` (described on the card by
    ``parity_inputs``), or, when None, on random inputs made from the card's input specs
    (:func:`card_feeds`; the card says "random").
    """
    from slimvision.assets import file_sha256

    if not card_path(source).is_file():
        return None
    card = read_card(card_path(source))
    card.name = output.name.removesuffix(".onnx")
    card.files = {**card.files, "graph": output.name}
    card.provenance = {**card.provenance, "compressed_from": {"file": source.name, "sha256": file_sha256(source),
                                                             "method": method}}
    feeds = list(parity_feeds) if parity_feeds is not None else card_feeds(card)
    agreement = compare_models(source, output, feeds)
    float_parity = {"float_graph_vs_" + card.parity["reference"]: card.parity["max_abs_diff"]} if (
        "reference" in card.parity and "max_abs_diff" in card.parity) else {}
    card.parity = {"reference": f"float graph {source.name}", "inputs": parity_inputs if parity_feeds else "random",
                   "max_abs_diff": agreement.max_abs_diff, "mean_abs_diff": agreement.mean_abs_diff,
                   "mean_cosine": agreement.mean_cosine, "samples": agreement.samples, **float_parity}
    write_card(card, card_path(output))
    return card_path(output)


def card_feeds(card: Any, count: int = 2, free_size: int = 64, seed: int = 0,
               shapes: dict[str, tuple[int, ...]] | None = None) -> list[Feeds]:
    """``count`` random feeds shaped as the card's inputs: uniform in an input's value range, else
    standard normal; a symbolic axis is 1 for "batch" and ``free_size`` for any other (64 is a
    multiple of every ``size_multiple`` slimvision graphs ask for), unless ``shapes`` gives an
    input's whole shape."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for spec in card.inputs:
            shape = list((shapes or {}).get(spec.name) or
                         [dim if isinstance(dim, int) else 1 if dim == "batch" else free_size for dim in spec.shape])
            values = (rng.uniform(*spec.value_range, shape) if spec.value_range is not None
                      else rng.standard_normal(shape))
            feed[spec.name] = values.astype(spec.dtype)
        feeds.append(feed)
    return feeds


@contextmanager
def _quiet_ort_quantizer() -> Iterator[None]:
    """ORT's quantizer logs a pre-processing hint on the root logger for every model; mute it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8_dynamic(model: str | Path, output: str | Path, *, per_channel: bool = False,
                          overwrite: bool = False) -> Path:
    """int8 weights, activations quantized per run (no calibration needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = _check_model_file(model)
    with atomic_write(Path(output), overwrite=overwrite, protected=[source]) as temp, _quiet_ort_quantizer():
        quantize_dynamic(str(source), str(temp), per_channel=per_channel, weight_type=QuantType.QInt8)
    return Path(output)


def convert_fp16(model: str | Path, output: str | Path, *, overwrite: bool = False) -> Path:
    """float16 weights and activations, float32 inputs and outputs (Casts at the edges)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = _check_model_file(model)
    half = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    with atomic_write(Path(output), overwrite=overwrite, protected=[source]) as temp:
        onnx.save(half, str(temp))
    derive_card(source, Path(output), "float16 weights and activations, float32 inputs and outputs")
    return Path(output)


def quantize_weights_int8(model: str | Path, output: str | Path, *, overwrite: bool = False) -> Path:
    """int8 weights (symmetric, per output channel) behind DequantizeLinear; activations stay float."""
    from onnx import helper, numpy_helper

    def int8(name: str, weight: np.ndarray, axis: int) -> tuple[list[Any], Any]:
        values, scales = symmetric_int8(weight, axis)
        tensors = [numpy_helper.from_array(values, f"{name}_int8"), numpy_helper.from_array(scales, f"{name}_scale"),
                   numpy_helper.from_array(np.zeros_like(scales, dtype=np.int8), f"{name}_zero_point")]
        node = helper.make_node("DequantizeLinear", [t.name for t in tensors], [name], name=f"{name}_dequantize",
                                axis=axis)
        return tensors, node

    return _store_weights(model, output, int8, overwrite, min_opset=13)


def store_weights_fp16(model: str | Path, output: str | Path, *, overwrite: bool = False) -> Path:
    """float16 weight storage behind Cast nodes; compute stays float32.

    Half the bytes at about 1e-3 relative rounding, far gentler than int8 weights on networks
    whose outputs are small deviations from a large mean (a style vector). ONNX Runtime folds
    the Casts of constants when it loads the model, so it runs at float speed.
    """
    return _store_weights(model, output, _float16_weight, overwrite, min_opset=1)


def _float16_weight(name: str, weight: np.ndarray, _axis: int = 0) -> tuple[list[Any], Any]:
    """A weight stored as float16 and the Cast that gives the graph its float32 ``name`` back."""
    from onnx import TensorProto, helper, numpy_helper

    stored = numpy_helper.from_array(weight.astype(np.float16), f"{name}_fp16")
    return [stored], helper.make_node("Cast", [stored.name], [name], name=f"{name}_to_float", to=TensorProto.FLOAT)


#: The first ONNX opset whose DequantizeLinear takes 4-bit codes and per-block scales.
INT4_OPSET = 21


def store_weights_int4(model: str | Path, output: str | Path, layers: Sequence[Any], *,
                       overwrite: bool = False) -> Path:
    """4-bit weights from :func:`slimvision.compress.gptq.quantize_gptq` behind blocked DequantizeLinear
    (and 8-bit ones, uint8 codes and zero points, for the layers it quantized wider).

    ``model`` is the float graph exported from the quantized torch module, so each quantized
    layer's weight is in it exactly as its codes decode; a weight is matched to its
    :class:`~slimvision.compress.gptq.GroupQuantized` by those values (names change on export).
    Matched weights become uint4 codes, float16 scales and uint4 zero points, one per (output
    channel, block of ``group_size`` inputs) (opset 21's blocked DequantizeLinear, then a Cast to
    float32); every other Conv/Gemm weight (depthwise, the stem) is stored as float16. A layer that
    matches no weight is an error: the graph was not exported from the quantized module. The
    model is converted to opset 21 first when it is older (ONNX's version converter).
    """
    from onnx import TensorProto, helper, numpy_helper

    remaining = {index: layer for index, layer in enumerate(layers)}
    decoded = {index: layer.dequantized() for index, layer in remaining.items()}

    def encode(name: str, weight: np.ndarray, axis: int) -> tuple[list[Any], Any]:
        match = next((index for index, values in decoded.items() if index in remaining
                      and _same_weight(weight, values, axis)), None)
        if match is None:
            return _float16_weight(name, weight)
        layer = remaining.pop(match)
        codes, zeros = layer.codes.reshape(layer.shape), layer.zeros.reshape(_per_block(layer))
        if axis == 1:  # a Gemm with transB=0 holds (in, out): blocks run along axis 0
            codes, zeros = codes.T, zeros.T
        packed = _uint4 if layer.bits == 4 else _uint8
        tensors = [packed(f"{name}_uint{layer.bits}", codes),
                   numpy_helper.from_array(layer.scales.reshape(_per_block(layer)).T.copy() if axis == 1
                                           else layer.scales.reshape(_per_block(layer)), f"{name}_scale"),
                   packed(f"{name}_zero_point", zeros)]
        half = f"{name}_fp16"
        return tensors, [helper.make_node("DequantizeLinear", [t.name for t in tensors], [half],
                                          name=f"{name}_dequantize", axis=1 - axis, block_size=layer.group_size),
                         helper.make_node("Cast", [half], [name], name=f"{name}_to_float", to=TensorProto.FLOAT)]

    source = _check_model_file(model)
    if any(layer.bits not in (4, 8) for layer in layers):
        raise SlimvisionError(f"{source}: store_weights_int4 stores 4-bit codes (and 8-bit ones for wide layers) only")
    wide = sum(layer.bits == 8 for layer in layers)

    def all_matched() -> None:
        if remaining:
            names = ", ".join(layer.name for layer in remaining.values())
            raise SlimvisionError(f"{source}: no Conv/Gemm weight equals the quantized layer(s) {names}; "
                                  "export the graph from the quantized module")

    return _store_weights(model, output, encode, overwrite, min_opset=INT4_OPSET, upgrade=True,
                          before_write=all_matched,
                          method="weights stored 4-bit (GPTQ, blocked per output channel) per Conv/Gemm"
                                 + (f" ({wide} layer(s) at 8 bits)" if wide else "")
                                 + ", float16 where not quantized, computed in float")


def _per_block(layer: Any) -> tuple[int, ...]:
    """A layer's scale / zero-point shape: its weight shape with the input axis counted in blocks."""
    return (layer.shape[0], layer.scales.shape[1], *layer.shape[2:])


def _same_weight(weight: np.ndarray, values: np.ndarray, axis: int) -> bool:
    """Whether an ONNX weight (output channels along ``axis``) holds exactly these decoded values."""
    candidate = weight.T if axis == 1 and weight.ndim == 2 else weight
    return candidate.shape == values.shape and bool(np.array_equal(candidate, values))


def _uint8(name: str, values: np.ndarray) -> Any:
    """A UINT8 initializer (the codes and zero points of a layer GPTQ quantized at 8 bits)."""
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(values, np.uint8), name)


def _uint4(name: str, values: np.ndarray) -> Any:
    """A UINT4 initializer, two codes per byte (the first in the low nibble), as ONNX stores them."""
    from onnx import TensorProto, helper

    flat = values.astype(np.uint8).ravel()
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
    return helper.make_tensor(name, TensorProto.UINT4, values.shape, packed.tobytes(), raw=True)


def _store_weights(model: str | Path, output: str | Path,
                   encode: Callable[[str, np.ndarray, int], tuple[list[Any], Any]],
                   overwrite: bool, min_opset: int, upgrade: bool = False, method: str | None = None,
                   before_write: Callable[[], None] | None = None) -> Path:
    """Replace each float Conv/Gemm weight by ``encode``'s tensors and the node(s) that decode them.

    An older model is converted to ``min_opset`` when ``upgrade``, else refused. ``before_write``
    runs after every weight is encoded and before anything is written (it may refuse).
    """
    import onnx
    from onnx import numpy_helper

    source = _check_model_file(model)
    proto = onnx.load(str(source))
    if not any(entry.domain in ("", "ai.onnx") and entry.version >= min_opset for entry in proto.opset_import):
        if not upgrade:
            raise SlimvisionError(f"{source}: storing weights this way needs opset >= {min_opset}")
        from onnx import version_converter

        proto = version_converter.convert_version(proto, min_opset)
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    decoders, replaced = [], {}
    for node in graph.node:
        axis = _weight_channel_axis(node)
        if axis is None or len(node.input) < 2 or node.input[1] not in initializers or node.input[1] in replaced:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.dtype != np.float32 or weight.ndim < 2:
            continue
        replaced[node.input[1]], decoder = encode(node.input[1], weight, axis)
        decoders += decoder if isinstance(decoder, list) else [decoder]
    if not replaced:
        raise SlimvisionError(f"{source}: no float Conv or Gemm weights to store")
    kept = [init for init in graph.initializer if init.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for tensors in replaced.values() for t in tensors])
    nodes = decoders + list(graph.node)  # the decoding nodes feed the rest
    del graph.node[:]
    graph.node.extend(nodes)
    if before_write is not None:
        before_write()
    with atomic_write(Path(output), overwrite=overwrite, protected=[source]) as temp:
        onnx.save(proto, str(temp))
    derive_card(source, Path(output), method or f"weights stored {'int8' if min_opset == 13 else 'float16'} "
                "per Conv/Gemm, computed in float")
    return Path(output)


def _weight_channel_axis(node: Any) -> int | None:
    """Axis of the output channels in the node's weight input, or None for other ops."""
    if node.op_type in ("Conv", "ConvTranspose"):
        return 0 if node.op_type == "Conv" else 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def symmetric_int8(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per channel along ``axis``); the largest |w| maps to 127."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    scales = np.abs(weight).max(axis=reduce) / 127.0
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    values = np.clip(np.round(weight / scales.reshape(shape)), -127, 127).astype(np.int8)
    return values, scales


@dataclass(frozen=True)
class Agreement:
    """How closely a candidate model's outputs follow a reference's, over several inputs."""

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    #: Mean over samples of the cosine similarity of the flattened outputs.
    mean_cosine: float
    #: ``max_abs_diff`` as a fraction of the reference outputs' range.
    relative_max_diff: float


def compare_models(reference: str | Path | bytes, candidate: str | Path | bytes,
                   inputs: Iterable[Feeds]) -> Agreement:
    """Run both models on every feed and measure how far the candidate's outputs drift."""
    from slimvision.graph.session import OnnxModel, SessionSettings

    settings = SessionSettings(threads=None)
    ref_model, cand_model = OnnxModel(reference, settings, "reference"), OnnxModel(candidate, settings, "candidate")
    diffs: list[np.ndarray] = []
    cosines: list[float] = []
    low, high = np.inf, -np.inf
    for feeds in inputs:
        for ref, cand in zip(ref_model.run(feeds), cand_model.run(feeds)):
            ref, cand = np.asarray(ref, np.float64).ravel(), np.asarray(cand, np.float64).ravel()
            diffs.append(np.abs(ref - cand))
            norm = np.linalg.norm(ref) * np.linalg.norm(cand)
            cosines.append(float(ref @ cand / norm) if norm > 0 else float(np.array_equal(ref, cand)))
            low, high = min(low, float(ref.min())), max(high, float(ref.max()))
    if not diffs:
        raise SlimvisionError("compare_models needs at least one input feed")
    every = np.concatenate(diffs)
    spread = high - low
    return Agreement(samples=len(cosines), max_abs_diff=float(every.max()), mean_abs_diff=float(every.mean()),
                     mean_cosine=float(np.mean(cosines)),
                     relative_max_diff=float(every.max() / spread) if spread > 0 else float(every.max()))


@dataclass(frozen=True)
class QuantizationReport:
    """Size and agreement of a compressed model against its float source."""

    method: str
    source_bytes: int
    compressed_bytes: int
    agreement: Agreement

    @property
    def size_ratio(self) -> float:
        return self.compressed_bytes / self.source_bytes

    def summary(self) -> str:
        a = self.agreement
        return (f"{self.method}: {self.source_bytes / 1e6:.2f} MB -> {self.compressed_bytes / 1e6:.2f} MB "
                f"(x{self.size_ratio:.2f}); outputs vs float over {a.samples} samples: max abs diff "
                f"{a.max_abs_diff:.3g} ({100 * a.relative_max_diff:.1f}% of range), mean {a.mean_abs_diff:.3g}, "
                f"cosine {a.mean_cosine:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "source_bytes": self.source_bytes, "compressed_bytes": self.compressed_bytes,
                "size_ratio": self.size_ratio, "agreement": asdict(self.agreement)}


def quantization_report(source: str | Path, compressed: str | Path, inputs: Iterable[Feeds],
                        method: str = "") -> QuantizationReport:
    """Bytes on disk of both files and :func:`compare_models` of the compressed against the source."""
    source_path, compressed_path = _check_model_file(source), _check_model_file(compressed)
    agreement = compare_models(source_path, compressed_path, inputs)
    return QuantizationReport(method or compressed_path.name, source_path.stat().st_size,
                              compressed_path.stat().st_size, agreement)
