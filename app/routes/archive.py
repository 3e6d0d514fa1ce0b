"""Archive a threshold set: hidden from the default history, never deleted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from labelcut.app.deps import ReadyService, admin_bearer, require_admin
from labelcut.app.routes.thresholds import set_info
from labelcut.app.schemas import ErrorResponse, ThresholdSetInfo
from labelcut.app.store import SetIsActive, UnknownThresholdSet

router = APIRouter(tags=["thresholds"])


class ArchivedSetInfo(ThresholdSetInfo):
    archived: bool = Field(description="Hidden from /thresholds/history unless ?archived=true.")


class ArchiveResponse(BaseModel):
    threshold_set: ArchivedSetInfo


@router.post(
    "/thresholds/{set_id}/archive",
    response_model=ArchiveResponse,
    summary="Hide a stored set from the default history (the active set cannot be archived)",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)},
)
async def archive(set_id: int, service: ReadyService) -> dict[str, Any]:
    try:
        found = await run_in_threadpool(service.archive, set_id)
    except UnknownThresholdSet as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except SetIsActive as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return {"threshold_set": {**set_info(service, found), "archived": found.archived}}
