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

from collections.abc import Mapping
from typing import Any

from slimvision import assets
from slimvision.registry import ARTIFACTS, ArtifactSpec

#: The pipeline that runs every style model: ``--model`` and the server's style routes offer every
#: artifact registered with it.
STYLE_PIPELINE = "slimvision.inference.style:StyleTransferPipeline"


class FileOf(str):
    """Marks a pipeline argument that takes the path of the file with this role:
    ``register(..., {"generator": ...}, "...:GANSampler", path=FileOf("generator"))``."""

    @property
    def role(self) -> str:
        return str(self)


def register(name: str, system: str, speed: str, purpose: str, files: dict[str, assets.Asset], pipeline: str,
             *, options: Mapping[str, Any] | None = None, **arguments: Any) -> ArtifactSpec:
    """Register one artifact: the one line that adds a model to the house.

    Args:
        name: the name ``slimvision models``, the server and ``ARTIFACTS.create`` know it by.
        system: one of :data:`slimvision.registry.SYSTEMS`.
        speed: a key of :data:`slimvision.registry.SPEED_CLASSES`.
        purpose: one line saying what it is for.
        files: role -> where the file or folder comes from (an :mod:`slimvision.assets` record:
            ``BundledPath("weights/...")`` for one inside slimvision); its card lies beside it.
        pipeline: ``"module:Class"`` that runs it.
        options: what the system's own code reads from the record and the pipeline is not
            called with (:attr:`ArtifactSpec.options`). A style model gives its
            ``StyleArtifact`` settings here: ``precision`` ("int8" runs the transformer as
            shipped, "fp32" computes its weights in float), ``float_predictor``,
            ``vector_space``, ``bytes_per_pixel``, ``description`` and ``alias`` (the
            ``--model`` word that picks it at its precision, e.g. "teacher"; none for most).
        **arguments: the pipeline's keyword arguments: ``FileOf(role)`` passes that file's path,
            anything else is passed as it is.
    """
    return ARTIFACTS.add(artifact(name, system, speed, purpose, files, pipeline, options=options, **arguments))


def artifact(name: str, system: str, speed: str, purpose: str, files: dict[str, assets.Asset], pipeline: str,
             *, options: Mapping[str, Any] | None = None, **arguments: Any) -> ArtifactSpec:
    """The record :func:`register` adds, not yet registered (``ARTIFACTS.temporarily(artifact(...))``
    registers one for a ``with`` block only)."""
    paths = {key: value for key, value in arguments.items() if isinstance(value, FileOf)}
    constants = {key: value for key, value in arguments.items() if key not in paths}
    return ArtifactSpec(name=name, system=system, purpose=purpose, speed=speed, files=files, pipeline=pipeline,
                        arguments=constants, file_arguments={key: role.role for key, role in paths.items()},
                        options=dict(options or {}))


def style_models() -> list[ArtifactSpec]:
    """Every registered style model (run by :data:`STYLE_PIPELINE`), by name: what the CLI's
    ``--model`` and ``slimvision.inference.style`` offer."""
    return [spec for spec in ARTIFACTS.specs("style") if spec.pipeline == STYLE_PIPELINE]


def _style_files(predictor: Any, transform: Any) -> dict[str, Any]:
    return {"predictor": predictor, "transform": transform}


_TEACHER = _style_files(assets.STYLE_TEACHER_PREDICTOR, assets.STYLE_TEACHER_TRANSFORM)
_MTCNN = {"pnet": assets.MTCNN_PNET, "rnet": assets.MTCNN_RNET, "onet": assets.MTCNN_ONET}
# Our distilled predictors store fp16 weights computed in float; they were distilled into the
# teacher's style space, so their vectors mix with the teacher's.
_STUDENT = {"precision": "fp32", "float_predictor": True, "vector_space": "magenta-arbitrary-v1"}
# The teacher at either precision answers to --model teacher.
_TEACHER_OPTIONS = {"alias": "teacher", "vector_space": "magenta-arbitrary-v1"}

