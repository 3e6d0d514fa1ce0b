"""The app in process on both store backends: archive over HTTP, and a PostgreSQL that goes
away (predictions go on, admin writes 503, /readyz says so) and comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from labelcut.app.routes import archive
from labelcut.app.store_errors import install_store_errors

from ..support.inprocess import app_client, wait_ready
from ..support.postgres import PASSWORD, Postgres, fresh_database, postgres  # noqa: F401

ROW = {"inputs": [[0.0] * 103]}


def wired(app: FastAPI) -> FastAPI:
    """The archive route and the store's error answers, as create_app adds them."""
    if not any(getattr(r, "path", "") == "/thresholds/{set_id}/archive" for r in app.routes):
        app.include_router(archive.router)
    install_store_errors(app)
    return app


def tune(client: TestClient, body: bytes, **form: str) -> int:
    answer = client.post(
        "/tune-thresholds", files={"file": ("v.npz", body)}, data={"n_bootstrap": "0", **form}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["threshold_set"]["id"]


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path, monkeypatch) -> Iterator[TestClient]:
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("postgres"))
        monkeypatch.setenv("LABELCUT_DATABASE_URL", url)
    else:
        monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    c = app_client(tmp_path / "data")
    wired(c.app)
    with c:
        wait_ready(c)
        yield c


def history_ids(client: TestClient, **params: str) -> list[int]:
    return [item["id"] for item in client.get("/thresholds/history", params=params).json()["items"]]


def test_archive_hides_a_set_and_refuses_the_active_one(client, yeast_npz_bytes):
    old = tune(client, yeast_npz_bytes)
    new = tune(client, yeast_npz_bytes, objective="fbeta", beta="2")
    answer = client.post(f"/thresholds/{old}/archive")
    assert answer.status_code == 200, answer.text
    assert answer.json()["threshold_set"] == {**answer.json()["threshold_set"], "archived": True}
    assert history_ids(client) == [new]
    assert client.get(f"/thresholds/{old}").status_code == 200  # never deleted
    refused = client.post(f"/thresholds/{new}/archive")
    assert refused.status_code == 409 and "active set" in refused.json()["detail"]
    assert client.post("/thresholds/98765/archive").status_code == 404
    assert client.get("/thresholds").json()["threshold_set"]["id"] == new
    # Rolling back to it brings it back into the history.
    assert client.post(f"/thresholds/{old}/activate").status_code == 200
    assert history_ids(client) == [new, old]


def test_archive_needs_the_admin_key(tmp_path, yeast_npz_bytes, monkeypatch):
    monkeypatch.delenv("LABELCUT_DATABASE_URL", raising=False)
    c = app_client(tmp_path / "data", admin_key="k3y-for-archive")
    wired(c.app)
    with c:
        wait_ready(c)
        answer = c.post(
            "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            data={"n_bootstrap": "0", "activate": "false"},
            headers={"Authorization": "Bearer k3y-for-archive"},
        )
        set_id = answer.json()["threshold_set"]["id"]
        assert c.post(f"/thresholds/{set_id}/archive").status_code == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert c.post(f"/thresholds/{set_id}/archive", headers=wrong).status_code == 403
        assert history_ids(c) == [set_id]


def test_losing_postgres_keeps_predictions_and_refuses_writes_until_it_returns(
    tmp_path, monkeypatch, yeast_npz_bytes
):
    pg = Postgres().start()
    try:
        monkeypatch.setenv("LABELCUT_DATABASE_URL", fresh_database(pg))
        c = app_client(tmp_path / "data")
        wired(c.app)
        with c:
            wait_ready(c)
            watcher = c.app.state.service.watcher
            _eventually(lambda: watcher.listening, "the watcher never listened")
            first = tune(c, yeast_npz_bytes)
            second = tune(c, yeast_npz_bytes, activate="false", objective="fbeta", beta="2")
            pg.kill()
            assert c.post("/predict", json=ROW).json()["threshold_set_id"] == first
            assert c.get("/thresholds").json()["threshold_set"]["id"] == first
            for response in (
                c.post(f"/thresholds/{second}/activate"),
                c.post(f"/thresholds/{first}/archive"),
                c.get("/thresholds/history"),
                c.post("/tune-thresholds", files={"file": ("v.npz", yeast_npz_bytes)}),
            ):
                assert response.status_code == 503, response.text
                assert "unreachable" in response.json()["detail"]
                assert response.headers["retry-after"] == "5"
                assert PASSWORD not in response.text
            ready = _wait_status(c, 503)
            assert ready["status"] == "store_unreachable" and "***" in ready["detail"]
            assert PASSWORD not in str(ready)
            pg.start()
            assert _wait_status(c, 200)["status"] == "ready"
            # LISTEN again, not only polling.
            _eventually(lambda: watcher.listening, "the watcher never listened again")
            assert c.post(f"/thresholds/{second}/activate").status_code == 200
            assert c.post("/predict", json=ROW).json()["threshold_set_id"] == second
            assert history_ids(c) == [second, first]
    finally:
        pg.cleanup()


def _wait_status(client: TestClient, status: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/readyz")
        if answer.status_code == status:
            return answer.json()
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.1)


def _eventually(check, message: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
