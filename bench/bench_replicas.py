"""Activation propagation across replicas on one PostgreSQL (or one SQLite file).

Starts its own PostgreSQL (tests/support/postgres.py: initdb + pg_ctl on loopback) and N
real `labelcut serve` processes, activates sets on one replica in turn, and measures:

- store: from the activating replica's 200 to each other replica installing the set,
  read from their logs (millisecond timestamps of "Threshold set N is active");
- http: from the 200 to every other replica's GET /thresholds reporting it (includes the
  polling client's own round trips).

    .venv/bin/python bench/bench_replicas.py [--replicas 3] [--rounds 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labelcut.models import YEAST_TEST  # noqa: E402
from tests.support.postgres import Postgres, fresh_database  # noqa: E402
from tests.support.server import Server  # noqa: E402

INSTALLED = re.compile(r"^(\S+ \S+) INFO labelcut: Threshold set (\d+) is active", re.M)


def installs(server: Server) -> list[tuple[float, int]]:
    return [
        (datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(set_id))
        for stamp, set_id in INSTALLED.findall(server.log.read_text())
    ]


def http_wait(servers: list[Server], set_id: int, start: float) -> float:
    reached: list[float] = []

    def poll(server: Server) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while time.time() - start < 10:
                found = client.get("/thresholds").json()["threshold_set"]
                if found is not None and found["id"] == set_id:
                    reached.append(time.time() - start)
                    return
                time.sleep(0.002)

    threads = [threading.Thread(target=poll, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(reached)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true", help="one shared SQLite file instead")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labelcut-bench-replicas-"))
    pg = None if args.sqlite else Postgres().start()
    servers: list[Server] = []
    try:
        env = {} if pg is None else {"LABELCUT_DATABASE_URL": fresh_database(pg, "bench")}
        for i in range(args.replicas):
            data_dir = tmp / ("data" if args.sqlite else f"data{i}")
            data_dir.mkdir(exist_ok=True)
            servers.append(Server(data_dir, "--log-level", "info", env=env))
        for server in servers:
            server.wait_ready(timeout=180)
        ids = []
        for form in ({"objective": "f1"}, {"objective": "fbeta", "beta": "2"}):
            with YEAST_TEST.open("rb") as f:
                answer = httpx.post(
                    servers[0].url + "/tune-thresholds",
                    files={"file": ("v.npz", f)},
                    data={**form, "activate": "false", "n_bootstrap": "0"},
                    timeout=120,
                )
            ids.append(answer.json()["threshold_set"]["id"])
        store_ms, http_ms = [], []
        for i in range(args.rounds):
            origin = servers[i % len(servers)]
            others = [s for s in servers if s is not origin]
            set_id = ids[i % 2]
            httpx.post(f"{origin.url}/thresholds/{set_id}/activate", timeout=30).raise_for_status()
            done = time.time()
            http_ms.append(http_wait(others, set_id, done) * 1000)
            for other in others:
                stamp = max(t for t, s in installs(other) if s == set_id)
                store_ms.append(max(0.0, stamp - done) * 1000)
            time.sleep(0.1)
        backend = "SQLite file (polling)" if args.sqlite else "PostgreSQL (LISTEN/NOTIFY)"
        print(f"{args.replicas} replicas on {backend}, {args.rounds} activations")
        for name, values in (("store: installed", store_ms), ("http: GET reports", http_ms)):
            values.sort()
            p95 = values[int(0.95 * (len(values) - 1))]
            print(
                f"  {name:18s} median {statistics.median(values):6.1f} ms   "
                f"p95 {p95:6.1f} ms   max {values[-1]:6.1f} ms"
            )
    finally:
        for server in servers:
            server.stop()
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
