"""The dependency of POST /predict: one `async def`, overridable like any other.

FastAPI runs a plain-`def` dependency on the thread pool: two thread hops per request,
which cost more than the model on a small batch (measured in issue 14: 217 us for a
route with two plain-def dependencies, 69 us with async ones). `predict_call` is
async and calls `labelcut.app.deps`' checks, so the rules (the API key, readiness)
stay written once; it is one dependency rather than one per check because each costs
~10 us per request in FastAPI's dependency solver, on the one route under load.
`app.dependency_overrides[predict_call]` replaces it, and what it raises goes through
the app's exception handlers.

Order: the API key (401/403), readiness (503), query parameters (422), then the body
is read and decoded (413/415/422): auth before any byte of the body is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.requests import ClientDisconnect

from labelcut.app import deps
from labelcut.app.codecs import PredictInput, decode_predict_body
from labelcut.app.service import Service

#: Status recorded for a request whose client went away before its body arrived
#: (nginx's "client closed request"); nothing is sent, the connection is gone.
CLIENT_CLOSED_REQUEST = 499


@dataclass(slots=True)
class PredictCall:
    """What the /predict endpoint works with: the ready service and the decoded body."""

    service: Service
    input: PredictInput


def predict_service(request: Request) -> Service:
    """The service, once the API key (LABELCUT_API_KEY when set: 401 missing, 403 wrong)
    and readiness (503 while the model loads) are checked, in that order."""
    service = deps.service_of(request)
    deps.check_api_key(request, service)
    return deps.ready_or_503(service)


def reject_query_parameters(request: Request) -> None:
    """422 naming every query parameter: /predict takes none, and a misspelt option
    must not be ignored silently."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    names = sorted({name for name, _ in parse_qsl(query, keep_blank_values=True)}) or [query]
    raise RequestValidationError(
        [
            {
                "type": "extra_forbidden",
                "loc": ("query", name),
                "msg": f"Unknown query parameter '{name}'; /predict takes none.",
                "input": request.query_params.get(name),
            }
            for name in names
        ]
    )


async def predict_call(request: Request) -> PredictCall:
    """The checks of /predict, then its body decoded and validated (JSON or .npy)
    before it can join a batch."""
    service = predict_service(request)
    if request.scope.get("query_string"):
        reject_query_parameters(request)
    try:
        body = await request.body()
    except ClientDisconnect as exc:
        # The client hung up mid-body: not a server error, and nobody is left to answer.
        raise HTTPException(CLIENT_CLOSED_REQUEST, detail="The client disconnected.") from exc
    model = service.loaded_model
    settings = service.settings
    parsed = decode_predict_body(
        request.headers.get("content-type", ""),
        body,
        tuple(model.input_shape),
        model.labels,
        settings.max_batch_rows,
        settings.max_data_bytes,
    )
    return PredictCall(service, parsed)


PredictDep = Annotated[PredictCall, Depends(predict_call)]
