"""Who may tune, activate and predict: LABELCUT_ADMIN_KEY, the loopback rule without it,
and LABELCUT_API_KEY on /predict. Refused calls change nothing."""

from __future__ import annotations

import hmac
import logging

import pytest

from labelcut import app
from labelcut.app.deps import is_loopback

from ..support.inprocess import app_client as make_client
from ..support.inprocess import wait_ready
from .conftest import snapshot

REMOTE = ("203.0.113.7", 40000)
ADMIN_KEY = "adm1n-k3y-0123456789"
API_KEY = "pr3d1ct-k3y"
ROW = {"inputs": [[0.0] * 103]}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, yeast_npz_bytes):
    """A service with both keys set, seen from a remote address, holding two sets."""
    data_dir = tmp_path_factory.mktemp("auth") / "data"
    with make_client(data_dir, client=REMOTE, admin_key=ADMIN_KEY, api_key=API_KEY) as c:
        wait_ready(c)
        for activate in ("true", "false"):
            response = c.post(
                "/tune-thresholds",
                files={"file": ("v.npz", yeast_npz_bytes)},
                data={"activate": activate},
                headers=bearer(ADMIN_KEY),
            )
            assert response.status_code == 200, response.text
        yield c


def tune(client, content: bytes, headers: dict[str, str] | None = None):
    return client.post(
        "/tune-thresholds", files={"file": ("v.npz", content)}, headers=headers or {}
    )


ADMIN_REFUSALS = [
    ("no-header", {}, 401, "needs an 'Authorization: Bearer <key>' header"),
    ("empty-bearer", {"Authorization": "Bearer "}, 401, "needs an 'Authorization: Bearer"),
    ("basic-scheme", {"Authorization": f"Basic {ADMIN_KEY}"}, 401, "Bearer"),
    ("key-without-scheme", {"Authorization": ADMIN_KEY}, 401, "Bearer"),
    ("wrong-key", bearer("nope"), 403, "The key for this admin operation is wrong"),
    ("prefix-of-key", bearer(ADMIN_KEY[:-1]), 403, "is wrong"),
    ("key-plus-suffix", bearer(ADMIN_KEY + "0"), 403, "is wrong"),
    ("last-char-differs", bearer(ADMIN_KEY[:-1] + "X"), 403, "is wrong"),
    ("other-case", bearer(ADMIN_KEY.upper()), 403, "is wrong"),
    ("api-key-is-not-admin", bearer(API_KEY), 403, "is wrong"),
    ("non-ascii-token", {"Authorization": "Bearer clé".encode()}, 403, "is wrong"),
]


@pytest.mark.parametrize(
    ("headers", "status", "needle"),
    [pytest.param(h, s, n, id=i) for i, h, s, n in ADMIN_REFUSALS],
)
def test_admin_operations_refused_without_the_right_key(
    keyed, yeast_npz_bytes, headers, status, needle
):
    before = snapshot(keyed)
    history = before[1]["items"]
    inactive = next(item["id"] for item in history if not item["active"])
    for response in (
        tune(keyed, yeast_npz_bytes, headers),
        keyed.post(f"/thresholds/{inactive}/activate", headers=headers),
    ):
        assert response.status_code == status, response.text
        assert needle in response.json()["detail"]
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    assert snapshot(keyed) == before


def test_admin_key_opens_tuning_and_activation_from_anywhere(keyed, yeast_npz_bytes):
    before = snapshot(keyed)
    inactive = next(item["id"] for item in before[1]["items"] if not item["active"])
    activated = keyed.post(f"/thresholds/{inactive}/activate", headers=bearer(ADMIN_KEY))
    assert activated.status_code == 200
    assert keyed.get("/thresholds").json()["threshold_set"]["id"] == inactive
    # The scheme is case-insensitive (RFC 7235); the key is not.
    lower = tune(keyed, yeast_npz_bytes, {"Authorization": f"bearer {ADMIN_KEY}"})
    assert lower.status_code == 200, lower.text
    assert len(snapshot(keyed)[1]["items"]) == len(before[1]["items"]) + 1


