"""ScoreStats: statistics of any split of the rows merge into the statistics of all rows.

Oracles: the statistics of the whole array, and counts recomputed by brute force
from the rows (sklearn's ``precision_recall_curve`` for the distinct scores).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_curve

from labelcut.tuning.stats import ScoreStats, StatsPass, merge_stats
from labelcut.tuning.stats_grid import bin_of, n_bins

FIELDS = ("offsets", "keys", "low_bits", "high_bits", "positives", "negatives", "rows_by_labels")


def make_data(seed: int, n: int = 500, n_labels: int = 5, dtype=np.float32):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, n_labels))
    scores[: n // 3] = np.round(scores[: n // 3] * 20) / 20  # ties and duplicates
    scores[0, 0], scores[1, 0] = 0.0, 1.0
    targets = rng.random((n, n_labels)) < 0.3
    targets[:, 1] = False  # no positives
    return scores.astype(dtype), targets


def assert_same(a: ScoreStats, b: ScoreStats) -> None:
    assert (a.n_rows, a.n_labels, a.score_dtype) == (b.n_rows, b.n_labels, b.score_dtype)
    for name in FIELDS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.together, b.together)


def random_split(n: int, parts: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1))  # uneven, may repeat: empty chunks
    edges = np.concatenate(([0], cuts, [n]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


@pytest.mark.parametrize("kind", ["distinct", "grid"])
@pytest.mark.parametrize("parts", [1, 2, 3, 7, 20])
def test_merged_random_splits_equal_the_whole(kind: str, parts: int) -> None:
    scores, targets = make_data(parts)
    pass_ = StatsPass(kind)
    whole = ScoreStats.from_arrays(scores, targets, pass_)
    rng = np.random.default_rng(parts)
    rows = rng.permutation(len(scores))  # any split of the rows, not only contiguous ones
    chunks = [
        ScoreStats.from_arrays(scores[rows[a:b]], targets[rows[a:b]], pass_, chunk_id=i)
        for i, (a, b) in enumerate(random_split(len(scores), parts, rng))
    ]
    assert_same(merge_stats(chunks), whole)
    assert_same(merge_stats(chunks[::-1]), whole)  # any order
    if len(chunks) >= 3:  # any grouping
        left = chunks[0].merge(chunks[1]).merge(merge_stats(chunks[2:]))
        right = chunks[0].merge(chunks[1].merge(merge_stats(chunks[2:])))
        assert_same(left, right)


def test_empty_chunk_merges_as_nothing() -> None:
    scores, targets = make_data(3)
    whole = ScoreStats.from_arrays(scores, targets)
    empty = ScoreStats.from_arrays(scores[:0], targets[:0])
    assert empty.n_rows == 0 and len(empty.keys) == 0
    assert_same(empty.merge(whole), whole)
    assert_same(whole.merge(empty), whole)


def test_distinct_counts_match_sklearn_curve() -> None:
    scores, targets = make_data(4, dtype=np.float64)
    stats = ScoreStats.from_arrays(scores, targets)
    for j in (0, 2, 3):
        part = stats.label(j)
        values = stats.values(stats.low_bits[part])
        precision, recall, thresholds = precision_recall_curve(targets[:, j], scores[:, j])
        assert np.array_equal(values, thresholds)
        tp = np.cumsum(stats.positives[part][::-1])[::-1]
        pp = np.cumsum((stats.positives + stats.negatives)[part][::-1])[::-1]
        assert np.array_equal(tp / pp, precision[:-1])
        assert np.array_equal(tp / targets[:, j].sum(), recall[:-1])


def test_grid_bins_hold_their_scores_and_exact_extremes() -> None:
    scores, targets = make_data(5)
    stats = ScoreStats.from_arrays(scores, targets, StatsPass("grid", levels=1024))
    bits = scores.view(np.int32).astype(np.int64)
    for j in range(scores.shape[1]):
        part = stats.label(j)
        bins = bin_of(bits[:, j], np.float32, 1024)
        assert bins.max() < n_bins(1024)
        for key, low, high, pos, neg in zip(
            stats.keys[part], stats.low_bits[part], stats.high_bits[part],
            stats.positives[part], stats.negatives[part], strict=True,
        ):  # fmt: skip
            inside = bins == key
            assert low == bits[inside, j].min() and high == bits[inside, j].max()
            assert pos == targets[inside, j].sum() and neg == (~targets[inside, j]).sum()


def test_low_precision_scores_widen_and_keep_their_dtype() -> None:
    scores, targets = make_data(6, dtype=np.float32)
    for dtype in (torch.float16, torch.bfloat16):
        tensor = torch.from_numpy(scores).to(dtype)
        stats = ScoreStats.from_arrays(tensor, torch.from_numpy(targets))
        assert stats.score_dtype == str(dtype).removeprefix("torch.")
        widened = tensor.to(torch.float32).numpy()
        part = stats.label(0)
        assert np.array_equal(stats.values(stats.low_bits[part]), np.unique(widened[:, 0]))


def test_negative_zero_is_zero() -> None:
    scores = np.array([[-0.0], [0.0], [0.5]], dtype=np.float32)
    stats = ScoreStats.from_arrays(scores, np.array([[1], [0], [1]]))
    assert stats.offsets[-1] == 2 and stats.positives[0] == 1 and stats.negatives[0] == 1


def test_stats_pickle_and_report_their_size() -> None:
    scores, targets = make_data(7)
    stats = ScoreStats.from_arrays(scores, targets)
    back = pickle.loads(pickle.dumps(stats))
    assert_same(back, stats)
    assert stats.nbytes >= stats.keys.nbytes * 4


@pytest.mark.parametrize(
    ("scores", "targets", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "same shape"),
        (np.array([[0.1], [np.nan]]), np.zeros((2, 1)), "NaN"),
        (np.array([[0.1], [1.5]]), np.zeros((2, 1)), "lie in"),
        (np.array([[1], [0]]), np.zeros((2, 1)), "floating-point"),
        (np.zeros((2, 1)), np.array([[2], [0]]), "0 and 1"),
        (np.zeros(4), np.zeros(4), "2-D"),
    ],
)
def test_bad_chunks_raise_value_error(scores, targets, message) -> None:
    with pytest.raises(ValueError, match=message):
        ScoreStats.from_arrays(scores, targets)


def test_merging_incompatible_stats_raises() -> None:
    scores, targets = make_data(8)
    stats = ScoreStats.from_arrays(scores, targets)
    with pytest.raises(ValueError, match="labels"):
        stats.merge(ScoreStats.from_arrays(scores[:, :2], targets[:, :2]))
    with pytest.raises(ValueError, match="grids"):
        grid = StatsPass("grid", levels=1024)
        ScoreStats.from_arrays(scores, targets, grid).merge(
            ScoreStats.from_arrays(scores, targets, StatsPass("grid", levels=2048))
        )
    with pytest.raises(ValueError, match="float64"):
        stats.merge(ScoreStats.from_arrays(scores.astype(np.float64), targets))
    with pytest.raises(ValueError, match="at least one"):
        merge_stats([])
    with pytest.raises(ValueError, match="levels"):
        StatsPass("grid", levels=1000)
