"""The bootstrap's units: drawing groups together and splitting only where a replicate's
optimum may lie gives the same optimum as drawing every group (issue 13's speed work)."""

from __future__ import annotations

import numpy as np
import pytest

from labelcut.tuning import bootstrap
from labelcut.tuning._checks import TuningSpec

SPECS = [
    TuningSpec("f1", 1.0, None, 1, 0.5),
    TuningSpec("fbeta", 2.0, None, 1, 0.5),
    TuningSpec("fbeta", 0.3, None, 1, 0.5),
    TuningSpec("recall_at_precision", 1.0, 0.6, 1, 0.5),
    TuningSpec("precision_at_recall", 1.0, 0.7, 1, 0.5),
]


class _Fixed(bootstrap._Replicates):
    """Replicates whose unit splits are fixed in advance for every (replicate, unit)."""

    def fix(self, positive_draws: np.ndarray, negative_draws: np.ndarray, seed: int) -> None:
        rows, units = np.indices(positive_draws.shape).reshape(2, -1)
        rng = np.random.default_rng(seed)
        width = self.inside.shape[1]
        self.fixed_positive = np.zeros((*positive_draws.shape, width), dtype=np.int64)
        self.fixed_negative = np.zeros_like(self.fixed_positive)
        self.split_pairs = 0
        many = self.sizes[units] > 1
        rows, units = rows[many], units[many]
        self.fixed_positive[rows, units] = rng.multinomial(
            positive_draws[rows, units], self.positive_shares[units]
        )
        self.fixed_negative[rows, units] = rng.multinomial(
            negative_draws[rows, units], self.negative_shares[units]
        )

    def split_counts(self, row, unit, positive_draws, negative_draws):
        self.split_pairs = len(row)
        return self.fixed_positive[row, unit], self.fixed_negative[row, unit]

    def every_group(self, positive_draws, negative_draws) -> tuple[np.ndarray, np.ndarray]:
        """(rows, groups) positives and negatives of every group, from the fixed splits."""
        rows = len(positive_draws)
        positive = np.zeros((rows, self.n_groups), dtype=np.int64)
        negative = np.zeros_like(positive)
        for u, (start, size) in enumerate(zip(self.units, self.sizes, strict=True)):
            if size == 1:
                positive[:, start] = positive_draws[:, u]
                negative[:, start] = negative_draws[:, u]
            else:
                positive[:, start : start + size] = self.fixed_positive[:, u, :size]
                negative[:, start : start + size] = self.fixed_negative[:, u, :size]
        return positive, negative


def _label_groups(rng: np.random.Generator, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per group for a label with a peak somewhere."""
    share = np.clip(rng.normal(rng.uniform(0, 1), rng.uniform(0.05, 0.5), n_groups), 0, 1)
    share = np.sort(share) if rng.random() < 0.7 else share  # mostly rising precision
    rows = rng.integers(1, 3000, n_groups)
    if rng.random() < 0.3:
        rows = rng.integers(1, 6, n_groups)  # few rows per group: many empty draws
    positives = rng.binomial(rows, share * rng.uniform(0.02, 1.0))
    return positives.astype(np.float64), (rows - positives).astype(np.float64)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.objective}-{s.beta}")
def test_pruned_splits_find_the_optimum_of_every_group(spec):
    rng = np.random.default_rng(SPECS.index(spec))
    split_fewer = 0
    for trial in range(25):
        n_groups = int(rng.choice([90, 200, 513]))
        positives_in, negatives_in = _label_groups(rng, n_groups)
        tp_at = np.append(np.cumsum(positives_in[::-1])[::-1], 0.0)
        pp_at = np.append(np.cumsum((positives_in + negatives_in)[::-1])[::-1], 0.0)
        cut = int(rng.integers(0, n_groups + 1))
        units = bootstrap._units(tp_at[:-1], pp_at[:-1], cut, spec)
        assert units[0] == 0 and np.all(np.diff(units) > 0) and units[-1] < n_groups
        if cut < n_groups:
            assert cut in units
        assert (np.diff(np.append(units, n_groups)) > 1).any()  # some units hold many groups
        rngs = np.random.default_rng([trial, 7]).spawn(4)
        replicates = _Fixed(positives_in, negatives_in, units, rngs)
        tp, pp, positive_draws, negative_draws = replicates.draw(150)
        replicates.fix(positive_draws, negative_draws, trial)
        replicates.split_pairs = 0
        pruned = replicates.optima(tp, pp, positive_draws, negative_draws, spec)
        pairs_pruned = replicates.split_pairs
        replicates.split_pairs = 0
        full = replicates.optima(tp, pp, positive_draws, negative_draws, spec, prune=False)
        split_fewer += pairs_pruned < replicates.split_pairs
        positive, negative = replicates.every_group(positive_draws, negative_draws)
        every_tp = bootstrap._suffix_sums(positive)
        every_pp = every_tp + bootstrap._suffix_sums(negative)
        np.testing.assert_array_equal(every_tp[:, units], tp)  # the units' edges agree
        reference = bootstrap._replicate_optima(every_tp, every_pp, every_tp[:, 0], spec)
        for found in (pruned, full):
            np.testing.assert_array_equal(found[1], reference[1])
            ok = reference[1]
            np.testing.assert_array_equal(found[0][ok], reference[0][ok])
    assert split_fewer >= 20  # the bound prunes most of the time


def test_few_groups_are_drawn_one_by_one_as_before():
    spec = SPECS[0]
    tp_at = np.arange(40, 0, -1, dtype=np.float64)
    units = bootstrap._units(tp_at, tp_at * 3, 5, spec)
    np.testing.assert_array_equal(units, np.arange(40))


def test_units_grow_away_from_the_optimum():
    spec = SPECS[0]
    rng = np.random.default_rng(3)
    positives_in, negatives_in = _label_groups(rng, 513)
    tp_at = np.cumsum(positives_in[::-1])[::-1]
    pp_at = np.cumsum((positives_in + negatives_in)[::-1])[::-1]
    units = bootstrap._units(tp_at, pp_at, 513, spec)
    sizes = np.diff(np.append(units, 513))
    values = 2 * tp_at / (pp_at + tp_at[0])
    center = 512 - int(np.argmax(values[::-1]))
    near = np.abs(units - center) <= bootstrap.WINDOW
    assert np.all(sizes[near & (units >= center)] == 1)
    assert sizes.max() <= bootstrap.SPAN
    assert len(units) < 513 / 3  # far fewer draws than groups


def test_multinomial_splits_in_chunks_give_the_one_call_draws(monkeypatch):
    # Generator.multinomial holds the GIL for a whole call; the bootstrap draws its splits
    # in chunks of rows so a server's event loop is not stalled, with the same draws.
    import labelcut.tuning.bootstrap as module

    monkeypatch.setattr(module, "_MULTINOMIAL_ROWS", 100)
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 40, 1050)
    shares = rng.random((1050, 7))
    shares /= shares.sum(1, keepdims=True)
    whole = np.random.default_rng(11).multinomial(counts, shares)
    chunked = module._multinomial(np.random.default_rng(11), counts, shares)
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(chunked.sum(1), counts)
