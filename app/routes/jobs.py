"""`/jobs`: tunes that run as jobs (issue 17): list, read (state, progress, the result when
done) and cancel. Every route is an admin operation, as the tunes that start jobs are:
whoever holds the admin key (or, without one, a loopback client) owns every job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import JSONResponse

from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.job_schemas import JobList, JobView
from labelcut.app.jobs import JobRunner
from labelcut.app.routes.job_handoff import job_summary, runner_of
from labelcut.app.routes.thresholds import set_report
from labelcut.app.schemas import ErrorResponse
from labelcut.app.service import Service
from labelcut.app.store import UnknownThresholdSet
from labelcut.app.store.jobs import STATES, JobFinished, JobRecord, UnknownJob

router = APIRouter(
    tags=["jobs"],
    dependencies=[
        Depends(reject_unknown_parameters),
        Depends(admin_bearer),
        Depends(require_admin),
    ],
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 503)
}


Jobs = Annotated[JobRunner, Depends(runner_of)]


def _get(jobs: JobRunner, job_id: str) -> JobRecord:
    try:
        return jobs.jobs().get(job_id)
    except UnknownJob as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


def job_result(service: Service, record: JobRecord) -> dict[str, Any] | None:
    """A succeeded job's body: its stored set's report as the synchronous tune answers it,
    or the report of a job that stored nothing."""
    if record.state != "succeeded":
        return None
    if record.set_id is None:
        return record.result
    try:
        found = service.require_store().get(record.set_id)
    except UnknownThresholdSet:
        return None
    return {"stored": True, **set_report(service, found)}


@router.get(
    "/jobs",
    response_model=JobList,
    summary="Recent jobs, newest first (without their results)",
    responses=_ERRORS,
)
def list_jobs(
    service: ReadyService,
    jobs: Jobs,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    state: Annotated[Literal[STATES] | None, Query(description="Only jobs in this state.")] = None,  # type: ignore[valid-type]
) -> dict[str, Any]:
    del service  # ready: the store is open
    found = jobs.jobs().list(limit=limit, offset=offset, state=state)
    return {"items": [job_summary(record) for record in found]}


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    summary="One job: state, progress, and its result once it succeeded",
    responses=_ERRORS,
)
def get_job(job_id: str, service: ReadyService, jobs: Jobs) -> dict[str, Any]:
    record = _get(jobs, job_id)
    return {**job_summary(record), "result": job_result(service, record)}


@router.delete(
    "/jobs/{job_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobView,
    summary="Cancel a job: a queued one at once, a running one within moments",
    responses=_ERRORS,
)
def cancel_job(job_id: str, service: ReadyService, jobs: Jobs) -> Any:
    del service
    try:
        record = jobs.jobs().request_cancel(job_id)
    except UnknownJob as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except JobFinished as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    jobs.cancel_local(job_id)
    return JSONResponse(status_code=202, content=job_summary(record))
