"""What the three upload routes share (tune, evaluate, adapt): the tunes' memory budget
and pool, and one mapping of their failures to HTTP answers.

An upload is judged from its declared sizes without decoding (`estimate`), reserves its
share of `LABELCUT_MAX_DATA_MB` and runs on the tune pool (`TuneRunner.run`). Failures:
`UploadError` -> its status, `NeverFits` -> 413, `BudgetBusy` -> 503 with `Retry-After`,
`ValueError` (tuning's checks, full sentences naming the problem) -> 422.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any, TypeVar

from fastapi import HTTPException, Request, UploadFile, status
from starlette.concurrency import run_in_threadpool

from labelcut.app.budget import BudgetBusy, NeverFits, TuneRunner
from labelcut.app.service import Service
from labelcut.app.store import ThresholdSet, UnknownThresholdSet
from labelcut.app.uploads import UploadError, detect_format

T = TypeVar("T")
#: `estimate(fileobj, fmt, input_spec, max_data_bytes) -> decoded bytes` (raises UploadError).
Estimate = Callable[[IO[bytes], str, Any, int], int]


async def tune_runner(request: Request) -> TuneRunner:
    """A dependency: the app's tune budget and pool (installed by `install_limits`)."""
    return request.app.state.tune_runner


def set_of_loaded_model(service: Service, set_id: int, *, mismatch: str) -> ThresholdSet:
    """The stored set `set_id` if it belongs to the loaded model (weights and labels in
    order): 404 for an unknown id, 409 with the reason and `mismatch` otherwise."""
    try:
        found = service.require_store().get(set_id)
    except UnknownThresholdSet as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    assert service.identity is not None  # ReadyService: the model is loaded
    reason = found.mismatch_with(service.identity)
    if reason is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"{reason} {mismatch}")
    return found


async def run_upload(
    service: Service,
    runner: TuneRunner,
    file: UploadFile,
    estimate: Estimate,
    work: Callable[[str, int], T],
) -> T:
    """`work(fmt, max_data_bytes)` on the tune pool under the budget, `file` judged first
    by `estimate`; every failure answered as the module docstring says."""
    limit = min(runner.max_upload_data_bytes, service.settings.max_data_bytes)
    try:
        fmt = detect_format(file.filename, file.content_type)
        data_bytes = await run_in_threadpool(estimate, file.file, fmt, service.input_spec, limit)
        return await runner.run(
            data_bytes, lambda: work(fmt, limit), n_labels=len(service.input_spec.labels)
        )
    except UploadError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from exc
    except NeverFits as exc:
        raise HTTPException(413, detail=str(exc)) from exc
    except BudgetBusy as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        raise HTTPException(503, detail=str(exc), headers=headers) from exc
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
