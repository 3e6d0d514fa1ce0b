"""Tuning and the versioned threshold store: tune, read, list, activate."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    UploadFile,
    status,
)
from fastapi.exceptions import RequestValidationError

from labelcut.app.budget import TuneRunner
from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.job_schemas import JobView
from labelcut.app.job_sources import MAX_SOURCE_CHARS
from labelcut.app.jobs import JobRunner
from labelcut.app.routes.budgeted import run_upload, tune_runner
from labelcut.app.routes.job_handoff import judge_upload, runner_of, source_job
from labelcut.app.schemas import (
    ActiveThresholdsResponse,
    CurvesResponse,
    ErrorResponse,
    HistoryResponse,
    ThresholdSetReport,
    TuneReport,
)
from labelcut.app.service import (
    CURVE_POINTS,
    Service,
    TuneParams,
    decision_rule_of,
    sha256_of_file,
    tune_data,
)
from labelcut.app.store import ModelMismatch, ThresholdSet, UnknownThresholdSet
from labelcut.app.tune_form import OptionError, check_options, tune_form
from labelcut.app.uploads import (
    ValidationData,
    read_validation_file,
)

# Every route here refuses query parameters and form fields it does not declare (422).
router = APIRouter(tags=["thresholds"], dependencies=[Depends(reject_unknown_parameters)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}


def set_info(service: Service, found: ThresholdSet) -> dict[str, Any]:
    rule, k = decision_rule_of(found)
    return {
        "id": found.id,
        "active": service.is_active(found),
        "created_at": found.created_at,
        "objective": found.objective,
        "params": found.params,
        "data_sha256": found.data_sha256,
        "n_samples": found.n_samples,
        "model_name": found.model_name,
        "model_sha256": found.model_sha256,
        "decision_rule": rule,
        "k": k,
        "archived": found.archived,
        "activation": found.params.get("activation", "sigmoid"),
    }


def set_report(service: Service, found: ThresholdSet) -> dict[str, Any]:
    return {
        "threshold_set": set_info(service, found),
        "thresholds": found.threshold_map(),
        **{key: found.result.get(key) for key in _REPORT_KEYS},
    }


# What a stored set's report holds besides its identity and thresholds: the multi-label
# figures, or a softmax set's confidence figures (`multiclass`) and its risk-coverage curve.
_REPORT_KEYS = (
    "per_label",
    "summary",
    "strategy",
    "global_threshold",
    "diagnosis",
    "lower_thresholds",
    "multiclass",
    "risk_coverage",
    "calibration",
    "adaptation",
)


def _form_error(field: str, message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the form field."""
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)  # JSON has no inf or NaN
    return RequestValidationError(
        [{"type": "value_error", "loc": ["body", field], "msg": message, "input": value}]
    )


def _report_without_storing(
    service: Service, data: ValidationData, params: TuneParams
) -> dict[str, Any]:
    """The figures `Service.tune` stores, for `store=false`: score, tune, report."""
    model = service.loaded_model
    tuned = tune_data(model, data, params, device=service.settings.device, with_curves=False)
    labels = list(model.labels)
    return {
        "stored": False,
        "threshold_set": None,
        "thresholds": dict(zip(labels, tuned.thresholds, strict=True)),
        **{key: tuned.result.get(key) for key in _REPORT_KEYS},
    }


def _tune_upload(
    service: Service,
    file: UploadFile,
    fmt: str,
    params: TuneParams,
    *,
    activate: bool,
    store: bool,
    max_data_bytes: int,
) -> dict[str, Any]:
    """Hash, decode and tune one upload; runs on the tune pool under a budget reservation."""
    data_sha256 = sha256_of_file(file.file)
    data = read_validation_file(file.file, fmt, service.input_spec, max_data_bytes=max_data_bytes)
    if not store:
        return _report_without_storing(service, data, params)
    stored, _ = service.tune(data, params, data_sha256=data_sha256, activate=activate)
    return {"stored": True, **set_report(service, stored)}


