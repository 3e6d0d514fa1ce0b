"""POST /predict: probabilities and thresholded labels for a batch of rows.

decode (JSON or .npy body, validated here so a bad request never joins a batch)
-> batch (the app's Batcher: one forward pass shared with concurrent requests)
-> threshold (this request's snapshot of the active set, with its override)
-> encode (JSON, or .npy probabilities when the client accepts application/x-npy).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from labelcut import tuning
from labelcut.app.batching import BatcherClosed
from labelcut.app.deps import get_ready_service, get_service, require_api_key
from labelcut.app.schemas import ErrorResponse, PredictRequest, PredictResponse
from labelcut.app.service import Service

router = APIRouter(tags=["predict"])

NPY_MEDIA_TYPE = "application/x-npy"
_JSON_KEYS = frozenset({"inputs", "thresholds", "return_logits"})
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class PredictInput:
    """A decoded, validated request: rows `(n, *input_shape)` float32 and its options."""

    rows: np.ndarray
    thresholds: dict[str, float] | None = None
    return_logits: bool = False
    decision_rule: str | None = None  # None: the active set's rule
    k: int | None = None


# --- decode ------------------------------------------------------------------------------


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # The standard parser also reads NaN/Infinity (then refused as non-finite by name)
        # and integers past 64 bits, and reports the same errors as FastAPI.
        return json.loads(body)


def read_json_body(body: bytes, input_shape: tuple[int, ...], max_rows: int) -> PredictInput:
    """Decode a JSON `PredictRequest`; 422 naming the first bad row, 413 over `max_rows`.

    `orjson.loads` plus a check of the common shape is several times cheaper than
    pydantic over a list of rows; anything unusual goes through `PredictRequest`
    so its errors read exactly as FastAPI's.
    """
    try:
        data = _loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", getattr(exc, "start", 0))
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(exc, "msg", str(exc))},
                }
            ]
        ) from exc
    simple = (
        type(data) is dict
        and type(data.get("inputs")) is list
        and data.keys() <= _JSON_KEYS
        and data.get("thresholds") is None
        and type(data.get("return_logits", False)) is bool
    )
    rule: str | None = None
    k: int | None = None
    if simple:
        inputs, override, return_logits = data["inputs"], None, data.get("return_logits", False)
    else:
        try:
            request = PredictRequest.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in errors]
            ) from exc
        inputs, override, return_logits = (
            request.inputs,
            request.thresholds,
            request.return_logits,
        )
        rule, k = request.decision_rule, request.k
    if not inputs:
        _unprocessable("inputs is empty; send at least one row.")
    _check_row_count(len(inputs), max_rows, "inputs")
    return PredictInput(rows_to_array(inputs, input_shape), override, return_logits, rule, k)


def read_npy_body(body: bytes, input_shape: tuple[int, ...], max_rows: int) -> PredictInput:
    """Decode an `.npy` body holding `(n, *input_shape)` real numbers, read as float32.

    The header is checked before any data is read (dtype, shape, row count, and
    that the body holds exactly the bytes the header announces), so a forged
    header cannot make the server allocate more than the body's size. Object
    arrays are refused: nothing a client sends is ever unpickled.
    """
    expected = (-1, *input_shape)
    stream = io.BytesIO(body)
    try:
        read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(stream))
        if read_header is None:
            raise ValueError("only .npy format versions 1.0 and 2.0 are read")
        shape, _, dtype = read_header(stream)
    except (ValueError, EOFError, SyntaxError) as exc:
        _unprocessable(
            f"The body is not a readable .npy file ({exc}); send one array saved with numpy.save."
        )
    if dtype.hasobject or dtype.kind not in "fiu":
        _unprocessable(
            f"The .npy array has dtype {dtype}; send real numbers (float32) of shape "
            f"{_show(expected)}, never Python objects."
        )
    if len(shape) != len(expected) or tuple(shape[1:]) != tuple(input_shape):
        _unprocessable(
            f"The .npy array has shape {_show(shape)}; the model expects {_show(expected)}."
        )
    if shape[0] == 0:
        _unprocessable("The .npy array has no rows; send at least one row.")
    _check_row_count(shape[0], max_rows, "The .npy array")
    data_bytes = math.prod(shape) * dtype.itemsize
    if len(body) - stream.tell() != data_bytes:
        _unprocessable(
            f"The .npy body holds {len(body) - stream.tell()} bytes of data; its header "
            f"announces {data_bytes} ({_show(shape)} of {dtype})."
        )
    stream.seek(0)
    array = np.load(stream, allow_pickle=False).astype(np.float32, copy=False)
    _check_finite(array, "row")
    return PredictInput(np.ascontiguousarray(array))


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
    _check_finite(array, "inputs")
    return array


def _check_finite(array: np.ndarray, what: str) -> None:
    finite = np.isfinite(array.reshape(len(array), -1))
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        name = f"inputs[{row}]" if what == "inputs" else f"row {row} of the .npy array"
        _unprocessable(f"{name} holds a missing or non-finite value at position {col}.")


def _check_row_count(rows: int, limit: int, what: str) -> None:
    if rows > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"{what} has {rows} rows, over the limit of {limit} rows per "
            "request (LABELCUT_MAX_BATCH_ROWS); split the batch.",
        )


def _unprocessable(detail: str) -> None:
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def _show(shape: tuple[Any, ...]) -> str:
    inner = ", ".join("n" if d == -1 else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


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


# --- encode ------------------------------------------------------------------------------


def encode_json(
    model_name: str,
    set_id: int | None,
    labels: list[str],
    proba: np.ndarray,
    decisions: np.ndarray,
    logits: np.ndarray | None,
    rule: tuple[str, int | None] = ("threshold", None),
) -> bytes:
    """The `PredictResponse` JSON, one prediction per row of `proba`."""
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
    body = {
        "model": model_name,
        "threshold_set_id": set_id,
        "labels": labels,
        "decision_rule": rule[0],
        "k": rule[1],
        "predictions": predictions,
    }
    # Outputs were checked finite before encoding (orjson would write NaN as null).
    return orjson.dumps(body)


def encode_npy(proba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, proba, allow_pickle=False)
    return buffer.getvalue()


# --- route -------------------------------------------------------------------------------

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


@router.post(
    "/predict",
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
async def predict(request: Request) -> Response:
    # The checks run inline: FastAPI would send each plain-def dependency through the
    # thread pool, three thread hops that cost more than the model on a small batch.
    require_api_key(request, get_service(request))
    service = get_ready_service(get_service(request))
    model = service.loaded_model
    active = service.active  # one snapshot: this request sees exactly one set
    labels = model.labels
    parsed = _decode(request.headers.get("content-type", ""), await request.body(), service)
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
    _require_finite_outputs(output.proba, output.logits)
    # The request's rule, else the one stored with the set it sees.
    rule = (
        (parsed.decision_rule, parsed.k)
        if parsed.decision_rule is not None
        else (active.decision_rule, active.k)
    )
    decisions = output.decisions
    if rule[0] != "threshold":
        decisions = tuning.apply_decision_rule(output.proba, thresholds, rule[0], rule[1])
    if NPY_MEDIA_TYPE in request.headers.get("accept", ""):
        headers = {
            "x-labelcut-model": model.name,
            "x-labelcut-threshold-set-id": "none" if active.set_id is None else str(active.set_id),
            "x-labelcut-labels": json.dumps(labels),
        }
        return Response(encode_npy(output.proba), media_type=NPY_MEDIA_TYPE, headers=headers)
    body = encode_json(
        model.name, active.set_id, labels, output.proba, decisions, output.logits, rule
    )
    return Response(body, media_type="application/json")


def _require_finite_outputs(proba: np.ndarray, logits: np.ndarray | None) -> None:
    # Finite inputs near float32's limits can overflow inside the model.
    bad = ~np.isfinite(proba).all(axis=1)
    if logits is not None:
        bad |= ~np.isfinite(logits).all(axis=1)
    if bad.any():
        _unprocessable(
            f"inputs[{int(np.argmax(bad))}] drives the model to a non-finite output: its "
            "values are too large for float32 arithmetic."
        )


def _decode(content_type: str, body: bytes, service: Service) -> PredictInput:
    model = service.loaded_model
    limit = service.settings.max_batch_rows
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == NPY_MEDIA_TYPE:
        return read_npy_body(body, tuple(model.input_shape), limit)
    if media_type in ("", "application/json") or media_type.endswith("+json"):
        return read_json_body(body, tuple(model.input_shape), limit)
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=f"Content-Type '{media_type}' is not supported; send application/json or "
        f"{NPY_MEDIA_TYPE}.",
    )


# --- serving ------------------------------------------------------------------------------


class PredictFastPath:
    """Serves `POST /predict` with the `predict` endpoint above, without FastAPI's routing.

    /predict is the one route under load. Its endpoint takes only the request and
    runs its own checks, so FastAPI's routing, dependency solving and response
    plumbing add nothing but time (about a fifth of a small request's cost, measured
    with bench/bench_predict.py). The route stays registered, for the OpenAPI
    schema; errors go through FastAPI's own handlers, so they read the same.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = next(
            r for r in router.routes if isinstance(r, APIRoute) and r.path == "/predict"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the metrics label requests by
        request = Request(scope, receive)
        try:
            response = await predict(request)
        except HTTPException as exc:
            response = await http_exception_handler(request, exc)
        except RequestValidationError as exc:
            response = await request_validation_exception_handler(request, exc)
        await response(scope, receive, send)
