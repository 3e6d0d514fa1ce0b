"""LABELCUT_ADMIN_KEY_FILE / LABELCUT_API_KEY_FILE: keys read from mounted secret files
(trailing newline stripped), against a real server; unreadable files and a key set both
ways are configuration errors that stop the server with a clear message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labelcut.app.config import Settings

from ..support.server import REPO

pytestmark = pytest.mark.e2e

ADMIN = "file-admin-key"
API = "file-api-key"
ROW = {"inputs": [[0.0] * 103]}


def test_keys_from_files_guard_admin_and_predict(serve, tmp_path, yeast_npz_bytes):
    (tmp_path / "admin").write_text(ADMIN + "\n")  # as `echo key > file` writes it
    (tmp_path / "api").write_text(API)
    server = serve(
        env={
            "LABELCUT_ADMIN_KEY_FILE": str(tmp_path / "admin"),
            "LABELCUT_API_KEY_FILE": str(tmp_path / "api"),
        }
    )
    client = server.client()
    files = {"file": ("v.npz", yeast_npz_bytes)}
    assert client.post("/tune-thresholds", files=files).status_code == 401
    wrong = client.post("/tune-thresholds", files=files, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 403
    right = client.post(
        "/tune-thresholds", files=files, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert right.status_code == 200, right.text
    assert client.post("/predict", json=ROW).status_code == 401
    ok = client.post("/predict", json=ROW, headers={"Authorization": f"Bearer {API}"})
    assert ok.status_code == 200
    assert "LABELCUT_ADMIN_KEY is not set" not in server.log.read_text()


def serve_fails(env: dict[str, str], tmp_path) -> str:
    """Run `labelcut serve` expecting it to refuse its settings; its output."""
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("LABELCUT_")}
    run = subprocess.run(
        [sys.executable, "-m", "labelcut.app.cli", "serve", "--data-dir", str(tmp_path / "d")],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    return run.stdout + run.stderr


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"LABELCUT_ADMIN_KEY_FILE": "/nonexistent/admin"}, "cannot read the key file"),
        ({"LABELCUT_API_KEY_FILE": "{empty}"}, "LABELCUT_API_KEY_FILE: the key file"),
        (
            {"LABELCUT_ADMIN_KEY": "k", "LABELCUT_ADMIN_KEY_FILE": "{key}"},
            "LABELCUT_ADMIN_KEY and LABELCUT_ADMIN_KEY_FILE are both set",
        ),
    ],
    ids=["unreadable", "empty", "both"],
)
def test_bad_key_file_settings_stop_the_server_clearly(tmp_path, env, needle):
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "key").write_text("k\n")
    env = {k: v.format(empty=tmp_path / "empty", key=tmp_path / "key") for k, v in env.items()}
    assert needle in serve_fails(env, tmp_path)


def test_key_file_reading_rules(tmp_path):
    (tmp_path / "crlf").write_text("s3cret\r\n")
    (tmp_path / "inner").write_text("a b\n")
    (tmp_path / "two").write_text("one\ntwo\n")
    read = lambda name: Settings(admin_key_file=tmp_path / name).admin_key.get_secret_value()  # noqa: E731
    assert read("crlf") == "s3cret"
    assert read("inner") == "a b"  # only the line ending goes
    with pytest.raises(ValueError, match="more than one line"):
        read("two")
