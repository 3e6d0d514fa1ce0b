"""POST /predict as an ordinary FastAPI route: app exception handlers, dependency
overrides, query parameters, the stored rule, and the JSON/.npy codecs' refusals."""

from __future__ import annotations

import io
import json
from urllib.parse import unquote

import numpy as np
import pytest
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

from labelcut.app.codecs import PredictInput, header_value, read_json_body, read_npy_body
from labelcut.app.config import Settings
from labelcut.app.main import create_app
from labelcut.app.predict_deps import PredictCall, predict_call, predict_service
from labelcut.app.routes.predict import stored_rule
from labelcut.app.service import ActiveThresholds

from ..support.inprocess import LOOPBACK, wait_ready

SHAPE = (103,)
LABELS = [f"Class{i}" for i in range(1, 15)]


def _app(tmp_path, **settings):
    return create_app(Settings(data_dir=tmp_path / "data", device="cpu", **settings))


def _row() -> list[float]:
    return [0.5] * 103


def test_app_exception_handlers_see_predict_errors(tmp_path):
    app = _app(tmp_path, api_key="secret")
    seen: list[tuple[str, int]] = []

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        seen.append(("http", exc.status_code))
        return JSONResponse({"mine": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        seen.append(("validation", 422))
        return JSONResponse({"mine": exc.errors()}, status_code=422)

    key = {"authorization": "Bearer secret"}
    with TestClient(app, client=LOOPBACK) as client:
        wait_ready(client)
        missing = client.post("/predict", json={"inputs": [_row()]})
        wrong_shape = client.post("/predict", json={"inputs": [[1.0]]}, headers=key)
        bad_json = client.post(
            "/predict", content=b"{", headers={**key, "content-type": "application/json"}
        )
        query = client.post("/predict?thresold=0.3", json={"inputs": [_row()]}, headers=key)
        fine = client.post("/predict", json={"inputs": [_row()]}, headers=key)
    assert missing.status_code == 401 and "Authorization" in missing.json()["mine"]
    assert (
        wrong_shape.status_code == 422 and "inputs[0] has shape [1]" in wrong_shape.json()["mine"]
    )
    assert bad_json.status_code == 422 and bad_json.json()["mine"][0]["type"] == "json_invalid"
    assert query.status_code == 422 and query.json()["mine"][0]["loc"] == ["query", "thresold"]
    assert fine.status_code == 200 and "predictions" in fine.json()
    assert seen == [("http", 401), ("http", 422), ("validation", 422), ("validation", 422)]


def test_dependency_overrides_replace_predict_checks(tmp_path, yeast_test):
    app = _app(tmp_path, api_key="secret")
    rows = yeast_test["X"][:3].astype(np.float32)

    async def no_key_fixed_rows(request: Request) -> PredictCall:
        # Skips the API key and ignores the body: the override is what runs.
        return PredictCall(request.app.state.service, PredictInput(rows))

    with TestClient(app, client=LOOPBACK) as client:
        wait_ready(client)
        assert client.post("/predict", json={"inputs": [_row()]}).status_code == 401
        app.dependency_overrides[predict_call] = no_key_fixed_rows
        answer = client.post("/predict", content=b"ignored")
        app.dependency_overrides[predict_call] = _refuse_with_418
        refused = client.post("/predict", json={"inputs": [_row()]})
        app.dependency_overrides.clear()
        assert client.post("/predict", json={"inputs": [_row()]}).status_code == 401
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 3
    assert refused.status_code == 418 and refused.json()["detail"] == "teapot"


async def _refuse_with_418() -> PredictCall:
    raise HTTPException(418, detail="teapot")


def test_predict_service_checks_key_then_readiness(tmp_path):
    app = _app(tmp_path, api_key="secret")
    with TestClient(app, client=LOOPBACK) as client:
        wait_ready(client)
        service = app.state.service
        service.ready.clear()  # as while the model loads
        try:
            no_key = client.post("/predict", json={"inputs": [_row()]})
            keyed = client.post(
                "/predict", json={"inputs": [_row()]}, headers={"authorization": "Bearer secret"}
            )
        finally:
            service.ready.set()
    assert no_key.status_code == 401
    assert keyed.status_code == 503 and "loading" in keyed.json()["detail"]
    assert predict_service.__doc__  # the check predict_call runs first


def test_unknown_query_parameters_are_422_naming_each(client):
    response = client.post("/predict?threshold=0.3&b=&a=1", json={"inputs": [_row()]})
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["detail"]]
    assert locs == [["query", "a"], ["query", "b"], ["query", "threshold"]]
    assert "takes none" in response.json()["detail"][0]["msg"]


def test_predict_stays_in_openapi_with_both_bodies(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/predict"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-npy"}
    assert {"ApiKey": []} in operation["security"]


def test_request_k_is_at_most_the_number_of_labels(client):
    body = {"inputs": [_row()], "decision_rule": "top_k", "k": 15}
    response = client.post("/predict", json=body)
    assert response.status_code == 422 and "has 14 labels" in response.json()["detail"]
    response = client.post("/predict", json={**body, "k": 10**30})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "k"]
    response = client.post("/predict", json={**body, "k": 14})
    assert response.status_code == 200 and response.json()["k"] == 14


