"""The web page end to end: a real `labelcut serve` on loopback, driven in headless Chromium.

Debian's `chromium` package, driven by Playwright through its executable path
(no browser download). Without it these tests fail and say how to install it,
unless LABELCUT_SKIP_UI_TESTS=1. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import bisect
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from labelcut.models import YEAST_TEST

from ..support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
ADMIN_KEY = "ui-test-admin-key"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Roles of the controls a keyboard user reaches; each needs an accessible name.
CONTROL_ROLES = {"button", "textbox", "spinbutton", "slider", "combobox", "checkbox", "link"}


def chromium_path() -> str:
    """Debian's chromium (or LABELCUT_CHROMIUM); fail loudly when it is missing."""
    found = os.environ.get("LABELCUT_CHROMIUM") or shutil.which("chromium")
    if found and Path(found).exists():
        return found
    message = (
        "The UI tests need Debian's Chromium: run `apt-get install -y chromium` "
        "(or set LABELCUT_CHROMIUM to a Chromium binary). Set LABELCUT_SKIP_UI_TESTS=1 "
        "to skip them."
    )
    if os.environ.get("LABELCUT_SKIP_UI_TESTS") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


# --- a real server -----------------------------------------------------------------------


def start_server(tmp_path_factory, **env: str) -> Server:
    server = Server(tmp_path_factory.mktemp("ui") / "data", env=env)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    # LABELCUT_ADMIN_KEY from the environment would change what the page must do.
    running = start_server(tmp_path_factory, LABELCUT_ADMIN_KEY="")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[Server]:
    running = start_server(tmp_path_factory, LABELCUT_ADMIN_KEY=ADMIN_KEY)
    yield running
    running.stop()


# --- a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(15_000)
        yield context
        context.close()


class Watched:
    """A page with its console errors, uncaught exceptions and off-site requests recorded."""

    def __init__(self, context, origin: str) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.offsite: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.on("console", self._console)
        self.page.on("request", lambda r: self._request(r.url, origin))

    def _console(self, message) -> None:
        # A 4xx answer the page shows is logged by Chromium as a failed load; expected here.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(message.text)

    def _request(self, url: str, origin: str) -> None:
        if not (url.startswith(origin + "/") or url.startswith("data:")):
            self.offsite.append(url)

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.offsite == [], self.offsite


@pytest.fixture
def watched(browser, server) -> Iterator[Watched]:
    seen = Watched(browser, server.url)
    yield seen
    seen.page.close()


