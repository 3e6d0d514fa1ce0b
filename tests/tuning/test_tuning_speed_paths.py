"""Issue 13's speed work, checked against the plain computations it replaces: the rank and
select index of the sorted keys, the folds' order, the out-of-fold group counts, the key
packing and the block plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelcut.tuning import _sorted, estimate
from labelcut.tuning._sorted import BitRank, Candidates, block_plan, pack_keys


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 127, 128, 129, 1000, 70_001])
@pytest.mark.parametrize("share", [0.0, 0.02, 0.5, 1.0])
def test_bit_rank_and_select_match_a_cumulative_sum(n, share):
    rng = np.random.default_rng(n)
    flags = (rng.random(n) < share).astype(np.uint8)
    index = BitRank(flags)
    cumulative = np.concatenate(([0], np.cumsum(flags)))
    np.testing.assert_array_equal(index.rank(np.arange(n + 1)), cumulative)
    assert index.total == cumulative[-1]
    set_positions = np.flatnonzero(flags)
    np.testing.assert_array_equal(index.select(np.arange(len(set_positions))), set_positions)
    if len(set_positions):  # any shape of query, scalars included
        assert int(index.select(np.int64(0))) == set_positions[0]
        picked = rng.integers(0, len(set_positions), (3, 4))
        np.testing.assert_array_equal(index.select(picked), set_positions[picked])


def test_candidates_read_through_the_index_match_full_arrays():
    rng = np.random.default_rng(5)
    for n, distinct in ((1, 1), (50, 3), (5000, 40), (20_000, 20_000)):
        keys = np.sort(rng.integers(0, distinct, n).astype(np.int32) << 1 | rng.integers(0, 2, n))
        bits = keys >> 1
        starts = np.flatnonzero(np.concatenate(([True], bits[1:] != bits[:-1])))
        positives = np.concatenate(([0], np.cumsum(keys & 1)))
        fresh = Candidates(keys.astype(np.int32), np.float32)
        assert fresh.m == len(starts) and fresh.positives == positives[-1]
        index = rng.integers(0, len(starts), 30)
        np.testing.assert_array_equal(
            fresh.true_positives_at(index), positives[-1] - positives[starts[index]]
        )
        np.testing.assert_array_equal(fresh.predicted_positives_at(index), n - starts[index])
        np.testing.assert_array_equal(fresh.starts, starts)
        np.testing.assert_array_equal(
            fresh.values, bits[starts].astype(np.int32).view(np.float32).astype(np.float64)
        )


def test_packing_treats_negative_zero_as_zero_in_both_widths():
    for dtype in (np.float32, np.float64):
        values = np.array([[-0.0, 0.0, 0.25, 1.0]], dtype=dtype)
        labels = np.array([[1, 0, 1, 1]], dtype=np.uint8)
        expected = (values + 0.0).view(np.int32 if dtype == np.float32 else np.int64) << 1
        np.testing.assert_array_equal(pack_keys(values.copy(), labels), expected | labels)


@pytest.mark.parametrize(("n", "n_labels"), [(1_000_000, 100), (1_000_000, 20), (300, 7), (10, 1)])
@pytest.mark.parametrize("keep", [False, True])
def test_block_plan_gives_blocks_of_about_one_size_within_the_budget(
    monkeypatch, n, n_labels, keep
):
    monkeypatch.setattr(_sorted, "worker_threads", lambda: 2)
    labels, workers = block_plan(n, n_labels, keep)
    budget = _sorted._BLOCK_ELEMENTS * (_sorted._KEPT_BLOCKS if keep else 1)
    assert labels * n <= max(budget, n)
    assert workers == 2  # every block is packed and sorted by all threads
    blocks = -(-n_labels // labels)
    assert blocks == -(-n_labels // max(1, budget // n))  # as few as fit
    sizes = [min(labels, n_labels - start) for start in range(0, n_labels, labels)]
    assert max(sizes) - min(sizes) <= max(sizes) // 2  # and blocks of about one size


def _lexsort_folds(targets: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """The folds' definition, computed the plain way."""
    truth = targets != 0
    n_samples, n_labels = truth.shape
    rank = np.empty(n_labels, dtype=np.int64)
    rank[np.argsort(truth.sum(0), kind="stable")] = np.arange(n_labels)
    rarity = np.where(truth, rank, n_labels).min(axis=1)
    order = np.lexsort((np.random.default_rng(seed).random(n_samples), rarity))
    folds = np.empty(n_samples, dtype=np.int8)
    folds[order] = np.arange(n_samples) % n_folds
    return folds


