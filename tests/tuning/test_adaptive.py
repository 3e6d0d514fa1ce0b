"""The "adaptive" strategy (issue 20): hand-made cases, a known optimum, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

import labelcut.tuning.adaptive as module
from labelcut.tuning import tune_thresholds
from labelcut.tuning.adaptive import RHOS, TAUS, WEIGHTS, AdaptiveChoice, adaptive_thresholds
from labelcut.tuning.estimate import FoldPlan


def adaptive(
    scores: np.ndarray, targets: np.ndarray, seed: int = 0, weights: tuple[float, ...] = WEIGHTS
) -> AdaptiveChoice:
    """The strategy with its inputs from the public tune: the fold plan and "shrunk"."""
    plan = FoldPlan.build(torch.from_numpy(targets), seed)
    folds = plan.folds.astype(np.int64)

    def shrunk(rows: np.ndarray) -> np.ndarray:
        result = tune_thresholds(
            scores[rows], targets[rows], strategy="shrunk", n_bootstrap=0, estimate=False
        )
        return np.asarray(result.thresholds, dtype=np.float64)

    per_fold = [shrunk(np.flatnonzero(folds != f)) for f in range(plan.n_folds)]
    return adaptive_thresholds(
        scores,
        targets,
        folds,
        shrunk(np.arange(len(scores))),
        np.stack(per_fold),
        weights,
    )


def calibrated(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform in (0, 1), each target drawn with its score as the probability."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, n_labels))
    return scores, (rng.random((n, n_labels)) < scores).astype(np.int64)


def test_the_rule_is_what_the_docstring_states() -> None:
    scores, targets = calibrated(400, 4, seed=1)
    choice = adaptive(scores, targets)
    assert choice.rho in RHOS and choice.weight in WEIGHTS
    assert choice.scores.shape == (len(WEIGHTS), len(RHOS))
    kept = choice.scores[WEIGHTS.index(choice.weight), RHOS.index(choice.rho)]
    assert kept == choice.scores.max()
    assert choice.tau in TAUS
    logit = np.log(choice.mixed) - np.log1p(-choice.mixed)
    np.testing.assert_allclose(choice.thresholds, 1 / (1 + np.exp(-choice.rho * logit)))
    assert choice.fold_thresholds.shape == (5, 4)
    assert np.all((choice.thresholds > 0) & (choice.thresholds < 1))


@pytest.mark.parametrize("n", [200, 3000])
def test_perfectly_separable_labels_are_separated_and_ties_go_to_half(n: int) -> None:
    rng = np.random.default_rng(2)
    targets = (rng.random((n, 3)) < 0.4).astype(np.int64)
    scores = np.where(targets == 1, rng.uniform(0.7, 1.0, (n, 3)), rng.uniform(0, 0.3, (n, 3)))
    choice = adaptive(scores, targets)
    # Every blend and pull leaves each threshold in the gap, so every pair scores 2.0 out of
    # fold (macro 1 + micro 1) and the tie goes to the smallest rho: plain 0.5.
    np.testing.assert_allclose(choice.scores, 2.0)
    assert choice.rho == 0.0
    np.testing.assert_array_equal(choice.thresholds, 0.5)
    assert np.all((choice.plugin > 0.3) & (choice.plugin < 0.7))


@pytest.mark.parametrize("where", ["top", "middle"])
def test_one_positive_label_does_not_flood_positives(where: str) -> None:
    scores, targets = calibrated(300, 3, seed=3)
    targets[:, 2] = 0
    row = int(np.argmax(scores[:, 2])) if where == "top" else int(np.argsort(scores[:, 2])[150])
    targets[row, 2] = 1
    choice = adaptive(scores, targets)
    predicted = (scores >= choice.thresholds).sum(0)
    # One positive is no evidence for a low threshold: the label keeps few rows.
    assert predicted[2] < 0.2 * len(scores)
    assert predicted[2] < min(predicted[0], predicted[1])
    assert np.isfinite(choice.thresholds).all()


def test_a_label_without_positives_predicts_fewer_rows_than_its_neighbours() -> None:
    scores, targets = calibrated(300, 3, seed=4)
    targets[:, 1] = 0
    choice = adaptive(scores, targets)
    predicted = (scores >= choice.plugin).sum(0)
    # Its calibration map says "rarely positive": its plug-in optimum keeps few rows.
    assert predicted[1] < min(predicted[0], predicted[2])
    assert np.isfinite(choice.thresholds).all()


@pytest.mark.parametrize("n", [120, 3000])  # distinct scores as units; logit bins
def test_all_scores_equal_gives_all_or_nothing(n: int) -> None:
    rng = np.random.default_rng(5)
    targets = (rng.random((n, 2)) < 0.5).astype(np.int64)
    scores = np.full((n, 2), 0.3)
    choice = adaptive(scores, targets)
    decided = scores >= choice.thresholds
    assert np.isfinite(choice.thresholds).all()
    for j in range(2):
        assert decided[:, j].all() or not decided[:, j].any()


def test_one_label_plugin_is_the_expected_f1_optimum_of_its_platt_map() -> None:
    # With one label the pooled map is the label's own (the prior pulls nowhere) and
    # macro = micro: the plug-in optimum is the brute-force argmax of the expected F1
    # under the maximum-likelihood Platt map, fitted here by scikit-learn as the oracle.
    rng = np.random.default_rng(6)
    scores = rng.random((500, 1))
    targets = (rng.random((500, 1)) < scores**2).astype(np.int64)  # miscalibrated
    choice = adaptive(scores, targets)
    x = np.log(scores) - np.log1p(-scores)
    platt = LogisticRegression(C=np.inf).fit(x, targets[:, 0])
    q = platt.predict_proba(x)[:, 1]
    cuts = np.unique(scores[:, 0])
    expected = [
        2 * q[scores[:, 0] >= t].sum() / ((scores[:, 0] >= t).sum() + q.sum()) for t in cuts
    ]
    best = cuts[int(np.argmax(expected))]
    np.testing.assert_array_equal(scores[:, 0] >= choice.plugin[0], scores[:, 0] >= best)


def test_calibrated_scores_reach_the_known_optimum() -> None:
    # Scores U(0, 1) with P(y = 1 | s) = s: F1(t) = (1 - t^2) / (1.5 - t), maximal at
    # t* = (3 - sqrt 5) / 2 = 0.382 with F1* = 0.764 (= 2 t*, Lipton et al. 2014).
    scores, targets = calibrated(20_000, 2, seed=7)
    choice = adaptive(scores, targets)
    best = (3 - np.sqrt(5)) / 2
    np.testing.assert_allclose(choice.plugin, best, atol=0.03)
    reached = f1_score(targets, scores >= choice.thresholds, average=None)
    at_best = f1_score(targets, scores >= best, average=None)
    assert np.all(reached >= at_best - 0.01)


def test_deterministic_under_the_seed() -> None:
    scores, targets = calibrated(300, 4, seed=8)
    first, again = adaptive(scores, targets, seed=3), adaptive(scores, targets, seed=3)
    np.testing.assert_array_equal(first.thresholds, again.thresholds)
    np.testing.assert_array_equal(first.scores, again.scores)
    other = adaptive(scores, targets, seed=4)
    assert other.rho in RHOS and other.thresholds.shape == (4,)


def test_torch_input_gives_the_numpy_answer() -> None:
    scores, targets = calibrated(300, 3, seed=9)
    scores = scores.astype(np.float32)
    plan = FoldPlan.build(torch.from_numpy(targets), 0)
    folds = plan.folds.astype(np.int64)
    shrunk, fold_shrunk = np.full(3, 0.4), np.full((5, 3), 0.4)
    from_numpy = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    from_torch = adaptive_thresholds(
        torch.from_numpy(scores), torch.from_numpy(targets), folds, shrunk, fold_shrunk
    )
    np.testing.assert_array_equal(from_numpy.thresholds, from_torch.thresholds)
    assert from_numpy.rho == from_torch.rho and from_numpy.tau == from_torch.tau
    assert from_numpy.weight == from_torch.weight


def test_a_weight_grid_keeps_the_best_held_out_pair_and_zero_is_shrunk_alone() -> None:
    scores, targets = calibrated(400, 4, seed=10)
    grid = (0.0, 0.25, 0.5, 0.75, 1.0)
    choice = adaptive(scores, targets, weights=grid)
    assert choice.scores.shape == (len(grid), len(RHOS))
    assert choice.scores[grid.index(choice.weight), RHOS.index(choice.rho)] == choice.scores.max()
    default = adaptive(scores, targets)
    # The default's one row is the grid's w = 1/2 row: the same folds, the same candidates.
    np.testing.assert_array_equal(default.scores[0], choice.scores[grid.index(0.5)])
    alone = adaptive(scores, targets, weights=(0.0,))
    shrunk = tune_thresholds(scores, targets, strategy="shrunk", n_bootstrap=0, estimate=False)
    np.testing.assert_allclose(alone.mixed, shrunk.thresholds, rtol=1e-9)


def test_large_sets_are_read_through_a_fixed_subset(monkeypatch) -> None:

    scores, targets = calibrated(3000, 3, seed=11)
    plan = FoldPlan.build(torch.from_numpy(targets), 0)
    folds = plan.folds.astype(np.int64)
    shrunk, fold_shrunk = np.full(3, 0.4), np.full((5, 3), 0.4)
    whole = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    monkeypatch.setattr(module, "MAX_ROWS", 1000)
    capped = adaptive_thresholds(scores, targets, folds, shrunk, fold_shrunk)
    again = adaptive_thresholds(
        torch.from_numpy(scores), torch.from_numpy(targets), folds, shrunk, fold_shrunk
    )
    keep = np.sort(np.random.default_rng(3000).choice(3000, 1000, False))
    monkeypatch.setattr(module, "MAX_ROWS", 1 << 18)
    subset = adaptive_thresholds(scores[keep], targets[keep], folds[keep], shrunk, fold_shrunk)
    # The cap reads exactly that subset, the same from numpy and torch, and changes the
    # answer only through it (the whole set's thresholds are a different computation).
    np.testing.assert_array_equal(capped.thresholds, subset.thresholds)
    np.testing.assert_array_equal(capped.thresholds, again.thresholds)
    assert whole.thresholds.shape == capped.thresholds.shape


def _penalised_loss(x, rows, positives, weights, prior, tau) -> np.ndarray:
    z = weights[:, :1] * x + weights[:, 1:]
    loss = positives * np.logaddexp(0, -z) + (rows - positives) * np.logaddexp(0, z)
    return loss.sum(1) + 0.5 * tau * ((weights - prior) ** 2).sum(1)


def _saturating(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores like an over-confident model's: logits scaled by 1 to 6, so many saturate."""
    rng = np.random.default_rng(seed)
    scores = np.empty((n, n_labels))
    targets = np.empty((n, n_labels), dtype=np.int64)
    prevalence = np.exp(rng.uniform(np.log(0.005), np.log(0.4), n_labels))
    separation = rng.uniform(0.5, 4.0, n_labels)
    for j in range(n_labels):
        positive = rng.random(n) < prevalence[j]
        logits = rng.standard_normal(n, dtype=np.float32) * np.float32(1.5)
        logits += np.where(positive, separation[j], 0.0).astype(np.float32)
        logits += np.float32(np.log(prevalence[j]) - separation[j] / 2)
        logits *= np.float32(rng.uniform(1.0, 6.0))
        scores[:, j] = 1.0 / (1.0 + np.exp(-logits))
        targets[:, j] = positive
    return scores, targets


