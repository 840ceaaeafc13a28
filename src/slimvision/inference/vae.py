"""Run an exported medical-image VAE with ONNX Runtime (numpy only, no torch): restore damaged
slices, encode, decode, sample from the prior, vary and interpolate.

An exported VAE is a folder with either ``encoder.onnx`` (image -> mean, log_var) and
``decoder.onnx`` (latent -> image), or, for a U-Net VAE (whose decoder needs the encoder's
maps), one ``autoencoder.onnx`` (image -> reconstruction, mean, log_var); each graph has its
artifact card beside it (``encoder.card.json``, ...), whose preprocessing holds the model config,
the intensity rule and the squaring rule (pad to a centred square, resize to ``image_size``).

Example:
    >>> vae = MedicalVAE("runs/mni128/export")                      # doctest: +SKIP
    >>> restored = vae.restore_slice(damaged, kept=mask)             # doctest: +SKIP
    >>> new = vae.sample(8, seed=0)                                  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimvision.assets import VAE_MEDMIX128_UNET, VAE_MNI128
from slimvision.errors import InputError, SlimvisionError
from slimvision.export.card import card_path, read_card
from slimvision.graph.session import OnnxModel, SessionSettings
from slimvision.inference.vae_native import (FLAT_SPREAD, bounded_denoise, flat_median_fill, native_graph,
                                             native_graph_key, run_native)
from slimvision.io.medical import Intensity, MedicalSlice, from_square, to_square

#: The graph whose card describes the VAE: the U-Net's one graph, else the encoder.
CARD_GRAPHS = ("autoencoder.onnx", "encoder.onnx")
#: The registered artifact that restores by default (``vae denoise``, ``vae eval``, ``batch
#: vae-denoise``, the server): the U-Net fine-tuned on every real scan packages ship, which with
#: :func:`~slimvision.inference.vae_native.flat_median_fill` beats the masked median on every
#: held-out source (docs/vae.md); ``vae-mni128-unet`` stays loadable by name.
DENOISER = "vae-medmix128-unet"
#: The shipped demo models (docs/vae.md has the commands that trained them).
DEMO_DENOISER = VAE_MEDMIX128_UNET.path()
DEMO_GENERATIVE = VAE_MNI128.path()


class MedicalVAE:
    """An exported VAE folder, with sessions created on first use."""

    def __init__(self, folder: str | Path, settings: SessionSettings | None = None) -> None:
        self.folder = Path(folder)
        cards = [card_path(self.folder / graph) for graph in CARD_GRAPHS]
        card_file = next((card for card in cards if card.is_file()), None)
        if card_file is None:
            raise InputError(self.folder, f"no {cards[0].name} or {cards[1].name}: not an exported VAE "
                                          "(export one with 'slimvision vae export')")
        card = read_card(card_file)
        #: The card's preprocessing: the model config, the intensity rule and the squaring rule.
        self.manifest: dict[str, Any] = card.preprocessing
        model = self.manifest.get("model")
        if not isinstance(model, dict):
            raise InputError(card_file, "has no \"model\" object in its preprocessing (the exported model's config)")
        self.image_size = _whole(model, "image_size", card_file, minimum=8)
        self.latent_dim = _whole(model, "latent_dim", card_file, minimum=1)
        self.skip_connections = _flag(model, "skip_connections", card_file)
        # Older exports have no such key; they read the image alone.
        self.mask_channel = _flag(model, "mask_channel", card_file, default=False)
        try:
            self.intensity = Intensity.from_dict(self.manifest.get("intensity"))
        except (SlimvisionError, TypeError, ValueError, AttributeError) as error:
            raise InputError(card_file, f"its \"intensity\" is not a valid rule ({error})") from None
        self.settings = settings
        self._sessions: dict[str, OnnxModel] = {}
        #: Removed pixels whose kept 5 x 5 neighbours vary less than this (std) take their median
        #: instead of the network's fill; 0 keeps the network's everywhere.
        self.flat_spread = FLAT_SPREAD

    @property
    def generative(self) -> bool:
        """Whether the decoder works from a latent alone (no U-Net skips), so sample / vary / interpolate work."""
        return not self.skip_connections

    def _session(self, name: str) -> OnnxModel:
        if name not in self._sessions:
            if name == "decoder" and not self.generative:
                raise InputError(self.folder, "this VAE has U-Net skip connections: it restores images but cannot "
                                              "decode a latent alone (sample, vary, interpolate); use a model "
                                              "trained without --skip-connections")
            path = self.folder / f"{name}.onnx"
            if not path.is_file():
                raise InputError(path, "missing from the exported VAE")
            self._sessions[name] = OnnxModel(path, self.settings)
        return self._sessions[name]

    def _batched(self, name: str, *inputs: np.ndarray, batch_size: int = 32) -> list[np.ndarray]:
        """Run graph ``name`` on its inputs (in the graph's order) in batches; outputs concatenated."""
        session = self._session(name)
        parts = [session.run({key: np.ascontiguousarray(array[start:start + batch_size], np.float32)
                              for key, array in zip(session.input_names, inputs)})
                 for start in range(0, len(inputs[0]), batch_size)]
        return [np.concatenate(outputs) for outputs in zip(*parts)]

    def _network_inputs(self, images: np.ndarray, kept: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """(N, 1, S, S) image planes, plus the intact-pixel planes for a model with a mask channel
        (all intact when ``kept`` is None); models without one ignore ``kept`` here."""
        images = self._check(images)[:, None]
        if not self.mask_channel:
            return (images,)
        if kept is None:
            return images, np.ones_like(images)
        kept = np.asarray(kept)
        if kept.shape != images.shape[:1] + images.shape[2:]:
            raise ValueError(f"the intact-pixel mask is {kept.shape}, the images are {images.shape[:1] + images.shape[2:]}")
        return images, kept[:, None].astype(np.float32)

    def restore(self, images: np.ndarray, kept: np.ndarray | None = None) -> np.ndarray:
        """(N, S, S) squares in [0, 1] -> reconstructions from the latent mean; with ``kept``
        (N, S, S) bool, the pixels known to be intact are kept and only the others filled in
        (a model with a mask channel is also told which they are)."""
        restored, _, _ = self.autoencode(images, kept)
        return np.where(kept, images, restored) if kept is not None else restored

    def autoencode(self, images: np.ndarray, kept: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, S, S) -> reconstructions (N, S, S), latent means and log-variances (N, latent_dim)."""
        if self.skip_connections:
            restored, mean, log_var = self._batched("autoencoder", *self._network_inputs(images, kept))
            return restored[:, 0], mean, log_var
        mean, log_var = self.encode(images, kept)
        return self.decode(mean), mean, log_var

    def restore_slice(self, pixels: np.ndarray, kept: np.ndarray | None = None, *,
                      native: bool | None = None) -> np.ndarray:
        """One slice of any shape (H, W) in [0, 1] -> restored at its own size.

        A U-Net VAE runs at the slice's own resolution (``native``, its default; see
        :mod:`slimvision.inference.vae_native`); a plain VAE, whose decoder works from the
        latent alone, on the slice squared and resized to its ``image_size`` and back. With
        ``kept``, the intact pixels are kept exactly and only the others filled in (where the kept
        neighbours of a removed pixel are flat, by their median: ``flat_spread``,
        :func:`~slimvision.inference.vae_native.flat_median_fill`); without,
        no pixel moves by more than about the noise the slice holds
        (:func:`~slimvision.inference.vae_native.bounded_denoise`), so a clean slice passes
        through with its detail.
        """
        pixels = np.asarray(pixels, np.float32)
        if kept is not None and np.shape(kept) != pixels.shape:
            raise ValueError(f"the intact-pixel mask is {np.shape(kept)}, the slice is {pixels.shape}")
        native = self.skip_connections if native is None else native
        restored = self._restore_native(pixels, kept) if native else self._restore_resized(pixels, kept)
        if kept is None:
            return bounded_denoise(pixels, restored)
        return flat_median_fill(pixels, kept, np.where(kept, pixels, restored), self.flat_spread)

    def _restore_native(self, pixels: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
        """The U-Net on the slice at its own size (padded to the size multiple, tiled when large)."""
        if not self.skip_connections:
            raise InputError(self.folder, "only a U-Net VAE (--skip-connections) runs at a slice's own size")
        if "native" not in self._sessions:
            path = self.folder / "autoencoder.onnx"
            try:
                graph = native_graph(path)
            except (ValueError, OSError) as error:
                raise InputError(path, f"cannot run at a slice's own size ({error})") from None
            self._sessions["native"] = OnnxModel(graph, self.settings, name=path.name,
                                                 cache_key=native_graph_key(path))
        session = self._sessions["native"]

        def network(image: np.ndarray, known: np.ndarray) -> np.ndarray:
            feeds = (image, known) if self.mask_channel else (image,)
            return session.run(dict(zip(session.input_names, feeds)))[0]

        known = np.ones_like(pixels) if kept is None else np.asarray(kept, np.float32)
        return np.clip(run_native(network, pixels, known), 0.0, 1.0)

    def _restore_resized(self, pixels: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
        """The network on the slice squared and resized to ``image_size``, resized back."""
        square = to_square(pixels, self.image_size)
        # The network sees the mask at its own size: a pixel counts as intact when most of the
        # original pixels that shrank into it were (the padding is intact background).
        known = None
        if kept is not None and self.mask_channel:
            known = to_square(np.asarray(kept, np.float32), self.image_size, fill=1.0)[None] >= 0.5
        return from_square(self.autoencode(square[None], known)[0][0], pixels.shape)

    def encode(self, images: np.ndarray, kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S) -> latent mean and log-variance, (N, latent_dim) each."""
        if self.skip_connections:
            _, mean, log_var = self.autoencode(images, kept)
            return mean, log_var
        mean, log_var = self._batched("encoder", *self._network_inputs(images, kept))
        return mean, log_var

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N, latent_dim) -> (N, S, S) images in [0, 1]."""
        (images,) = self._batched("decoder", np.asarray(latents, np.float32))
        return images[:, 0]

    def sample(self, count: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """``count`` new images decoded from latents drawn from the prior N(0, temperature^2 I)."""
        rng = np.random.default_rng(seed)
        return self.decode(temperature * rng.standard_normal((count, self.latent_dim)).astype(np.float32))

    def vary(self, images: np.ndarray, scale: float = 1.0, seed: int = 0) -> np.ndarray:
        """Reconstructions from latents drawn around each image's own: mean + scale * sigma * eps."""
        mean, log_var = self.encode(images)
        noise = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
        return self.decode(mean + scale * np.exp(0.5 * log_var) * noise)

    def interpolate(self, first: np.ndarray, second: np.ndarray, steps: int) -> np.ndarray:
        """``steps`` images decoded along the straight line between two images' latent means."""
        return self.mix(first, second, np.linspace(0.0, 1.0, steps))

    def mix(self, first: np.ndarray, second: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One image per weight w, decoded from (1 - w) x first's latent mean + w x second's."""
        means, _ = self.encode(np.stack([first, second]))
        weights = np.asarray(weights, np.float32).reshape(-1, 1)
        return self.decode((1 - weights) * means[0] + weights * means[1])

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        size = self.image_size
        if images.ndim != 3 or images.shape[1:] != (size, size):
            raise ValueError(f"expected (N, {size}, {size}) images (use to_square first), got {images.shape}")
        return images


def _whole(section: dict[str, Any], key: str, path: Path, minimum: int) -> int:
    """``section[key]`` as a whole number >= ``minimum``, else an InputError naming the manifest and the key."""
    value = section.get(key)
    if type(value) is not int or value < minimum:
        raise InputError(path, f"model.{key} must be a whole number >= {minimum}, got {value!r}")
    return value


def _flag(section: dict[str, Any], key: str, path: Path, default: bool | None = None) -> bool:
    """``section[key]`` as a bool (``default`` when absent, if any), else an InputError naming the key."""
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise InputError(path, f"model.{key} must be true or false, got {value!r}")
    return value


def slice_png(piece: MedicalSlice, restored: np.ndarray, filled: np.ndarray | None = None) -> tuple[bytes, str]:
    """The PNG of a restored slice (``restored`` (H, W) in [0, 1]; ``piece`` read with
    ``keep_raw=True``; ``filled``: pixels that were missing) and a note on its values: what
    ``slimvision vae denoise`` and ``slimvision batch vae-denoise`` both write (:func:`png_values`).

    Example:
        >>> png, note = slice_png(piece, vae.restore_slice(piece.pixels))   # doctest: +SKIP
        >>> note                                                             # doctest: +SKIP
        "16-bit PNG in the input's values"
    """
    values, note = png_values(piece, piece.to_raw(restored, filled), restored)
    return encode_grey_png(values), note


def png_values(piece: MedicalSlice, raw: np.ndarray, restored: np.ndarray) -> tuple[np.ndarray, str]:
    """A restored slice (``raw``: in the file's values, ``restored``: in [0, 1]) as the PNG values
    to write, and a note on what they are.

    8-bit files give 8-bit PNGs. Other files give 16-bit PNGs holding the file's own values
    (its raw values, DICOM in modality units) when they are whole numbers in 0..65535, so a
    16-bit scan comes back in its own range and unchanged pixels keep their exact values;
    otherwise (CT in Hounsfield units below 0, float NIfTI) the window mapped to 0..65535.
    """
    if piece.eight_bit:
        return np.clip(np.rint(raw), 0, 255).astype(np.uint8), "8-bit PNG"
    source = piece.raw
    assert source is not None and piece.bounds is not None, "read with keep_raw=True"
    if source.min() >= 0 and source.max() <= 65535 and np.all(source == np.rint(source)):
        return np.clip(np.rint(raw), 0, 65535).astype(np.uint16), "16-bit PNG in the input's values"
    low, high = piece.bounds
    scaled = np.rint(np.clip(restored, 0.0, 1.0) * 65535)
    return scaled.astype(np.uint16), f"16-bit PNG of the window {low:g}..{high:g} (0..65535)"


def encode_grey_png(values: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) uint8 or uint16 array (16-bit grey for uint16)."""
    import io

    from PIL import Image

    from slimvision.io.images import DEFAULT_PNG_LEVEL
    from slimvision.io.png import encode_png

    if values.dtype.itemsize == 1:
        return encode_png(values, DEFAULT_PNG_LEVEL)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG", compress_level=DEFAULT_PNG_LEVEL)
    return buffer.getvalue()


def kept_from_zeros(pixels: np.ndarray, margin: int = 3) -> np.ndarray:
    """The intact-pixel mask of a slice whose removed pixels were set to 0: zeros inside the body
    are missing, zeros outside it are background and count as intact.

    The body is where a pixel lies between non-zero pixels both along its row and along its
    column (a cheap hull that holds for heads and trunks), grown by ``margin`` pixels so that
    removed pixels on its rim count as missing too. Marking all the background as missing
    would make the network paint it grey; missing the rim would keep holes black.
    """
    pixels = np.asarray(pixels)
    nonzero = pixels > 0
    body = _between_first_and_last(nonzero, axis=1) & _between_first_and_last(nonzero, axis=0)
    return nonzero | ~_grow(body, margin)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` dilated by a (2 * steps + 1)-pixel square."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = np.logical_or.reduce([padded[1 + dy:padded.shape[0] - 1 + dy, 1 + dx:padded.shape[1] - 1 + dx]
                                     for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    return mask


def _between_first_and_last(mask: np.ndarray, axis: int) -> np.ndarray:
    """True from the first to the last True of each line along ``axis`` (all False on empty lines)."""
    before = np.cumsum(mask, axis=axis) > 0
    after = np.flip(np.cumsum(np.flip(mask, axis=axis), axis=axis) > 0, axis=axis)
    return before & after


AUGMENT_FORMAT = "slimvision-vae-augment-v1"
#: What ``augment`` can do to make a new image: decode a latent drawn around one slice's ("vary"),
#: a point between two slices' latents ("interpolate"), or a latent from the prior ("prior").
OPERATIONS = ("vary", "interpolate", "prior")


def plan_augmentation(count: int, sources: list[str], operations: tuple[str, ...] = ("vary", "interpolate"),
                      seed: int = 0, scale: float = 1.0, temperature: float = 1.0) -> list[dict[str, Any]]:
    """One manifest entry per new image: its file name, operation, source slice names and seed.

    Entry ``i`` is drawn from rng([seed, i]) alone, so a manifest can be extended or replayed
    entry by entry; :func:`render_entry` turns an entry back into the same image.
    """
    unknown = sorted(set(operations) - set(OPERATIONS))
    if unknown or not operations:
        raise ValueError(f"operations must be some of {', '.join(OPERATIONS)}, got {', '.join(operations) or 'none'}")
    if not sources and set(operations) - {"prior"}:
        raise ValueError("'vary' and 'interpolate' need source images")
    entries = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        operation = operations[int(rng.integers(len(operations)))]
        entry: dict[str, Any] = {"file": f"aug_{index:05d}.png", "operation": operation,
                                 "seed": int(rng.integers(2 ** 31))}
        if operation == "vary":
            entry.update(sources=[sources[int(rng.integers(len(sources)))]], scale=scale)
        elif operation == "interpolate":
            first, second = rng.choice(len(sources), 2, replace=len(sources) < 2)
            entry.update(sources=[sources[int(first)], sources[int(second)]],
                         weight=round(float(rng.uniform(0.2, 0.8)), 6))
        else:
            entry.update(sources=[], temperature=temperature)
        entries.append(entry)
    return entries


def render_entry(vae: MedicalVAE, entry: dict[str, Any], images: dict[str, np.ndarray]) -> np.ndarray:
    """The (S, S) image in [0, 1] a manifest entry describes; ``images`` maps source names to squares."""
    missing = [name for name in entry["sources"] if name not in images]
    if missing:
        raise InputError(entry["file"], f"its source {missing[0]!r} is not among the images given")
    operation, seed = entry["operation"], int(entry["seed"])
    if operation == "vary":
        return vae.vary(images[entry["sources"][0]][None], scale=float(entry["scale"]), seed=seed)[0]
    if operation == "interpolate":
        first, second = (images[name] for name in entry["sources"])
        return vae.mix(first, second, [float(entry["weight"])])[0]
    if operation == "prior":
        return vae.sample(1, seed=seed, temperature=float(entry["temperature"]))[0]
    raise InputError(entry["file"], f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")
