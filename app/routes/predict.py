"""POST /predict: probabilities and thresholded labels for a batch of rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import tuning
from app.deps import ReadyService, require_api_key
from app.schemas import ErrorResponse, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])


def rows_to_array(inputs: list[Any], input_shape: tuple[int, ...]) -> np.ndarray:
    """`(n, *input_shape)` float32 from JSON rows; HTTP 422 naming the first bad row."""
    expected = tuple(input_shape)
    try:
        array = np.asarray(inputs, dtype=np.float32)
    except (ValueError, TypeError):
        array = None
    if array is None or array.shape[1:] != expected:
        for i, row in enumerate(inputs):
            try:
                shape = np.asarray(row, dtype=np.float32).shape
            except (ValueError, TypeError):
                _unprocessable(
                    f"inputs[{i}] is not a nested list of numbers of shape {list(expected)}."
                )
            if shape != expected:
                _unprocessable(
                    f"inputs[{i}] has shape {list(shape)}; the model expects {list(expected)}."
                )
        _unprocessable(f"inputs must be rows of shape {list(expected)}.")
    finite = np.isfinite(array.reshape(len(array), -1))
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        _unprocessable(f"inputs[{row}] holds a missing or non-finite value at position {col}.")
    return array


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def thresholds_with_override(
    active: np.ndarray, labels: list[str], override: dict[str, float] | None
) -> np.ndarray:
    """The active thresholds with a request's per-label override applied (copy if changed)."""
    if not override:
        return active
    position = {label: i for i, label in enumerate(labels)}
    values = active.copy()
    for label, value in override.items():
        if label not in position:
            _unprocessable(f"thresholds names unknown label '{label}'; labels are {labels}.")
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            _unprocessable(f"thresholds['{label}'] is {value}; it must be in [0, 1].")
        values[position[label]] = value
    return values


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Score rows; return probabilities and the labels with score >= threshold",
    dependencies=[Depends(require_api_key)],
    responses={
        413: {"model": ErrorResponse, "description": "More rows than LABELCUT_MAX_BATCH_ROWS."},
        422: {"model": ErrorResponse, "description": "Malformed inputs or thresholds."},
    },
)
async def predict(body: PredictRequest, service: ReadyService) -> JSONResponse:
    model = service.loaded_model
    active = service.active  # one snapshot: this request sees exactly one set
    limit = service.settings.max_batch_rows
    if not body.inputs:
        _unprocessable("inputs is empty; send at least one row.")
    if len(body.inputs) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"inputs has {len(body.inputs)} rows, over the limit of {limit} rows per "
            "request (LABELCUT_MAX_BATCH_ROWS); split the batch.",
        )
    labels = list(model.labels)
    thresholds = thresholds_with_override(active.thresholds, labels, body.thresholds)
    x = rows_to_array(body.inputs, tuple(model.input_shape))
    logits = None
    if body.return_logits:
        logits = await run_in_threadpool(model.predict_logits, x)
    proba = await run_in_threadpool(model.predict_proba, x)
    decisions = tuning.apply_thresholds(proba, thresholds)
    label_array = np.array(labels, dtype=object)
    predictions = []
    for i, row in enumerate(proba.tolist()):
        item: dict[str, Any] = {
            "labels": label_array[decisions[i]].tolist(),
            "scores": dict(zip(labels, row, strict=True)),
        }
        if logits is not None:
            item["logits"] = dict(zip(labels, logits[i].tolist(), strict=True))
        predictions.append(item)
    return JSONResponse(
        {
            "model": model.name,
            "threshold_set_id": active.set_id,
            "labels": labels,
            "predictions": predictions,
        }
    )
