"""POST /thresholds/{id}/evaluate: score a stored set on an uploaded labelled file.

Nothing is stored: the answer is per-label precision, recall and F1 at the set's
thresholds and at 0.5, with macro and micro averages (`labelcut.tuning.evaluate`).
The upload is read like a tuning upload (same formats, limits and errors, the same
memory budget and thread pool), so it is an admin operation like `/tune-thresholds`.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from labelcut.app.budget import TuneRunner
from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.routes.budgeted import run_upload, set_of_loaded_model, tune_runner
from labelcut.app.schemas import ErrorResponse
from labelcut.app.scoring import score_inputs
from labelcut.app.service import Service, sha256_of_file
from labelcut.app.store import ThresholdSet
from labelcut.app.uploads import (
    UploadError,
    ValidationData,
    estimate_data_bytes,
    read_validation_file,
)
from labelcut.tuning import NotMultiClassError, apply_confidence_threshold, class_indices
from labelcut.tuning.evaluate import evaluate_thresholds

# Like the thresholds router: parameters and form fields a route does not declare are 422.
router = APIRouter(tags=["thresholds"], dependencies=[Depends(reject_unknown_parameters)])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 415, 422, 503)
}


class OperatingPoint(BaseModel):
    precision: float = Field(description="1 where nothing is predicted.")
    recall: float
    f1: float
    true_positives: int
    predicted_positives: int


class LabelEvaluation(BaseModel):
    label: str
    threshold: float
    support: int = Field(description="Positives of this label in the file.")
    at_threshold: OperatingPoint = Field(description="At the set's threshold.")
    at_default: OperatingPoint = Field(description="At 0.5.")


class Averages(BaseModel):
    precision: float
    recall: float
    f1: float


class AveragedPair(BaseModel):
    macro: Averages = Field(description="Mean of the per-label figures.")
    micro: Averages = Field(description="From the counts pooled over labels.")


class EvaluationSummary(BaseModel):
    at_threshold: AveragedPair
    at_default: AveragedPair


class MulticlassEvaluation(BaseModel):
    threshold: float
    coverage: float = Field(description="Share of rows answered.")
    accuracy: float = Field(description="Accuracy on the answered rows (1 when none).")
    answered: int
    overall_accuracy: float = Field(description="Argmax accuracy on every row.")


class EvaluationResponse(BaseModel):
    """How a stored set does on a labelled file; nothing was stored."""

    threshold_set_id: int
    data_sha256: str
    n_samples: int
    default_threshold: float
    per_label: list[LabelEvaluation]
    summary: EvaluationSummary
    multiclass: MulticlassEvaluation | None = Field(
        default=None,
        description="A softmax set: its confidence threshold on this file (argmax answered "
        "iff the top probability >= threshold).",
    )


def _evaluate_upload(
    service: Service, found: ThresholdSet, file: UploadFile, fmt: str, max_data_bytes: int
) -> dict[str, Any]:
    """Hash, decode, score and evaluate one upload; runs on the tune pool, under a
    reservation of the tunes' memory budget (it holds a whole file's arrays, as a tune)."""
    model = service.loaded_model
    data_sha256 = sha256_of_file(file.file)
    data = read_validation_file(file.file, fmt, service.input_spec, max_data_bytes=max_data_bytes)
    scores = data.scores if data.scores is not None else score_inputs(model, data.inputs)
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise UploadError(
            f"Row {int(np.argmax(bad)) + 1} of the inputs drives the model to a non-finite "
            "output: its values are too large for float32 arithmetic."
        )
    report = evaluate_thresholds(
        scores,
        data.targets,
        np.asarray(found.thresholds, dtype=np.float64),
        label_names=list(model.labels),
    )
    result = {"threshold_set_id": found.id, "data_sha256": data_sha256, **report}
    if found.params.get("activation") == "softmax":
        result["multiclass"] = _multiclass(scores, data, found, list(model.labels))
    return result


def _multiclass(
    scores: np.ndarray, data: ValidationData, found: ThresholdSet, labels: list[str]
) -> dict[str, Any]:
    """Coverage and accuracy of a softmax set's confidence threshold on the file."""
    try:
        classes = (
            data.classes
            if data.classes is not None
            else class_indices(data.targets, class_names=labels)
        )
    except NotMultiClassError as exc:
        raise UploadError(str(exc)) from None
    threshold = float(found.params["confidence_threshold"])
    answer = apply_confidence_threshold(scores, threshold)
    answered = answer >= 0
    right = answer == classes
    count = int(answered.sum())
    return {
        "threshold": threshold,
        "coverage": count / len(answer),
        "accuracy": float(right[answered].mean()) if count else 1.0,
        "answered": count,
        "overall_accuracy": float((np.argmax(scores, axis=1) == classes).mean()),
    }


@router.post(
    "/thresholds/{set_id}/evaluate",
    response_model=EvaluationResponse,
    summary="Score a stored set on an uploaded labelled file (stores nothing)",
    description="The file is read as for /tune-thresholds (.npz, .csv or .parquet, with "
    "inputs or scores). Answers per-label precision, recall and F1 at the set's thresholds "
    "and at 0.5, macro and micro, with the rule score >= threshold.",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses=_ERRORS,
)
async def evaluate_set(
    set_id: int,
    service: ReadyService,
    runner: Annotated[TuneRunner, Depends(tune_runner)],
    file: Annotated[UploadFile, File(description="Labelled data: .npz, .csv or .parquet.")],
) -> dict[str, Any]:
    found = await run_in_threadpool(
        partial(
            set_of_loaded_model,
            mismatch="It can be evaluated only with the model it was tuned for.",
        ),
        service,
        set_id,
    )
    return await run_upload(
        service,
        runner,
        file,
        estimate_data_bytes,
        lambda fmt, limit: _evaluate_upload(service, found, file, fmt, limit),
    )
