"""DCGAN: a grid of digits from the shipped generator."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from slimvision.server.shared import png, run_job

#: The registered artifact that draws (``slimvision models``).
GENERATOR = "dcgan-digits32-int8"
MAX_GAN_SAMPLES = 64

router = APIRouter()


@router.get("/api/gan/sample", tags=["gan"], response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "a grid of generated digits"}},
            summary="A grid from the shipped 32 px digits generator")
async def gan_sample(request: Request, seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                     n: Annotated[int, Query(ge=1, le=MAX_GAN_SAMPLES)] = 16) -> Response:
    from slimvision.io.pixels import tile

    def work() -> np.ndarray:
        images = request.app.state.models.get(GENERATOR).sample(n, seed=seed)
        return tile(images, columns=min(8, n))

    return png(await run_job(request, work), {"Cache-Control": "public, max-age=3600"})
