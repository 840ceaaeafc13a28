"""Regenerate the MTCNN ONNX graphs slimvision ships (``weights/faces/mtcnn-{pnet,rnet,onet}.onnx``),
and export trained face students (:func:`export_face_student`).

Each network is loaded from facenet-pytorch's state dict (:func:`slimvision.models.faces.mtcnn.load_mtcnn`)
and exported with :func:`slimvision.export.onnx.export_onnx`, which checks ONNX Runtime
against torch (example, random and resized inputs, plus a real photo or face crop) and writes
the graph and its artifact card only if every check is within 1e-4. PNet gets a free batch,
height and width; RNet and ONet a free batch. The card names facenet-pytorch's file (with
its sha256) as the source of the weights.

Needs the training extra and facenet-pytorch's data files::

    pip install --no-deps facenet-pytorch==2.6.0
    python -m slimvision.export.faces            # rewrites src/slimvision/weights/faces/
    python -m slimvision.export.faces --out /tmp/mtcnn

A new torch may write different bytes for the same graph: then update the sha256 of the
``MTCNN_*`` entries in :mod:`slimvision.assets` (a mismatch is only logged).

Example:
    >>> reports = export_mtcnn("out/faces", overwrite=True)          # doctest: +SKIP
    >>> max(report.max_abs_diff for report in reports.values()) < 1e-4  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from slimvision.export.card import card_path, read_card, write_card
from slimvision.export.onnx import CardInfo, ExportReport, ImageInput, export_onnx
from slimvision.models.faces.mtcnn import STAGES, load_mtcnn, source_weights


INPUT_NAME = "image"
OUTPUT_NAMES = {"pnet": ("score", "offsets"), "rnet": ("score", "offsets"),
                "onet": ("score", "offsets", "landmarks")}
CROP_SIZES = {"rnet": 24, "onet": 48}
#: The astronaut photo's face (x0, y0, x1, y1), a real input for the parity checks.
_SAMPLE_FACE = (175, 76, 266, 167)


def default_folder() -> Path:
    """``weights/faces`` inside the installed slimvision package (the source tree in a dev install)."""
    import slimvision

    return Path(slimvision.__file__).resolve().parent / "weights" / "faces"


def export_mtcnn(folder: str | Path | None = None, stages: Sequence[str] = STAGES,
                 overwrite: bool = False) -> dict[str, ExportReport]:
    """Export each MTCNN network in ``stages`` to ``folder/mtcnn-<stage>.onnx`` (+ ``.card.json``).

    Raises:
        ExportParityError: ONNX Runtime and torch differ by more than 1e-4 (nothing is written).
    """
    folder = Path(folder) if folder is not None else default_folder()
    reports = {}
    for stage in stages:
        path = folder / f"mtcnn-{stage}.onnx"
        reports[stage] = _export(stage, path, overwrite)
        _name_source(path, stage)  # export_onnx has logged the parity summary
    return reports


def _export(stage: str, path: Path, overwrite: bool) -> ExportReport:
    model = load_mtcnn(stage)
    outputs = OUTPUT_NAMES[stage]
    seeded = torch.Generator().manual_seed(0)  # the same example, so a re-export writes the same card
    if stage == "pnet":
        example = torch.rand(1, 3, 64, 80, generator=seeded) * 255
        axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                "score": {0: "batch", 1: "rows", 2: "columns"}, "offsets": {0: "batch", 2: "rows", 3: "columns"}}
        size: tuple[int, int] | str = "any"
    else:
        side = CROP_SIZES[stage]
        example = torch.rand(4, 3, side, side, generator=seeded) * 255
        axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
        size = (side, side)
    pixels = ImageInput(layout="NCHW", size=size, value_range=(0.0, 255.0), channel_order="RGB")
    return export_onnx(model, path, {INPUT_NAME: example}, output_names=outputs, dynamic_axes=axes,
                       preprocessing={INPUT_NAME: pixels}, check_inputs=[{INPUT_NAME: _real_input(stage)}],
                       source_weights=source_weights(stage), overwrite=overwrite, card=_card_info(stage, outputs))


def _card_info(stage: str, outputs: Sequence[str]) -> CardInfo:
    """The card words of one MTCNN stage: what its outputs mean, as the face detector reads them."""
    layouts = {"score": "N,rows,columns" if stage == "pnet" else "N",
               "offsets": "N,4,rows,columns" if stage == "pnet" else "N,4", "landmarks": "N,5,2"}
    descriptions = {
        "score": "probability that the window is a face",
        "offsets": "box corrections (x0, y0, x1, y1) as fractions of the window's side",
        "landmarks": "x, y of left eye, right eye, nose, left and right mouth corner, as fractions of the crop",
    }
    return CardInfo(system="faces", task=f"face-detection-{stage}", name=f"mtcnn-{stage}",
                    licence="MIT (exported from facenet-pytorch's MIT-licensed weights)",
                    remake=f"python -m slimvision.export.faces --stage {stage}",
                    layouts={name: layouts[name] for name in outputs},
                    value_ranges={"score": [0.0, 1.0]},
                    descriptions={INPUT_NAME: IMAGE_DESCRIPTIONS[stage], **{name: descriptions[name] for name in outputs}})


IMAGE_DESCRIPTIONS = {
    "pnet": "RGB pixels 0-255 of one image-pyramid level (box-filtered), any size of at least 12x12",
    "rnet": "RGB pixels 0-255 of 24x24 proposal crops (bilinear, black outside the image)",
    "onet": "RGB pixels 0-255 of 48x48 refined crops (bilinear, black outside the image)",
}


def _real_input(stage: str) -> np.ndarray:
    """The astronaut photo (PNet, at 0.3x) or its face crop (RNet, ONet), (1, 3, H, W) float32 pixels."""
    from PIL import Image

    from slimvision.assets import samples_dir

    with Image.open(samples_dir() / "content" / "astronaut.jpg") as photo:
        photo = photo.convert("RGB")
        if stage == "pnet":
            image = photo.resize((154, 154), Image.BOX)
        else:
            image = photo.crop(_SAMPLE_FACE).resize((CROP_SIZES[stage],) * 2, Image.BILINEAR)
    return np.asarray(image, np.float32).transpose(2, 0, 1)[None].copy()


def _name_source(path: Path, stage: str) -> None:
    """Name facenet-pytorch's file in the card by its package path, not this machine's path."""
    from slimvision.assets import MTCNN_TORCH_WEIGHTS

    card = read_card(card_path(path))
    card.provenance["source_weights"] = [MTCNN_TORCH_WEIGHTS[stage].provenance()]
    write_card(card, card_path(path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export MTCNN's networks from facenet-pytorch's weights to ONNX.")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: slimvision's weights/faces)")
    parser.add_argument("--stage", choices=STAGES, action="append", help="only this network (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    export_mtcnn(args.out, args.stage or STAGES, overwrite=True)
    return 0


#: What a face student's card says about its chip: dlib's, cut from MTCNN's 5 points.
_DLIB_STUDENT_CHIP = {"size": 150, "padding": 0.25, "channel_order": "RGB", "mean": None, "std": None,
                      "alignment": "5 MTCNN landmarks onto dlib's chip template "
                                   "(slimvision.data.face_align.MTCNN_TEMPLATE_5), at this size and padding"}


#: ... and a mobile student's: insightface's ArcFace template, no padding.
_ARCFACE_STUDENT_CHIP = {"size": 112, "padding": 0.0, "template": "arcface", "channel_order": "RGB", "mean": None,
                         "std": None, "alignment": "5 MTCNN landmarks onto insightface's ArcFace template "
                                               "(slimvision.data.face_align.ARCFACE_TEMPLATE_5), scaled to this size"}


def export_face_student(student: torch.nn.Module, run_dir: Path, folder: Path | None = None) -> dict[str, Path]:
    """A face student (an aligned chip in, 128-d descriptor out) as ``folder/embedder.onnx``
    (default: ``run_dir``) with the card the face pipeline reads
    (``inference.face_embedder.EmbedderCard``), checked against torch.

    The descriptor keeps the teacher's 0.6 Euclidean threshold (the student was trained towards
    the teacher's descriptors), under its own gallery name, so galleries never mix the two. The
    name comes from ``run_dir``: a student fine-tuned from the run (for int8, ``folder``
    ``RUN/int8-tune``) keeps the run's gallery, as its int8 graph does.
    """
    from slimvision.models.faces.mobilefacenet import MobileFaceNet

    run_dir = Path(run_dir)
    folder = Path(folder) if folder is not None else run_dir
    path = folder / "embedder.onnx"
    size = student.config.input_size
    chip = ({**_DLIB_STUDENT_CHIP, "size": size} if not isinstance(student, MobileFaceNet) else
            {**_ARCFACE_STUDENT_CHIP, "size": size})
    name = f"{run_dir.name}-embedder"
    card = CardInfo(system="faces", task="face-embedding", name=name,
                    remake=f"slimvision train face-student --run-dir {run_dir}",
                    descriptions={"face_chip": f"aligned {size} px face chips, RGB, pixel / 255",
                                  "descriptor": "128-d face descriptors; same person below a Euclidean distance "
                                                "of 0.6 (distilled from dlib's ResNet)"},
                    preprocessing={"face_chip": chip,
                                   "descriptor": {"distance": "euclidean", "threshold": 0.6,
                                                  "gallery_name": name, "gallery_version": "1"}},
                    provenance={"training_run": str(run_dir), "teacher": "dlib_face_recognition_resnet_model_v1"})
    export_onnx(student, path, {"face_chip": torch.rand(2, 3, size, size)}, output_names=("descriptor",),
                dynamic_axes={"face_chip": {0: "batch"}, "descriptor": {0: "batch"}},
                preprocessing={"face_chip": ImageInput(layout="NCHW", size=(size, size))},
                source_weights=folder / "student", overwrite=True, card=card)
    return {"embedder": path}



if __name__ == "__main__":
    raise SystemExit(main())
