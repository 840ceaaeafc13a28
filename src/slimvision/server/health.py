"""``/api/health``: is the server up, and how busy is it?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from slimvision import __version__

router = APIRouter()


@router.get("/api/health", tags=["server"], summary="Is the server up, and how busy is it?")
def health(request: Request) -> dict[str, Any]:
    jobs = request.app.state.jobs
    return {"status": "ok", "version": __version__, "jobs_in_progress": jobs.active, "capacity": jobs.capacity}