# --------------------------------------------------------------------------- style
# bytes_per_pixel: peak ONNX Runtime memory of one transformer run per content pixel, measured
# at 2048x2048 (ORT 1.32), plus ~10% headroom: the int8 graph 239 (activations stay uint8
# between the fused int8 kernels), the float teacher 311, the phase-plane student 132 (no
# full-resolution maps but the image and the output; the predictor runs on one 256 px square).
register("magenta-arbitrary-v1-int8", "style", "interactive",
         "style transfer, Magenta's teacher as shipped (int8 graphs, bit-exact)", _TEACHER, STYLE_PIPELINE,
         artifact="magenta-arbitrary-v1-int8",
         options={**_TEACHER_OPTIONS, "precision": "int8", "bytes_per_pixel": 260,
                  "description": "MobileNetV2 style predictor (2.6 MB) + int8 transformer (0.39 MB), "
                                 "bit-exact with the shipped graph"})
# The float teacher computes both halves in float: the reference the students were made against
# (distillation and GPTQ run the predictor's int8-valued weights in float too). The shipped int8
# predictor rounds its activations, and on flat high-contrast styles that alone moves the vector
# (R² 0.95 against the same weights in float on stripes; docs/compress.md).
register("magenta-arbitrary-v1-fp32", "style", "interactive",
         "style transfer, Magenta's teacher computed in float (--model teacher)", _TEACHER, STYLE_PIPELINE,
         artifact="magenta-arbitrary-v1-fp32",
         options={**_TEACHER_OPTIONS, "precision": "fp32", "float_predictor": True, "bytes_per_pixel": 330,
                  "description": "Magenta's style predictor + transformer with their int8-valued weights computed "
                                 "in float (faster on CPUs without VNNI; no activation rounding)"})
register("slimvision-fast-predictor-v1", "style", "interactive",
         "style transfer, first distilled predictor + the teacher's transformer in float",
         _style_files(assets.FAST_STYLE_PREDICTOR_V1, assets.STYLE_TEACHER_TRANSFORM), STYLE_PIPELINE,
         artifact="slimvision-fast-predictor-v1",
         options={**_STUDENT, "bytes_per_pixel": 330,
                  "description": "MobileNetV2-0.35 style predictor distilled from the teacher (weights stored as "
                                 "fp16, computed in float) + the teacher transformer in float"})
register("slimvision-fast-v2", "style", "interactive",
         "style transfer, first distilled predictor + half-resolution phase-plane transformer",
         _style_files(assets.FAST_STYLE_PREDICTOR_V1, assets.FAST_STYLE_TRANSFORM), STYLE_PIPELINE,
         artifact="slimvision-fast-v2",
         options={**_STUDENT, "bytes_per_pixel": 145,
                  "description": "MobileNetV2-0.35 style predictor + the teacher's transformer rewritten to run at "
                                 "half resolution on 2x2 phase planes, fine-tuned by distillation (fp16-stored "
                                 "weights, float compute)"})
register("slimvision-fast-v3", "style", "interactive",
         "style transfer, both distilled students (the fast bundle before slimvision-fast-v4)",
         _style_files(assets.FAST_STYLE_PREDICTOR, assets.FAST_STYLE_TRANSFORM), STYLE_PIPELINE,
         artifact="slimvision-fast-v3",
         options={**_STUDENT, "bytes_per_pixel": 145,
                  "description": "MobileNetV2-0.35 style predictor with a 4x4 stride-4 stem and 11 of 17 blocks + "
                                 "the teacher's transformer rewritten to run at half resolution on 2x2 phase "
                                 "planes, both distilled from the teacher (fp16-stored weights, float compute)"})
register("slimvision-fast-v4", "style", "interactive",
         "style transfer, the teacher's predictor at 4 bits + a phase-plane transformer student "
         "(the fast bundle before slimvision-fast-v5)",
         _style_files(assets.FAST_STYLE_PREDICTOR_GPTQ4, assets.FAST_STYLE_TRANSFORM_P53), STYLE_PIPELINE,
         artifact="slimvision-fast-v4",
         options={**_STUDENT, "bytes_per_pixel": 145,
                  "description": "Magenta's MobileNetV2 style predictor with every 1x1 conv and the head stored "
                                 "at 4 bits (GPTQ; float16 elsewhere) + the teacher's transformer rewritten to run "
                                 "at half resolution on 2x2 phase planes (first conv exact, all 5 residual blocks), "
                                 "distilled on procedural style families (float compute)"})
