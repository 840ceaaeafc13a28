"""Every shipped artifact of the five systems, registered by name: one line each.

This table is the one place a shipped model is registered. :data:`slimvision.registry.ARTIFACTS`
imports it on its first lookup, so ``slimvision models``, the server's ``/api/models`` and the CLI
see the same list whatever was imported before. Files are found through :mod:`slimvision.assets`;
each graph's card (``export.card``) lies beside it. Pipelines are named as ``"module:Class"``
strings, so listing the table imports neither onnxruntime nor torch.

Adding a model to the house: its module, its card, and one :func:`register` line here
(docs/models.md, "Adding a model").

Speed classes (:data:`slimvision.registry.SPEED_CLASSES`) come from the figures in each system's
docs, measured on one core of a 2-core VM: style 512x512 end to end 0.2-0.8 s; MTCNN 23-48 ms,
detect + align + embed 32 ms a face; VAE graphs 3-17 ms; a numerals page 160 ms.

Example:
    >>> from slimvision.registry import ARTIFACTS
    >>> ARTIFACTS.spec("dcgan-digits32-int8").system
    'gan'
    >>> sampler = ARTIFACTS.create("dcgan-digits32-int8")      # doctest: +SKIP
    >>> sampler.sample(4, seed=0).shape                         # doctest: +SKIP
    (4, 32, 32, 3)
"""

from __future__ import annotations

from typing import Any

from slimvision import assets
from slimvision.registry import ARTIFACTS, ArtifactSpec

_STYLE = "slimvision.inference.style:StyleTransferPipeline"


class FileOf(str):
    """Marks a pipeline argument that takes the path of the file with this role:
    ``register(..., {"generator": ...}, "...:GANSampler", path=FileOf("generator"))``."""

    @property
    def role(self) -> str:
        return str(self)


def register(name: str, system: str, speed: str, purpose: str, files: dict[str, assets.Asset], pipeline: str,
             **arguments: Any) -> ArtifactSpec:
    """Register one artifact: the one line that adds a model to the house.

    Args:
        name: the name ``slimvision models``, the server and ``ARTIFACTS.create`` know it by.
        system: one of :data:`slimvision.registry.SYSTEMS`.
        speed: a key of :data:`slimvision.registry.SPEED_CLASSES`.
        purpose: one line saying what it is for.
        files: role -> where the file or folder comes from (an :mod:`slimvision.assets` record:
            ``BundledPath("weights/...")`` for one inside slimvision); its card lies beside it.
        pipeline: ``"module:Class"`` that runs it.
        **arguments: the pipeline's keyword arguments: ``FileOf(role)`` passes that file's path,
            anything else is passed as it is.
    """
    return ARTIFACTS.add(artifact(name, system, speed, purpose, files, pipeline, **arguments))


def artifact(name: str, system: str, speed: str, purpose: str, files: dict[str, assets.Asset], pipeline: str,
             **arguments: Any) -> ArtifactSpec:
    """The record :func:`register` adds, not yet registered (``ARTIFACTS.temporarily(artifact(...))``
    registers one for a ``with`` block only)."""
    paths = {key: value for key, value in arguments.items() if isinstance(value, FileOf)}
    constants = {key: value for key, value in arguments.items() if key not in paths}
    return ArtifactSpec(name=name, system=system, purpose=purpose, speed=speed, files=files, pipeline=pipeline,
                        arguments=constants, file_arguments={key: role.role for key, role in paths.items()})


def _style_files(predictor: Any, transform: Any) -> dict[str, Any]:
    return {"predictor": predictor, "transform": transform}


_TEACHER = _style_files(assets.STYLE_TEACHER_PREDICTOR, assets.STYLE_TEACHER_TRANSFORM)
_MTCNN = {"pnet": assets.MTCNN_PNET, "rnet": assets.MTCNN_RNET, "onet": assets.MTCNN_ONET}

# --------------------------------------------------------------------------- style
register("magenta-arbitrary-v1-int8", "style", "interactive",
         "style transfer, Magenta's teacher as shipped (int8 graphs, bit-exact)", _TEACHER, _STYLE,
         artifact="magenta-arbitrary-v1-int8")
register("magenta-arbitrary-v1-fp32", "style", "interactive",
         "style transfer, Magenta's teacher computed in float (--model teacher)", _TEACHER, _STYLE,
         artifact="magenta-arbitrary-v1-fp32")
register("slimvision-fast-predictor-v1", "style", "interactive",
         "style transfer, first distilled predictor + the teacher's transformer in float",
         _style_files(assets.FAST_STYLE_PREDICTOR_V1, assets.STYLE_TEACHER_TRANSFORM), _STYLE,
         artifact="slimvision-fast-predictor-v1")
register("slimvision-fast-v2", "style", "interactive",
         "style transfer, first distilled predictor + half-resolution phase-plane transformer",
         _style_files(assets.FAST_STYLE_PREDICTOR_V1, assets.FAST_STYLE_TRANSFORM), _STYLE,
         artifact="slimvision-fast-v2")
register("slimvision-fast-v3", "style", "interactive",
         "style transfer, both distilled students (--model fast, the web page's default)",
         _style_files(assets.FAST_STYLE_PREDICTOR, assets.FAST_STYLE_TRANSFORM), _STYLE,
         artifact="slimvision-fast-v3")

# --------------------------------------------------------------------------- faces
register("face-detector-mtcnn", "faces", "realtime",
         "find faces with 5 landmarks (MTCNN's three-stage cascade)", _MTCNN,
         "slimvision.inference.face_detect:FaceDetector")
register("face-embedder-dlib-resnet", "faces", "interactive",
         "detect, align and embed faces as 128-d descriptors (dlib's ResNet): verify, identify",
         {**_MTCNN, "embedder": assets.DLIB_FACE_RESNET}, "slimvision.inference.faces:FaceRecognizer")

# --------------------------------------------------------------------------- VAE
register("vae-mni128-unet", "vae", "realtime",
         "restore damaged or noisy 128 px brain MRI slices (U-Net VAE, the denoiser the server runs)",
         {"model": assets.VAE_MNI128_UNET}, "slimvision.inference.vae:MedicalVAE", folder=FileOf("model"))
register("vae-mni128", "vae", "realtime",
         "restore, encode, sample and interpolate 128 px brain MRI slices (plain VAE)",
         {"model": assets.VAE_MNI128}, "slimvision.inference.vae:MedicalVAE", folder=FileOf("model"))

# --------------------------------------------------------------------------- GAN
register("dcgan-digits32-int8", "gan", "realtime",
         "draw 32 px handwritten digits (DCGAN generator, int8 graph)",
         {"generator": assets.GAN_DIGITS32_INT8}, "slimvision.inference.gan:GANSampler", path=FileOf("generator"))
register("dcgan-digits32", "gan", "interactive",
         "the float DCGAN generator the int8 graph was quantized from (torch weights: fine-tune, re-export)",
         {"generator": assets.GAN_DIGITS32_WEIGHTS}, "slimvision.models.weights:load_model",
         folder=FileOf("generator"))

# --------------------------------------------------------------------------- numerals
register("numerals-som", "numerals", "interactive",
         "find and read Roman numerals on page images (labelled self-organising map)",
         {"map": assets.NUMERALS_SOM}, "slimvision.inference.numerals:NumeralReader", som=FileOf("map"))
