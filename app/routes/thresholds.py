"""Tuning and the versioned threshold store: tune, read, list, activate."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
    status,
)
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from labelcut.app.budget import BudgetBusy, NeverFits, TuneRunner
from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.schemas import (
    ActiveThresholdsResponse,
    CurvesResponse,
    DecisionRule,
    ErrorResponse,
    HistoryResponse,
    Objective,
    Strategy,
    ThresholdSetReport,
    TuneReport,
)
from labelcut.app.scoring import score_inputs
from labelcut.app.service import (
    CURVE_POINTS,
    Service,
    TuneParams,
    decision_rule_of,
    sha256_of_file,
    tune_scores,
)
from labelcut.app.store import ModelMismatch, ThresholdSet, UnknownThresholdSet
from labelcut.app.uploads import (
    UploadError,
    ValidationData,
    detect_format,
    estimate_data_bytes,
    read_validation_file,
)

# Every route here refuses query parameters and form fields it does not declare (422).
router = APIRouter(tags=["thresholds"], dependencies=[Depends(reject_unknown_parameters)])

# F-beta uses beta**2, which overflows to inf (and F-beta to NaN) past ~1.3e154.
MAX_BETA = 1e6
# Bounds where the numbers enter, before any is used or stored: k is checked against the
# model's labels too; min_positives past any row count means "every label falls back".
MAX_K = 1_000_000
MAX_MIN_POSITIVES = 2**31 - 1

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
    }


def set_report(service: Service, found: ThresholdSet) -> dict[str, Any]:
    return {
        "threshold_set": set_info(service, found),
        "thresholds": found.threshold_map(),
        **{key: found.result.get(key) for key in _REPORT_KEYS},
    }


# What a stored set's report holds besides its identity and thresholds.
_REPORT_KEYS = ("per_label", "summary", "strategy", "global_threshold", "diagnosis")


def _form_error(field: str, message: str, value: Any) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the form field."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ["body", field], "msg": message, "input": value}]
    )


def _check_params(
    objective: str,
    beta: float | None,
    target: float | None,
    decision_rule: str,
    k: int | None,
    n_labels: int,
) -> None:
    if decision_rule == "top_k" and k is None:
        raise HTTPException(422, detail="decision_rule 'top_k' needs the form field 'k' (>= 1).")
    if decision_rule != "top_k" and k is not None:
        raise HTTPException(422, detail="k is only used with decision_rule 'top_k'.")
    if k is not None and k > n_labels:
        raise _form_error(
            "k", f"k must be at most the model's number of labels ({n_labels}); got {k}.", k
        )
    if beta is not None and not 0 < beta <= MAX_BETA:
        raise HTTPException(422, detail=f"beta must be > 0 and at most {MAX_BETA:g}; got {beta}.")
    needs_target = objective in ("recall_at_precision", "precision_at_recall")
    if needs_target and target is None:
        raise HTTPException(422, detail=f"objective '{objective}' needs the form field 'target'.")
    if target is not None and not 0 < target <= 1:
        raise HTTPException(422, detail=f"target must be in (0, 1]; got {target}.")


def _report_without_storing(
    service: Service, data: ValidationData, params: TuneParams
) -> dict[str, Any]:
    """The figures `Service.tune` stores, for `store=false`: score, tune, report."""
    model = service.loaded_model
    scores = data.scores if data.scores is not None else score_inputs(model, data.inputs)
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise UploadError(
            f"Row {int(np.argmax(bad)) + 1} of the inputs drives the model to a non-finite "
            "output: its values are too large for float32 arithmetic."
        )
    result = tune_scores(scores, data.targets, params, device=service.settings.device)
    labels = list(model.labels)
    report = result.to_dict(label_names=labels)
    return {
        "stored": False,
        "threshold_set": None,
        "thresholds": dict(zip(labels, (float(t) for t in result.thresholds), strict=True)),
        **{key: report.get(key) for key in _REPORT_KEYS},
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


def tune_runner(request: Request) -> TuneRunner:
    return request.app.state.tune_runner


@router.post(
    "/tune-thresholds",
    response_model=TuneReport,
    summary="Tune one threshold per label on an uploaded validation file",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses=_ERRORS,
)
async def tune_thresholds(
    service: ReadyService,
    runner: Annotated[TuneRunner, Depends(tune_runner)],
    file: Annotated[UploadFile, File(description="Validation data: .npz, .csv or .parquet.")],
    objective: Annotated[Objective, Form()] = "f1",
    beta: Annotated[float | None, Form(description="F-beta's beta, in (0, 1e6].")] = None,
    target: Annotated[
        float | None, Form(description="Precision or recall floor in (0, 1].")
    ] = None,
    min_positives: Annotated[
        int, Form(ge=0, le=MAX_MIN_POSITIVES, description="Fewer positives: fallback.")
    ] = 1,
    activate: Annotated[
        bool | None, Form(description="Make the new set active (default true when stored).")
    ] = None,
    store: Annotated[
        bool,
        Form(description="Store the new set; false answers the report and stores nothing."),
    ] = True,
    strategy: Annotated[
        Strategy,
        Form(
            description="shrunk (default): per-label thresholds pulled toward one shared "
            "threshold as a label's positives get fewer; per_label: each label's own optimum; "
            "global: one shared threshold."
        ),
    ] = "shrunk",
    n_bootstrap: Annotated[
        int, Form(ge=0, le=10_000, description="Bootstrap replicates for intervals; 0: none.")
    ] = 200,
    seed: Annotated[int, Form(ge=0, le=2**32 - 1, description="Bootstrap seed.")] = 0,
    decision_rule: Annotated[
        DecisionRule, Form(description="The /predict rule stored with this set.")
    ] = "threshold",
    k: Annotated[
        int | None,
        Form(ge=1, le=MAX_K, description="Labels kept by top_k: 1 to the number of labels."),
    ] = None,
) -> dict[str, Any]:
    _check_params(objective, beta, target, decision_rule, k, len(service.loaded_model.labels))
    if not store and activate:
        raise _form_error("activate", "activate=true needs store=true: nothing is stored.", True)
    needs_target = objective in ("recall_at_precision", "precision_at_recall")
    params = TuneParams(
        objective=objective,
        beta=1.0 if beta is None else beta,
        target=target if needs_target else None,
        min_positives=min_positives,
        strategy=strategy,
        n_bootstrap=n_bootstrap,
        seed=seed,
        decision_rule=decision_rule,
        k=k,
    )
    limit = min(runner.max_upload_data_bytes, service.settings.max_data_bytes)
    try:
        fmt = detect_format(file.filename, file.content_type)
        # Judged from the declared sizes, without decoding: what the budget must hold.
        data_bytes = await run_in_threadpool(
            estimate_data_bytes, file.file, fmt, service.input_spec, limit
        )
        return await runner.run(
            data_bytes,
            lambda: _tune_upload(
                service,
                file,
                fmt,
                params,
                activate=activate is not False,
                store=store,
                max_data_bytes=limit,
            ),
        )
    except UploadError as exc:
        raise HTTPException(exc.status_code, detail=str(exc)) from exc
    except NeverFits as exc:
        raise HTTPException(413, detail=str(exc)) from exc
    except BudgetBusy as exc:
        raise HTTPException(
            503, detail=str(exc), headers={"Retry-After": str(exc.retry_after)}
        ) from exc
    except ValueError as exc:  # tuning's argument checks: full sentences naming the problem
        raise HTTPException(422, detail=str(exc)) from exc


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
        "items": [{**set_info(service, item), "summary": item.result["summary"]} for item in found]
    }


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
    curves = service.store.curves(found.id)
    if curves is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"Threshold set {set_id} has no stored curves."
        )
    return {"threshold_set_id": found.id, "max_points": CURVE_POINTS, "curves": curves}


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
