"""The drift window: figures over the last rows, against a brute-force recount."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from labelcut.tuning.drift import DriftWindow, drifted_labels, expected_rates


def _rows(n: int, means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.normal(means, 0.15, size=(n, len(means))), 0, 1)


def test_window_matches_a_recount_of_the_last_rows_for_any_batch_sizes():
    rng = np.random.default_rng(0)
    window = DriftWindow(3, size=50)
    thresholds = np.array([0.3, 0.5, 0.7])
    seen_scores, seen_flags = [], []
    for m in [1, 7, 49, 1, 50, 120, 3, 0, 33, 1]:
        scores = rng.random((m, 3))
        flags = scores >= thresholds
        window.add(scores, flags)
        seen_scores.append(scores)
        seen_flags.append(flags)
        last_scores = np.concatenate(seen_scores)[-50:]
        last_flags = np.concatenate(seen_flags)[-50:]
        figures = window.figures()
        assert figures.n_rows == len(last_scores)
        if figures.n_rows:
            np.testing.assert_allclose(figures.positive_share, last_flags.mean(axis=0))
            np.testing.assert_allclose(figures.mean_score, last_scores.mean(axis=0), atol=1e-12)
    for row in rng.random((75, 3)):  # one row at a time, shape (L,)
        window.add(row, row >= thresholds)
        seen_scores.append(row[None])
    np.testing.assert_allclose(
        window.figures().mean_score, np.concatenate(seen_scores)[-50:].mean(axis=0)
    )


def test_a_burst_of_shifted_rows_moves_only_the_shifted_label():
    rng = np.random.default_rng(1)
    thresholds = np.array([0.5, 0.5, 0.5])
    base = np.array([0.3, 0.5, 0.7])
    validation = _rows(20_000, base, rng)
    expected = expected_rates(validation, thresholds)
    np.testing.assert_allclose(expected.positive_share, (validation >= thresholds).mean(axis=0))
    window = DriftWindow(3, size=2000)
    steady = _rows(2000, base, rng)
    window.add(steady, steady >= thresholds)
    assert not drifted_labels(window.figures(), expected).any()
    burst = _rows(1000, np.array([0.3, 0.65, 0.7]), rng)  # label 1 shifts up
    window.add(burst, burst >= thresholds)
    figures = window.figures()
    tail = np.concatenate([steady, burst])[-2000:]
    np.testing.assert_allclose(figures.positive_share, (tail >= thresholds).mean(axis=0))
    assert drifted_labels(figures, expected).tolist() == [False, True, False]
    assert figures.mean_score[1] > expected.mean_score[1] + 0.05
    window.clear()
    assert window.figures().n_rows == 0 and np.isnan(window.figures().positive_share).all()
    assert not drifted_labels(window.figures(), expected).any()


def test_concurrent_adds_keep_totals_consistent():
    window = DriftWindow(2, size=100)
    rows = np.full((10, 2), 0.25)

    def writer():
        for _ in range(200):
            window.add(rows, rows > 0.2)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures = window.figures()
    assert figures.n_rows == 100
    np.testing.assert_allclose(figures.mean_score, 0.25)
    np.testing.assert_array_equal(figures.positive_share, 1.0)


def test_bad_shapes_are_refused():
    window = DriftWindow(2, size=10)
    with pytest.raises(ValueError, match="one shape"):
        window.add(np.zeros((3, 2)), np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"\(m, 2\)"):
        window.add(np.zeros((3, 3)), np.zeros((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="thresholds"):
        expected_rates(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="at least 1"):
        DriftWindow(0)
