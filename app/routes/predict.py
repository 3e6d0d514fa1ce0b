"""POST /predict: probabilities and thresholded labels for a batch of rows.

An ordinary FastAPI route: its `async def` dependency (`labelcut.app.predict_deps`)
checks the API key and readiness and decodes the body with `labelcut.app.codecs`; the
app's exception handlers and `dependency_overrides` apply to it as to any route.

decode (JSON or .npy body, validated before it can join a batch)
-> batch (the app's Batcher: one forward pass shared with concurrent requests)
-> threshold (this request's snapshot of the active set, with its override)
-> encode (JSON, or .npy probabilities when the client accepts application/x-npy).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import Response

from labelcut import tuning
from labelcut.app.batching import BatcherClosed
from labelcut.app.codecs import NPY_MEDIA_TYPE, encode_json, encode_npy, header_value
from labelcut.app.predict_deps import PredictDep
from labelcut.app.schemas import ErrorResponse, PredictResponse
from labelcut.app.service import ActiveThresholds

log = logging.getLogger("labelcut")


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
        NPY_MEDIA_TYPE: {
            "schema": {"type": "string", "format": "binary"},
            "description": "One array saved with numpy.save: float32 of shape (n, *input_shape).",
        },
    },
}


#: The route's declaration, for `register` (and `APIRouter.add_api_route` alike).
ROUTE: dict[str, Any] = dict(
    path="/predict",
    methods=["POST"],
    tags=["predict"],
    response_model=PredictResponse,
    summary="Score rows; return probabilities and the labels with score >= threshold",
    description="Send JSON (`PredictRequest`) or an `.npy` array (`Content-Type: "
    "application/x-npy`, float32 of shape `(n, *input_shape)`). The answer is JSON, or an "
    "`.npy` of float32 probabilities `(n, len(labels))` with `Accept: application/x-npy`. "
    "Concurrent requests share forward passes (LABELCUT_MAX_BATCH_SIZE).",
    openapi_extra={"requestBody": _REQUEST_BODY, "security": [{"ApiKey": []}, {}]},
    responses={
        200: {"content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        413: {"model": ErrorResponse, "description": "More rows than LABELCUT_MAX_BATCH_ROWS."},
        415: {"model": ErrorResponse, "description": "A body that is neither JSON nor .npy."},
        422: {"model": ErrorResponse, "description": "Malformed inputs or thresholds."},
        503: {"model": ErrorResponse, "description": "Still loading, or shutting down."},
    },
)


async def predict(request: Request, call: PredictDep) -> Response:
    """Score the decoded rows `(n, *input_shape)`: JSON `PredictResponse`, or `(n, L)`
    float32 probabilities as `.npy` when the client accepts application/x-npy."""
    service, parsed = call.service, call.input
    model = service.loaded_model
    active = service.active  # one snapshot: this request sees exactly one set
    labels = model.labels
    thresholds = thresholds_with_override(active.thresholds, labels, parsed.thresholds)
    try:
        output = await request.app.state.batcher.submit(
            parsed.rows, thresholds=thresholds, want_logits=parsed.return_logits
        )
    except BatcherClosed as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from exc
    except Exception as exc:
        raise HTTPException(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            detail=f"The model failed on this request: {type(exc).__name__}: {exc}",
        ) from exc
    if output.nonfinite_row is not None:
        # Finite inputs near float32's limits can overflow inside the model.
        _unprocessable(
            f"inputs[{output.nonfinite_row}] drives the model to a non-finite output: its "
            "values are too large for float32 arithmetic."
        )
    # The request's rule, else the one stored with the set it sees.
    if parsed.decision_rule is not None:
        rule = (parsed.decision_rule, parsed.k)
    else:
        rule = stored_rule(active, len(labels))
    decisions = output.decisions
    if rule[0] != "threshold":
        decisions = tuning.apply_decision_rule(output.proba, thresholds, rule[0], rule[1])
    if NPY_MEDIA_TYPE in request.headers.get("accept", ""):
        headers = {
            "x-labelcut-model": header_value(model.name),
            "x-labelcut-threshold-set-id": "none" if active.set_id is None else str(active.set_id),
            "x-labelcut-labels": json.dumps(labels),  # ASCII: json escapes the rest
        }
        return Response(encode_npy(output.proba), media_type=NPY_MEDIA_TYPE, headers=headers)
    body = encode_json(
        model.name, active.set_id, labels, output.proba, decisions, output.logits, rule
    )
    return Response(body, media_type="application/json")


def register(app: FastAPI) -> None:
    """Add POST /predict to `app`'s own router, first, as an ordinary `APIRoute`.

    Not through `include_router`: an included router adds a level of route matching
    (about 10 us a request in FastAPI 0.16x) to the one route under load; and first in
    the list, since routes are matched in order.
    """
    app.add_api_route(endpoint=predict, **ROUTE)
    # Before the documentation routes FastAPI adds first (/openapi.json, /docs, ...).
    routes = app.router.routes
    routes.insert(0, routes.pop())


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


_warned_rules: set[tuple[int | None, str, str]] = set()


def stored_rule(active: ActiveThresholds, n_labels: int) -> tuple[str, int | None]:
    """The rule stored with the active set, made safe to apply to `n_labels` labels.

    Sets stored by older releases may hold a `top_k` whose k is absurd (e.g. 2**64, which
    no JSON encoder writes as an integer) or not an integer at all: k above the number of
    labels keeps every passing label, so it is clamped to `n_labels`; a rule that cannot
    be applied falls back to `threshold`, and the log says so once per set.
    """
    rule, k = active.decision_rule, active.k
    if rule == "threshold":
        return rule, None
    if rule in ("at_least_one", "exactly_one") and k is None:
        return rule, None
    if rule == "top_k" and type(k) is int and k >= 1:
        return rule, min(k, n_labels)
    key = (active.set_id, rule, repr(k)[:50])
    if key not in _warned_rules:
        _warned_rules.add(key)
        log.warning(
            "Threshold set %s stores decision rule %r with k=%s, which cannot be applied; "
            "using 'threshold'.",
            active.set_id,
            rule,
            key[2],
        )
    return "threshold", None


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
