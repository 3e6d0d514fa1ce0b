"""Benchmark POST /predict: dynamic batching on and off, against an HTTP floor.

Starts real servers one at a time (`python -m labelcut.app.cli serve`, batching settings
from LABELCUT_* variables) and drives each from a separate process with the same
closed-loop load: C concurrent keep-alive HTTP/1.1 connections, each sending one
JSON row, waiting for the answer, and sending the next, for a fixed duration
after a warm-up. Scenarios:

  floor    a bare FastAPI endpoint served by uvicorn the same way, parsing the body
           with the same code as /predict and answering bytes of the same size
           without a model: the most any /predict can reach
  bundled  the bundled yeast model, batching on and off (LABELCUT_MAX_BATCH_SIZE=1)
  heavy    a weight-heavy MLP bundle (~30 M parameters, made here with
           models.save_bundle), batching on and off
  lone     the bundled model with a single client, batching on and off (latency)

It prints req/s and p50/p99 latency for each, the mean rows per forward pass over the
measured window (from /metrics' labelcut_batch_rows, against LABELCUT_MAX_BATCH_SIZE),
the ratios, and a PASS/FAIL line per goal: bundled >= 0.8 of the floor, heavy >= 3x
with batching than without and its passes >= 0.9 full, lone p99 within 1 ms.
Client and server share this machine's cores; the client is a small
asyncio protocol (uvloop when installed) so that it costs little CPU.

    .venv/bin/python bench/bench_predict.py                      # all, 10 s each
    .venv/bin/python bench/bench_predict.py --duration 5 --scenarios floor,bundled
    .venv/bin/python bench/bench_predict.py --device cuda         # on a GPU machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCENARIOS = ("floor", "bundled", "heavy", "lone")
HEAVY_HIDDEN = (4096, 4096, 2048, 2048)  # 103 -> ... -> 14: about 29.8 M parameters
MAX_BATCH_SIZE = 64  # LABELCUT_MAX_BATCH_SIZE with batching on


# --- the load generator (runs in its own process) ------------------------------------------


class _Connection(asyncio.Protocol):
    """One closed-loop client: send, wait for the whole response, record, send again."""

    def __init__(self, requests: list[bytes], stats: _Stats, index: int) -> None:
        self.requests = requests
        self.stats = stats
        self.index = index
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def _send(self) -> None:
        if time.perf_counter() >= self.stats.end:
            self.transport.close()
            return
        self.index = (self.index + 1) % len(self.requests)
        self.sent_at = time.perf_counter()
        self.transport.write(self.requests[self.index])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buffer[:head_end]).lower()
            start = head.find(b"content-length:") + len(b"content-length:")
            stop = head.find(b"\r\n", start)
            length = int(head[start : stop if stop >= 0 else len(head)])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            ok = head.startswith(b"http/1.1 200")
            del self.buffer[:total]
            self.stats.record(self.sent_at, time.perf_counter(), ok)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Stats:
    def __init__(self, start: float, warmup: float, duration: float) -> None:
        self.measure_from = start + warmup
        self.end = self.measure_from + duration
        self.latencies: list[float] = []
        self.errors = 0

    def record(self, sent: float, done: float, ok: bool) -> None:
        if sent < self.measure_from or done > self.end:
            return
        if ok:
            self.latencies.append(done - sent)
        else:
            self.errors += 1


async def _batch_totals(host: str, port: int) -> tuple[float, float] | None:
    """(rows, passes) run so far, from /metrics' labelcut_batch_rows; None without it."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return None
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    text = (await reader.read()).decode(errors="replace")
    writer.close()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("labelcut_batch_rows_sum", "labelcut_batch_rows_count"):
            found[name] = float(value)
    if len(found) < 2:
        return None
    return found["labelcut_batch_rows_sum"], found["labelcut_batch_rows_count"]