@pytest.mark.parametrize("n_labels", [1, 5, 255, 256, 1100])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32, torch.int64])
def test_folds_follow_their_definition(n_labels, dtype):
    rng = np.random.default_rng(n_labels)
    n = 700
    targets = rng.random((n, n_labels)) < rng.uniform(0, 0.05, n_labels)
    targets[: n // 7] = False  # rows without a label come last
    tensor = torch.from_numpy(targets).to(dtype)
    np.testing.assert_array_equal(
        estimate.spread_folds(tensor, 5, 3), _lexsort_folds(targets, 5, 3)
    )


def test_rarest_order_breaks_equal_keys_by_row_as_lexsort():
    rng = np.random.default_rng(8)
    rarity = rng.integers(0, 4, 5000)
    tiebreak = rng.integers(0, 50, 5000) / 2.0**53  # many equal draws
    np.testing.assert_array_equal(
        estimate._rarest_order(rarity, tiebreak, 3), np.lexsort((tiebreak, rarity))
    )


@pytest.mark.parametrize(("n_rows", "n_labels"), [(1, 1), (2, 3), (1000, 5), (200_000, 100)])
def test_rarest_order_by_packed_sort_is_lexsort(n_rows, n_labels):
    rng = np.random.default_rng(n_rows)
    rarity = rng.integers(0, n_labels + 1, n_rows)
    tiebreak = rng.random(n_rows)
    np.testing.assert_array_equal(
        estimate._rarest_order(rarity, tiebreak, n_labels), np.lexsort((tiebreak, rarity))
    )


def test_rarest_order_sorts_draws_that_share_their_top_bits_by_the_rest():
    # 200,000 rows and 2 labels keep 44 of the 53 random bits in the packed keys: draws
    # that differ only below them tie there and must still come out in lexsort's order.
    rng = np.random.default_rng(11)
    n_rows = 200_000
    high = rng.integers(0, 4, n_rows).astype(np.uint64) << np.uint64(40)
    low = rng.integers(0, 1 << 9, n_rows).astype(np.uint64)  # below the kept bits
    tiebreak = (high | low).astype(np.float64) / 2.0**53
    rarity = rng.integers(0, 3, n_rows)
    np.testing.assert_array_equal(
        estimate._rarest_order(rarity, tiebreak, 2), np.lexsort((tiebreak, rarity))
    )


@pytest.mark.parametrize("n_labels", [5, 2000])
def test_rarest_order_falls_back_where_few_random_bits_fit(monkeypatch, n_labels):
    calls = []
    fallback = estimate._rarest_order_argsort
    monkeypatch.setattr(
        estimate, "_rarest_order_argsort", lambda *a: calls.append(1) or fallback(*a)
    )
    rng = np.random.default_rng(12)
    rarity = rng.integers(0, n_labels + 1, 3000)
    tiebreak = rng.random(3000)
    # Told of 2**40 labels, 3,000 rows leave 11 random bits: too few, the argsort (here
    # the lexsort) answers. 2,000 labels leave 41: the packed sort does.
    told = 1 << 40 if n_labels == 5 else n_labels
    got = estimate._rarest_order(rarity, tiebreak, told)
    np.testing.assert_array_equal(got, np.lexsort((tiebreak, rarity)))
    assert calls == ([1] if n_labels == 5 else [])


@pytest.mark.parametrize("score_dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_out_of_fold_group_counts_match_a_dense_count(monkeypatch, score_dtype):
    monkeypatch.setattr(estimate, "_ROWS_PER_CHUNK", 97)  # many chunks and threads
    rng = np.random.default_rng(9)
    n, n_labels = 1500, 6
    scores = torch.from_numpy(rng.random((n, n_labels))).to(score_dtype)
    targets = torch.from_numpy(rng.random((n, n_labels)) < 0.3)
    plan = estimate.FoldPlan.build(targets, seed=2)
    thresholds = rng.random((plan.n_folds, n_labels))
    thresholds[0, 0], thresholds[1, 2] = 1.5, 0.0  # predicts nothing / everything
    tp, pp, positives = estimate._group_counts(scores, targets, plan, thresholds, seed=4)
    groups = np.random.default_rng([4, 20]).integers(0, min(estimate.MAX_GROUPS, n), n)
    values = scores.to(torch.float64).numpy()
    passes = values >= thresholds[plan.folds]
    truth = targets.numpy()
    for name, counts, expected in (
        ("tp", tp, passes & truth),
        ("pp", pp, passes),
        ("positives", positives, truth),
    ):
        dense = np.zeros_like(counts)
        np.add.at(dense, groups, expected.astype(np.float64))
        np.testing.assert_array_equal(counts, dense, err_msg=name)


@pytest.mark.parametrize(("n", "n_labels"), [(1_000_000, 100), (1_000_000, 33), (300, 7), (10, 1)])
def test_block_bounds_cover_every_label_once(monkeypatch, n, n_labels):
    monkeypatch.setattr(_sorted, "worker_threads", lambda: 2)
    for keep in (False, True):
        bounds = _sorted.block_bounds(n, n_labels, keep)
        size, _ = block_plan(n, n_labels, keep)
        assert bounds[0] == 0 and bounds[-1] == n_labels and bounds == sorted(set(bounds))
        assert np.diff(bounds).max() <= size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pooled_edge_counts_match_a_count_at_every_edge(dtype):
    from labelcut.tuning import _shared

    rng = np.random.default_rng(11)
    n = 3000
    columns = [
        rng.uniform(0.4, 0.6, n),  # a narrow range: most edges lie outside it
        rng.random(n) ** 8,  # down to tiny scores
        np.full(n, 0.25),  # one value, exactly on an edge
        np.where(rng.random(n) < 0.5, 0.0, 1.0),  # only the ends
    ]
    scores = np.stack(columns, axis=1).astype(dtype)
    targets = rng.random(scores.shape) < 0.3
    sorted_labels = _sorted.SortedLabels(torch.from_numpy(scores), torch.from_numpy(targets))
    counts = _shared.PooledCounts(_shared.Bucketing.of(sorted_labels.float_dtype))
    sorted_labels.walk(lambda _label, candidates: counts.add(candidates))
    edges = _sorted.bits_to_float(counts.bucketing.edge_bits, sorted_labels.float_dtype)
    flat, truth = scores.astype(np.float64).ravel(), targets.ravel()
    order = np.argsort(flat)
    at = np.searchsorted(flat[order], edges, side="left")  # first score >= each edge
    above_truth = np.concatenate((np.cumsum(truth[order][::-1])[::-1], [0]))
    np.testing.assert_array_equal(counts.predicted_positives[:-1], len(flat) - at)
    np.testing.assert_array_equal(counts.true_positives[:-1], above_truth[at])


SCORE_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("score_dtype", SCORE_DTYPES)
@pytest.mark.parametrize("target_dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
@pytest.mark.parametrize("tile_labels", [256, 2])  # 2: the labels packed in groups
def test_packed_block_equals_the_copy_then_pack(
    monkeypatch, score_dtype, target_dtype, tile_labels
):
    monkeypatch.setattr(_sorted, "_TILE_LABELS", tile_labels)
    rng = np.random.default_rng(12)
    scores = rng.random((5000, 7))
    scores[::7, 2], scores[::5, 3], scores[::3, 4] = -0.0, 0.0, 1.0
    targets = rng.random((5000, 7)) < 0.4
    score_tensor = torch.from_numpy(scores).to(score_dtype)
    target_tensor = torch.from_numpy(targets).to(target_dtype)
    for rows in (None, rng.permutation(5000)):  # in row order, and in a given order
        values, labels = _sorted.label_block(score_tensor, target_tensor, 1, 6, rows)
        expected = pack_keys(values, labels)
        found = _sorted.packed_block(score_tensor, target_tensor, 1, 6, rows)
        assert found.dtype == expected.dtype
        np.testing.assert_array_equal(found, expected)
        # Filled in ranges of rows (as the threads do), ends not on tile edges.
        pieces = np.empty_like(found)
        for first, last in ((0, 100), (100, 4097), (4097, 5000)):
            _sorted.pack_rows(score_tensor, target_tensor, 1, 6, pieces, first, last, rows)
        np.testing.assert_array_equal(pieces, expected)


def test_labels_go_to_threads_only_from_label_thread_rows_on(monkeypatch):
    monkeypatch.setattr(_sorted, "worker_threads", lambda: 2)
    assert _sorted.label_threads(_sorted.LABEL_THREAD_ROWS - 1) == 1
    assert _sorted.label_threads(_sorted.LABEL_THREAD_ROWS) == 2
    small = torch.rand(100, 3)
    assert _sorted.SortedLabels(small, small > 0.5).label_workers == 1


@pytest.mark.parametrize("strategy", ["adaptive", "shrunk", "per_label"])
def test_threaded_and_single_threaded_label_work_give_the_same_result(monkeypatch, strategy):
    """Small inputs run their labels on one thread; forced onto two, the whole result (the
    folds' shared counts under a lock, per-thread scratch, the plug-in stage) is the same."""
    from labelcut.tuning import tune_thresholds

    rng = np.random.default_rng(3)
    scores = rng.random((3000, 9)).astype(np.float32)
    targets = rng.random((3000, 9)) < scores * 0.6
    monkeypatch.setattr(_sorted, "worker_threads", lambda: 2)
    results = {}
    for rows in (0, 1 << 30):  # every label on threads; none
        monkeypatch.setattr(_sorted, "LABEL_THREAD_ROWS", rows)
        result = tune_thresholds(scores, targets, strategy=strategy, return_curves=True)
        results[rows] = result.to_dict()
        results[rows]["curves"] = [
            [np.asarray(part).tolist() for part in curve] for curve in result.curves
        ]
    assert results[0] == results[1 << 30]


def test_the_plug_in_calibration_is_freed_before_the_final_walk(monkeypatch):
    """The plug-in stage's sorted fold scores (0.08x the inputs at 1M x 100) are read by the
    choice only: by the final walk, where the kept keys, the bootstrap and the estimate meet,
    nothing holds them any more."""
    import gc
    import weakref

    from labelcut.tuning import adaptive, tune_thresholds
    from labelcut.tuning._sorted import SortedLabels

    made: list[weakref.ref] = []
    alive_at_walk: list[bool] = []
    plugin_optima, walk_again = adaptive.plugin_optima, SortedLabels.walk_again

    def recorded_plugin(*args, **kwargs):
        found = plugin_optima(*args, **kwargs)
        made.append(weakref.ref(found.calibration))
        return found

    def checked_walk(self, handle):
        gc.collect()
        alive_at_walk.append(any(ref() is not None for ref in made))
        return walk_again(self, handle)

    monkeypatch.setattr(adaptive, "plugin_optima", recorded_plugin)
    monkeypatch.setattr(SortedLabels, "walk_again", checked_walk)
    rng = np.random.default_rng(5)
    scores = rng.random((2000, 6)).astype(np.float32)
    result = tune_thresholds(scores, rng.random((2000, 6)) < scores, n_bootstrap=20)
    assert result.strategy == "adaptive"
    assert made and alive_at_walk == [False]