def open_page(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    assert page.url == url + "/ui"
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def tune(page, objective: str = "f1", **fields: str) -> None:
    page.locator("#tune-file").set_input_files(str(YEAST_TEST))
    page.get_by_label("Objective").select_option(objective)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Tune thresholds").click()


def readout(card) -> dict[str, float]:
    data = card.locator("output.readout")
    return {k: float(data.get_attribute(f"data-{k}")) for k in ("precision", "recall", "f1")}


def point_at(curve: dict[str, Any], t: float) -> dict[str, float]:
    """The reference: the smallest stored threshold >= t, else the end point."""
    i = bisect.bisect_left(curve["thresholds"], t)
    p, r = curve["precision"][i], curve["recall"][i]
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def predict_set_id(url: str) -> int | None:
    with np.load(YEAST_TEST, allow_pickle=False) as z:
        rows = z["X"][:2].tolist()
    response = httpx.post(url + "/predict", json={"inputs": rows}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["threshold_set_id"]


# --- tests -------------------------------------------------------------------------------


def test_tune_see_curves_move_a_slider_and_roll_back(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    model = httpx.get(url + "/model").json()
    open_page(page, url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("labelcut")
    expect(page.locator("#model-name")).to_contain_text(model["name"])
    expect(page.locator("#model-device")).to_contain_text("cpu")
    expect(page.locator("#model-labels")).to_have_text(", ".join(model["labels"]))
    expect(page.locator("#active-set")).to_contain_text("none")
    expect(page.locator("#history-empty")).to_be_visible()

    # A file the server refuses: its `detail` is shown, nothing is stored.
    page.locator("#tune-file").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not data"}
    )
    page.get_by_role("button", name="Tune thresholds").click()
    expect(page.locator("#tune-error")).to_contain_text("415")
    assert httpx.get(url + "/thresholds/history").json()["items"] == []

    # Tune through the form: a curve for every label, the table matches the API.
    tune(page)
    expect(page.locator("#tune-status")).to_contain_text("Set 1 tuned on 917 rows")
    expect(page.locator("#tune-error")).to_be_hidden()
    cards = page.locator("#curves .curve-card")
    expect(cards).to_have_count(len(model["labels"]))
    expect(page.locator("#curves .js-plotly-plot")).to_have_count(len(model["labels"]))
    assert [cards.nth(i).get_attribute("data-label") for i in range(cards.count())] == model[
        "labels"
    ]
    drawn = page.locator("#curves .js-plotly-plot").evaluate_all(
        "plots => plots.map(p => [p.data.length, p.data[0].x.length,"
        " p.querySelectorAll('.scatterlayer .trace path.js-line').length])"
    )
    assert all(traces == 4 and points >= 2 and lines == 1 for traces, points, lines in drawn)
    report = httpx.get(url + "/thresholds/1").json()
    shown = page.locator("#labels-rows tr td:nth-child(3)").all_text_contents()
    assert shown == [f"{row['threshold']:.4f}" for row in report["per_label"]]
    expect(page.locator("#set-heading")).to_have_text("Threshold set 1")
    expect(page.locator("#active-set")).to_contain_text("Set 1")

    # The slider's numbers are the stored curve's point at the slider's threshold.
    curves = httpx.get(url + "/thresholds/1/curves").json()["curves"]
    card, curve = cards.nth(0), curves[0]
    chosen = point_at(curve, curve["threshold"])
    assert readout(card) == pytest.approx(chosen)
    assert chosen["f1"] == pytest.approx(report["per_label"][0]["f1"], abs=1e-9)
    slider = card.get_by_role("slider")
    slider.focus()
    page.keyboard.press("PageUp")  # a tenth of the range, from the keyboard
    moved = float(slider.input_value())
    assert moved == pytest.approx(round(curve["threshold"], 3) + 0.1, abs=1e-6)
    assert readout(card) == pytest.approx(point_at(curve, moved))
    assert readout(card) != pytest.approx(chosen)
    assert "precision" in slider.get_attribute("aria-valuetext")
    for value in ("0.9", "0.05", "1", "0"):
        slider.fill(value)
        assert readout(card) == pytest.approx(point_at(curve, float(value))), value
        expect(card.locator("input[type=number]")).to_have_value(f"{float(value):.4f}")
    assert readout(card) == pytest.approx(point_at(curve, 0.0))
    page.wait_for_timeout(100)  # the marker moves on the next animation frame
    marker = card.locator(".js-plotly-plot").evaluate("p => [p.data[3].x[0], p.data[3].y[0]]")
    assert marker == pytest.approx([curve["recall"][0], curve["precision"][0]])
    card.get_by_label(f"Exact threshold for {curve['label']}").fill(str(curve["thresholds"][-1]))
    assert readout(card) == pytest.approx(point_at(curve, curve["thresholds"][-1]))
    card.get_by_role("button", name=f"Back to the tuned threshold of {curve['label']}").click()
    assert readout(card) == pytest.approx(chosen)

    # A second set (F-beta, activated), then roll back to the first through the page.
    tune(page, "fbeta", **{"Beta (> 0; above 1 favours recall)": "2"})
    expect(page.locator("#tune-status")).to_contain_text("Set 2 tuned")
    expect(page.locator("#history-rows tr")).to_have_count(2)
    expect(page.locator("#set-heading")).to_have_text("Threshold set 2")
    expect(page.locator("#set-summary")).to_contain_text("fbeta, β 2")
    assert predict_set_id(url) == 2
    page.get_by_role("button", name="Activate set 1").click()
    expect(page.locator("#history-status")).to_contain_text("Set 1 is now active")
    expect(page.locator('#history-rows tr[data-set-id="1"]')).to_contain_text("Active")
    expect(page.get_by_role("button", name="Activate set 2")).to_be_visible()
    expect(page.locator("#active-set")).to_contain_text("Set 1")
    assert predict_set_id(url) == 1

    page.get_by_role("button", name="Show set 1").click()
    expect(page.locator("#set-heading")).to_have_text("Threshold set 1")
    expect(page.locator("#set-summary")).to_contain_text("Active")
    expect(page.locator("#curves .js-plotly-plot")).to_have_count(len(model["labels"]))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
    cards.nth(0).screenshot(path=str(ARTIFACTS / "curve-card.png"))
    watched.check_clean()


def test_controls_have_labels_and_work_from_the_keyboard(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    while len(httpx.get(url + "/thresholds/history").json()["items"]) < 2:
        with YEAST_TEST.open("rb") as f:
            httpx.post(url + "/tune-thresholds", files={"file": f}, timeout=60).raise_for_status()
    open_page(page, url)
    expect(page.locator("#curves .js-plotly-plot").first).to_be_visible()

    # Every form control has a <label> (or an aria-label) and no tab order is forced.
    unlabelled = page.locator("input, select, textarea").evaluate_all(
        "els => els.filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))"
        ".map(e => e.outerHTML)"
    )
    assert unlabelled == []
    assert page.locator("[tabindex]:not([tabindex='-1'])").count() == 0
    # Chromium's accessibility tree: every control a keyboard user reaches has a name.
    session = page.context.new_cdp_session(page)
    nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    controls = [
        (n["role"]["value"], n.get("name", {}).get("value", ""))
        for n in nodes
        if not n.get("ignored") and n.get("role", {}).get("value") in CONTROL_ROLES
    ]
    assert [c for c in controls if not c[1].strip()] == []
    roles = {role for role, _ in controls}
    assert {"button", "slider", "combobox", "checkbox", "spinbutton"} <= roles
    assert sum(role == "slider" for role, _ in controls) == 14
    assert [n for n in nodes if n.get("role", {}).get("value") == "heading"]

    # Tab from the top: the skip link first, then the controls in reading order.
    page.locator("body").focus()
    order = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "() => document.activeElement.id || "
                "document.activeElement.getAttribute('aria-label') || "
                "document.activeElement.textContent.trim()"
            )
        )
    expected = ["admin-key", "admin-key-clear", "tune-file", "tune-objective",
                "tune-strategy", "tune-min-positives", "tune-activate",
                "tune-submit"]  # fmt: skip
    assert order[0] == "Skip to the chosen set"
    assert [x for x in order if x in expected] == expected
    first_show = next(i for i, x in enumerate(order) if x.startswith("Show set "))
    first_activate = next(i for i, x in enumerate(order) if x.startswith("Activate set "))
    assert order.index("tune-submit") < first_show < first_activate

    # The objective select from the keyboard shows the field the objective needs.
    page.get_by_label("Objective").focus()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#tune-beta")).to_be_visible()
    expect(page.locator("#tune-target")).to_be_hidden()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#tune-target")).to_be_visible()
    expect(page.get_by_label("Precision floor (0 to 1]")).to_be_visible()

    # Activate with Enter on a focused button; focus stays in that set's row.
    active = httpx.get(url + "/thresholds").json()["threshold_set"]["id"]
    other = next(
        item["id"]
        for item in httpx.get(url + "/thresholds/history").json()["items"]
        if item["id"] != active
    )
    page.get_by_role("button", name=f"Activate set {other}").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#history-status")).to_contain_text(f"Set {other} is now active")
    assert predict_set_id(url) == other
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == (
        f"Show set {other}"
    )
    watched.check_clean()


def test_admin_key_is_asked_for_and_sent(browser, keyed_server):
    from playwright.sync_api import expect

    seen = Watched(browser, keyed_server.url)
    page, url = seen.page, keyed_server.url
    try:
        open_page(page, url)
        tune(page)
        expect(page.locator("#tune-error")).to_contain_text("401")
        expect(page.locator("#tune-error")).to_contain_text("Admin access")
        expect(page.get_by_label("Admin key", exact=True)).to_have_attribute("aria-invalid", "true")
        page.get_by_label("Admin key", exact=True).fill("wrong")
        page.get_by_role("button", name="Tune thresholds").click()
        expect(page.locator("#tune-error")).to_contain_text("403")
        expect(page.locator("#tune-error")).to_contain_text("wrong")
        page.get_by_label("Admin key", exact=True).fill(ADMIN_KEY)
        page.get_by_role("button", name="Tune thresholds").click()
        expect(page.locator("#tune-status")).to_contain_text("Set 1 tuned")
        expect(page.locator("#tune-error")).to_be_hidden()
        expect(page.locator("#curves .js-plotly-plot")).to_have_count(14)

        # Kept for the tab (sessionStorage), so a reload still sends it.
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.get_by_label("Admin key", exact=True)).to_have_value(ADMIN_KEY)
        with YEAST_TEST.open("rb") as f:
            second = httpx.post(
                url + "/tune-thresholds",
                files={"file": f},
                data={"activate": "false"},
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
                timeout=60,
            )
        assert second.status_code == 200
        page.reload()
        page.get_by_role("button", name="Activate set 2").click()
        expect(page.locator("#history-status")).to_contain_text("Set 2 is now active")
        assert predict_set_id(url) == 2

        page.get_by_role("button", name="Forget key").click()
        assert page.evaluate("() => sessionStorage.length") == 0
        page.get_by_role("button", name="Activate set 1").click()
        expect(page.locator("#history-error")).to_contain_text("401")
        assert predict_set_id(url) == 2
        seen.check_clean()
    finally:
        seen.page.close()


def test_optional_fields_and_diagnosis_are_shown_as_text(watched, server):
    """Per-label strategy/intervals/unstable and the diagnosis, when a set has them.

    The page must tolerate their absence (the other tests) and show them when
    present; the response is extended in flight, with markup in the text to
    check that nothing from the server is parsed as HTML.
    """
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    if not httpx.get(url + "/thresholds/history").json()["items"]:
        with YEAST_TEST.open("rb") as f:
            httpx.post(url + "/tune-thresholds", files={"file": f}, timeout=60).raise_for_status()
    hostile = '<img src="x" onerror="document.body.dataset.pwned=1">'

    def extend(route) -> None:
        body = route.fetch().json()
        for i, row in enumerate(body["per_label"]):
            row["strategy"] = "smoothed" if i % 2 else "exact"
            row["threshold_interval"] = [row["threshold"] - 0.05, row["threshold"] + 0.05]
            row["f1_interval"] = {"low": 0.1, "high": 0.2}
            row["unstable"] = i == 0
        body["diagnosis"] = {
            "messages": [
                "labels look mutually exclusive: this is a multi-class problem",
                f"label names like {hostile} stay text",
            ],
            "mutually_exclusive": True,
        }
        route.fulfill(json=body)

    page.route("**/thresholds/1", extend)
    page.goto(url + "/ui#set=1")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#set-heading")).to_have_text("Threshold set 1")
    diagnosis = page.locator("#diagnosis-messages li")
    expect(diagnosis).to_have_count(2)
    expect(diagnosis.nth(0)).to_have_text(
        "labels look mutually exclusive: this is a multi-class problem"
    )
    expect(diagnosis.nth(1)).to_contain_text(hostile)
    heads = page.locator("#labels-head th").all_text_contents()
    assert heads[-4:] == ["Strategy", "Threshold interval", "F1 interval", "Stability"]
    first = page.locator("#labels-rows tr").first.locator("td").all_text_contents()
    assert first[-4:][0] == "exact" and first[-1] == "unstable"
    assert first[-2] == "0.100–0.200"
    threshold = float(first[1])
    low, high = (float(x) for x in first[-3].split("–"))
    assert (low, high) == pytest.approx((threshold - 0.05, threshold + 0.05), abs=1e-3)
    assert page.locator("#diagnosis img, #labels-rows img").count() == 0
    assert page.evaluate("() => document.body.dataset.pwned") is None

    # The real server's answer: a column only for the fields it has, the box only with messages.
    page.unroute("**/thresholds/1")
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    real = httpx.get(url + "/thresholds/1").json()
    optional = ("strategy", "threshold_interval", "f1_interval", "unstable")
    present = [k for k in optional if any(row.get(k) is not None for row in real["per_label"])]
    # The cross-fitted estimate (issue 20) adds one column when the server's answer has it.
    expected = any("expected_f1" in row for row in real["per_label"])
    expect(page.locator("#labels-head th")).to_have_count(9 + len(present) + expected)
    if not (real.get("diagnosis") or {}).get("messages"):
        expect(page.locator("#diagnosis")).to_be_hidden()
    watched.check_clean()
