"""The "adaptive" strategy (issue 20): an ensemble of two per-label estimates, pulled toward
0.5 by an amount chosen on out-of-fold evidence.

The rule, per call (``n`` validation rows, ``L`` labels, the tune's ``K`` folds):

1. **Micro-aware own optimum** ``joint_j``: each label's threshold maximises
   ``F1_j(t) / L + (2 TP_j(t) - m * PP_j(t)) / D``, the label's share of macro-F1 plus the
   first-order change of micro-F1 (``m`` the current micro-F1, ``D`` the pooled predicted
   positives plus positives), iterated :data:`JOINT_ITERATIONS` times from the per-label F1
   optima. Macro and micro weigh the same (:data:`MICRO_WEIGHT`): a rare label is lowered
   only while its F1 gain outweighs the false positives it adds to the pooled count. Labels
   without positives take the shared threshold.
2. **Ensemble**: ``mixed = sigmoid((logit(joint) + logit(shrunk)) / 2)``, with ``shrunk`` the
   "shrunk" strategy's thresholds (own optimum pulled toward the shared one, ``k = 6``). The
   two estimates err in different ways (one fits each label's curve, the other borrows from
   the pooled curve); their logit mean has less variance than either.
3. **Pull toward 0.5**: ``threshold = sigmoid(rho * logit(mixed))``, one ``rho`` per call
   from :data:`RHOS`. Each ``rho`` is scored on the same held-out rows (paired): every row
   is decided by the thresholds built (steps 1-2) without its fold, and ``rho`` maximises
   the pooled out-of-fold macro-F1 + micro-F1; ties go to the smaller ``rho`` (closer to
   0.5). ``rho = 0`` is plain 0.5: where tuning does not pay on held-out rows, it is undone.

No constant here was fitted to a grid: the two weights are 1 (macro and micro, the two
figures a default is judged on) and 1/2 (the two estimates), ``rho`` is chosen by the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Candidate pulls toward 0.5 (0: every label at 0.5; 1: the ensemble as it is).
RHOS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Weight of the micro-F1 term against the label's share of macro-F1 (step 1).
MICRO_WEIGHT = 1.0
#: Fixed-point steps of the micro linearisation (step 1); it usually settles in 2-3.
JOINT_ITERATIONS = 5
#: A label's every distinct score is a cut up to this many distinct scores; above, GRID_CUTS.
EXACT_CUTS = 8192
GRID_CUTS = 4096
_LOGIT_EPS = 1e-9
_ROWS_PER_CHUNK = 1 << 15


def _logit(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(values, dtype=np.float64), _LOGIT_EPS, 1.0 - _LOGIT_EPS)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def _f1(tp: np.ndarray, pp: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = pp + positives
    return np.where(denominator > 0, 2.0 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)


@dataclass(frozen=True)
class AdaptiveChoice:
    """What :func:`adaptive_thresholds` chose.

    ``thresholds`` (L,) the final thresholds; ``rho`` the pull kept; ``joint`` (L,) step 1 on
    all rows; ``mixed`` (L,) step 2; ``fold_thresholds`` (K, L) the final rule built without
    each fold (at the chosen ``rho``: the cross-fitted estimate can score them); ``scores``
    the out-of-fold macro-F1 + micro-F1 of each ``rho`` in :data:`RHOS`.
    """

    thresholds: np.ndarray
    rho: float
    joint: np.ndarray
    mixed: np.ndarray
    fold_thresholds: np.ndarray
    scores: np.ndarray


class _Curves:
    """Every label's (true, predicted) positives at its cuts, under several row weightings.

    ``tp[j]``, ``pp[j]``: (W, C_j + 1) float64, column 0 "predict nothing", column c >= 1
    "score >= value[j][c - 1]" (distinct scores, descending); ``cut[j]`` (C_j + 1,) the
    threshold that reproduces each column (midpoint to the next lower distinct score).
    """

    def __init__(self, scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> None:
        self.tp: list[np.ndarray] = []
        self.pp: list[np.ndarray] = []
        self.cut: list[np.ndarray] = []
        self.value: list[np.ndarray] = []
        for j in range(scores.shape[1]):
            column = scores[:, j]
            ascending = np.sort(column)
            distinct = np.unique(column)[::-1]  # descending
            lower = np.append(distinct[1:], 0.0)
            mids = 0.5 * (distinct + lower)
            if len(distinct) > EXACT_CUTS:
                keep = np.unique(np.linspace(0, len(distinct) - 1, GRID_CUTS).round().astype(int))
                distinct, mids = distinct[keep], mids[keep]
            order = np.argsort(-column, kind="stable")
            cum_w = np.cumsum(weights[:, order], axis=1)
            cum_tp = np.cumsum(weights[:, order] * targets[order, j], axis=1)
            ends = len(column) - np.searchsorted(ascending, distinct, side="left") - 1
            zero = np.zeros((len(weights), 1))
            self.tp.append(np.hstack([zero, cum_tp[:, ends]]))
            self.pp.append(np.hstack([zero, cum_w[:, ends]]))
            top = float(distinct[0])
            nothing = np.nextafter(top, np.inf) if top < 1.0 else 1.0 + 1e-9
            self.cut.append(np.concatenate(([nothing], mids)))
            self.value.append(distinct)

    def threshold(self, label: int, row: int, column: int) -> float:
        """The threshold of ``column`` under weighting ``row``: the midpoint between the
        lowest weighted score predicted positive and the highest weighted one predicted
        negative (rows of weight 0, a held-out fold's, do not move it)."""
        if column == 0:
            return float(self.cut[label][0])
        pp, value = self.pp[label][row], self.value[label]
        # The run of columns whose added rows all weigh 0 ends where the count next grows.
        end = column + int(np.searchsorted(pp[column:], pp[column], side="right")) - 1
        below = float(value[end]) if end < len(value) else 0.0
        return 0.5 * (float(value[column - 1]) + below)


def _joint_optima(curves: _Curves, row: int, shared: float | None) -> np.ndarray:
    """Step 1 under weighting ``row``: (L,) thresholds (``shared`` for labels without
    positives; 0.5 when the shared threshold is None)."""
    n_labels = len(curves.tp)
    tps = [tp[row] for tp in curves.tp]
    pps = [pp[row] for pp in curves.pp]
    positives = np.array([tp[-1] for tp in tps])
    total_positives = float(positives.sum())
    f1s = [_f1(tp, pp, p) for tp, pp, p in zip(tps, pps, positives, strict=True)]
    # Ties go to the higher threshold (the smaller column), as in the core search.
    picks = [int(np.argmax(f[1:])) + 1 for f in f1s]
    for _ in range(JOINT_ITERATIONS):
        tp_total = sum(tp[i] for tp, i in zip(tps, picks, strict=True))
        pp_total = sum(pp[i] for pp, i in zip(pps, picks, strict=True))
        denominator = max(pp_total + total_positives, 1e-12)
        micro = 2.0 * tp_total / denominator
        new = [
            int(np.argmax(f / n_labels + MICRO_WEIGHT * (2.0 * tp - micro * pp) / denominator))
            for f, tp, pp in zip(f1s, tps, pps, strict=True)
        ]
        if new == picks:
            break
        picks = new
    own = np.array([curves.threshold(j, row, i) for j, i in enumerate(picks)])
    return np.where(positives > 0, own, 0.5 if shared is None else shared)


def _mix(joint: np.ndarray, shrunk: np.ndarray) -> np.ndarray:
    return _sigmoid(0.5 * (_logit(joint) + _logit(shrunk)))


def _out_of_fold_score(
    scores: np.ndarray, targets: np.ndarray, folds: np.ndarray, fold_thresholds: np.ndarray
) -> float:
    """Macro-F1 + micro-F1 of the pooled decisions, each row at its own fold's thresholds."""
    n_labels = scores.shape[1]
    tp, pp = np.zeros(n_labels), np.zeros(n_labels)
    positives = np.zeros(n_labels)
    for start in range(0, len(scores), _ROWS_PER_CHUNK):
        rows = slice(start, start + _ROWS_PER_CHUNK)
        decided = scores[rows] >= fold_thresholds[folds[rows]]
        truth = targets[rows] != 0
        tp += (decided & truth).sum(0)
        pp += decided.sum(0)
        positives += truth.sum(0)
    return float(_f1(tp, pp, positives).mean() + _f1(tp.sum(), pp.sum(), positives.sum()))


def adaptive_thresholds(
    scores: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    shrunk: np.ndarray,
    fold_shrunk: np.ndarray,
    shared: float | None,
    fold_shared: list[float | None],
) -> AdaptiveChoice:
    """The "adaptive" thresholds (see the module docstring for the rule).

    ``scores`` (n, L) float probabilities; ``targets`` (n, L) 0/1; ``folds`` (n,) int, each
    row's fold in ``0..K-1`` (the tune's :class:`tuning.estimate.FoldPlan` ``folds``);
    ``shrunk`` (L,) the "shrunk" strategy's thresholds on all rows and ``fold_shrunk`` (K, L)
    the same tuned without each fold; ``shared`` the pooled (global) threshold on all rows
    and ``fold_shared`` (K,) without each fold (None where it cannot be tuned). Deterministic:
    no randomness beyond the fold plan's.
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    folds = np.asarray(folds, dtype=np.int64)
    n_folds = len(fold_shared)
    weights = np.vstack([np.ones(len(scores))] + [folds != f for f in range(n_folds)])
    curves = _Curves(scores, targets, weights.astype(np.float64))
    joint = _joint_optima(curves, 0, shared)
    fold_joint = np.stack([_joint_optima(curves, f + 1, fold_shared[f]) for f in range(n_folds)])
    mixed = _mix(joint, np.asarray(shrunk, dtype=np.float64))
    fold_mixed = _mix(fold_joint, np.asarray(fold_shrunk, dtype=np.float64))
    found = np.array(
        [
            _out_of_fold_score(scores, targets, folds, _sigmoid(rho * _logit(fold_mixed)))
            for rho in RHOS
        ]
    )
    best = int(np.argmax(found))  # the first maximum: ties go to the smaller rho
    rho = RHOS[best]
    return AdaptiveChoice(
        thresholds=_sigmoid(rho * _logit(mixed)),
        rho=rho,
        joint=joint,
        mixed=mixed,
        fold_thresholds=_sigmoid(rho * _logit(fold_mixed)),
        scores=found,
    )
