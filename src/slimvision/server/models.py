"""``/api/models``: every registered artifact, as ``slimvision models --json`` lists it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter()


@router.get("/api/models", tags=["server"], summary="Every registered model artifact: size, speed and purpose")
def models() -> dict[str, Any]:
    from slimvision.registry import ARTIFACTS

    # The registry's own rows: a model registered with its one line is listed here with no other edit.
    return {"models": ARTIFACTS.describe()}
