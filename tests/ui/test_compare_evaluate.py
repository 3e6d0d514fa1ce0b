"""The page's tune options, "Evaluate a set on a labelled file" and "Compare two sets",
driven in headless Chromium against a real server (see test_page.py for the browser)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from labelcut.models import YEAST_TEST

from ..support.server import Server
from .test_page import ARTIFACTS, Watched, open_page, point_at

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# browser: the Chromium context fixture of test_page.py, shared through this import.
from .test_page import browser  # noqa: E402, F401


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("ui2") / "data", env={"LABELCUT_ADMIN_KEY": ""})
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture
def watched(browser, server) -> Iterator[Watched]:  # noqa: F811
    seen = Watched(browser, server.url)
    yield seen
    seen.page.close()


def _tune_by_api(url: str, **fields: str) -> dict:
    with YEAST_TEST.open("rb") as f:
        answer = httpx.post(
            url + "/tune-thresholds",
            files={"file": f},
            data={"n_bootstrap": "0", **fields},
            timeout=120,
        )
    answer.raise_for_status()
    return answer.json()


SELECT_FITS = """sel => {
  const context = document.createElement('canvas').getContext('2d');
  const style = getComputedStyle(sel);
  context.font = style.font;
  const widest = Math.max(...[...sel.options].map(o => context.measureText(o.text).width));
  const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
  return {id: sel.id, needed: widest + padding + 18, width: sel.clientWidth};
}"""


@pytest.mark.parametrize("width", [1400, 900, 420])
def test_no_select_cuts_its_options_off(watched, server, width):
    page = watched.page
    page.set_viewport_size({"width": width, "height": 900})
    open_page(page, server.url)
    # Only the selects shown (a field the server does not take is hidden).
    shown = f"els => els.filter(e => e.offsetParent !== null).map({SELECT_FITS})"
    found_all = page.locator("#tune-form select").evaluate_all(shown)
    assert len(found_all) >= 3
    for found in found_all:
        assert found["needed"] <= found["width"], found
    watched.check_clean()


def test_tune_form_sends_decision_rule_k_and_bootstrap(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    open_page(page, url)
    k_field = page.get_by_label("k (labels kept by top k)")
    expect(k_field).to_be_hidden()
    page.get_by_label("Decision rule for /predict").select_option("top_k")
    expect(k_field).to_be_visible()
    k_field.fill("3")
    page.get_by_label("Bootstrap replicates (0: no intervals)").fill("0")
    page.get_by_label("Strategy", exact=True).select_option("per_label")
    page.locator("#tune-file").set_input_files(str(YEAST_TEST))
    page.get_by_role("button", name="Tune thresholds").click()
    expect(page.locator("#tune-status")).to_contain_text("tuned on 917 rows")
    newest = httpx.get(url + "/thresholds/history").json()["items"][0]
    assert (newest["decision_rule"], newest["k"]) == ("top_k", 3)
    assert newest["params"]["n_bootstrap"] == 0 and newest["params"]["strategy"] == "per_label"
    report = httpx.get(url + f"/thresholds/{newest['id']}").json()
    assert all(row["threshold_interval"] is None for row in report["per_label"])
    watched.check_clean()


def test_evaluate_a_set_on_a_file_stores_nothing(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    set_id = _tune_by_api(url, activate="false")["threshold_set"]["id"]
    with YEAST_TEST.open("rb") as f:
        expected = httpx.post(
            url + f"/thresholds/{set_id}/evaluate", files={"file": f}, timeout=120
        ).json()
    before = httpx.get(url + "/thresholds/history").json()["items"]
    open_page(page, url)
    page.get_by_label("Threshold set", exact=True).select_option(str(set_id))
    page.locator("#evaluate-file").set_input_files(str(YEAST_TEST))
    page.get_by_role("button", name="Evaluate", exact=True).click()
    expect(page.locator("#evaluate-status")).to_contain_text(f"Set {set_id} evaluated on 917")
    rows = page.locator("#evaluate-rows tr")
    expect(rows).to_have_count(len(expected["per_label"]))
    f1 = page.locator("#evaluate-rows tr td:nth-child(6)").all_text_contents()
    assert f1 == [f"{row['at_threshold']['f1']:.3f}" for row in expected["per_label"]]
    at_half = page.locator("#evaluate-rows tr td:nth-child(7)").all_text_contents()
    assert at_half == [f"{row['at_default']['f1']:.3f}" for row in expected["per_label"]]
    macro = expected["summary"]["at_threshold"]["macro"]["f1"]
    expect(page.locator("#evaluate-summary")).to_contain_text(f"macro-F1 {macro:.3f}")
    assert httpx.get(url + "/thresholds/history").json()["items"] == before

    # A file the server refuses: its detail is shown.
    page.locator("#evaluate-file").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not data"}
    )
    page.get_by_role("button", name="Evaluate", exact=True).click()
    expect(page.locator("#evaluate-error")).to_contain_text("415")
    watched.check_clean()


def test_compare_two_sets_side_by_side_and_on_one_chart(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    first = _tune_by_api(url, strategy="per_label", activate="false")
    second = _tune_by_api(url, strategy="global", activate="false")
    ids = [first["threshold_set"]["id"], second["threshold_set"]["id"]]
    open_page(page, url)
    page.get_by_label("First set").select_option(str(ids[0]))
    page.get_by_label("Second set").select_option(str(ids[1]))
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#compare-status")).to_contain_text(f"Sets {ids[0]} and {ids[1]}")
    labels = list(first["thresholds"])
    expect(page.locator("#compare-rows tr")).to_have_count(len(labels))
    cells = [
        page.locator(f"#compare-rows tr td:nth-child({n})").all_text_contents() for n in (2, 3, 4)
    ]
    assert cells[0] == [f"{row['threshold']:.4f}" for row in first["per_label"]]
    assert cells[1] == [f"{row['threshold']:.4f}" for row in second["per_label"]]
    assert cells[2] == [f"{row['f1']:.3f}" for row in first["per_label"]]
    assert len(set(cells[1])) == 1  # global: one threshold for every label

    curves = [httpx.get(url + f"/thresholds/{i}/curves").json()["curves"] for i in ids]
    plot = page.locator("#compare-plot")
    for label_index in (0, 5):
        label = labels[label_index]
        page.get_by_label("Label on the chart").select_option(label)
        expect(plot).to_have_attribute("data-label", label)
        traces = plot.evaluate("p => p.data.map(t => [t.mode, t.x, t.y])")
        assert [mode for mode, _, _ in traces] == ["lines", "markers"] * 2
        for k, set_curves in enumerate(curves):
            curve = set_curves[label_index]
            chosen = point_at(curve, curve["threshold"])
            _, x, y = traces[2 * k + 1]
            assert (x[0], y[0]) == pytest.approx((chosen["recall"], chosen["precision"]))
            assert traces[2 * k][1] == pytest.approx(curve["recall"])
        assert f"for sets {ids[0]} and {ids[1]}" in plot.get_attribute("aria-label")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#compare").screenshot(path=str(ARTIFACTS / "compare.png"))
    watched.check_clean()


def test_compare_with_a_pushed_set_without_curves(watched, server):
    from playwright.sync_api import expect

    page, url = watched.page, server.url
    tuned = _tune_by_api(url, activate="false")
    info = tuned["threshold_set"]
    # A report as an older `labelcut tune --out` wrote it: no curves, model or data hash.
    old = {
        "objective": info["objective"],
        "strategy": tuned["strategy"],
        "params": {
            k: v
            for k, v in info["params"].items()
            if k not in ("decision_rule", "k", "expected", "calibration", "activation")
        },
        "n_samples": info["n_samples"],
        "thresholds": tuned["thresholds"],
        "per_label": tuned["per_label"],
        "summary": tuned["summary"],
        "global_threshold": tuned["global_threshold"],
        "diagnosis": tuned["diagnosis"],
    }
    pushed = httpx.post(url + "/thresholds", json=old, timeout=30)
    assert pushed.status_code == 201, pushed.text
    pushed_id = pushed.json()["threshold_set"]["id"]
    open_page(page, url)
    page.get_by_label("First set").select_option(str(info["id"]))
    page.get_by_label("Second set").select_option(str(pushed_id))
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#compare-chart-status")).to_contain_text(
        f"Set {pushed_id} has no stored curves"
    )
    expect(page.locator("#compare-plot")).to_have_attribute("data-traces", "2")
    # Same thresholds: no change in any label's F1.
    changes = page.locator("#compare-rows tr td:nth-child(6)").all_text_contents()
    assert set(changes) == {"0.000"}
    watched.check_clean()