@pytest.mark.parametrize(
    ("rule", "k", "expected"),
    [
        ("top_k", 2**64, ("top_k", 14)),
        ("top_k", 3, ("top_k", 3)),
        ("top_k", 0, ("threshold", None)),
        ("top_k", "2", ("threshold", None)),
        ("top_k", True, ("threshold", None)),
        ("at_least_one", None, ("at_least_one", None)),
        ("no_such_rule", None, ("threshold", None)),
    ],
)
def test_stored_rule_is_made_safe_to_apply(rule, k, expected):
    active = ActiveThresholds(set=None, thresholds=np.full(14, 0.5), decision_rule=rule, k=k)
    assert stored_rule(active, 14) == expected


def test_header_values_are_ascii_and_reversible():
    for name in ("yeast-mlp", "modèle-名前", "a%20b", "line\r\nX-Injected: 1"):
        value = header_value(name)
        value.encode("ascii")  # raises if not
        assert "\r" not in value and "\n" not in value
        assert unquote(value) == name
    assert header_value("yeast-mlp v1.0 (test)") == "yeast-mlp v1.0 (test)"


# --- the codecs' refusals, before anything large is built -------------------------------


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"inputs": [' + b"[]," * 100 + b"[]]}", "arrays ('[')"),
        (b'{"inputs": [[' + b"0," * 5000 + b"0]]}", "values (',')"),
        (b'{"inputs": [' + b"{}," * 100 + b"{}]}", "objects ('{')"),
        (b" " * (10 * 103 * 64 + 2**20 + 1), "bytes"),
    ],
)
def test_json_budget_refuses_unparsed(body, needle):
    with pytest.raises(HTTPException) as info:
        read_json_body(body, SHAPE, 10, LABELS)
    assert info.value.status_code == 413 and needle in info.value.detail
    assert "LABELCUT_MAX_BATCH_ROWS" in info.value.detail


def test_json_just_over_the_row_limit_names_the_count():
    with pytest.raises(HTTPException) as info:
        read_json_body(_json({"inputs": [_row()] * 11}), SHAPE, 10, LABELS)
    assert info.value.status_code == 413 and "inputs has 11 rows" in info.value.detail


def test_json_budget_counts_label_names():
    labels = ["a[b,c{d", "e"]
    body = _json({"inputs": [[0.0] * 3], "thresholds": {"a[b,c{d": 0.3}})
    parsed = read_json_body(body, (3,), 1, labels)
    assert parsed.thresholds == {"a[b,c{d": 0.3}


@pytest.mark.parametrize(
    ("body", "loc", "needle"),
    [
        (b"[" * 5000 + b"]" * 5000, ["body", 1025], "nested deeper than 1024"),
        (b'{"inputs": [[' + b"9" * 5000 + b"]]}", None, "4300"),
        (b'{"inputs": [[0], [' + b"9" * 400 + b"]]}", None, "inputs[1] holds an integer"),
        (_json({"inputs": [_row()], "thresholds": {"Class1": 10**400}}), None, "Class1"),
    ],
)
def test_json_pathologies_are_422(body, loc, needle):
    shape = (1,) if b"[[0]" in body else SHAPE
    with pytest.raises((HTTPException, RequestValidationError)) as info:
        read_json_body(body, shape, 10_000, LABELS)
    error = info.value
    text = error.detail if isinstance(error, HTTPException) else json.dumps(error.errors())
    assert getattr(error, "status_code", 422) == 422
    assert needle in text
    if loc is not None:
        assert list(error.errors()[0]["loc"]) == loc


def test_npy_header_with_unbalanced_brackets_is_422():
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 103), np.float32))
    raw = buf.getvalue()
    header = raw[10 : 10 + int.from_bytes(raw[8:10], "little")]
    broken = header.replace(b"(1, 103)", b"((1, 103)")[: len(header) - 1] + b"\n"
    body = raw[:10] + broken + raw[10 + len(header) :]
    with pytest.raises(HTTPException) as info:
        read_npy_body(body, SHAPE, 10)
    assert info.value.status_code == 422 and "not a readable .npy file" in info.value.detail
