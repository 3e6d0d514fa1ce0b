"""How `/tune-thresholds` hands a tune to a job (issue 17): an upload that decodes to more
than `LABELCUT_JOB_UPLOAD_MB` (or sent with `job=true`), and every `source=` tune. Both
answer `202 Accepted` with the queued job and `Location: /jobs/{id}`.

Refusals come before anything is queued or read: an upload that could never fit the
tunes' memory budget is 413, a full job queue 503, a `source=` outside the allowed roots
403 (`app/job_sources.py`), options a dataset tune cannot honour 422.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from labelcut.app.budget import NeverFits, TuneRunner
from labelcut.app.job_sources import SourceMissing, SourceRefused, check_source
from labelcut.app.jobs import (
    JobRunner,
    JobsFull,
    source_work,
    upload_budget_bytes,
    upload_work,
)
from labelcut.app.service import Service, TuneParams
from labelcut.app.store.jobs import JobRecord, new_job_id
from labelcut.app.uploads import UploadError, detect_format, estimate_data_bytes

RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Judged:
    """An upload judged: the 202 of its job, or None with its estimated decoded bytes
    (`uploads.estimate_data_bytes`) for the synchronous tune."""

    response: JSONResponse | None
    data_bytes: int


async def runner_of(request: Request) -> JobRunner:
    """A dependency: the app's job runner (`app.state.jobs`, started by `with_jobs`)."""
    return request.app.state.jobs


def job_summary(record: JobRecord) -> dict[str, Any]:
    """A job as `/jobs` shows it, without its result (see routes/jobs.py for the result)."""
    return {
        "id": record.id,
        "kind": record.kind,
        "state": record.state,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "model_name": record.model_name,
        "source": record.source,
        "options": record.request,
        "progress": record.progress,
        "error": record.error,
        "cancel_requested": record.cancel_requested,
        "threshold_set_id": record.set_id,
        "result": None,
    }


def accepted(record: JobRecord) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content=job_summary(record),
        headers={"Location": f"/jobs/{record.id}"},
    )


def _field_error(field: str, message: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ["body", field], "msg": message, "input": value}]
    )


async def _submit(jobs: JobRunner, **kwargs: Any) -> JSONResponse:
    try:
        record = await jobs.submit(**kwargs)
    except JobsFull as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=str(exc),
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from exc
    return accepted(record)


async def judge_upload(
    service: Service,
    runner: TuneRunner,
    jobs: JobRunner,
    file: UploadFile,
    params: TuneParams,
    *,
    force: bool,
    activate: bool,
    store: bool,
    request: dict[str, Any],
    report_keys: tuple[str, ...],
) -> Judged:
    """202 with a queued job when the upload is large (or `force`); else no response, and
    the route answers at once as before with the size judged here. The upload is judged
    from its declared sizes, unread."""
    limit = min(runner.max_upload_data_bytes, service.settings.max_data_bytes)
    try:
        fmt = detect_format(file.filename, file.content_type)
        data_bytes = await run_in_threadpool(
            estimate_data_bytes, file.file, fmt, service.input_spec, limit
        )
    except UploadError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from exc
    if not force and data_bytes <= service.settings.job_upload_mb * 2**20:
        return Judged(None, data_bytes)
    needed = upload_budget_bytes(data_bytes, len(service.input_spec.labels))
    if needed > runner.budget.total:
        raise HTTPException(413, detail=str(NeverFits(needed, runner.budget.total)))
    job_id = new_job_id()
    spool = await jobs.spool_upload(job_id, file.file, fmt)
    work = upload_work(
        service,
        spool,
        fmt,
        params,
        activate=activate,
        store=store,
        max_data_bytes=limit,
        report_keys=report_keys,
    )
    response = await _submit(
        jobs,
        job_id=job_id,
        kind="upload",
        source=file.filename,
        request=request,
        budget_bytes=needed,
        work=work,
        spool=spool,
    )
    return Judged(response, data_bytes)


async def source_job(
    service: Service,
    jobs: JobRunner,
    source: str,
    params: TuneParams,
    *,
    activate: bool,
    store: bool,
    request: dict[str, Any],
    report_keys: tuple[str, ...],
) -> JSONResponse:
    """202 with a queued job tuning the dataset `source` (checked against the roots)."""
    model = service.loaded_model
    if getattr(model, "activation", "sigmoid") == "softmax":
        raise _field_error(
            "source",
            "source= tunes multi-label (sigmoid) models; upload a softmax model's "
            "validation file instead.",
            source,
        )
    if params.calibration != "none":
        raise _field_error(
            "calibration",
            "calibration fits on the scores in memory; a source= tune runs without it "
            "(upload the file to calibrate).",
            params.calibration,
        )
    try:
        resolved = await run_in_threadpool(check_source, source, service.settings.data_sources)
    except SourceRefused as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from exc
    except SourceMissing as exc:
        raise _field_error("source", str(exc), source) from exc
    work = source_work(
        service, resolved, params, activate=activate, store=store, report_keys=report_keys
    )
    return await _submit(
        jobs,
        job_id=new_job_id(),
        kind="source",
        source=source,
        request=request,
        budget_bytes=0,
        work=work,
    )
