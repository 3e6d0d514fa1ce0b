"""The page follows a tune that the server runs as a job (202): real server, real Chromium.

With ``LABELCUT_JOB_UPLOAD_MB=0`` every upload is a job; the page must poll ``/jobs/{id}``
and show the stored set exactly as after a synchronous tune.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from labelcut.models import YEAST_TEST

from ..support.server import Server
from .test_page import Watched, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

from .test_page import browser  # noqa: E402, F401


@pytest.fixture(scope="module")
def job_server(tmp_path_factory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("ui-jobs") / "data",
        env={"LABELCUT_ADMIN_KEY": "", "LABELCUT_JOB_UPLOAD_MB": "0"},
    )
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_page_follows_a_tune_job_to_its_stored_set(browser, job_server):  # noqa: F811
    from playwright.sync_api import expect

    url = job_server.url
    seen = Watched(browser, url)
    try:
        page = seen.page
        open_page(page, url)
        before = httpx.get(url + "/thresholds/history").json()["items"]
        page.get_by_label("Bootstrap replicates (0: no intervals)").fill("0")
        page.get_by_label("Strategy", exact=True).select_option("per_label")
        page.locator("#tune-file").set_input_files(str(YEAST_TEST))
        page.get_by_role("button", name="Tune thresholds").click()
        expect(page.locator("#tune-status")).to_contain_text("tuned on 917 rows", timeout=60_000)
        jobs = httpx.get(url + "/jobs").json()["items"]
        assert len(jobs) == 1 and jobs[0]["state"] == "succeeded", jobs
        history = httpx.get(url + "/thresholds/history").json()["items"]
        assert len(history) == len(before) + 1
        assert history[0]["id"] == jobs[0]["threshold_set_id"]
        seen.check_clean()
    finally:
        seen.page.close()
