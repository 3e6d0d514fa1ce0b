"""The HTTP contract, in process (TestClient runs the real app and its lifespan)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from labelcut import tuning
from labelcut.app.store import NewThresholdSet
from labelcut.models import YEAST_TEST, load_model

from ..support.inprocess import app_client
from .conftest import make_client, wait_ready


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def tune(client, content: bytes, name="val.npz", **form):
    return client.post("/tune-thresholds", files={"file": (name, content)}, data=form)


def test_health_ready_and_model(client, model):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    info = client.get("/model").json()
    assert info["labels"] == list(model.labels)
    assert info["sha256"] == model.sha256
    assert info["input_shape"] == list(model.input_shape)
    assert info["device"] == "cpu" and info["format"] == model.format


def test_predict_without_a_set_uses_half(client, model, yeast_test):
    rows = yeast_test["X"][:5]
    body = client.post("/predict", json={"inputs": rows.tolist()}).json()
    expected = model.predict_proba(rows)
    assert body["threshold_set_id"] is None
    assert body["labels"] == list(model.labels)
    for pred, probs in zip(body["predictions"], expected, strict=True):
        got = np.array([pred["scores"][label] for label in model.labels])
        np.testing.assert_allclose(got, probs, atol=1e-6)
        passing = [lab for lab, p in zip(model.labels, probs, strict=True) if p >= 0.5]
        assert pred["labels"] == passing


def test_predict_override_and_logits(client, model, yeast_test):
    row = yeast_test["X"][:1].tolist()
    first = model.labels[0]
    on = client.post("/predict", json={"inputs": row, "thresholds": {first: 0.0}}).json()
    off = client.post("/predict", json={"inputs": row, "thresholds": {first: 1.0}}).json()
    assert first in on["predictions"][0]["labels"]
    assert first not in off["predictions"][0]["labels"]
    with_logits = client.post("/predict", json={"inputs": row, "return_logits": True}).json()
    logits = with_logits["predictions"][0]["logits"]
    np.testing.assert_allclose(
        logits[first], model.predict_logits(np.asarray(row))[0, 0], atol=1e-5
    )


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"inputs": [[0.0] * 5]}, 422, "inputs[0] has shape [5]"),
        ({"inputs": []}, 422, "inputs is empty"),
        ({"inputs": [["a"] * 103]}, 422, "inputs[0]"),
        ({"inputs": [[0.0] * 103], "thresholds": {"nope": 0.2}}, 422, "unknown label 'nope'"),
        ({"inputs": [[0.0] * 103], "thresholds": {"Class1": 1.5}}, 422, "must be in [0, 1]"),
        ({"inputs": [[0.0] * 103, [0.0] * 102]}, 422, "inputs[1] has shape [102]"),
        ({"inputs": [[None] * 103]}, 422, "non-finite"),
    ],
)
def test_predict_bad_input_is_4xx_naming_the_problem(client, body, status, needle):
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert needle in json.dumps(response.json()["detail"])


def test_predict_malformed_json_and_nan(client):
    assert (
        client.post(
            "/predict", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    nan_body = '{"inputs": [[' + ",".join(["NaN"] * 103) + "]]}"
    response = client.post(
        "/predict", content=nan_body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and "non-finite" in response.json()["detail"]


def test_predict_batch_limit(tmp_path):
    with make_client(tmp_path, max_batch_rows=3) as c:
        wait_ready(c)
        response = c.post("/predict", json={"inputs": [[0.0] * 103] * 4})
        assert (
            response.status_code == 413 and "LABELCUT_MAX_BATCH_ROWS" in response.json()["detail"]
        )


def test_tune_stores_activates_and_predict_uses_it(client, model, yeast_test, yeast_npz_bytes):
    response = tune(client, yeast_npz_bytes)
    assert response.status_code == 200, response.text
    body = response.json()
    info = body["threshold_set"]
    assert (
        info["active"] and info["objective"] == "f1" and info["n_samples"] == len(yeast_test["Y"])
    )
    expected = tuning.tune_thresholds(model.predict_proba(yeast_test["X"]), yeast_test["Y"], "f1")
    got = np.array([body["thresholds"][label] for label in model.labels])
    np.testing.assert_allclose(got, expected.thresholds, atol=1e-6)
    assert [row["label"] for row in body["per_label"]] == list(model.labels)
    assert body["summary"]["macro_f1"]["tuned"] >= body["summary"]["macro_f1"]["default"]

    active = client.get("/thresholds").json()
    assert active["threshold_set"]["id"] == info["id"]
    assert active["thresholds"] == body["thresholds"]

    rows = yeast_test["X"][:20]
    pred = client.post("/predict", json={"inputs": rows.tolist()}).json()
    assert pred["threshold_set_id"] == info["id"]
    probs = model.predict_proba(rows)
    for p, row in zip(pred["predictions"], probs, strict=True):
        passing = [lab for lab, s, t in zip(model.labels, row, got, strict=True) if s >= t]
        assert p["labels"] == passing


def test_tune_without_activation_history_and_rollback(client, yeast_npz_bytes):
    first = tune(client, yeast_npz_bytes).json()["threshold_set"]
    second = tune(client, yeast_npz_bytes, objective="fbeta", beta="2", activate="false").json()
    assert second["threshold_set"]["active"] is False
    assert client.get("/thresholds").json()["threshold_set"]["id"] == first["id"]
    items = client.get("/thresholds/history").json()["items"]
    assert [i["id"] for i in items] == [second["threshold_set"]["id"], first["id"]]
    assert items[0]["params"]["beta"] == 2.0

    rolled = client.post(f"/thresholds/{second['threshold_set']['id']}/activate")
    assert rolled.status_code == 200 and rolled.json()["threshold_set"]["active"]
    assert (
        client.post("/predict", json={"inputs": [[0.0] * 103]}).json()["threshold_set_id"]
        == second["threshold_set"]["id"]
    )
    back = client.post(f"/thresholds/{first['id']}/activate").json()
    assert back["threshold_set"]["id"] == first["id"]
    assert (
        client.get(f"/thresholds/{second['threshold_set']['id']}").json()["threshold_set"]["active"]
        is False
    )


def test_unknown_set_is_404_and_other_models_set_is_409(client):
    assert client.get("/thresholds/999").status_code == 404
    assert client.post("/thresholds/999/activate").status_code == 404
    service = client.app.state.service
    foreign = service.store.save(
        NewThresholdSet(
            model_name="other",
            model_sha256="f" * 64,
            labels=list(service.loaded_model.labels),
            objective="f1",
            params={},
            data_sha256="0" * 64,
            n_samples=1,
            thresholds=[0.5] * len(service.loaded_model.labels),
            result={"per_label": [], "summary": {}},
        ),
        activate=False,
    )
    before = client.get("/thresholds").json()
    response = client.post(f"/thresholds/{foreign.id}/activate")
    assert response.status_code == 409 and "tuned for model 'other'" in response.json()["detail"]
    assert client.get("/thresholds").json() == before


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({"objective": "accuracy"}, "objective"),
        ({"objective": "fbeta", "beta": "0"}, "beta must be > 0"),
        ({"objective": "recall_at_precision"}, "needs the form field 'target'"),
        ({"objective": "precision_at_recall", "target": "1.5"}, "target must be in (0, 1]"),
        ({"min_positives": "-1"}, "min_positives"),
        ({"activate": "maybe"}, "activate"),
        ({"decision_rule": "top_k"}, "needs the form field 'k'"),
        ({"k": "2"}, "only used with decision_rule 'top_k'"),
        ({"n_bootstrap": "-1"}, "n_bootstrap"),
    ],
)
def test_tune_bad_parameters_change_nothing(client, yeast_npz_bytes, form, needle):
    tune(client, yeast_npz_bytes)
    before = client.get("/thresholds").json()
    response = tune(client, yeast_npz_bytes, **form)
    assert response.status_code == 422, response.text
    assert needle in json.dumps(response.json()["detail"])
    assert client.get("/thresholds").json() == before
    assert len(client.get("/thresholds/history").json()["items"]) == 1


def test_tune_bad_files(client):
    assert tune(client, b"x", name="val.xlsx").status_code == 415
    broken = tune(client, b"a,b\n1,2\n", name="val.csv")
    assert broken.status_code == 422 and "label(s)" in broken.json()["detail"]
    assert client.get("/thresholds").json()["threshold_set"] is None


def test_tune_from_scores(client, model, yeast_test):
    buf = io.BytesIO()
    np.savez(buf, scores=model.predict_proba(yeast_test["X"]), Y=yeast_test["Y"])
    body = tune(client, buf.getvalue(), objective="recall_at_precision", target="0.7").json()
    for row in body["per_label"]:
        assert row["status"] in {"ok", "target_unreachable"}
        if row["status"] == "ok":
            assert row["precision"] >= 0.7


def test_admin_key(tmp_path, yeast_npz_bytes):
    with make_client(tmp_path, client=("10.1.2.3", 4000), admin_key="s3cret") as c:
        wait_ready(c)
        assert tune(c, yeast_npz_bytes).status_code == 401
        wrong = c.post(
            "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status_code == 403
        right = c.post(
            "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert right.status_code == 200
        assert c.post("/predict", json={"inputs": [[0.0] * 103]}).status_code == 200


def test_without_admin_key_only_loopback_may_tune(tmp_path, yeast_npz_bytes):
    with make_client(tmp_path, client=("10.1.2.3", 4000)) as c:
        wait_ready(c)
        response = tune(c, yeast_npz_bytes)
        assert response.status_code == 403 and "loopback" in response.json()["detail"]
        assert c.post("/thresholds/1/activate").status_code == 403


def test_api_key_guards_predict(tmp_path):
    with make_client(tmp_path, api_key="k") as c:
        wait_ready(c)
        assert c.post("/predict", json={"inputs": [[0.0] * 103]}).status_code == 401
        ok = c.post(
            "/predict", json={"inputs": [[0.0] * 103]}, headers={"Authorization": "Bearer k"}
        )
        assert ok.status_code == 200


def test_upload_size_limit(tmp_path, yeast_npz_bytes):
    with make_client(tmp_path, max_upload_mb=0.1) as c:
        wait_ready(c)
        response = tune(c, yeast_npz_bytes)
        assert response.status_code == 413 and "LABELCUT_MAX_UPLOAD_MB" in response.json()["detail"]


def test_openapi_has_examples(client):
    spec = client.get("/openapi.json").json()
    for path in ("/predict", "/tune-thresholds", "/thresholds", "/thresholds/history", "/model"):
        assert path in spec["paths"]
    assert spec["components"]["schemas"]["PredictRequest"]["examples"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["AdminKey"]["scheme"] == schemes["ApiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/tune-thresholds"]["post"]["security"] == [{"AdminKey": []}]
    assert {"ApiKey": []} in spec["paths"]["/predict"]["post"]["security"]


def test_curves_of_a_set_match_sklearn_and_mark_the_chosen_point(
    client, model, yeast_test, yeast_npz_bytes
):
    from sklearn.metrics import precision_recall_curve

    body = tune(client, yeast_npz_bytes).json()
    set_id = body["threshold_set"]["id"]
    response = client.get(f"/thresholds/{set_id}/curves")
    assert response.status_code == 200
    curves = response.json()
    assert curves["threshold_set_id"] == set_id
    assert [c["label"] for c in curves["curves"]] == list(model.labels)
    scores = model.predict_proba(yeast_test["X"])
    by_label = {row["label"]: row for row in body["per_label"]}
    for j, curve in enumerate(curves["curves"]):
        assert len(curve["precision"]) == len(curve["thresholds"]) + 1 <= 1001
        precision, recall, thresholds = precision_recall_curve(yeast_test["Y"][:, j], scores[:, j])
        # 917 rows: no downsampling, so the stored curve is sklearn's, point for point.
        np.testing.assert_allclose(curve["thresholds"], thresholds, rtol=0, atol=0)
        np.testing.assert_allclose(curve["precision"], precision, atol=1e-12)
        np.testing.assert_allclose(curve["recall"], recall, atol=1e-12)
        row = by_label[curve["label"]]
        i = curve["chosen_index"]
        assert curve["precision"][i] == pytest.approx(row["precision"], abs=1e-12)
        assert curve["recall"][i] == pytest.approx(row["recall"], abs=1e-12)
        k = curve["default_index"]
        assert curve["recall"][k] == pytest.approx(row["at_default"]["recall"], abs=1e-12)
    assert client.get("/thresholds/999/curves").status_code == 404


def test_tune_names_the_row_that_overflows_the_model(client, yeast_test):
    x = yeast_test["X"][:50].copy()
    x[7] = 3e38  # finite in float32, but (x - mean) / std overflows
    buf = io.BytesIO()
    np.savez(buf, X=x, Y=yeast_test["Y"][:50])
    response = tune(client, buf.getvalue())
    assert response.status_code == 422
    assert "Row 8 of the inputs" in response.json()["detail"]
    assert client.get("/thresholds/history").json()["items"] == []


def test_tune_strategies_intervals_and_diagnosis(client, model, yeast_test, yeast_npz_bytes):
    body = tune(client, yeast_npz_bytes, strategy="per_label", n_bootstrap="50", seed="3").json()
    expected = tuning.tune_thresholds(
        model.predict_proba(yeast_test["X"]),
        yeast_test["Y"],
        strategy="per_label",
        n_bootstrap=50,
        seed=3,
    )
    got = np.array([body["thresholds"][label] for label in model.labels])
    np.testing.assert_allclose(got, expected.thresholds, atol=1e-6)
    assert body["strategy"] == "per_label"
    assert body["threshold_set"]["params"]["n_bootstrap"] == 50
    for row in body["per_label"]:
        assert row["strategy"] == "per_label"
        lo, hi = row["threshold_interval"]
        assert lo <= hi and isinstance(row["unstable"], bool)
    diagnosis = body["diagnosis"]
    assert diagnosis["label_cardinality"] == pytest.approx(yeast_test["Y"].sum(1).mean())
    assert isinstance(diagnosis["messages"], list)
    # The stored set reads back with the same report.
    again = client.get(f"/thresholds/{body['threshold_set']['id']}").json()
    assert again["diagnosis"] == diagnosis and again["per_label"] == body["per_label"]

    quick = tune(client, yeast_npz_bytes, strategy="global", n_bootstrap="0").json()
    assert len(set(quick["thresholds"].values())) == 1
    assert all(row["threshold_interval"] is None for row in quick["per_label"])
    bad = tune(client, yeast_npz_bytes, strategy="median")
    assert bad.status_code == 422 and "strategy" in json.dumps(bad.json()["detail"])


def test_decision_rules_per_request_and_stored_with_the_set(client, model, yeast_test):
    rows = yeast_test["X"][:30]
    proba = model.predict_proba(rows)
    labels = np.array(model.labels)

    def predict(**extra):
        response = client.post("/predict", json={"inputs": rows.tolist(), **extra})
        assert response.status_code == 200, response.text
        return response.json()

    one = predict(decision_rule="exactly_one")
    assert one["decision_rule"] == "exactly_one"
    assert [p["labels"] for p in one["predictions"]] == [[lab] for lab in labels[proba.argmax(1)]]

    none_pass = {label: 1.0 for label in model.labels}
    at_least = predict(decision_rule="at_least_one", thresholds=none_pass)
    assert [p["labels"] for p in at_least["predictions"]] == [
        [lab] for lab in labels[proba.argmax(1)]
    ]

    top = predict(decision_rule="top_k", k=2, thresholds={label: 0.0 for label in model.labels})
    for p, row in zip(top["predictions"], proba, strict=True):
        assert p["labels"] == [labels[i] for i in sorted(np.argsort(-row, kind="stable")[:2])]

    for extra, needle in (({"decision_rule": "top_k"}, "needs k"), ({"k": 2}, "only used")):
        response = client.post("/predict", json={"inputs": rows[:1].tolist(), **extra})
        assert response.status_code == 422 and needle in json.dumps(response.json()["detail"])

    from labelcut.models import YEAST_TEST

    stored = client.post(
        "/tune-thresholds",
        files={"file": ("v.npz", YEAST_TEST.read_bytes())},
        data={"decision_rule": "top_k", "k": "1", "n_bootstrap": "0"},
    ).json()
    assert stored["threshold_set"]["decision_rule"] == "top_k"
    assert stored["threshold_set"]["k"] == 1
    default = predict()
    assert default["decision_rule"] == "top_k" and default["k"] == 1
    assert all(len(p["labels"]) <= 1 for p in default["predictions"])
    assert predict(decision_rule="threshold")["decision_rule"] == "threshold"


def test_predict_fast_path_keeps_the_routes_contract(client):
    # POST /predict is served beside FastAPI's router; everything else still goes through it.
    assert client.get("/predict").status_code == 405
    slash = client.post("/predict/", json={"inputs": [[0.0] * 103]}, follow_redirects=False)
    assert slash.status_code == 307  # the router's redirect to /predict, as before
    bad = client.post("/predict", content=b"[1, 2", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "json_invalid"
    metrics = client.get("/metrics").text
    assert 'path="/predict"' in metrics


def test_multiclass_objectives_are_for_softmax_models_only(client, yeast_npz_bytes):
    response = tune(client, yeast_npz_bytes, objective="coverage_at_accuracy", target="0.9")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "objective"] and "softmax" in error["msg"]
    assert client.get("/thresholds/history").json()["items"] == []


def test_one_label_rows_on_a_sigmoid_model_advise_exactly_one(client, yeast_test):
    # Keep only each row's first label: one label per row, as multi-class data would be.
    first = np.argmax(yeast_test["Y"], axis=1)
    targets = np.eye(yeast_test["Y"].shape[1], dtype=np.uint8)[first]
    buf = io.BytesIO()
    np.savez(buf, X=yeast_test["X"], y=first)
    response = tune(client, buf.getvalue(), n_bootstrap="0")
    assert response.status_code == 200, response.text
    messages = " ".join(response.json()["diagnosis"]["messages"])
    assert "decision_rule=exactly_one" in messages
    assert response.json()["threshold_set"]["activation"] == "sigmoid"
    report = client.get(f"/thresholds/{response.json()['threshold_set']['id']}").json()
    assert [row["support"] for row in report["per_label"]] == targets.sum(axis=0).tolist()


def test_model_shows_activation_and_outputs(client):
    info = client.get("/model").json()
    assert (info["activation"], info["outputs"]) == ("sigmoid", "logits")


def test_the_estimate_reaches_the_answer_and_the_stored_report(tmp_path):
    """Issue 20 through HTTP: the cross-fitted figures are in the tune's answer and in
    GET /thresholds/{id}, beside the in-sample ones; estimate=false leaves them out."""
    with app_client(tmp_path / "data") as client:
        wait_ready(client)
        with YEAST_TEST.open("rb") as fh:
            answer = client.post(
                "/tune-thresholds", files={"file": ("v.npz", fh.read())}, data={"n_bootstrap": "0"}
            )
        assert answer.status_code == 200, answer.text
        macro = answer.json()["summary"]["macro_f1"]
        lo, hi = macro["expected_interval"]
        assert 0.0 <= lo <= macro["expected"] <= hi <= 1.0
        stored = client.get(f"/thresholds/{answer.json()['threshold_set']['id']}").json()
        assert stored["summary"]["macro_f1"]["expected"] == macro["expected"]
        # What the default "adaptive" kept, and why, in the answer and the stored report.
        kept = answer.json()["summary"]["adaptive"]
        assert kept["base"] in ("0.5", "blend", "macro_blend", "observed") and kept["why"]
        assert stored["summary"]["adaptive"] == kept
        with YEAST_TEST.open("rb") as fh:
            off = client.post(
                "/tune-thresholds",
                files={"file": ("v.npz", fh.read())},
                data={
                    "n_bootstrap": "0",
                    "estimate": "false",
                    "store": "false",
                    "activate": "false",
                },
            )
        assert off.status_code == 200, off.text
        assert "expected" not in off.json()["summary"]["macro_f1"]
