"""`source=` may name only datasets under LABELCUT_DATA_SOURCES: path tricks (`..`, links
out of the root, `file://`, URL-encoding, look-alike prefixes, other schemes) are refused
before anything is read, by the check itself and through a real server with an admin key.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from labelcut.app.job_sources import SourceMissing, SourceRefused, check_source

from ..support.job_datasets import write_score_dataset


@pytest.fixture
def tree(tmp_path):
    """root/ holding a dataset `set`, beside `outside/` with a dataset of its own."""
    root = tmp_path / "root"
    write_score_dataset(root / "set", files=2)
    write_score_dataset(tmp_path / "outside" / "secret", files=1)
    return root, tmp_path / "outside"


def refused(source: str, roots: list[str]) -> str:
    with pytest.raises(SourceRefused) as caught:
        check_source(source, roots)
    return str(caught.value)


def test_a_dataset_under_a_root_is_allowed_resolved(tree):
    root, _ = tree
    assert check_source(str(root / "set"), [str(root)]) == str(root.resolve() / "set")
    one = root / "set" / "part-0000.parquet"
    assert check_source(str(one), [str(root)]) == str(one.resolve())
    pattern = check_source(str(root / "set" / "part-*.parquet"), [str(root)])
    assert pattern == str(root.resolve() / "set" / "part-*.parquet")
    # A root named as a file:// URL is the same local root.
    assert check_source(str(root / "set"), [f"file://{root}"]) == str(root.resolve() / "set")


def test_no_roots_turns_source_off(tree):
    root, _ = tree
    assert "LABELCUT_DATA_SOURCES" in refused(str(root / "set"), [])


@pytest.mark.parametrize(
    "make_source",
    [
        lambda root, out: str(out / "secret"),
        lambda root, out: str(root / "set" / ".." / ".." / "outside" / "secret"),
        lambda root, out: str(root / "set" / ".." / "set"),  # '..' even when it lands inside
        lambda root, out: f"file://{root}/set",
        lambda root, out: f"file://{out}/secret",
        lambda root, out: f"{root}/set/%2e%2e/%2e%2e/outside/secret",
        lambda root, out: f"{root}%2fset",
        lambda root, out: f"{root}-evil/set",  # a look-alike of the root's prefix
        lambda root, out: "set",  # relative
        lambda root, out: f"{root}/set\\..\\..",
        lambda root, out: f"{root}/set\x00",
        lambda root, out: f"{root}/*/part-*.parquet",  # a glob above the last component
        lambda root, out: f"s3://bucket{root}/set",  # a scheme no root has
        lambda root, out: "http://127.0.0.1:1/set.parquet",
        lambda root, out: "",
    ],
)
def test_path_tricks_are_refused(tree, make_source):
    root, outside = tree
    source = make_source(root, outside)
    (root.parent / f"{root.name}-evil").mkdir(exist_ok=True)
    write_score_dataset(root.parent / f"{root.name}-evil" / "set", files=1)
    refused(source, [str(root)])


def test_links_that_lead_out_of_the_root_are_refused(tree):
    root, outside = tree
    (root / "escape").symlink_to(outside / "secret", target_is_directory=True)
    assert "not under an allowed root" in refused(str(root / "escape"), [str(root)])
    # A link to a file outside, inside an otherwise good dataset.
    (root / "set" / "part-9999.parquet").symlink_to(outside / "secret" / "part-0000.parquet")
    assert "link" in refused(str(root / "set"), [str(root)])
    assert "link" in refused(str(root / "set" / "part-*.parquet"), [str(root)])
    # A linked directory nested in a dataset.
    (root / "set" / "part-9999.parquet").unlink()
    (root / "set" / "more").symlink_to(outside, target_is_directory=True)
    assert "link" in refused(str(root / "set"), [str(root)])


def test_files_that_are_not_regular_are_refused_unopened(tree):
    root, _ = tree
    os.mkfifo(root / "set" / "part-0100.parquet")
    assert "not a regular file" in refused(str(root / "set"), [str(root)])
    os.unlink(root / "set" / "part-0100.parquet")
    (root / "set" / "part-0101.parquet").symlink_to(root / "set" / "gone.parquet")
    assert "not a regular file" in refused(str(root / "set"), [str(root)])


def test_links_within_the_root_are_followed_and_loops_end(tree):
    root, _ = tree
    (root / "alias").symlink_to(root / "set", target_is_directory=True)
    assert check_source(str(root / "alias"), [str(root)]) == str(root.resolve() / "set")
    (root / "set" / "loop").symlink_to(root / "set", target_is_directory=True)
    assert check_source(str(root / "set"), [str(root)]) == str(root.resolve() / "set")


def test_url_roots_match_scheme_host_and_path_prefix():
    roots = ["s3://bucket/sets"]
    assert check_source("s3://bucket/sets/a", roots) == "s3://bucket/sets/a"
    assert check_source("S3://bucket/sets/a/./b", roots) == "s3://bucket/sets/a/b"
    for source in (
        "s3://bucket/sets-evil/a",
        "s3://other/sets/a",
        "s3://bucket/sets/../private",
        "s3://bucket/sets/%2e%2e/private",
        "s3://key:secret@bucket/sets/a",
        "s3://bucket/sets/a?versionId=1",
        "gs://bucket/sets/a",
        "/sets/a",
    ):
        refused(source, roots)


def test_an_allowed_source_that_names_nothing_is_missing(tree):
    root, _ = tree
    (root / "empty").mkdir()
    for source in (root / "empty", root / "absent", root / "set" / "*.csv"):
        with pytest.raises(SourceMissing):
            check_source(str(source), [str(root)])


# --- through a real server ----------------------------------------------------------------

KEY = "k3y-for-jobs-hardening"


def post_source(server, source: str, key: str | None = KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        server.url + "/tune-thresholds", data={"source": source}, headers=headers, timeout=10
    )


def test_the_server_refuses_sources_outside_its_roots_and_reads_nothing(serve, tree):
    root, outside = tree
    # A FIFO outside the root behind a link inside it: opening it would hang the request,
    # so a quick 403 shows it was never opened.
    fifo = outside / "pipe.parquet"
    os.mkfifo(fifo)
    (root / "set" / "part-0100.parquet").symlink_to(fifo)
    server = serve(env={"LABELCUT_ADMIN_KEY": KEY, "LABELCUT_DATA_SOURCES": str(root)})
    for source in (
        str(outside / "secret"),
        f"{root}/set/../../outside/secret",
        f"file://{outside}/secret",
        f"{root}/%2e%2e/outside/secret",
        str(root / "set"),  # holds the link to the FIFO
    ):
        started = time.monotonic()
        answer = post_source(server, source)
        assert answer.status_code == 403, (source, answer.text)
        assert time.monotonic() - started < 5
    assert post_source(server, str(outside / "secret"), key=None).status_code == 401
    assert post_source(server, str(outside / "secret"), key="wrong").status_code == 403
    assert post_source(server, str(root / "set"), key=None).status_code == 401
    both = httpx.post(
        server.url + "/tune-thresholds",
        data={"source": str(root / "set")},
        files={"file": ("v.npz", b"PK")},
        headers={"authorization": f"Bearer {KEY}"},
    )
    assert both.status_code == 422 and both.json()["detail"][0]["loc"] == ["body", "source"]
    listed = httpx.get(server.url + "/jobs", headers={"authorization": f"Bearer {KEY}"})
    assert listed.json() == {"items": []}
    assert httpx.get(server.url + "/jobs").status_code == 401  # jobs are admin's to read
    assert httpx.delete(server.url + "/jobs/" + "0" * 32).status_code == 401


def test_a_server_without_roots_refuses_every_source(serve, tree):
    root, _ = tree
    server = serve(env={"LABELCUT_ADMIN_KEY": KEY})
    answer = post_source(server, str(root / "set"))
    assert answer.status_code == 403 and "LABELCUT_DATA_SOURCES" in answer.json()["detail"]
