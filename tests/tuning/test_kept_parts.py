"""The kept keys in parts: packed in one read, released part by part by the second walk."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from labelcut.tuning import _sorted, adaptive, tune_thresholds
from labelcut.tuning._sorted import SortedLabels, kept_bounds, pack_rows, packed_block


def _inputs(n: int, n_labels: int, dtype: torch.dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.random((n, n_labels))).to(dtype)
    targets = torch.from_numpy((rng.random((n, n_labels)) < 0.3).astype(np.uint8))
    return scores, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("sizes", [[3], [1, 2, 4], [5, 1, 1]])
def test_packing_into_parts_equals_packing_into_one_array(dtype, sizes):
    n_labels = sum(sizes)
    scores, targets = _inputs(5000, n_labels, dtype)
    rows = np.random.default_rng(1).permutation(5000)
    whole = packed_block(scores, targets, 0, n_labels, rows)
    parts = [np.empty((size, 5000), dtype=whole.dtype) for size in sizes]
    # Two threads' ranges of rows, as the walk writes them.
    pack_rows(scores, targets, 0, n_labels, parts, 0, 2048, rows)
    pack_rows(scores, targets, 0, n_labels, parts, 2048, 5000, rows)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("n, n_labels", [(1000, 7), (300, 40), (1, 3)])
def test_kept_bounds_are_whole_labels_within_blocks(monkeypatch, n, n_labels):
    monkeypatch.setattr(_sorted, "KEPT_PART_ELEMENTS", 2500)
    bounds = kept_bounds(n, n_labels)
    assert bounds[0] == 0 and bounds[-1] == n_labels
    assert all(high > low for low, high in itertools.pairwise(bounds))
    blocks = set(_sorted.block_bounds(n, n_labels, keep=True))
    assert blocks <= set(bounds)  # no part spans two blocks
    for low, high in itertools.pairwise(bounds):
        assert (high - low) * n >= 2500 or high in blocks  # only a block's last part is short


def test_second_walk_releases_each_part_once_its_labels_are_done(monkeypatch):
    monkeypatch.setattr(_sorted, "KEPT_PART_ELEMENTS", 2 * 400)  # two labels per part
    scores, targets = _inputs(400, 7, torch.float32)
    labels = SortedLabels(scores, targets)
    first = labels.walk(lambda label, found: found.positives, keep=True)
    assert sorted(labels._kept) == [0, 2, 4, 6]
    held: list[list[int]] = []

    def look(label, found):
        held.append(sorted(labels._kept))
        return found.positives, found.counts_at(0.5)

    again = labels.walk_again(look)
    # One thread at this size: label j sees only the parts from its own part on.
    assert held == [[0, 2, 4, 6], [0, 2, 4, 6], [2, 4, 6], [2, 4, 6], [4, 6], [4, 6], [6]]
    assert labels._kept == {}
    truth = targets.numpy().astype(bool)
    assert [positives for positives, _ in again] == first == truth.sum(0).tolist()
    above = scores.numpy() >= 0.5
    assert [counts for _, counts in again] == [
        (int((above[:, j] & truth[:, j]).sum()), int(above[:, j].sum())) for j in range(7)
    ]


def test_tunes_are_the_same_whatever_the_parts(monkeypatch):
    scores, targets = _inputs(3000, 9, torch.float32, seed=4)
    whole = tune_thresholds(scores, targets, return_curves=True).to_dict()
    monkeypatch.setattr(_sorted, "KEPT_PART_ELEMENTS", 1)  # one label per part
    assert tune_thresholds(scores, targets, return_curves=True).to_dict() == whole


def test_calibration_counts_are_exact_float32():
    scores, targets = _inputs(70_000, 3, torch.float32, seed=2)
    folds = np.random.default_rng(3).integers(0, 5, 70_000)
    calibration = adaptive._Calibration(scores, targets, folds, 5)
    assert calibration.rows.dtype == adaptive.COUNT_DTYPE == np.float32
    assert adaptive.MAX_ROWS < 2**24  # every count is a whole number float32 holds exactly
    # Weighting 0 counts every row once; weighting f + 1 all rows but fold f's.
    np.testing.assert_array_equal(calibration.rows[0].sum(1), [70_000] * 3)
    for fold in range(5):
        np.testing.assert_array_equal(
            calibration.rows[fold + 1].sum(1), [np.count_nonzero(folds != fold)] * 3
        )
    np.testing.assert_array_equal(calibration.positives[0].sum(1), targets.numpy().sum(0))
