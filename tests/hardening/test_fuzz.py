"""Schemathesis against a live server's /openapi.json: no 5xx, and every response that
the schema documents matches it.

Checks, chosen on purpose:
* not_a_server_error: no 5xx, whatever was sent (the point of the run).
* response_schema_conformance: a documented status's body matches its schema.
* content_type_conformance: bodies come with the content type the schema declares.
Left out: status_code_conformance, because FastAPI itself answers 400 for bodies it
cannot decode (a broken multipart stream, a JSON body that is not UTF-8) and the body
limit answers 413 on any route; neither is listed per operation in the generated
schema, and both are correct 4xx answers. The bad-input corpus pins those statuses.

The server runs with LABELCUT_ADMIN_KEY set and the fuzzer sends the key, so tuning and
activation are exercised past the auth check (the auth tests cover refusals).
"""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from ..support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "fuzz-admin-key"
MAX_EXAMPLES = 300  # per operation and phase; ~1,700 cases, ~20 s on two cores
SEED = 1
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def fuzz_command(url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {KEY}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]


def test_fuzz_the_live_api(tmp_path, yeast_npz_bytes):
    server = Server(tmp_path / "data", env={"LABELCUT_ADMIN_KEY": KEY}).wait_ready()
    try:
        # One stored set, so /thresholds/{id} and activation have something to find.
        seeded = httpx.post(
            server.url + "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
        assert seeded.status_code == 200, seeded.text
        run = subprocess.run(
            fuzz_command(server.url),
            cwd=tmp_path,  # schemathesis may write caches and reports where it runs
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.stop()
    output = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", output)
    assert generated, output[-4000:]
    print(f"schemathesis: {generated.group(0)} (seed {SEED}, {MAX_EXAMPLES} per operation)")
    assert run.returncode == 0, output[-6000:]
    assert int(generated.group(1)) >= 1000
