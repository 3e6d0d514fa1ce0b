"""POST /predict: probabilities and thresholded labels for a batch of rows.

An ordinary FastAPI route: its `async def` dependency (`labelcut.app.predict_deps`)
checks the API key and readiness and decodes the body with `labelcut.app.codecs`; the
app's exception handlers and `dependency_overrides` apply to it as to any route.

decode (JSON or .npy body, validated before it can join a batch)
-> batch (the app's Batcher: one forward pass shared with concurrent requests)
-> decide (the worker applies this request's `Policy`: the snapshot of the active set it
   saw, with its options; `labelcut.app.decisions`), then counts the rows for drift
-> encode (JSON, or .npy probabilities when the client accepts application/x-npy).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import Response
from fastapi.routing import APIRoute

from labelcut.app.batching import BatcherClosed
from labelcut.app.codecs import NPY_MEDIA_TYPE, encode_json, encode_npy, header_value
from labelcut.app.decisions import stored_rule, thresholds_with_override
from labelcut.app.predict_deps import PredictDep, predict_call
from labelcut.app.predict_schemas import PredictResponse
from labelcut.app.schemas import ErrorResponse

__all__ = [
    "ROUTE",
    "PredictRoute",
    "predict",
    "register",
    "stored_rule",
    "thresholds_with_override",
]


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
    summary="Score rows; return probabilities and the labels the decision rule gives",
    description="Send JSON (`PredictRequest`) or an `.npy` array (`Content-Type: "
    "application/x-npy`, float32 of shape `(n, *input_shape)`). The answer is JSON, or an "
    "`.npy` of float32 probabilities `(n, len(labels))` with `Accept: application/x-npy`. "
    "A softmax (multi-class) model answers its argmax, or no label below the confidence "
    "`threshold`; `decision_rule=abstain` adds each row's `uncertain` labels; a calibrated "
    "set serves calibrated probabilities (`calibrated: true`). "
    "Concurrent requests share forward passes (LABELCUT_MAX_BATCH_SIZE).",
    openapi_extra={"requestBody": _REQUEST_BODY, "security": [{"ApiKey": []}, {}]},
    responses={
        200: {"content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        413: {"model": ErrorResponse, "description": "More rows than LABELCUT_MAX_BATCH_ROWS."},
        415: {"model": ErrorResponse, "description": "A body that is neither JSON nor .npy."},
        422: {
            "model": ErrorResponse,
            "description": "Malformed inputs or thresholds, or an option the model or the "
            "active set cannot apply (per-label thresholds on a softmax model, abstain "
            "without a stored band).",
        },
        503: {"model": ErrorResponse, "description": "Still loading, or shutting down."},
    },
)


async def predict(request: Request, call: PredictDep) -> Response:
    """Score the decoded rows `(n, *input_shape)`: JSON `PredictResponse`, or `(n, L)`
    float32 served scores as `.npy` when the client accepts application/x-npy."""
    service, parsed = call.service, call.input
    model = service.loaded_model
    active = service.active  # one snapshot: this request sees exactly one set
    labels = model.labels
    policy = request.app.state.policies.policy_for(active, parsed, labels)
    try:
        output = await request.app.state.batcher.submit(
            parsed.rows, policy=policy, want_logits=parsed.return_logits
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
    if NPY_MEDIA_TYPE in request.headers.get("accept", ""):
        headers = {
            "x-labelcut-model": header_value(model.name),
            "x-labelcut-threshold-set-id": "none" if active.set_id is None else str(active.set_id),
            "x-labelcut-labels": json.dumps(labels),  # ASCII: json escapes the rest
        }
        if policy.calibrator is not None:
            headers["x-labelcut-calibrated"] = "true"
        return Response(encode_npy(output.proba), media_type=NPY_MEDIA_TYPE, headers=headers)
    body = encode_json(
        model.name,
        active.set_id,
        labels,
        output.proba,
        output.decisions,
        output.logits,
        (policy.shown_rule, policy.k),
        output.uncertain,
        policy.confidence,
        policy.calibrator is not None,
    )
    return Response(body, media_type="application/json")


class PredictRoute(APIRoute):
    """An ordinary `APIRoute` for /predict whose handler skips FastAPI's dependency solver
    while nothing overrides the route's one dependency.

    The route is in the app's router and its OpenAPI schema, and its errors go through the
    app's exception handlers like any route's (FastAPI's `request_response` wrapper is
    kept). FastAPI's solver costs tens of microseconds a request, a third of what the
    route costs on the event loop; the route has exactly one dependency (`predict_call`)
    and no parameters of its own, so the handler calls it directly. When the app
    overrides any dependency (`app.dependency_overrides`), the request takes FastAPI's
    own handler instead, so every override applies exactly as FastAPI documents.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        solved = super().get_route_handler()
        provider = self.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if provider is not None and getattr(provider, "dependency_overrides", None):
                return await solved(request)
            return await predict(request, await predict_call(request))

        return handler


def register(app: FastAPI) -> None:
    """Add POST /predict to `app`'s own router, first, as an ordinary `APIRoute`.

    Not through `include_router`: an included router adds a level of route matching
    (about 10 us a request in FastAPI 0.16x) to the one route under load; and first in
    the list, since routes are matched in order.
    """
    app.router.add_api_route(endpoint=predict, route_class_override=PredictRoute, **ROUTE)
    # Before the documentation routes FastAPI adds first (/openapi.json, /docs, ...).
    routes = app.router.routes
    routes.insert(0, routes.pop())


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
