"""labelcut.Client and AsyncClient against a real `labelcut serve` on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import numpy as np
import pytest

from labelcut import AsyncClient, Client, LabelcutError
from labelcut.app.cli import main as cli_main
from labelcut.models import YEAST_TEST

from ..support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ADMIN = "client-admin-key"
API = "client-api-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("client")
    s = Server(root / "data", env={"LABELCUT_ADMIN_KEY": ADMIN, "LABELCUT_API_KEY": API})
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def yeast():
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return z["X"], z["Y"]


@pytest.fixture
def client(server) -> Iterator[Client]:
    with Client(server.url, api_key=API, admin_key=ADMIN) as c:
        yield c


def test_predict_numpy_list_and_dataframe_agree(client, yeast):
    pd = pytest.importorskip("pandas")
    X = yeast[0][:7]
    from_array = client.predict(X)
    assert from_array.proba.shape == (7, 14) and from_array.proba.dtype == np.float32
    assert len(from_array.labels) == 7 and from_array.threshold_set_id is None
    names = from_array.label_names
    expected = [[names[j] for j in np.flatnonzero(row >= 0.5)] for row in from_array.proba]
    assert from_array.labels == expected
    from_list = client.predict(X.tolist())
    np.testing.assert_allclose(from_list.proba, from_array.proba, atol=1e-6)
    features = client.model()["feature_names"]
    frame = pd.DataFrame(X, columns=features)[list(reversed(features))]  # order by name
    np.testing.assert_allclose(client.predict(frame).proba, from_array.proba, atol=1e-6)
    ruled = client.predict(X, decision_rule="top_k", k=1)
    assert all(len(labels) <= 1 for labels in ruled.labels)
    with pytest.raises(ValueError, match="feature columns"):
        client.predict(pd.DataFrame(X[:, :5]))


def test_tune_from_file_pair_and_frame_then_activate_evaluate_history(client, server, yeast):
    pd = pytest.importorskip("pandas")
    X, Y = yeast
    report = client.tune(YEAST_TEST, n_bootstrap=0, activate=False)
    first = report["threshold_set"]["id"]
    assert report["threshold_set"]["active"] is False
    proba = client.predict(X).proba
    from_scores = client.tune((proba, Y), n_bootstrap=0, strategy="per_label")
    assert from_scores["threshold_set"]["active"] is True
    labels = client.model()["labels"]
    frame = pd.DataFrame(
        {
            **{f"score:{n}": proba[:, j] for j, n in enumerate(labels)},
            **{n: Y[:, j] for j, n in enumerate(labels)},
        }
    )
    from_frame = client.tune(frame, n_bootstrap=0, strategy="per_label", activate=False)
    # Same scores, same data: the same thresholds, whatever way they travelled.
    assert from_frame["thresholds"] == pytest.approx(from_scores["thresholds"], abs=1e-6)
    assert client.active()["threshold_set"]["id"] == from_scores["threshold_set"]["id"]
    assert client.predict(X[:2]).threshold_set_id == from_scores["threshold_set"]["id"]
    client.activate(first)
    assert client.active()["threshold_set"]["id"] == first
    ids = [item["id"] for item in client.history()]
    assert ids[:3] == [from_frame["threshold_set"]["id"], from_scores["threshold_set"]["id"], first]
    assert client.get(first)["thresholds"] == report["thresholds"]
    evaluated = client.evaluate(first, (X, Y))
    assert evaluated["n_samples"] == len(X)
    tuned_f1 = [row["f1"] for row in report["per_label"]]
    got_f1 = [row["at_threshold"]["f1"] for row in evaluated["per_label"]]
    np.testing.assert_allclose(got_f1, tuned_f1, atol=1e-6)  # in sample: the tune's own F1
    assert client.evaluate(first, {"scores": proba, "Y": Y})["per_label"] == evaluated["per_label"]


def test_archive_hides_a_set_but_not_the_active_one(client, yeast):
    kept = client.tune(YEAST_TEST, n_bootstrap=0)["threshold_set"]["id"]  # active
    hidden = client.tune(YEAST_TEST, n_bootstrap=0, activate=False)["threshold_set"]["id"]
    assert client.archive(hidden)["threshold_set"]["archived"] is True
    assert hidden not in [item["id"] for item in client.history()]
    with pytest.raises(LabelcutError) as info:
        client.archive(kept)
    assert info.value.status_code == 409
    assert client.get(hidden)["threshold_set"]["id"] == hidden  # never deleted


def test_errors_carry_status_and_detail(client, server, yeast):
    with pytest.raises(LabelcutError) as info:
        client.get(10**6)
    assert info.value.status_code == 404 and "1000000" in info.value.detail
    with pytest.raises(LabelcutError) as info:
        client.predict(yeast[0][:2, :10])
    assert info.value.status_code == 422 and "shape" in str(info.value.detail)
    with Client(server.url) as anonymous, pytest.raises(LabelcutError) as info:
        anonymous.predict(yeast[0][:1])
    assert info.value.status_code == 401
    with Client(server.url, admin_key="wrong") as wrong, pytest.raises(LabelcutError) as info:
        wrong.tune(YEAST_TEST)
    assert info.value.status_code == 403 and "wrong" in info.value.detail
    with Client("http://127.0.0.1:9", timeout=2) as nowhere, pytest.raises(LabelcutError) as info:
        nowhere.active()
    assert info.value.status_code is None


def test_push_an_offline_tune_with_the_cli(server, tmp_path, capsys, monkeypatch):
    out = tmp_path / "result.json"
    args = ["tune", str(YEAST_TEST), "--device", "cpu", "--n-bootstrap", "0", "--out", str(out)]
    assert cli_main(args) == 0
    monkeypatch.setenv("LABELCUT_ADMIN_KEY", "wrong")
    assert cli_main(["push", str(out), "--url", server.url]) == 1
    assert "403" in capsys.readouterr().err
    code = cli_main(["push", str(out), "--url", server.url, "--admin-key", ADMIN, "--activate"])
    assert code == 0
    printed = capsys.readouterr().out
    set_id = int(printed.split("threshold set ")[1].split()[0])
    assert "(active)" in printed
    with Client(server.url) as c:
        assert c.active()["threshold_set"]["id"] == set_id
        assert c.get(set_id)["thresholds"] == json.loads(out.read_text())["thresholds"]


def test_async_client_does_the_same(server, yeast):
    async def run():
        async with AsyncClient(server.url, api_key=API, admin_key=ADMIN) as lc:
            result = await lc.predict(yeast[0][:3])
            report = await lc.tune(YEAST_TEST, n_bootstrap=0, activate=False)
            evaluated = await lc.evaluate(report["threshold_set"]["id"], YEAST_TEST)
            history = await lc.history()
            with pytest.raises(LabelcutError) as info:
                await lc.activate(10**6)
            return result, report, evaluated, history, info.value

    result, report, evaluated, history, error = asyncio.run(run())
    with Client(server.url, api_key=API) as sync:
        np.testing.assert_allclose(result.proba, sync.predict(yeast[0][:3]).proba)
    assert evaluated["threshold_set_id"] == report["threshold_set"]["id"]
    assert report["threshold_set"]["id"] in [item["id"] for item in history]
    assert error.status_code == 404