@router.post(
    "/tune-thresholds",
    response_model=TuneReport,
    summary="Tune one threshold per label on an uploaded validation file",
    status_code=200,
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses={
        **_ERRORS,
        202: {"model": JobView, "description": "Queued as a job: follow its Location."},
    },
)
async def tune_thresholds(
    service: ReadyService,
    runner: Annotated[TuneRunner, Depends(tune_runner)],
    jobs: Annotated[JobRunner, Depends(runner_of)],
    options: Annotated[dict[str, Any], Depends(tune_form)],
    file: Annotated[
        UploadFile | None,
        File(description="Validation data: .npz, .csv or .parquet (or send source=)."),
    ] = None,
    activate: Annotated[
        bool | None, Form(description="Make the new set active (default true when stored).")
    ] = None,
    store: Annotated[
        bool,
        Form(description="Store the new set; false answers the report and stores nothing."),
    ] = True,
    source: Annotated[
        str | None,
        Form(
            max_length=MAX_SOURCE_CHARS,
            description="Instead of a file: a Parquet dataset (directory, glob or fsspec URL) "
            "under a root of LABELCUT_DATA_SOURCES, tuned as a job (202).",
        ),
    ] = None,
    job: Annotated[
        bool,
        Form(description="Run as a job (202, then GET /jobs/{id}) even when the upload is small."),
    ] = False,
) -> Any:
    model = service.loaded_model
    try:
        params = check_options(
            options,
            activation=getattr(model, "activation", "sigmoid"),
            n_labels=len(model.labels),
        )
    except OptionError as exc:
        raise _form_error(exc.field, str(exc), options.get(exc.field)) from exc
    if not store and activate:
        raise _form_error("activate", "activate=true needs store=true: nothing is stored.", True)
    # Large uploads and every source= tune run as jobs (202): app/routes/job_handoff.py.
    sent = {
        **{name: value for name, value in options.items() if value is not None},
        **({} if activate is None else {"activate": activate}),
        "store": store,
    }
    if source is not None:
        if file is not None:
            raise _form_error("source", "Send a file or source=, not both.", source)
        return await source_job(
            service,
            jobs,
            source,
            params,
            activate=activate is not False,
            store=store,
            request={**sent, "source": source},
            report_keys=_REPORT_KEYS,
        )
    if file is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ["body", "file"], "msg": "Field required", "input": None}]
        )
    judged = await judge_upload(
        service,
        runner,
        jobs,
        file,
        params,
        force=job,
        activate=activate is not False,
        store=store,
        request={**sent, "file": file.filename},
        report_keys=_REPORT_KEYS,
    )
    if judged.response is not None:
        return judged.response
    return await run_upload(
        service,
        runner,
        file,
        lambda *_: judged.data_bytes,  # judged above: not estimated twice
        lambda fmt, limit: _tune_upload(
            service,
            file,
            fmt,
            params,
            activate=activate is not False,
            store=store,
            max_data_bytes=limit,
        ),
    )


@router.get(
    "/thresholds",
    response_model=ActiveThresholdsResponse,
    summary="The active threshold set (0.5 everywhere when none is active)",
)
def active_thresholds(service: ReadyService) -> dict[str, Any]:
    active = service.active
    labels = list(service.loaded_model.labels)
    return {
        "threshold_set": None if active.set is None else set_info(service, active.set),
        "thresholds": dict(zip(labels, active.thresholds.tolist(), strict=True)),
    }


@router.get(
    "/thresholds/history",
    response_model=HistoryResponse,
    summary="Stored threshold sets, newest first",
)
def history(
    service: ReadyService,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    all_models: Annotated[bool, Query(description="Include sets of other models.")] = False,
    archived: Annotated[bool, Query(description="Include archived sets.")] = False,
) -> dict[str, Any]:
    # The model's full identity (weights and labels in order): sets tuned for the same
    # weights with another label order belong to another model.
    found = service.store.history(
        model_key=None if all_models else service.model_key,
        include_archived=archived,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [
            {
                **set_info(service, item),
                "summary": item.result.get("summary"),
                "multiclass": _multiclass_summary(item),
            }
            for item in found
        ]
    }


def _multiclass_summary(found: ThresholdSet) -> dict[str, Any] | None:
    """A softmax set's headline figures (its report without the per-class table)."""
    multiclass = found.result.get("multiclass")
    if multiclass is None:
        return None
    return {key: value for key, value in multiclass.items() if key != "per_class"}


def _get_or_404(service: Service, set_id: int) -> ThresholdSet:
    try:
        return service.store.get(set_id)
    except UnknownThresholdSet as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc


@router.get(
    "/thresholds/{set_id}",
    response_model=ThresholdSetReport,
    summary="One stored threshold set with its per-label report",
    responses={404: {"model": ErrorResponse}},
)
def threshold_set(set_id: int, service: ReadyService) -> dict[str, Any]:
    return set_report(service, _get_or_404(service, set_id))


@router.get(
    "/thresholds/{set_id}/curves",
    response_model=CurvesResponse,
    summary="The per-label precision-recall curves a set was chosen from",
    responses={404: {"model": ErrorResponse}},
)
def threshold_set_curves(set_id: int, service: ReadyService) -> dict[str, Any]:
    found = _get_or_404(service, set_id)
    if found.result.get("risk_coverage") is not None:  # a softmax set: one confidence curve
        return {
            "threshold_set_id": found.id,
            "kind": "risk_coverage",
            "max_points": CURVE_POINTS,
            "curves": [],
            "risk_coverage": found.result["risk_coverage"],
        }
    curves = service.store.curves(found.id)
    if curves is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"Threshold set {set_id} has no stored curves."
        )
    return {
        "threshold_set_id": found.id,
        "kind": "precision_recall",
        "max_points": CURVE_POINTS,
        "curves": curves,
    }


@router.post(
    "/thresholds/{set_id}/activate",
    response_model=ThresholdSetReport,
    summary="Make a stored set active (roll forward or back)",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses=_ERRORS,
)
def activate(set_id: int, service: ReadyService) -> dict[str, Any]:
    try:
        found = service.activate(set_id)
    except UnknownThresholdSet as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except ModelMismatch as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return set_report(service, found)
