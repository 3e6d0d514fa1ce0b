"""Issue 15, the tune side, against a real `labelcut serve --model models/digits`: the
confidence threshold of the bundled softmax model tuned over HTTP and checked against a
brute-force oracle on our own probabilities; multi-class files in every format; the 422
for multi-label rows; `/model`, the stored set, its curve and `/predict` following it."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest

from labelcut.app.cli import main
from labelcut.models import DIGITS_MODEL_DIR, DIGITS_TEST, load_model

pytestmark = pytest.mark.e2e

TARGET = 0.99


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    with np.load(DIGITS_TEST, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def proba(digits) -> np.ndarray:
    return load_model(DIGITS_MODEL_DIR, device="cpu").predict_proba(digits["X"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ..support.server import Server

    s = Server(tmp_path_factory.mktemp("digits") / "data", "--model", str(DIGITS_MODEL_DIR))
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def tune(server, content: bytes, name: str = "v.npz", **form):
    with server.client() as client:
        return client.post("/tune-thresholds", files={"file": (name, content)}, data=form)


def oracle(proba: np.ndarray, classes: np.ndarray, objective: str, target: float) -> dict:
    """Every distinct top probability tried as "answer iff top >= t", by brute force."""
    top = proba.max(axis=1).astype(np.float64)
    right = proba.argmax(axis=1) == classes
    best = None
    for t in np.unique(top):
        answered = top >= t
        coverage = answered.mean()
        accuracy = right[answered].mean()
        feasible = accuracy >= target if objective == "coverage_at_accuracy" else coverage >= target
        if not feasible:
            continue
        key = (coverage, -t) if objective == "coverage_at_accuracy" else (accuracy, t)
        if best is None or key > best[0]:
            best = (key, {"coverage": coverage, "accuracy": accuracy, "answered": answered})
    assert best is not None
    return best[1]


def test_model_says_softmax(server):
    with server.client() as client:
        info = client.get("/model").json()
    assert (info["activation"], info["outputs"]) == ("softmax", "logits")


@pytest.mark.parametrize(
    ("objective", "target"), [("coverage_at_accuracy", TARGET), ("accuracy_at_coverage", 0.9)]
)
def test_tuned_threshold_matches_the_brute_force_oracle(server, digits, proba, objective, target):
    response = tune(server, DIGITS_TEST.read_bytes(), objective=objective, target=str(target))
    assert response.status_code == 200, response.text
    body = response.json()
    found = body["multiclass"]
    expected = oracle(proba, digits["y"], objective, target)
    threshold = found["threshold"]
    answered = proba.max(axis=1).astype(np.float64) >= threshold
    # The threshold reproduces the oracle's best point on our own probabilities.
    np.testing.assert_array_equal(answered, expected["answered"])
    assert found["coverage"] == pytest.approx(expected["coverage"], abs=1e-12)
    assert found["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert found["answered"] == int(answered.sum())
    if objective == "coverage_at_accuracy":
        assert found["accuracy"] >= target
    else:
        assert found["coverage"] >= target
    predicted = proba.argmax(axis=1)
    assert found["overall_accuracy"] == pytest.approx((predicted == digits["y"]).mean())
    for c, row in enumerate(found["per_class"]):
        given = answered & (predicted == c)
        right = given & (digits["y"] == c)
        assert row["predicted"] == int(given.sum())
        precision = right.sum() / given.sum() if given.any() else 1.0
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(right.sum() / (digits["y"] == c).sum())
    info = body["threshold_set"]
    assert info["activation"] == "softmax" and info["decision_rule"] == "exactly_one"
    assert info["params"]["confidence_threshold"] == threshold
    assert set(body["thresholds"].values()) == {threshold}


def test_set_curve_and_predict_follow_the_tuned_threshold(server, digits, proba):
    body = tune(server, DIGITS_TEST.read_bytes(), objective="coverage_at_accuracy", target="0.99")
    assert body.status_code == 200, body.text
    set_id, found = body.json()["threshold_set"]["id"], body.json()["multiclass"]
    with server.client() as client:
        curves = client.get(f"/thresholds/{set_id}/curves").json()
        assert curves["kind"] == "risk_coverage" and curves["curves"] == []
        curve = curves["risk_coverage"]
        chosen = curve["chosen_index"]
        assert curve["coverage"][chosen] == pytest.approx(found["coverage"])
        assert curve["accuracy"][chosen] == pytest.approx(found["accuracy"])
        assert curve["coverage"][curve["default_index"]] == 1.0 and curve["coverage"][-1] == 0.0
        assert len(curve["thresholds"]) + 1 == len(curve["coverage"]) <= 1001
        stored = client.get(f"/thresholds/{set_id}").json()
        assert stored["multiclass"]["threshold"] == found["threshold"]
        assert stored["risk_coverage"] == curve
        item = client.get("/thresholds/history").json()["items"][0]
        assert item["id"] == set_id and item["multiclass"]["coverage"] == found["coverage"]
        assert client.get("/thresholds").json()["threshold_set"]["id"] == set_id
        rows = digits["X"][:60]
        answer = client.post("/predict", json={"inputs": rows.tolist()}).json()
    top = proba[:60].max(axis=1).astype(np.float64)
    for i, prediction in enumerate(answer["predictions"]):
        expected = [str(int(proba[i].argmax()))] if top[i] >= found["threshold"] else []
        assert prediction["labels"] == expected


def test_multiclass_files_in_every_format_tune_alike(server, digits):
    form = {"objective": "coverage_at_accuracy", "target": "0.99", "store": "false"}
    x, y = digits["X"], digits["y"]
    names = [str(n) for n in digits["feature_names"]]
    table = pa.table({**{f: x[:, i] for i, f in enumerate(names)}, "label": y.astype(str)})
    csv_buf, parquet_buf = io.BytesIO(), io.BytesIO()
    pa.csv.write_csv(table, csv_buf)
    pq.write_table(table, parquet_buf)
    uploads = {
        "npz Y": (npz(X=x, Y=digits["Y"]), "v.npz"),
        "npz y": (npz(X=x, y=y), "v.npz"),
        "npz y names": (npz(X=x, y=y.astype(str)), "v.npz"),
        "csv label": (csv_buf.getvalue(), "v.csv"),
        "parquet label": (parquet_buf.getvalue(), "v.parquet"),
    }
    seen = {}
    for what, (content, name) in uploads.items():
        response = tune(server, content, name, **form)
        assert response.status_code == 200, (what, response.text)
        assert response.json()["stored"] is False
        found = response.json()["multiclass"]
        seen[what] = (found["threshold"], found["answered"], found["accuracy"])
    assert len(set(seen.values())) == 1, seen


def history_ids(server) -> list[int]:
    with server.client() as client:
        return [item["id"] for item in client.get("/thresholds/history").json()["items"]]


def test_multi_label_rows_on_a_softmax_model_are_422_and_store_nothing(server, digits):
    before = history_ids(server)
    targets = digits["Y"].copy()
    targets[6, (digits["y"][6] + 1) % 10] = 1  # row 7 gets a second label
    response = tune(
        server, npz(X=digits["X"], Y=targets), objective="coverage_at_accuracy", target="0.99"
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "row 7" in detail and "exactly one class per row" in detail
    assert "BCEWithLogitsLoss" in detail
    assert history_ids(server) == before


@pytest.mark.parametrize(
    ("form", "field", "needle"),
    [
        ({}, "objective", "coverage_at_accuracy or accuracy_at_coverage"),
        ({"objective": "f1"}, "objective", "multi-class (softmax)"),
        ({"objective": "coverage_at_accuracy"}, "target", "needs the form field 'target'"),
        ({"objective": "accuracy_at_coverage", "target": "1.5"}, "target", "in (0, 1]"),
        (
            {"objective": "coverage_at_accuracy", "target": "0.9", "decision_rule": "threshold"},
            "decision_rule",
            "exactly one class per row",
        ),
    ],
)
def test_softmax_tunes_refuse_multi_label_options_naming_the_field(server, form, field, needle):
    before = history_ids(server)
    response = tune(server, DIGITS_TEST.read_bytes(), **form)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", field] and needle in error["msg"]
    assert history_ids(server) == before


def test_labelcut_tune_on_the_softmax_bundle(tmp_path, capsys, digits, proba):
    out = tmp_path / "digits.json"
    args = ["tune", str(DIGITS_TEST), "--model", str(DIGITS_MODEL_DIR), "--device", "cpu"]
    assert main([*args, "--objective", "coverage_at_accuracy", "--target", "0.99"]) == 0
    printed = capsys.readouterr().out
    assert "confidence threshold" in printed and "coverage" in printed
    assert (
        main([*args, "--objective", "coverage_at_accuracy", "--target", "0.99", "--out", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    expected = oracle(proba, digits["y"], "coverage_at_accuracy", 0.99)
    assert report["multiclass"]["coverage"] == pytest.approx(expected["coverage"], abs=1e-12)
    assert report["decision_rule"] == "exactly_one" and "risk_coverage" in report
    assert main(args) == 2
    assert "--objective" in capsys.readouterr().err
    assert main([*args, "--objective", "coverage_at_accuracy"]) == 2
    assert "--target" in capsys.readouterr().err


def test_evaluate_a_softmax_set_gives_its_coverage_and_accuracy(server, digits, proba):
    tuned = tune(server, DIGITS_TEST.read_bytes(), objective="accuracy_at_coverage", target="0.95")
    assert tuned.status_code == 200, tuned.text
    set_id, found = tuned.json()["threshold_set"]["id"], tuned.json()["multiclass"]
    half = npz(X=digits["X"][:270], y=digits["y"][:270])
    with server.client() as client:
        same = client.post(
            f"/thresholds/{set_id}/evaluate", files={"file": ("v.npz", DIGITS_TEST.read_bytes())}
        )
        other = client.post(f"/thresholds/{set_id}/evaluate", files={"file": ("h.npz", half)})
    assert same.status_code == 200, same.text
    measured = same.json()["multiclass"]
    assert (measured["coverage"], measured["accuracy"]) == (found["coverage"], found["accuracy"])
    answered = proba[:270].max(axis=1).astype(np.float64) >= found["threshold"]
    assert other.json()["multiclass"]["answered"] == int(answered.sum())