register("slimvision-fast-v5", "style", "interactive",
         "style transfer, the teacher's predictor at 4 bits + a phase-plane transformer student trained longer "
         "(the fast bundle before slimvision-fast-v6)",
         _style_files(assets.FAST_STYLE_PREDICTOR_GPTQ4, assets.FAST_STYLE_TRANSFORM_P53B), STYLE_PIPELINE,
         artifact="slimvision-fast-v5",
         options={**_STUDENT, "bytes_per_pixel": 145,
                  "description": "Magenta's MobileNetV2 style predictor with every 1x1 conv and the head stored "
                                 "at 4 bits (GPTQ; float16 elsewhere) + the teacher's transformer rewritten to run "
                                 "at half resolution on 2x2 phase planes (first conv exact, all 5 residual blocks), "
                                 "distilled on procedural style families for 12000 steps (float compute)"})

register("slimvision-fast-v6", "style", "interactive",
         "style transfer, the teacher's predictor at 4 bits with its most sensitive layers at 8 + v5's transformer "
         "with int8-stored weights (the fast bundle before slimvision-fast-v7)",
         _style_files(assets.FAST_STYLE_PREDICTOR_GPTQ48, assets.FAST_STYLE_TRANSFORM_P53B_INT8), STYLE_PIPELINE,
         artifact="slimvision-fast-v6",
         options={**_STUDENT, "bytes_per_pixel": 145,
                  "description": "Magenta's MobileNetV2 style predictor with its 1x1 convs and head stored at 4 bits "
                                 "(GPTQ), 21 of them at 8 bits where rounding moved the painting most (float16 "
                                 "elsewhere) + v5's phase-plane transformer with int8-stored weights (float compute)"})
register("slimvision-fast-v7", "style", "interactive",
         "style transfer, v6 with its predictor's 4- and 8-bit weights as GPTQ leaves them (no scale fine-tune) "
         "(--model fast: the default of every style command and of the web page)",
         _style_files(assets.FAST_STYLE_PREDICTOR_GPTQ48_T0, assets.FAST_STYLE_TRANSFORM_P53B_INT8), STYLE_PIPELINE,
         artifact="slimvision-fast-v7",
         options={**_STUDENT, "alias": "fast", "bytes_per_pixel": 145,
                  "description": "Magenta's MobileNetV2 style predictor with its 1x1 convs and head stored at 4 bits "
                                 "(GPTQ, no fine-tune after it), 21 of them at 8 bits where rounding moved the "
                                 "painting most (float16 elsewhere) + v5's phase-plane transformer with int8-stored "
                                 "weights (float compute)"})

# --------------------------------------------------------------------------- faces
register("face-detector-mtcnn", "faces", "realtime",
         "find faces with 5 landmarks (MTCNN's three-stage cascade)", _MTCNN,
         "slimvision.inference.face_detect:FaceDetector")
register("face-embedder-dlib-resnet", "faces", "interactive",
         "detect, align and embed faces as 128-d descriptors (dlib's ResNet): verify, identify",
         {**_MTCNN, "embedder": assets.DLIB_FACE_RESNET}, "slimvision.inference.faces:FaceRecognizer")
register("face-embedder-dlib-resnet-int8", "faces", "interactive",
         "dlib's ResNet as a static int8 graph: the same descriptors within a few hundredths, 2.6-4.3x faster embedding "
         "(--model face-embedder-dlib-resnet-int8; galleries of either mix)",
         {**_MTCNN, "embedder": assets.FACE_EMBEDDER_DLIB_INT8}, "slimvision.inference.faces:FaceRecognizer",
         model=FileOf("embedder"))

# --------------------------------------------------------------------------- VAE
register("vae-mni128-unet", "vae", "realtime",
         "restore damaged or noisy brain MRI slices at their own size (U-Net VAE trained on the MNI152 T1 template at 128 px; "
         "the default denoiser before vae-medmix128-unet)",
         {"model": assets.VAE_MNI128_UNET}, "slimvision.inference.vae:MedicalVAE", folder=FileOf("model"))
register("vae-medmix128-unet", "vae", "realtime",
         "restore damaged or noisy CT / MR / X-ray / ultrasound slices at their own size (U-Net VAE fine-tuned on "
         "the real scans packages ship; flat neighbourhoods filled by their median; the denoiser vae denoise, "
         "batch vae-denoise and the server run)",
         {"model": assets.VAE_MEDMIX128_UNET}, "slimvision.inference.vae:MedicalVAE", folder=FileOf("model"))
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