async def _drive(url: str, body: list[bytes], concurrency: int, warmup: float, duration: float):
    host, _, port = url.removeprefix("http://").partition(":")
    requests = [
        (
            f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in body
    ]
    loop = asyncio.get_running_loop()
    stats = _Stats(time.perf_counter(), warmup, duration)
    connections = []
    for i in range(concurrency):
        _, conn = await loop.create_connection(
            lambda i=i: _Connection(requests, stats, i), host, int(port)
        )
        connections.append(conn)
    # The batcher's totals at the start and end of the measured window (not the warm-up).
    await asyncio.sleep(max(0.0, stats.measure_from - time.perf_counter()))
    before = await _batch_totals(host, int(port))
    await asyncio.sleep(max(0.0, stats.end - time.perf_counter()))
    after = await _batch_totals(host, int(port))
    await asyncio.gather(*(c.closed for c in connections))
    lat = sorted(stats.latencies)
    rows_per_pass = None
    if before and after and after[1] > before[1]:
        rows_per_pass = (after[0] - before[0]) / (after[1] - before[1])

    def pct(q: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "requests": len(lat),
        "errors": stats.errors,
        "rps": len(lat) / duration,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "concurrency": concurrency,
        "rows_per_pass": rows_per_pass,
    }


def load_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line]
    result = asyncio.run(_drive(args.load, bodies, args.concurrency, args.warmup, args.duration))
    print(json.dumps(result))


# --- the HTTP floor (runs in its own process) -------------------------------------------------


def floor_main(args: argparse.Namespace) -> None:
    import uvicorn

    from labelcut.app.codecs import read_json_body

    answer = Path(args.answer).read_bytes()
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        read_json_body(await request.body(), (103,), 10_000)
        return Response(answer, media_type="application/json")

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


# --- the orchestrator --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT
        )

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"server not ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_cmd(port: int, data_dir: Path, device: str, model_dir: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "labelcut.app.cli", "serve", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir), "--device", device, "--log-level", "warning"]
    return cmd + (["--model", str(model_dir)] if model_dir else [])


