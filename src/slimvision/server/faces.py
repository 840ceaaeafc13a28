"""Faces: verify two photos, identify people of the gallery, and change the gallery (admin token)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from slimvision.server.errors import ApiError
from slimvision.server.settings import ServerSettings
from slimvision.server.shared import (ADMIN_RESPONSES, BOX_FORMAT, decode, models_of, read_upload, require_admin,
                                      run_job, settings_of)

#: The registered artifact that answers by default: MTCNN, alignment and dlib's ResNet
#: (``slimvision serve --face-model`` picks another, ``ServerSettings.face_model``).
RECOGNIZER = "face-embedder-dlib-resnet"

router = APIRouter()


@router.post("/api/faces/verify", tags=["faces"], summary="Are the main faces of two photos the same person?")
async def verify(request: Request, a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()]) -> dict:
    settings = settings_of(request)
    first, second = await read_upload(a, "a"), await read_upload(b, "b")

    def work() -> dict[str, Any]:
        recognizer = request.app.state.models.get(settings.face_model)
        photos = [decode(*item, settings) for item in (first, second)]
        faces = [recognizer.main_face(photo, item[1]) for photo, item in zip(photos, (first, second))]
        result = recognizer.compare(faces[0].descriptor, faces[1].descriptor)
        return {"same": result.same_person, "distance": round(result.distance, 4),
                "similarity": round(result.similarity, 4), "threshold": result.threshold,
                "box_format": BOX_FORMAT,
                "boxes": {"a": _box(faces[0].face.box, photos[0]), "b": _box(faces[1].face.box, photos[1])}}

    return await run_job(request, work)


@router.post("/api/faces/identify", tags=["faces"], summary="Who of the gallery is in this photo?")
async def identify(request: Request, image: Annotated[UploadFile, File()]) -> dict:
    settings = settings_of(request)
    upload = await read_upload(image, "image")

    def work() -> dict[str, Any]:
        recognizer = request.app.state.models.get(settings.face_model)
        photo = decode(*upload, settings)
        if not settings.gallery.is_file():
            return {"box_format": BOX_FORMAT, "gallery_size": 0,
                    "faces": [{"box": _box(face.face.box, photo), "name": None, "distance": None}
                              for face in recognizer(photo)]}
        with _gallery(settings, "r", recognizer.embedder) as gallery:
            faces = recognizer.identify(photo, gallery, top_k=1)
            size = len(gallery.people())
        return {"box_format": BOX_FORMAT, "gallery_size": size,
                "faces": [{"box": _box(face.face.box, photo), "name": face.name,
                           "distance": round(face.matches[0].distance, 4) if face.matches else None}
                          for face in faces]}

    return await run_job(request, work)


@router.get("/api/faces/gallery", tags=["faces"], summary="The enrolled people")
async def gallery_list(request: Request) -> dict:
    settings = settings_of(request)

    def work() -> dict[str, Any]:
        if not settings.gallery.is_file():
            return {"people": []}
        with _gallery(settings, "r", models_of(request).get(settings.face_model).embedder) as gallery:
            return {"people": [{"name": p.name, "templates": p.faces} for p in gallery.people()]}

    return await run_job(request, work)


@router.post("/api/faces/enroll", tags=["faces"], summary="Add a photo of a person (admin token)",
             dependencies=[Depends(require_admin)], responses=ADMIN_RESPONSES)
async def enroll(request: Request, name: Annotated[str, Form(min_length=1, max_length=100)],
                 image: Annotated[UploadFile, File()]) -> dict:
    settings = settings_of(request)
    upload = await read_upload(image, "image")

    def work() -> dict[str, Any]:
        photo = decode(*upload, settings)
        recognizer = request.app.state.models.get(settings.face_model)
        face = recognizer.main_face(photo, upload[1])
        with _gallery(settings, "c", recognizer.embedder) as gallery:
            before = {person.name: person.faces for person in gallery.people()}
            gallery.add(name, face.descriptor[None], sources=["upload"])
            # The gallery stores the name tidied ("Ann  Lee" as "Ann Lee"): report the person
            # this enrolment changed or created, not a lookup by the name as sent.
            person = _enrolled(gallery.people(), before, name)
        return {"name": person.name, "templates": person.faces, "box_format": BOX_FORMAT,
                "box": _box(face.face.box, photo)}

    return await run_job(request, work)


@router.delete("/api/faces/gallery/{name}", tags=["faces"], summary="Remove a person (admin token)",
               dependencies=[Depends(require_admin)], responses=ADMIN_RESPONSES)
async def remove(request: Request, name: str) -> dict:
    settings = settings_of(request)
    nobody = ApiError(404, "not_found", f"nobody called {name!r} is enrolled")

    def work() -> dict[str, Any]:
        if not settings.gallery.is_file():
            raise nobody
        with _gallery(settings, "w", models_of(request).get(settings.face_model).embedder) as gallery:
            if name not in {person.name for person in gallery.people()}:
                raise nobody
            return {"name": name, "removed_templates": gallery.remove(name)}

    return await run_job(request, work)


class _gallery:
    """The SQLite gallery opened for one job (SQLite connections belong to the thread that made
    them), read-only ("r") unless the job changes it ("w"; "c" may create it)."""

    def __init__(self, settings: ServerSettings, mode: str, embedder: Any) -> None:
        self.path, self.mode, self.embedder = settings.gallery, mode, embedder

    def __enter__(self) -> Any:
        from slimvision.inference.face_gallery import Gallery

        # The face model's embedder: a gallery made with another model is refused, as on the command line.
        self.gallery = Gallery.open(self.path, self.embedder, mode=self.mode)
        return self.gallery

    def __exit__(self, *exc: object) -> None:
        self.gallery.close()


def _enrolled(people: list[Any], before: dict[str, int], name: str) -> Any:
    """The person an enrolment created or added to: the one whose count changed, else (the photo
    was there already) the one whose tidied name matches."""
    changed = [person for person in people if person.faces != before.get(person.name)]
    if changed:
        return changed[0]
    tidied = " ".join(name.split())
    return next((person for person in people if person.name == tidied),
                SimpleNamespace(name=tidied, faces=before.get(tidied, 0)))


def _box(box: Any, photo: np.ndarray) -> list[int]:
    """A face box as the API writes it (:data:`BOX_FORMAT`): whole pixels inside the photo, as the
    CLI writes it (:func:`~slimvision.inference.faces.box_xyxy`)."""
    from slimvision.inference.faces import box_xyxy

    return box_xyxy(box, photo.shape)
