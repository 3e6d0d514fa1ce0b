"""The "adaptive" strategy (issue 20): hand-made cases, a known optimum, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from labelcut.tuning import tune_thresholds
from labelcut.tuning.adaptive import RHOS, AdaptiveChoice, adaptive_thresholds
from labelcut.tuning.estimate import FoldPlan


def adaptive(scores: np.ndarray, targets: np.ndarray, seed: int = 0) -> AdaptiveChoice:
    """The strategy with its inputs from the public tune: fold plan, shrunk and shared."""
    plan = FoldPlan.build(torch.from_numpy(targets), seed)
    folds = plan.folds.astype(np.int64)

    def shrunk(rows: np.ndarray) -> tuple[np.ndarray, float | None]:
        result = tune_thresholds(
            scores[rows], targets[rows], strategy="shrunk", n_bootstrap=0, estimate=False
        )
        return np.asarray(result.thresholds, dtype=np.float64), result.global_threshold

    everything, shared = shrunk(np.arange(len(scores)))
    per_fold = [shrunk(np.flatnonzero(folds != f)) for f in range(plan.n_folds)]
    return adaptive_thresholds(
        scores,
        targets,
        folds,
        everything,
        np.stack([t for t, _ in per_fold]),
        shared,
        [s for _, s in per_fold],
    )


def calibrated(n: int, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform in (0, 1), each target drawn with its score as the probability."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, n_labels))
    return scores, (rng.random((n, n_labels)) < scores).astype(np.int64)


def test_the_rule_is_what_the_docstring_states() -> None:
    scores, targets = calibrated(400, 4, seed=1)
    choice = adaptive(scores, targets)
    assert choice.rho in RHOS
    assert choice.rho == RHOS[int(np.argmax(choice.scores))]
    logit = np.log(choice.mixed) - np.log1p(-choice.mixed)
    np.testing.assert_allclose(choice.thresholds, 1 / (1 + np.exp(-choice.rho * logit)))
    assert choice.fold_thresholds.shape == (5, 4)
    assert np.all((choice.thresholds > 0) & (choice.thresholds < 1))


def test_perfectly_separable_labels_are_separated_and_ties_go_to_half() -> None:
    rng = np.random.default_rng(2)
    targets = (rng.random((200, 3)) < 0.4).astype(np.int64)
    scores = np.where(targets == 1, rng.uniform(0.7, 1.0, (200, 3)), rng.uniform(0, 0.3, (200, 3)))
    choice = adaptive(scores, targets)
    # Every candidate pull leaves each threshold in the gap, so every rho scores 2.0 out of
    # fold (macro 1 + micro 1) and the tie goes to the smallest: plain 0.5.
    np.testing.assert_allclose(choice.scores, 2.0)
    assert choice.rho == 0.0
    np.testing.assert_array_equal(choice.thresholds, 0.5)
    assert np.all((choice.joint > 0.3) & (choice.joint < 0.7))


def test_one_positive_label_predicts_it_when_it_scores_highest() -> None:
    scores, targets = calibrated(300, 3, seed=3)
    targets[:, 2] = 0
    top = int(np.argmax(scores[:, 2]))
    targets[top, 2] = 1
    choice = adaptive(scores, targets)
    second = np.sort(scores[:, 2])[-2]
    # On all rows its micro-aware optimum keeps exactly that row (F1 1, no false positive).
    assert second < choice.joint[2] <= scores[top, 2]
    assert np.isfinite(choice.thresholds).all()


def test_a_label_without_positives_takes_the_shared_threshold() -> None:
    scores, targets = calibrated(300, 3, seed=4)
    targets[:, 1] = 0
    shared = tune_thresholds(scores, targets, strategy="global", n_bootstrap=0).global_threshold
    choice = adaptive(scores, targets)
    assert choice.joint[1] == pytest.approx(shared)


def test_all_scores_equal_gives_all_or_nothing() -> None:
    rng = np.random.default_rng(5)
    targets = (rng.random((120, 2)) < 0.5).astype(np.int64)
    scores = np.full((120, 2), 0.3)
    choice = adaptive(scores, targets)
    decided = scores >= choice.thresholds
    assert np.isfinite(choice.thresholds).all()
    for j in range(2):
        assert decided[:, j].all() or not decided[:, j].any()


def test_one_label_joint_optimum_is_the_f1_optimum() -> None:
    # With one label, macro- and micro-F1 are the same F1: the micro-aware optimum is
    # the plain F1 optimum, checked against the per_label tune as the oracle.
    scores, targets = calibrated(500, 1, seed=6)
    choice = adaptive(scores, targets)
    oracle = tune_thresholds(scores, targets, strategy="per_label", n_bootstrap=0)
    np.testing.assert_array_equal(scores >= choice.joint, scores >= np.asarray(oracle.thresholds))


def test_calibrated_scores_reach_the_known_optimum() -> None:
    # Scores U(0, 1) with P(y = 1 | s) = s: F1(t) = (1 - t^2) / (1.5 - t), maximal at
    # t* = (3 - sqrt 5) / 2 = 0.382 with F1* = 0.764 (= 2 t*, Lipton et al. 2014).
    scores, targets = calibrated(20_000, 2, seed=7)
    choice = adaptive(scores, targets)
    best = (3 - np.sqrt(5)) / 2
    np.testing.assert_allclose(choice.joint, best, atol=0.03)
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
