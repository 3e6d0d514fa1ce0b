"""DriftMonitor: the active snapshot's window, queued rows, stale rows dropped, the cap on
its memory, and LABELCUT_DRIFT_WINDOW. The oracle is numpy over the rows added."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from labelcut.app import drift_monitor
from labelcut.app.drift_monitor import FLUSH_ROWS, DriftMonitor, window_rows_from_env


def _snapshot(n_labels: int, set_id: int | None = 1, rate=None):
    return SimpleNamespace(
        thresholds=np.full(n_labels, 0.5),
        set_id=set_id,
        set=None if set_id is None else SimpleNamespace(n_samples=1000),
        expected_positive_rate=rate,
        expected_mean_score=None if rate is None else np.full(n_labels, 0.3),
    )


def test_rows_queue_then_fold_into_the_window_and_old_snapshots_are_dropped():
    labels = ["a", "b", "c"]
    current = {"active": _snapshot(3, rate=np.array([0.1, 0.5, 0.9]))}
    monitor = DriftMonitor(lambda: current["active"], lambda: labels, size=1000)
    rng = np.random.default_rng(1)
    scores = rng.random((FLUSH_ROWS + 7, 3))
    flags = scores >= 0.5
    first = current["active"]
    for start in range(0, len(scores), 50):  # flushed once past FLUSH_ROWS, the rest queued
        monitor.add(first, scores[start : start + 50], flags[start : start + 50])
    report = monitor.report()
    assert report is not None and report.window.n_rows == len(scores)
    np.testing.assert_allclose(report.window.positive_share, flags.mean(axis=0))
    np.testing.assert_allclose(report.window.mean_score, scores.mean(axis=0))
    assert report.expected is not None and report.expected.n_rows == 1000
    np.testing.assert_array_equal(report.expected.positive_share, [0.1, 0.5, 0.9])

    current["active"] = _snapshot(3, set_id=2)  # an activation: the window empties
    monitor.add(first, scores[:5], flags[:5])  # a request still in flight under set 1
    report = monitor.report()
    assert report.window.n_rows == 0 and np.isnan(report.window.positive_share).all()
    assert report.expected is None and not report.drifted.any()
    monitor.add(current["active"], scores[:5], flags[:5])
    assert monitor.report().window.n_rows == 5


def test_nothing_before_the_model_loads():
    monitor = DriftMonitor(lambda: None, lambda: None, size=10)
    monitor.add(object(), np.zeros((1, 2)), np.zeros((1, 2), dtype=bool))
    assert monitor.report() is None


def test_the_window_is_capped_for_many_labels(monkeypatch):
    monkeypatch.setattr(drift_monitor, "MAX_WINDOW_BYTES", 9 * 50 * 100)
    active = _snapshot(50)
    monitor = DriftMonitor(lambda: active, lambda: [str(i) for i in range(50)], size=10_000)
    assert monitor.report().size == 100


@pytest.mark.parametrize(("text", "rows"), [("", 10_000), ("250", 250), (" 7 ", 7)])
def test_window_rows_from_the_environment(monkeypatch, text, rows):
    monkeypatch.setenv("LABELCUT_DRIFT_WINDOW", text)
    assert window_rows_from_env() == rows


@pytest.mark.parametrize("text", ["0", "-3", "ten", "1.5"])
def test_a_bad_window_size_is_refused_by_name(monkeypatch, text):
    monkeypatch.setenv("LABELCUT_DRIFT_WINDOW", text)
    with pytest.raises(ValueError, match="LABELCUT_DRIFT_WINDOW"):
        window_rows_from_env()
