"""Issue 12, cases 1 and 14 and `store=false`, against a real server: every numeric form
field of /tune-thresholds is bounded where it enters (k by the model's labels), unknown
form fields and query parameters are 422 naming them, and nothing is stored meanwhile;
`/predict` keeps answering JSON after every refused tune."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import snapshot

pytestmark = pytest.mark.e2e

ROW = {"inputs": [[0.0] * 103]}
HUGE = "1" + "0" * 400  # a number of 401 digits
N_LABELS = 14


@pytest.fixture(scope="module")
def server(tmp_path_factory, yeast_npz_bytes):
    from ..support.server import Server

    s = Server(tmp_path_factory.mktemp("form-bounds") / "data")
    try:
        s.wait_ready()
        for form in ({"objective": "f1"}, {"objective": "fbeta", "beta": "2", "activate": "false"}):
            seeded = httpx.post(
                s.url + "/tune-thresholds",
                files={"file": ("v.npz", yeast_npz_bytes)},
                data=form,
                timeout=60,
            )
            assert seeded.status_code == 200, seeded.text
        yield s
    finally:
        s.stop()


def detail_text(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


FORM_CASES = [
    ("k-2**64", {"decision_rule": "top_k", "k": str(2**64)}, "k"),
    ("k-4300-digits", {"decision_rule": "top_k", "k": "9" * 4300}, "k"),
    ("k-over-labels", {"decision_rule": "top_k", "k": str(N_LABELS + 1)}, "at most the model's"),
    ("k-zero", {"decision_rule": "top_k", "k": "0"}, "k"),
    ("k-negative", {"decision_rule": "top_k", "k": "-1"}, "k"),
    ("k-huge-digits", {"decision_rule": "top_k", "k": HUGE}, "k"),
    ("n-bootstrap-huge", {"n_bootstrap": HUGE}, "n_bootstrap"),
    ("n-bootstrap-2**63", {"n_bootstrap": str(2**63)}, "n_bootstrap"),
    ("seed-2**63", {"seed": str(2**63)}, "seed"),
    ("seed-2**32", {"seed": str(2**32)}, "seed"),
    ("seed-huge", {"seed": HUGE}, "seed"),
    ("seed-negative", {"seed": "-1"}, "seed"),
    ("min-positives-huge", {"min_positives": HUGE}, "min_positives"),
    ("min-positives-2**63", {"min_positives": str(2**63)}, "min_positives"),
    ("beta-huge", {"objective": "fbeta", "beta": HUGE}, "beta must be > 0 and at most"),
    ("beta-1e400", {"objective": "fbeta", "beta": "1e400"}, "beta must be > 0 and at most"),
    ("target-huge", {"objective": "recall_at_precision", "target": HUGE}, "target must be in"),
    ("target-tiny-neg", {"objective": "precision_at_recall", "target": "-" + HUGE}, "target"),
    ("unknown-field", {"calibrate": "temperature"}, "calibrate"),
    ("misspelt-field", {"objectve": "f1"}, "objectve"),
    ("store-false-activate-true", {"store": "false", "activate": "true"}, "activate"),
    ("store-maybe", {"store": "maybe"}, "store"),
]


@pytest.mark.parametrize(
    ("form", "needle"), [(f, n) for _, f, n in FORM_CASES], ids=[i for i, _, _ in FORM_CASES]
)
def test_out_of_range_or_unknown_form_field_is_422_naming_it(server, yeast_npz_bytes, form, needle):
    client = server.client()
    before = snapshot(client)
    response = client.post(
        "/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}, data=form
    )
    assert response.status_code == 422, response.text[:1000]
    assert needle in detail_text(response), response.text[:1000]
    assert snapshot(client) == before
    # The store holds nothing that breaks /predict (the first way case 1 broke it).
    assert client.post("/predict", json=ROW).status_code == 200


def test_k_at_the_number_of_labels_is_accepted_and_predict_still_answers(server, yeast_npz_bytes):
    client = server.client()
    response = client.post(
        "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"decision_rule": "top_k", "k": str(N_LABELS), "activate": "false"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["threshold_set"]["k"] == N_LABELS


@pytest.mark.parametrize(
    "path", ["/thresholds", "/thresholds/history", "/thresholds/1", "/thresholds/1/curves"]
)
def test_unknown_query_parameter_is_422_naming_it(server, path):
    response = server.client().get(path, params={"limt": "5"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "limt"] and "limt" in error["msg"]
    # Declared ones still work.
    if path == "/thresholds/history":
        assert server.client().get(path, params={"limit": "1"}).status_code == 200


def test_unknown_query_parameter_on_admin_routes(server, yeast_npz_bytes):
    client = server.client()
    before = snapshot(client)
    set_id = before[0]["threshold_set"]["id"]
    for response in (
        client.post(f"/thresholds/{set_id}/activate", params={"force": "1"}),
        client.post(
            "/tune-thresholds",
            params={"objective": "f1"},  # a form field sent as a query parameter
            files={"file": ("v.npz", yeast_npz_bytes)},
        ),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][0] == "query"
    assert snapshot(client) == before


def test_store_false_answers_the_report_and_stores_nothing(server, yeast_npz_bytes):
    client = server.client()
    before = snapshot(client)
    kept = client.post(
        "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"store": "false", "objective": "fbeta", "beta": "2"},
    )
    assert kept.status_code == 200, kept.text
    body = kept.json()
    assert body["stored"] is False and body["threshold_set"] is None
    assert "id" not in json.dumps(body["threshold_set"])
    assert set(body["thresholds"]) == {f"Class{i}" for i in range(1, 15)}
    assert len(body["per_label"]) == N_LABELS and body["summary"]["macro_f1"]["tuned"] > 0
    assert snapshot(client) == before
    # The same tune stored gives the same thresholds, and says so.
    stored = client.post(
        "/tune-thresholds",
        files={"file": ("v.npz", yeast_npz_bytes)},
        data={"objective": "fbeta", "beta": "2", "activate": "false"},
    ).json()
    assert stored["stored"] is True and isinstance(stored["threshold_set"]["id"], int)
    assert stored["thresholds"] == body["thresholds"]


@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, "1e400"])
def test_huge_number_in_a_predict_threshold_override_is_4xx(server, value):
    raw = '{"inputs": [[' + ",".join(["0"] * 103) + ']], "thresholds": {"Class1": ' + value + "}}"
    response = server.client().post(
        "/predict", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "thresholds" in detail_text(response)
