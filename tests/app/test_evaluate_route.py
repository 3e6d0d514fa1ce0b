"""POST /thresholds/{id}/evaluate in process: a stored set scored on an upload, nothing stored."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from labelcut.models import YEAST_TEST, load_model
from labelcut.tuning.evaluate import evaluate_thresholds

from ..support.inprocess import app_client, wait_ready


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return z["X"], z["Y"]


@pytest.fixture(scope="module")
def proba(yeast):
    return load_model(device="cpu").predict_proba(yeast[0])


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path / "data") as c:
        wait_ready(c)
        yield c


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _tuned_set(client) -> dict:
    files = {"file": ("val.npz", YEAST_TEST.read_bytes(), "application/x-npz")}
    answer = client.post("/tune-thresholds", files=files, data={"n_bootstrap": "0"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_evaluate_matches_the_numerics_and_stores_nothing(client, yeast, proba):
    tuned = _tuned_set(client)
    set_id = tuned["threshold_set"]["id"]
    before = client.get("/thresholds/history").json()["items"]
    # Score on another split: the second half of the test rows, with inputs.
    X, Y = yeast[0][400:], yeast[1][400:]
    files = {"file": ("half.npz", _npz(X=X, Y=Y), "application/x-npz")}
    answer = client.post(f"/thresholds/{set_id}/evaluate", files=files)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    labels = load_model(device="cpu").labels
    thresholds = np.array([tuned["thresholds"][label] for label in labels])
    expected = evaluate_thresholds(proba[400:], Y, thresholds, label_names=list(labels))
    assert body["n_samples"] == len(X) and body["threshold_set_id"] == set_id
    assert [row["label"] for row in body["per_label"]] == list(labels)
    for got, want in zip(body["per_label"], expected["per_label"], strict=True):
        assert got["threshold"] == want["threshold"]
        for key in ("at_threshold", "at_default"):
            assert got[key]["true_positives"] == want[key]["true_positives"]
            np.testing.assert_allclose(got[key]["f1"], want[key]["f1"], atol=1e-6)
    micro = body["summary"]["at_threshold"]["micro"]["f1"]
    np.testing.assert_allclose(micro, expected["summary"]["at_threshold"]["micro"]["f1"], 1e-5)
    assert client.get("/thresholds/history").json()["items"] == before


def test_evaluate_reads_csv_with_score_columns(client, yeast, proba):
    set_id = _tuned_set(client)["threshold_set"]["id"]
    labels = load_model(device="cpu").labels
    columns = {f"score:{label}": proba[:, j] for j, label in enumerate(labels)}
    columns |= {label: yeast[1][:, j] for j, label in enumerate(labels)}
    buffer = io.BytesIO()
    pacsv.write_csv(pa.table(columns), buffer)
    files = {"file": ("scores.csv", buffer.getvalue(), "text/csv")}
    body = client.post(f"/thresholds/{set_id}/evaluate", files=files).json()
    # In sample, at the tuned thresholds: the tune's own per-label F1.
    tuned = client.get(f"/thresholds/{set_id}").json()["per_label"]
    for got, want in zip(body["per_label"], tuned, strict=True):
        np.testing.assert_allclose(got["at_threshold"]["f1"], want["f1"], atol=1e-6)
        np.testing.assert_allclose(got["at_default"]["f1"], want["at_default"]["f1"], atol=1e-6)


def test_evaluate_errors_name_the_problem(client, yeast):
    set_id = _tuned_set(client)["threshold_set"]["id"]
    good = {"file": ("v.npz", _npz(X=yeast[0][:20], Y=yeast[1][:20]), "application/x-npz")}
    missing = client.post("/thresholds/999/evaluate", files=good)
    assert missing.status_code == 404 and "999" in missing.json()["detail"]
    bad_y = yeast[1][:20].copy()
    bad_y[3, 2] = 2
    bad = {"file": ("v.npz", _npz(X=yeast[0][:20], Y=bad_y), "application/x-npz")}
    answer = client.post(f"/thresholds/{set_id}/evaluate", files=bad)
    assert answer.status_code == 422 and "Y" in answer.json()["detail"]
    text = {"file": ("v.txt", b"hello", "text/plain")}
    assert client.post(f"/thresholds/{set_id}/evaluate", files=text).status_code == 415


def test_evaluate_needs_the_admin_key_when_set(tmp_path, yeast):
    with app_client(tmp_path / "d", admin_key="s3cret") as c:
        wait_ready(c)
        files = {"file": ("v.npz", _npz(X=yeast[0][:5], Y=yeast[1][:5]), "application/x-npz")}
        assert c.post("/thresholds/1/evaluate", files=files).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert c.post("/thresholds/1/evaluate", files=files, headers=wrong).status_code == 403
        right = {"authorization": "Bearer s3cret"}
        # Past the key: no set 1 yet.
        assert c.post("/thresholds/1/evaluate", files=files, headers=right).status_code == 404


def test_unknown_fields_and_oversized_data_are_refused(tmp_path, yeast):
    files = {"file": ("v.npz", YEAST_TEST.read_bytes(), "application/x-npz")}
    with app_client(tmp_path / "small", max_data_mb=0.3) as c:
        wait_ready(c)
        set_id = c.post(
            "/tune-thresholds",
            files={"file": ("s.npz", _npz(X=yeast[0][:50], Y=yeast[1][:50]), "application/x-npz")},
            data={"n_bootstrap": "0"},
        )
        assert set_id.status_code == 200, set_id.text
        found = set_id.json()["threshold_set"]["id"]
        unknown = c.post(f"/thresholds/{found}/evaluate", files=files, data={"objective": "f1"})
        assert unknown.status_code == 422 and "objective" in str(unknown.json()["detail"])
        # The whole test split decodes to more than a tune may hold under this budget.
        big = c.post(f"/thresholds/{found}/evaluate", files=files)
        assert big.status_code == 413, big.text
        assert "LABELCUT_MAX_DATA_MB" in big.json()["detail"]
