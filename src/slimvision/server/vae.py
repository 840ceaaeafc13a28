"""Medical VAE: add noise to a grey slice, then restore it."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile

from slimvision.inference.vae import DENOISER  # the registered artifact that restores
from slimvision.server.shared import data_url, decode, read_upload, run_job, settings_of

router = APIRouter()


@router.post("/api/vae/denoise", tags=["vae"], summary="Add noise to a grey slice, then restore it with the VAE")
async def denoise(request: Request, image: Annotated[UploadFile, File()],
                  noise: Annotated[float, Form(ge=0, le=1)] = 0.1,
                  seed: Annotated[int, Form(ge=0, le=2**31 - 1)] = 0) -> dict:
    settings = settings_of(request)
    upload = await read_upload(image, "image")

    def work() -> dict[str, Any]:
        from slimvision.io.pixels import rint_to_uint8 as to_uint8  # the VAE's rounding (half to even)
        from slimvision.io.images import to_gray

        pixels = to_gray(decode(*upload, settings)).astype(np.float32) / 255.0
        noisy = np.clip(pixels + np.random.default_rng(seed).normal(0, noise, pixels.shape), 0, 1).astype(np.float32)
        restored = request.app.state.models.get(DENOISER).restore_slice(noisy)
        return {"noisy": data_url(to_uint8(noisy)), "denoised": data_url(to_uint8(restored)),
                "width": pixels.shape[1], "height": pixels.shape[0]}

    return await run_job(request, work)