def test_keys_are_compared_in_constant_time(keyed, monkeypatch):
    """Behaviour, not timing: every key check goes through hmac.compare_digest."""
    seen = []
    compare = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(app.deps.hmac, "compare_digest", spy)
    assert keyed.post("/thresholds/1/activate", headers=bearer("guess")).status_code == 403
    assert keyed.post("/predict", json=ROW, headers=bearer("guess")).status_code == 403
    assert keyed.post("/predict", json=ROW, headers=bearer(API_KEY)).status_code == 200
    assert seen == [
        (b"guess", ADMIN_KEY.encode()),
        (b"guess", API_KEY.encode()),
        (API_KEY.encode(), API_KEY.encode()),
    ]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("wrong"), 403), (bearer(ADMIN_KEY), 403), (bearer(API_KEY), 200)],
    ids=["missing", "wrong", "admin-key", "api-key"],
)
def test_api_key_guards_predict_only(keyed, headers, status):
    response = keyed.post("/predict", json=ROW, headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        assert "/predict" in response.json()["detail"]
    # Reading thresholds and health stays open to everyone.
    for path in ("/healthz", "/readyz", "/model", "/thresholds", "/thresholds/history"):
        assert keyed.get(path).status_code == 200


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False),
        ("2001:db8::1", False),
        ("0.0.0.0", False),
        ("localhost", False),  # a name, not an address: never trusted
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_rule(host, allowed):
    assert is_loopback(host) is allowed


def test_without_admin_key_only_loopback_may_tune_and_activate(tmp_path, yeast_npz_bytes, caplog):
    caplog.set_level(logging.WARNING, logger="labelcut")
    data_dir = tmp_path / "data"
    with make_client(data_dir) as local:
        wait_ready(local)
        assert "LABELCUT_ADMIN_KEY is not set" in caplog.text
        first = tune(local, yeast_npz_bytes).json()["threshold_set"]["id"]
        second = tune(local, yeast_npz_bytes).json()["threshold_set"]["id"]
    with make_client(data_dir, client=REMOTE) as remote:
        wait_ready(remote)
        before = snapshot(remote)
        refused = tune(remote, yeast_npz_bytes)
        assert refused.status_code == 403
        assert "open only to clients on loopback" in refused.json()["detail"]
        assert "LABELCUT_ADMIN_KEY" in refused.json()["detail"]
        # A bearer header does not help while no key is configured.
        activation = remote.post(f"/thresholds/{first}/activate", headers=bearer("anything"))
        assert activation.status_code == 403
        assert snapshot(remote) == before
        assert remote.post("/predict", json=ROW).json()["threshold_set_id"] == second
    with make_client(data_dir, client=("::1", 5000)) as ipv6_local:
        wait_ready(ipv6_local)
        assert ipv6_local.post(f"/thresholds/{first}/activate").status_code == 200


def test_no_warning_when_the_admin_key_is_set(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="labelcut")
    with make_client(tmp_path / "data", admin_key=ADMIN_KEY) as c:
        wait_ready(c)
    assert "LABELCUT_ADMIN_KEY is not set" not in caplog.text


def test_empty_key_in_the_environment_means_unset(tmp_path, monkeypatch, yeast_npz_bytes):
    """`-e LABELCUT_ADMIN_KEY=` must not make the empty string a valid key."""
    monkeypatch.setenv("LABELCUT_ADMIN_KEY", "")
    with make_client(tmp_path / "data", client=REMOTE) as c:
        wait_ready(c)
        response = c.post(
            "/tune-thresholds",
            files={"file": ("v.npz", yeast_npz_bytes)},
            headers={"Authorization": "Bearer "},
        )
        assert response.status_code == 403 and "loopback" in response.json()["detail"]


def test_real_server_warns_at_start_without_admin_key(serve):
    server = serve()
    assert "LABELCUT_ADMIN_KEY is not set" in server.log.read_text()
    keyed = serve(env={"LABELCUT_ADMIN_KEY": ADMIN_KEY}, data_dir=server.data_dir.parent / "d2")
    assert "LABELCUT_ADMIN_KEY is not set" not in keyed.log.read_text()
