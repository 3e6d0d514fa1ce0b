"""Several real `labelcut serve` processes on one store: a real PostgreSQL server (started
by the test) or one SQLite file. Activation on one replica reaches the others within a
second; every prediction uses one whole set, the one it reports; concurrent activations
serialise; kill -9 of a replica or of PostgreSQL loses no set; a lost database leaves
predictions up, admin writes 503 and /readyz saying so, until it returns.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from labelcut.app.store import ThresholdStore
from labelcut.models import YEAST_TEST

from ..support.postgres import PASSWORD, Postgres, fresh_database, postgres  # noqa: F401
from ..support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0_thresholds.sqlite3"
PROPAGATION_S = 1.0


@pytest.fixture(scope="module")
def yeast() -> dict[str, np.ndarray]:
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def replicas(tmp_path) -> Iterator[Callable[..., list[Server]]]:
    """`replicas(n, url=None, shared_dir=False)`: n ready servers on one store."""
    started: list[Server] = []

    def start(n: int, url: str | None = None, *, shared_dir: bool = False) -> list[Server]:
        env = {"LABELCUT_DATABASE_URL": url} if url else {}
        servers = []
        for _ in range(n):
            data_dir = tmp_path / ("data" if shared_dir else f"data{len(started)}")
            data_dir.mkdir(exist_ok=True)
            # info: the logs then hold the store's URL (masked) and every installed set.
            servers.append(Server(data_dir, "--log-level", "info", env=env))
            started.append(servers[-1])
        return [server.wait_ready(timeout=120) for server in servers]

    yield start
    for server in started:
        server.stop()
    for server in started:
        assert PASSWORD not in server.log.read_text(), f"password in {server.log}"


def tune(server: Server, activate: bool = False, **form: str) -> int:
    with YEAST_TEST.open("rb") as f:
        answer = httpx.post(
            server.url + "/tune-thresholds",
            files={"file": ("yeast_test.npz", f)},
            data={"activate": str(activate).lower(), "n_bootstrap": "0", **form},
            timeout=120,
        )
    assert answer.status_code == 200, answer.text
    return answer.json()["threshold_set"]["id"]


def distinct_sets(server: Server, n: int) -> list[int]:
    forms = [
        {"objective": "f1"},
        {"objective": "fbeta", "beta": "3"},
        {"objective": "recall_at_precision", "target": "0.6"},
        {"objective": "fbeta", "beta": "0.3"},
        {"objective": "f1", "strategy": "global"},
    ]
    return [tune(server, **forms[i % len(forms)]) for i in range(n)]


def active_id(server: Server) -> int | None:
    body = httpx.get(server.url + "/thresholds", timeout=10).json()
    return None if body["threshold_set"] is None else body["threshold_set"]["id"]


def activate(server: Server, set_id: int) -> httpx.Response:
    return httpx.post(f"{server.url}/thresholds/{set_id}/activate", timeout=30)


def wait_until_all_active(servers: list[Server], set_id: int, timeout: float) -> float:
    """Seconds until every server's /thresholds reports `set_id` (fails past timeout).

    Each server is polled by its own thread, so one slow answer does not delay the others'.
    """
    start = time.monotonic()
    reached: dict[str, float] = {}

    def poll(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while time.monotonic() - start < timeout:
                body = client.get("/thresholds").json()
                if body["threshold_set"] is not None and body["threshold_set"]["id"] == set_id:
                    reached[server.url] = time.monotonic() - start
                    return
                time.sleep(0.005)

    threads = [threading.Thread(target=poll, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [s.url for s in servers if s.url not in reached]
    assert not missing, f"{missing} not on set {set_id} within {timeout}s"
    return max(reached.values())


def assert_propagates(servers: list[Server], ids: list[int], rounds: int = 8) -> list[float]:
    latencies = []
    for i in range(rounds):
        origin = servers[i % len(servers)]
        target = ids[i % len(ids)]
        if active_id(origin) == target:
            target = ids[(i + 1) % len(ids)]
        assert activate(origin, target).status_code == 200
        others = [s for s in servers if s is not origin]
        latencies.append(wait_until_all_active(others, target, timeout=5))
    print(
        f"\nactivation propagation over {rounds} rounds, {len(servers)} replicas: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    assert max(latencies) < PROPAGATION_S, latencies
    return latencies


# --- PostgreSQL ----------------------------------------------------------------------------


def test_activation_on_one_replica_reaches_the_others_within_a_second(postgres, replicas):  # noqa: F811
    servers = replicas(3, fresh_database(postgres))
    ids = distinct_sets(servers[0], 3)
    # Sets tuned on one replica are in every replica's history at once: one store.
    for server in servers:
        history = httpx.get(server.url + "/thresholds/history", timeout=10).json()["items"]
        assert {item["id"] for item in history} == set(ids)
    assert_propagates(servers, ids)
    # A tune that activates, on another replica, reaches the rest too.
    new = tune(servers[2], activate=True)
    assert wait_until_all_active(servers, new, timeout=5) < PROPAGATION_S
    # No password in anything a client can read.
    for path in ("/model", "/readyz", "/thresholds", "/metrics"):
        assert PASSWORD not in httpx.get(servers[1].url + path, timeout=10).text


def test_predictions_agree_with_the_set_they_report_during_a_burst(postgres, replicas, yeast):  # noqa: F811
    url = fresh_database(postgres)
    servers = replicas(3, url)
    ids = distinct_sets(servers[0], 4)
    thresholds = {
        set_id: httpx.get(f"{servers[0].url}/thresholds/{set_id}", timeout=10).json()["thresholds"]
        for set_id in ids
    }
    rows = yeast["X"][:32].astype(float).tolist()
    stop = threading.Event()
    problems: list[str] = []
    checked = {"n": 0, "ids": set()}

    def flip(k: int) -> None:
        j = k
        while not stop.is_set():
            activate(servers[k % 3], ids[j % len(ids)])
            j += 1
            time.sleep(0.02)

    def predict(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                body = client.post("/predict", json={"inputs": rows}).json()
                set_id = body["threshold_set_id"]
                cut = thresholds[set_id]
                for prediction in body["predictions"]:
                    expected = [
                        label
                        for label in body["labels"]
                        if prediction["scores"][label] >= cut[label]
                    ]
                    if prediction["labels"] != expected:
                        problems.append(f"set {set_id}: {prediction['labels']} != {expected}")
                checked["n"] += 1
                checked["ids"].add(set_id)

    activate(servers[0], ids[0])
    threads = [threading.Thread(target=flip, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=predict, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not problems, problems[:5]
    assert checked["n"] > 30 and len(checked["ids"]) >= 2, checked
    # Every replica converges on the last committed activation.
    store = ThresholdStore(url=url)
    try:
        last = store.activations()[-1][1]
    finally:
        store.close()
    assert wait_until_all_active(servers, last, timeout=5) < PROPAGATION_S


def test_concurrent_activations_on_two_replicas_serialise(postgres, replicas):  # noqa: F811
    url = fresh_database(postgres)
    servers = replicas(2, url)
    a, b, c = distinct_sets(servers[0], 3)
    assert activate(servers[0], c).status_code == 200
    for _ in range(5):
        barrier = threading.Barrier(2)
        answers: dict[int, int] = {}

        def go(server: Server, set_id: int, barrier=barrier, answers=answers) -> None:
            barrier.wait()
            answers[set_id] = activate(server, set_id).status_code

        threads = [
            threading.Thread(target=go, args=(servers[0], a)),
            threading.Thread(target=go, args=(servers[1], b)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == {a: 200, b: 200}
        store = ThresholdStore(url=url)
        try:
            last_two = [set_id for _, set_id in store.activations()[-2:]]
            winner = store.activations()[-1][1]
        finally:
            store.close()
        assert sorted(last_two) == sorted([a, b])  # both in the history
        assert wait_until_all_active(servers, winner, timeout=5) < PROPAGATION_S


def test_kill_9_of_a_replica_and_of_postgres_loses_no_set(replicas, yeast):
    pg = Postgres().start()
    try:
        url = fresh_database(pg)
        servers = replicas(2, url)
        ids = distinct_sets(servers[0], 3)
        assert activate(servers[1], ids[1]).status_code == 200
        wait_until_all_active(servers, ids[1], timeout=5)

        # A replica killed mid-activations comes back with every set and the active one.
        def activations_until_killed() -> None:
            for i in range(30):
                try:
                    activate(servers[1], ids[i % 3])
                except httpx.TransportError:  # the kill below
                    return

        storm = threading.Thread(target=activations_until_killed, daemon=True)
        storm.start()
        time.sleep(0.3)
        servers[1].kill()
        storm.join(timeout=30)
        servers[1] = replicas(1, url)[0]
        store = ThresholdStore(url=url)
        try:
            winner = store.active_for(_identity(store, ids[0]))
        finally:
            store.close()
        assert winner is not None
        wait_until_all_active(servers, winner.id, timeout=5)
        assert _history_ids(servers[1]) == set(ids)

        # PostgreSQL itself, killed: predictions go on with the last set.
        row = {"inputs": yeast["X"][:2].astype(float).tolist()}
        pg.kill()
        for server in servers:
            answer = httpx.post(server.url + "/predict", json=row, timeout=10)
            assert answer.status_code == 200 and answer.json()["threshold_set_id"] == winner.id
        # Admin writes answer 503 saying why, without the password.
        refused = activate(servers[0], ids[2])
        assert refused.status_code == 503, (
            f"{refused.text} (create_app must call install_store_errors)"
        )
        assert "unreachable" in refused.json()["detail"] and PASSWORD not in refused.text
        with YEAST_TEST.open("rb") as f:
            tuned = httpx.post(
                servers[1].url + "/tune-thresholds", files={"file": ("v.npz", f)}, timeout=60
            )
        assert tuned.status_code == 503 and PASSWORD not in tuned.text
        # /readyz reports the store, within a poll or two.
        deadline = time.monotonic() + 10
        while httpx.get(servers[0].url + "/readyz").status_code != 503:
            assert time.monotonic() < deadline, "readyz never reported the store"
            time.sleep(0.1)
        body = httpx.get(servers[0].url + "/readyz").json()
        assert body["status"] == "store_unreachable" and PASSWORD not in str(body)
        optional = httpx.get(servers[0].url + "/readyz", params={"store": "optional"})
        assert optional.status_code == 200 and "unreachable" in optional.json()["detail"]

        # PostgreSQL returns: replicas reconnect without a restart and catch up.
        pg.start()
        for server in servers:
            deadline = time.monotonic() + 15
            while httpx.get(server.url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline, server.log.read_text()[-3000:]
                time.sleep(0.1)
        assert _history_ids(servers[0]) == set(ids)
        assert activate(servers[0], ids[2]).status_code == 200
        assert wait_until_all_active(servers, ids[2], timeout=5) < PROPAGATION_S
        assert tune(servers[1], activate=True) > max(ids)
    finally:
        pg.cleanup()


def _identity(store: ThresholdStore, set_id: int):
    from labelcut.app.store import ModelIdentity

    found = store.get(set_id)
    return ModelIdentity(found.model_name, found.model_sha256, tuple(found.labels))


def _history_ids(server: Server) -> set[int]:
    items = httpx.get(server.url + "/thresholds/history", timeout=10).json()["items"]
    return {item["id"] for item in items}


def test_replica_started_while_postgres_is_down_waits_then_serves(tmp_path, replicas):
    pg = Postgres().start()
    try:
        url = fresh_database(pg)
        first = replicas(1, url)[0]
        set_id = tune(first, activate=True)
        pg.stop()
        late = Server(tmp_path / "late", env={"LABELCUT_DATABASE_URL": url})
        try:
            deadline = time.monotonic() + 60
            while True:  # up, but not ready: it must not serve 0.5 for a set it cannot read
                try:
                    answer = httpx.get(late.url + "/readyz", timeout=2)
                    if answer.json().get("status") == "store_unreachable":
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, late.log.read_text()
                time.sleep(0.2)
            assert answer.status_code == 503 and PASSWORD not in answer.text
            pg.start()
            late.wait_ready(timeout=30)
            assert active_id(late) == set_id
        finally:
            late.stop()
        assert PASSWORD not in late.log.read_text()
    finally:
        pg.cleanup()


# --- SQLite: one file, several processes, and the first release's file ----------------------


def test_processes_sharing_one_sqlite_file_see_activations_by_polling(replicas):
    servers = replicas(2, shared_dir=True)
    ids = distinct_sets(servers[0], 2)
    assert _history_ids(servers[1]) == set(ids)
    assert_propagates(servers, ids, rounds=4)


def test_store_of_the_first_release_opens_under_a_real_server(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(FIXTURE, data_dir / "thresholds.sqlite3")
    server = Server(data_dir).wait_ready()
    try:
        assert active_id(server) == 1  # the fixture's active set of the bundled model
        assert sorted(_history_ids(server)) == [1, 2, 3, 4]
        curves = httpx.get(server.url + "/thresholds/1/curves", timeout=10).json()["curves"]
        assert len(curves) == 14
        row = {"inputs": [[0.0] * 103]}
        assert httpx.post(server.url + "/predict", json=row).json()["threshold_set_id"] == 1
        assert activate(server, 3).status_code == 200 and active_id(server) == 3
    finally:
        server.stop()
