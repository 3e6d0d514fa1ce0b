"""POST /predict with an .npy body, and .npy answers with Accept: application/x-npy."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from labelcut.models import load_model

from .conftest import make_client, wait_ready

NPY = "application/x-npy"


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def post(client, content: bytes, accept: str | None = None, content_type: str = NPY):
    headers = {"content-type": content_type}
    if accept:
        headers["accept"] = accept
    return client.post("/predict", content=content, headers=headers)


def test_npy_body_answers_the_same_json_as_json_rows(client, yeast_test):
    rows = yeast_test["X"][:5].astype(np.float32)
    from_npy = post(client, npy(rows))
    assert from_npy.status_code == 200, from_npy.text
    assert from_npy.json() == client.post("/predict", json={"inputs": rows.tolist()}).json()


def test_accept_npy_returns_probabilities(client, model, yeast_test):
    rows = yeast_test["X"][:7].astype(np.float32)
    for send in (
        lambda: post(client, npy(rows), accept=NPY),
        lambda: client.post("/predict", json={"inputs": rows.tolist()}, headers={"accept": NPY}),
    ):
        response = send()
        assert response.status_code == 200 and response.headers["content-type"] == NPY
        proba = np.load(io.BytesIO(response.content), allow_pickle=False)
        assert proba.dtype == np.float32 and proba.shape == (7, len(model.labels))
        np.testing.assert_allclose(proba, model.predict_proba(rows), atol=1e-6)
        assert json.loads(response.headers["x-labelcut-labels"]) == list(model.labels)
        assert response.headers["x-labelcut-threshold-set-id"] == "none"
        assert response.headers["x-labelcut-model"] == model.name


def test_npy_of_float64_and_integers_is_read_as_float32(client, model, yeast_test):
    rows = yeast_test["X"][:2].astype(np.float64)
    response = post(client, npy(rows), accept=NPY)
    np.testing.assert_allclose(
        np.load(io.BytesIO(response.content)), model.predict_proba(rows), atol=1e-6
    )
    assert post(client, npy(np.zeros((1, 103), np.int16))).status_code == 200


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (npy(np.array([[object()] * 103], dtype=object), allow_pickle=True), 422, "dtype object"),
        (npy(np.zeros((2, 5), np.float32)), 422, "shape (2, 5); the model expects (n, 103)"),
        (npy(np.zeros(103, np.float32)), 422, "shape (103,)"),
        (npy(np.zeros((0, 103), np.float32)), 422, "no rows"),
        (npy(np.zeros((1, 103), np.complex64)), 422, "dtype complex64"),
        (npy(np.full((2, 103), np.nan, np.float32)), 422, "row 0 of the .npy array"),
        (npy(np.zeros((2, 103), np.float32))[:-8], 422, "header announces"),
        (b"\x80\x04not numpy at all", 422, "not a readable .npy file"),
        (b"", 422, "not a readable .npy file"),
    ],
)
def test_bad_npy_is_4xx_naming_the_problem(client, content, status, needle):
    response = post(client, content)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_npy_row_limit_is_checked_from_the_header(tmp_path):
    with make_client(tmp_path, max_batch_rows=3) as c:
        wait_ready(c)
        response = post(c, npy(np.zeros((4, 103), np.float32)))
        assert (
            response.status_code == 413 and "LABELCUT_MAX_BATCH_ROWS" in response.json()["detail"]
        )


def test_other_content_types_are_415(client):
    response = post(client, b"a,b", content_type="text/csv")
    assert response.status_code == 415 and "application/x-npy" in response.json()["detail"]


def test_openapi_documents_both_request_bodies(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"]["$ref"] == "#/components/schemas/PredictRequest"
    assert NPY in content
    assert "inputs" in spec["components"]["schemas"]["PredictRequest"]["properties"]
