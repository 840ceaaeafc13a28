"""Roman numerals: find and read them on a page image."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile

from slimvision.server.shared import BOX_FORMAT, decode, read_upload, run_job, settings_of

#: The registered artifact that reads (``slimvision models``).
READER = "numerals-som"

router = APIRouter()


@router.post("/api/numerals/read", tags=["numerals"], summary="Find and read Roman numerals on a page image")
async def read_numerals(request: Request, image: Annotated[UploadFile, File()]) -> dict:
    settings = settings_of(request)
    upload = await read_upload(image, "image")

    def work() -> dict[str, Any]:
        page = decode(*upload, settings, min_side=1)
        readings = request.app.state.models.get(READER)(page)
        return {"width": page.shape[1], "height": page.shape[0], "box_format": BOX_FORMAT,
                "numerals": [{"text": r.text, "value": r.value, "standard": r.standard, "problem": r.problem,
                              "box": [int(value) for value in r.box], "confidence": round(float(r.confidence), 3)}
                             for r in readings]}

    return await run_job(request, work)
