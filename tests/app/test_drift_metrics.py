"""Issue 19's drift gauges after a burst of shifted traffic, against a real server.

`labelcut serve` (the bundled yeast model) with LABELCUT_DRIFT_WINDOW=300 and an active
set that carries the figures expected from its validation data. Ordinary rows first, then
300 rows that all score high on one label: the window then holds exactly the burst, and
its gauges must equal numpy's figures over those rows, beside the expected ones; the label
shows as drifted (labelcut.tuning.drift.drifted_labels as the oracle). An activation
empties the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labelcut.models import DEFAULT_MODEL_DIR, YEAST_TEST, load_model
from labelcut.tuning.drift import DriftFigures, drifted_labels, expected_rates

from ..support.server import Server
from .stored_sets import store_set

WINDOW = 300
PER_REQUEST = 20
SHIFTED = "Class1"


@pytest.fixture(scope="module")
def yeast() -> dict:
    model = load_model(DEFAULT_MODEL_DIR, device="cpu")
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        x, y = z["X"].astype(np.float32), z["Y"]
    return {"model": model, "X": x, "Y": y, "proba": model.predict_proba(x)}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    s = Server(
        tmp_path_factory.mktemp("drift") / "data", env={"LABELCUT_DRIFT_WINDOW": str(WINDOW)}
    )
    try:
        yield s.wait_ready()
    finally:
        s.stop()


def _gauges(text: str) -> dict[str, dict[str, float]]:
    """{metric name: {label value or "": value}} of the labelcut_drift/expected gauges."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("labelcut_drift", "labelcut_expected")):
            for sample in family.samples:
                found.setdefault(sample.name, {})[sample.labels.get("label", "")] = sample.value
    return found


def _send(client, rows: np.ndarray) -> None:
    for start in range(0, len(rows), PER_REQUEST):
        r = client.post("/predict", json={"inputs": rows[start : start + PER_REQUEST].tolist()})
        assert r.status_code == 200, r.text


def test_gauges_after_a_burst_of_shifted_traffic(server, yeast):
    model, labels = yeast["model"], yeast["model"].labels
    thresholds = np.full(len(labels), 0.4)
    expected = expected_rates(yeast["proba"], thresholds)
    params = {
        "expected": {
            "positive_rate": expected.positive_share.tolist(),
            "mean_score": expected.mean_score.tolist(),
        }
    }
    set_id = store_set(server.data_dir, model, yeast["proba"], yeast["Y"], thresholds, params)
    other_id = store_set(server.data_dir, model, yeast["proba"], yeast["Y"], thresholds, params)
    rng = np.random.default_rng(0)
    j = labels.index(SHIFTED)
    high = np.flatnonzero(yeast["proba"][:, j] >= 0.6)
    burst = rng.choice(high, size=WINDOW, replace=True)
    with server.client() as c:
        assert c.post(f"/thresholds/{set_id}/activate").status_code == 200
        _send(c, yeast["X"][:100])  # ordinary traffic, pushed out of the window below
        _send(c, yeast["X"][burst])
        gauges = _gauges(c.get("/metrics").text)
        drift = c.get("/drift").json()
        assert c.post(f"/thresholds/{other_id}/activate").status_code == 200
        emptied = _gauges(c.get("/metrics").text)

    served = yeast["proba"][burst].astype(np.float64)
    flags = served >= thresholds
    window = DriftFigures(WINDOW, flags.mean(axis=0), served.mean(axis=0))
    oracle_drifted = drifted_labels(
        window, DriftFigures(len(yeast["X"]), expected.positive_share, expected.mean_score)
    )
    assert gauges["labelcut_drift_window_rows"][""] == WINDOW
    assert gauges["labelcut_drift_window_size"][""] == WINDOW
    for k, label in enumerate(labels):
        assert gauges["labelcut_drift_positive_rate"][label] == pytest.approx(flags[:, k].mean())
        assert gauges["labelcut_drift_mean_score"][label] == pytest.approx(
            served[:, k].mean(), abs=1e-6
        )
        assert gauges["labelcut_expected_positive_rate"][label] == pytest.approx(
            expected.positive_share[k]
        )
        assert gauges["labelcut_expected_mean_score"][label] == pytest.approx(
            expected.mean_score[k]
        )
        assert gauges["labelcut_drift_drifted"][label] == float(oracle_drifted[k])
    assert gauges["labelcut_drift_positive_rate"][SHIFTED] == 1.0
    assert expected.positive_share[j] < 0.5 and oracle_drifted[j]
    assert gauges["labelcut_drift_drifted"][SHIFTED] == 1.0

    assert drift["threshold_set_id"] == set_id
    assert drift["window"] == {"rows": WINDOW, "size": WINDOW}
    assert drift["drifted"] == [label for label, d in zip(labels, oracle_drifted, strict=True) if d]
    entry = drift["labels"][j]
    assert entry["label"] == SHIFTED and entry["drifted"] is True
    assert entry["positive_rate"] == 1.0
    assert entry["expected_positive_rate"] == pytest.approx(expected.positive_share[j])

    # The activation of another set empties the window.
    assert emptied["labelcut_drift_window_rows"][""] == 0
    assert math.isnan(emptied["labelcut_drift_positive_rate"][SHIFTED])
    assert emptied["labelcut_drift_drifted"][SHIFTED] == 0.0
