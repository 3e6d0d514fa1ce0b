"""POST /thresholds: store a finished tuning report (an offline `labelcut tune --out`).

The body is the JSON `labelcut tune --out` writes. Everything stored is checked
first: labels equal to the loaded model's, in order; every threshold and rate
finite and in [0, 1]; counts within the row count; the averages consistent with
the per-label figures; the model's sha256, when the report names one, equal to
the loaded model's (409). Unknown keys are dropped, never stored. The body is
read only after the admin check, and at most `MAX_PUSH_BYTES` of it. The set is
stored inactive unless `?activate=true`.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.routes.push_multiclass import (
    PushedSoftmaxReport,
    check_softmax_report,
    is_softmax_report,
    softmax_set,
)
from labelcut.app.routes.thresholds import set_report
from labelcut.app.schemas import (
    DecisionRule,
    ErrorResponse,
    Objective,
    Strategy,
    ThresholdSetReport,
)
from labelcut.app.service import CURVE_POINTS, Service
from labelcut.app.store import NewThresholdSet, StoreUnavailable
from labelcut.tuning.calibration import Calibrator

# Like the thresholds router: query parameters a route does not declare are 422.
router = APIRouter(tags=["thresholds"], dependencies=[Depends(reject_unknown_parameters)])
log = logging.getLogger("labelcut")

MAX_PUSH_BYTES = 32 * 2**20
MAX_LABELS = 100_000
MAX_DIAGNOSIS_DEPTH = 4
MAX_CALIBRATION_DEPTH = 6  # reliability data: per label, per bin
UNKNOWN_DATA = "unknown"  # data_sha256 of a pushed report that does not name its data

Rate = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
# A threshold may pass 1 by at most 2**-10: "predict nothing" where a score is 1.0.
Threshold = Annotated[float, Field(ge=0.0, le=1.0 + 2**-10, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Scalar = (
    Annotated[str, Field(max_length=200)]
    | bool
    | int
    | float
    | None
    # Per-label costs (objective=cost): a list by label, or the map as sent.
    | Annotated[list[float], Field(max_length=MAX_LABELS)]
    | Annotated[dict[Annotated[str, Field(max_length=200)], float], Field(max_length=MAX_LABELS)]
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class PushedPoint(_Strict):
    threshold: Threshold
    precision: Rate
    recall: Rate
    f1: Rate
    fbeta: Rate
    predicted_positives: Count


class PushedLabel(_Strict):
    label: str
    threshold: Threshold
    status: Literal[
        "ok",
        "no_positives",
        "no_negatives",
        "too_few_positives",
        "target_unreachable",
        "npv_target_unreachable",
    ]
    precision: Rate
    recall: Rate
    f1: Rate
    fbeta: Rate
    support: Count
    predicted_positives: Count
    at_default: PushedPoint
    strategy: Literal["per_label", "shrunk", "adaptive", "global", "fallback", "joint"] | None = (
        None
    )
    threshold_interval: tuple[Threshold, Threshold] | None = None
    f1_interval: tuple[Rate, Rate] | None = None
    unstable: bool | None = None


class TunedVsDefault(_Strict):
    tuned: Rate
    default: Rate


class PushedSummary(_Strict):
    macro_f1: TunedVsDefault
    micro_f1: TunedVsDefault


class PushedCurve(_Strict):
    label: str
    threshold: Threshold
    default_threshold: Rate
    precision: list[Rate] = Field(max_length=CURVE_POINTS + 3)
    recall: list[Rate] = Field(max_length=CURVE_POINTS + 3)
    thresholds: list[Threshold] = Field(max_length=CURVE_POINTS + 2)
    chosen_index: Count
    default_index: Count

    @model_validator(mode="after")
    def _consistent(self) -> PushedCurve:
        n = len(self.precision)
        if n == 0 or len(self.recall) != n or len(self.thresholds) != n - 1:
            raise ValueError(
                f"curve of '{self.label}': precision and recall need one point more than "
                "thresholds (the end point)."
            )
        if self.chosen_index >= n or self.default_index >= n:
            raise ValueError(f"curve of '{self.label}': an index is past the curve's end.")
        return self


class PushedCalibration(_Strict):
    """`labelcut tune --calibration ...`: the calibrator the thresholds apply to, and (the
    other keys) the report's calibration figures, kept as the set's report."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    method: Literal["none", "temperature", "platt", "isotonic"]
    calibrator: dict[str, Any]
    prior: list[Rate] = Field(max_length=MAX_LABELS)
    expected: dict[Literal["positive_rate", "mean_score"], list[Rate]]
    _parsed: Calibrator | None = PrivateAttr(default=None)

    @property
    def report(self) -> dict[str, Any]:
        """What the report shows: the method and the figures, without the calibrator."""
        return {"method": self.method, **(self.model_extra or {})}

    @model_validator(mode="after")
    def _calibrator_parses(self) -> PushedCalibration:
        try:  # checks every field of the dict (shapes, bounds, monotone breakpoints)
            self._parsed = Calibrator.from_dict(self.calibrator)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"calibration.calibrator is not a valid calibrator: {exc}") from exc
        if self._parsed.method != self.method:
            raise ValueError("calibration.method differs from the calibrator's method.")
        return self