def run_load(url: str, bodies: Path, concurrency: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--load", url, "--bodies", str(bodies)]
    cmd += ["--concurrency", str(concurrency), "--duration", str(args.duration)]
    cmd += ["--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_heavy_bundle(directory: Path) -> Path:
    import torch

    from labelcut.models import MLP, load_model, save_bundle

    if (directory / "manifest.json").exists():
        return directory
    labels = load_model(device="cpu", warmup=False).labels
    torch.manual_seed(0)
    module = MLP(103, len(labels), hidden_sizes=HEAVY_HIDDEN)
    save_bundle(
        module, directory, labels=labels, input_shape=(103,), format="safetensors", name="heavy"
    )
    return directory


def prepare_bodies(work: Path) -> tuple[Path, Path]:
    """64 one-row JSON bodies from the yeast test set, and a real answer for the floor."""
    import numpy as np

    from labelcut import tuning
    from labelcut.app.codecs import encode_json
    from labelcut.models import YEAST_TEST, load_model

    with np.load(YEAST_TEST, allow_pickle=False) as z:
        rows = z["X"][:64]
    bodies = work / "bodies.jsonl"
    bodies.write_text("\n".join(json.dumps({"inputs": [r.tolist()]}) for r in rows) + "\n")
    model = load_model(device="cpu")
    proba = model.predict_proba(rows[:1])
    decisions = tuning.apply_thresholds(proba, np.full(len(model.labels), 0.5))
    answer = work / "answer.json"
    answer.write_bytes(encode_json(model.name, None, list(model.labels), proba, decisions, None))
    return bodies, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before measuring")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--concurrency", type=int, default=64, help="clients under load")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=",".join(SCENARIOS))
    parser.add_argument("--max-batch-wait-ms", default="2", help="LABELCUT_MAX_BATCH_WAIT_MS")
    parser.add_argument("--work-dir", help="where bundles and logs go (default: a temp dir)")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--answer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        load_main(args)
        return 0
    if args.serve_floor:
        floor_main(args)
        return 0

    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-predict-"))
    work.mkdir(parents=True, exist_ok=True)
    bodies, answer = prepare_bodies(work)
    heavy = make_heavy_bundle(work / "heavy") if "heavy" in chosen else None
    print(
        f"# {os.cpu_count()} CPU cores shared by client and server; device {args.device}; "
        f"{args.duration:g} s per run after {args.warmup:g} s warm-up; work dir {work}",
        flush=True,
    )
    if (load := os.getloadavg()[0]) > 0.5:
        print(f"# WARNING: load average {load:.2f} before the runs; other work skews figures")

    results: dict[str, dict] = {}

    def measure(name: str, cmd: list[str], port: int, env: dict[str, str], loads: dict) -> None:
        server = Server(cmd, port, env, work / f"{name}.log")
        try:
            server.wait_ready()
            for key, concurrency in loads.items():
                r = results[key] = run_load(server.url, bodies, concurrency, args)
                per_pass = r.get("rows_per_pass")
                rows = "" if per_pass is None else f"rows/pass {per_pass:5.1f}   "
                print(
                    f"{key:<14} clients={concurrency:<3} {r['rps']:9.1f} req/s   "
                    f"p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   {rows}"
                    f"errors {r['errors']}   load avg {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        finally:
            server.stop()

    on = {
        "LABELCUT_MAX_BATCH_SIZE": str(MAX_BATCH_SIZE),
        "LABELCUT_MAX_BATCH_WAIT_MS": args.max_batch_wait_ms,
    }
    off = {"LABELCUT_MAX_BATCH_SIZE": "1"}
    c = args.concurrency
    if "floor" in chosen:
        port = free_port()
        cmd = [sys.executable, __file__, "--serve-floor", "--port", str(port)]
        measure("floor", [*cmd, "--answer", str(answer)], port, {}, {"floor": c})
    for mode, env in (("on", on), ("off", off)):
        loads = {}
        if "bundled" in chosen:
            loads[f"bundled-{mode}"] = c
        if "lone" in chosen:
            loads[f"lone-{mode}"] = 1
        if loads:
            port = free_port()
            measure(
                f"bundled-{mode}", serve_cmd(port, work / "data", args.device, None), port, env,
                loads,
            )  # fmt: skip
        if heavy is not None:
            port = free_port()
            cmd = serve_cmd(port, work / "data", args.device, heavy)
            measure(f"heavy-{mode}", cmd, port, env, {f"heavy-{mode}": c})

    print()
    verdicts = []

    def ratio(a: str, b: str) -> float | None:
        if a in results and b in results and results[b]["rps"] > 0:
            return results[a]["rps"] / results[b]["rps"]
        return None

    if (r := ratio("bundled-on", "floor")) is not None:
        print(f"bundled-on / floor req/s: {r:.2f}")
        verdicts.append(("bundled model with batching >= 0.8 of the HTTP floor's req/s", r >= 0.8))
    if (r := ratio("bundled-off", "floor")) is not None:
        print(f"bundled-off / floor req/s: {r:.2f}")
    if (r := ratio("bundled-on", "bundled-off")) is not None:
        print(f"bundled-on / bundled-off req/s: {r:.2f}")
    if (r := ratio("heavy-on", "heavy-off")) is not None:
        print(f"heavy-on / heavy-off req/s: {r:.2f}")
        verdicts.append(("heavy model >= 3x the req/s with batching than without", r >= 3.0))
    if "lone-on" in results and "lone-off" in results:
        diff = results["lone-on"]["p99_ms"] - results["lone-off"]["p99_ms"]
        print(f"lone client p99, on - off: {diff:+.2f} ms")
        verdicts.append(("lone client p99 with batching within 1 ms of without", diff <= 1.0))
    for key in ("bundled-on", "heavy-on"):
        per_pass = results.get(key, {}).get("rows_per_pass")
        if per_pass is not None:
            share = per_pass / MAX_BATCH_SIZE
            print(f"{key} mean rows per pass: {per_pass:.1f} of {MAX_BATCH_SIZE} ({share:.2f})")
            if key == "heavy-on":  # the model, not HTTP, is what saturates here
                verdicts.append(
                    ("heavy model's passes >= 0.9 of LABELCUT_MAX_BATCH_SIZE", share >= 0.9)
                )
    for text, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