@pytest.mark.parametrize("tau", TAUS)
def test_platt_fits_reach_the_optimum_where_scores_saturate(tau: float) -> None:
    # On these scores a plain Newton step meets a vanishing curvature and explodes (label 4
    # once ended at a slope of 6,000 and a loss 40,000 times the optimum's); the halved
    # steps must end at the penalised optimum, for every label.
    scores, targets = _saturating(1500, 8, seed=6)
    folds = FoldPlan.build(torch.from_numpy(targets), 0).folds.astype(np.int64)
    calibration = module._Calibration(scores, targets, folds, 5)
    x, rows, positives = calibration.x, calibration.rows[0], calibration.positives[0]
    pooled = module._platt_rows(
        x.reshape(1, -1), rows.reshape(1, -1), positives.reshape(1, -1), np.zeros((1, 2)), 0.0
    )[0]
    prior = np.tile(pooled, (len(x), 1))
    fitted = calibration.fit(0, tau)
    best = _penalised_loss(x, rows, positives, fitted, prior, tau)
    assert np.all(np.abs(fitted) < 100)
    for direction in ([1e-4, 0], [0, 1e-4], [-1e-4, 0], [0, -1e-4]):
        moved = _penalised_loss(x, rows, positives, fitted + np.array(direction), prior, tau)
        assert np.all(best <= moved + 1e-9 * np.abs(moved))