class PushedModel(_Strict):
    name: str = Field(max_length=200)
    sha256: Hex64


class PushedReport(_Strict):
    """The JSON of `labelcut tune --out` (`TuningResult.to_dict` plus model, data, rule)."""

    objective: Objective
    strategy: Strategy | Literal["joint"] | None = None  # joint: micro objectives
    params: dict[Annotated[str, Field(max_length=64)], Scalar] = Field(max_length=64)
    n_samples: int = Field(ge=1, le=2**53)
    thresholds: dict[str, Threshold] = Field(min_length=1, max_length=MAX_LABELS)
    per_label: list[PushedLabel] = Field(min_length=1, max_length=MAX_LABELS)
    summary: PushedSummary
    global_threshold: Threshold | None = None
    lower_thresholds: dict[str, Threshold] | None = Field(default=None, max_length=MAX_LABELS)
    calibration: PushedCalibration | None = None
    diagnosis: dict[str, Any] | None = None
    model: PushedModel | None = None
    data_sha256: Hex64 | None = None
    decision_rule: DecisionRule = "threshold"
    k: int | None = Field(default=None, ge=1, le=MAX_LABELS)
    curves: list[PushedCurve] | None = Field(default=None, max_length=MAX_LABELS)


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _check_against_model(report: PushedReport, labels: list[str], sha256: str) -> None:
    """Cross-field checks the schema cannot state; 422 (409 for another model)."""
    if report.model is not None and report.model.sha256 != sha256:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"The report was tuned for model '{report.model.name}' (sha256 "
            f"{report.model.sha256[:12]}...), not for the loaded model (sha256 {sha256[:12]}...).",
        )
    for what, found in (
        ("thresholds", list(report.thresholds)),
        ("per_label", [row.label for row in report.per_label]),
        *([("curves", [c.label for c in report.curves])] if report.curves is not None else []),
    ):
        if found != labels:
            extra = [x for x in found if x not in labels]
            missing = [x for x in labels if x not in found]
            problem = (
                f"unknown {extra[:5]}"
                if extra
                else f"missing {missing[:5]}"
                if missing
                else "the order differs"
            )
            _unprocessable(
                f"The labels of '{what}' must be the model's, in its order ({problem}); "
                f"the model's labels are {labels}."
            )
    for row in report.per_label:
        if row.threshold != report.thresholds[row.label]:
            _unprocessable(f"per_label '{row.label}' has another threshold than 'thresholds'.")
        if row.support > report.n_samples or row.predicted_positives > report.n_samples:
            _unprocessable(f"per_label '{row.label}' counts more rows than n_samples.")
    for name in ("tuned", "default"):
        f1s = [row.f1 if name == "tuned" else row.at_default.f1 for row in report.per_label]
        mean = math.fsum(f1s) / len(f1s)
        if abs(mean - getattr(report.summary.macro_f1, name)) > 1e-6:
            _unprocessable(f"summary.macro_f1.{name} is not the mean of the per-label F1.")
    for curve in report.curves or []:
        if curve.threshold != report.thresholds[curve.label]:
            _unprocessable(f"curve of '{curve.label}' has another threshold than 'thresholds'.")
    if (report.decision_rule == "abstain") != (report.lower_thresholds is not None):
        _unprocessable("lower_thresholds go with decision_rule 'abstain', and only with it.")
    if report.lower_thresholds is not None:
        if list(report.lower_thresholds) != labels:
            _unprocessable("The labels of 'lower_thresholds' must be the model's, in its order.")
        for label, lower in report.lower_thresholds.items():
            if lower > report.thresholds[label]:
                _unprocessable(f"lower_thresholds '{label}' is above its threshold.")
    if report.calibration is not None:
        n = len(labels)
        sizes = [len(report.calibration.prior), *map(len, report.calibration.expected.values())]
        if report.calibration._parsed.n_labels != n or any(size != n for size in sizes):
            _unprocessable(f"calibration must hold one entry per model label ({n}).")
        if _depth(report.calibration.report) > MAX_CALIBRATION_DEPTH:
            _unprocessable(f"calibration is nested deeper than {MAX_CALIBRATION_DEPTH} levels.")
    if (report.decision_rule == "top_k") != (report.k is not None):
        _unprocessable("k goes with decision_rule 'top_k', and only with it.")
    if report.k is not None and report.k > len(labels):
        _unprocessable(f"k must be at most the model's number of labels ({len(labels)}).")
    if report.diagnosis is not None and _depth(report.diagnosis) > MAX_DIAGNOSIS_DEPTH:
        _unprocessable(f"diagnosis is nested deeper than {MAX_DIAGNOSIS_DEPTH} levels.")


