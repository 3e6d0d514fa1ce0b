"""End to end: a real `labelcut serve` process on loopback, driven over HTTP."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from labelcut.models import YEAST_TEST

from ..support.server import Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    s = Server(tmp_path / "data")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def yeast_table(yeast) -> pa.Table:
    columns = {str(f): yeast["X"][:, i] for i, f in enumerate(yeast["feature_names"])}
    columns |= {str(label): yeast["Y"][:, j] for j, label in enumerate(yeast["label_names"])}
    return pa.table(columns)


def upload(url: str, name: str, content: bytes, **form) -> httpx.Response:
    return httpx.post(
        url + "/tune-thresholds", files={"file": (name, content)}, data=form, timeout=60
    )


def test_predict_tune_every_format_activate_and_restart(server, tmp_path, yeast):
    url = server.url
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    labels = httpx.get(url + "/model").json()["labels"]
    assert labels == [str(x) for x in yeast["label_names"]]

    first = httpx.post(url + "/predict", json={"inputs": yeast["X"][:3].tolist()}).json()
    assert first["threshold_set_id"] is None and len(first["predictions"]) == 3

    csv_buf = io.BytesIO()
    pacsv.write_csv(yeast_table(yeast), csv_buf)
    parquet_buf = io.BytesIO()
    pq.write_table(yeast_table(yeast), parquet_buf)
    results = {}
    for name, content in (
        ("yeast_test.npz", YEAST_TEST.read_bytes()),
        ("yeast_test.csv", csv_buf.getvalue()),
        ("yeast_test.parquet", parquet_buf.getvalue()),
    ):
        response = upload(url, name, content)
        assert response.status_code == 200, response.text
        results[name] = response.json()
    # The same rows in three formats give the same thresholds.
    npz_t = results["yeast_test.npz"]["thresholds"]
    for name in ("yeast_test.csv", "yeast_test.parquet"):
        for label in labels:
            assert results[name]["thresholds"][label] == pytest.approx(npz_t[label], abs=1e-5)

    ids = [r["threshold_set"]["id"] for r in results.values()]
    chosen = ids[0]
    activated = httpx.post(f"{url}/thresholds/{chosen}/activate")
    assert activated.status_code == 200
    assert (
        httpx.post(url + "/predict", json={"inputs": yeast["X"][:1].tolist()}).json()[
            "threshold_set_id"
        ]
        == chosen
    )
    before = httpx.get(url + "/thresholds").json()
    assert server.stop() in (0, -signal.SIGTERM)

    again = Server(tmp_path / "data")
    try:
        again.wait_ready()
        after = httpx.get(again.url + "/thresholds").json()
        assert after["threshold_set"]["id"] == chosen
        assert after["thresholds"] == before["thresholds"]
        history = httpx.get(again.url + "/thresholds/history").json()["items"]
        assert [item["id"] for item in history] == sorted(ids, reverse=True)
    finally:
        again.stop()


def test_other_model_does_not_inherit_the_active_set(server, tmp_path, yeast):
    import torch

    from labelcut.models import MLP, save_bundle

    assert upload(server.url, "v.npz", YEAST_TEST.read_bytes()).status_code == 200
    server.stop()

    torch.manual_seed(1)
    labels = [str(x) for x in yeast["label_names"]]
    other = save_bundle(
        MLP(103, len(labels), hidden_sizes=[16]),
        tmp_path / "other",
        labels=labels,
        input_shape=(103,),
        format="safetensors",
        name="other",
    )
    second = Server(tmp_path / "data", "--model", str(other))
    try:
        second.wait_ready()
        assert httpx.get(second.url + "/thresholds").json()["threshold_set"] is None
        assert httpx.get(second.url + "/model").json()["name"] == "other"
    finally:
        second.stop()
    assert "not applying it" in second.log.read_text()


def test_bad_model_directory_exits_non_zero(tmp_path):
    bad = tmp_path / "empty-model"
    bad.mkdir()
    s = Server(tmp_path / "data", "--model", str(bad))
    assert s.proc.wait(timeout=60) != 0
    assert "could not load the model" in s.log.read_text()