def _extra_params(report: PushedReport, labels: list[str]) -> dict[str, Any]:
    """What the snapshot serves beside the thresholds: abstain's lower thresholds and the
    calibrator the thresholds apply to (SPEC-wave2's params)."""
    extra: dict[str, Any] = {}
    if report.lower_thresholds is not None:
        extra["lower_thresholds"] = [report.lower_thresholds[label] for label in labels]
    if report.calibration is not None:
        found = report.calibration
        extra["calibration"] = {
            "method": found.method,
            "calibrator": found.calibrator,
            "prior": found.prior,
            "expected": found.expected,
        }
    return extra


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                detail=f"A pushed report may hold at most {limit / 2**20:g} MB.",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_report(body: bytes) -> PushedReport | PushedSoftmaxReport:
    """The body as a `PushedReport` (or a softmax one); 422 naming the first problem."""
    try:
        data = orjson.loads(body)  # refuses NaN and Infinity
    except orjson.JSONDecodeError as exc:
        _unprocessable(f"The body is not JSON ({exc}); send the file `labelcut tune --out` wrote.")
    kind = PushedSoftmaxReport if is_softmax_report(data) else PushedReport
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        _unprocessable(f"{where}: {first['msg']} ({len(exc.errors())} problem(s) in all).")
    raise AssertionError("unreachable")


def _check_and_store(service: Service, body: bytes, activate: bool) -> dict[str, Any]:
    """Parse, check and store; blocking (a large report takes a while): run in a thread."""
    report = parse_report(body)
    model = service.loaded_model
    if isinstance(report, PushedSoftmaxReport):
        problem = check_softmax_report(
            report, list(model.labels), getattr(model, "activation", "sigmoid")
        )
        if problem:
            _unprocessable(problem)
        return _store(
            service,
            softmax_set(report, model.name, model.sha256, list(model.labels)),
            None,
            activate,
        )
    if getattr(model, "activation", "sigmoid") == "softmax":
        _unprocessable(
            "The loaded model is softmax (multi-class): push the report `labelcut tune` wrote "
            "for it (objective coverage_at_accuracy or accuracy_at_coverage)."
        )
    _check_against_model(report, list(model.labels), model.sha256)
    new = NewThresholdSet(
        model_name=model.name,
        model_sha256=model.sha256,
        labels=list(model.labels),
        objective=report.objective,
        params={
            **report.params,
            "decision_rule": report.decision_rule,
            "k": report.k,
            "origin": "push",
            **_extra_params(report, list(model.labels)),
        },
        data_sha256=report.data_sha256 or UNKNOWN_DATA,
        n_samples=report.n_samples,
        thresholds=[report.thresholds[label] for label in model.labels],
        result={
            "per_label": [row.model_dump() for row in report.per_label],
            "summary": report.summary.model_dump(),
            "strategy": report.strategy,
            "global_threshold": report.global_threshold,
            "diagnosis": report.diagnosis,
            "lower_thresholds": report.lower_thresholds,
            "calibration": None if report.calibration is None else report.calibration.report,
        },
    )
    curves = None if report.curves is None else [c.model_dump() for c in report.curves]
    return _store(service, new, curves, activate)


def _store(
    service: Service,
    new: NewThresholdSet,
    curves: list[dict[str, Any]] | None,
    activate: bool,
) -> dict[str, Any]:
    # Stored and activated in one transaction; then this replica's snapshot follows.
    stored = service.require_store().save(new, activate=activate, curves=curves)
    log.info("Stored pushed threshold set %d%s", stored.id, ", activated" if activate else "")
    if activate:
        try:
            service.refresh()
        except StoreUnavailable as exc:  # committed; the store's watcher catches up later
            log.warning("%s; the active set will follow when the store answers", exc)
    return set_report(service, stored)


@router.post(
    "/thresholds",
    response_model=ThresholdSetReport,
    status_code=status.HTTP_201_CREATED,
    summary="Store a finished tuning report (labelcut tune --out) as a threshold set",
    description="Body: the JSON `labelcut tune --out` writes. Labels must be the loaded "
    "model's, in order; numbers finite and in range. Stored inactive unless activate=true.",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses={code: {"model": ErrorResponse} for code in (401, 403, 409, 413, 422)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def push_report(
    request: Request,
    service: ReadyService,
    activate: Annotated[bool, Query(description="Make the stored set active.")] = False,
) -> dict[str, Any]:
    limit = min(MAX_PUSH_BYTES, service.settings.max_upload_bytes)
    body = await _read_capped(request, limit)
    return await run_in_threadpool(_check_and_store, service, body, activate)
