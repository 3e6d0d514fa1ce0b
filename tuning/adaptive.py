"""The "adaptive" strategy (issue 20): a calibrated plug-in optimum and the "shrunk"
thresholds, averaged in logit space and pulled toward 0.5 as far as out-of-fold evidence
says.

The rule, per call (``n`` validation rows, ``L`` labels, the tune's ``K`` folds):

1. **Calibrate** each label's scores with a Platt map ``q = sigmoid(a * logit(s) + b)``,
   fitted by maximum likelihood with a Gaussian prior of precision ``tau`` pulling
   ``(a, b)`` toward the map fitted on all labels pooled; ``tau`` is chosen from
   :data:`TAUS` by the held-out log-loss of the folds (a calibration criterion, not an
   F1 one). A rare label borrows the pooled map; a frequent label gets its own.
2. **Plug-in optimum** ``plugin_j``: each label's threshold maximises, on the *expected*
   counts of its calibrated scores (``TP(t) = sum of q over rows with score >= t``),
   ``F1_j(t) / L + (2 TP_j(t) - m * PP_j(t)) / D``: the label's share of macro-F1 plus the
   first-order change of micro-F1 (``m`` the current micro-F1, ``D`` the pooled predicted
   positives plus positives), iterated :data:`JOINT_ITERATIONS` times from the per-label
   optima. For calibrated scores the F1 optimum is at ``q = F1* / 2`` (Lipton et al. 2014);
   expected counts locate it with far less noise than the argmax of the observed curve,
   and the micro term stops a rare label from buying a little F1 with many false positives.
   Cuts are a label's distinct scores up to :data:`MAX_BINS` rows, else the edges of as
   many logit bins (the same units the calibration is fitted on: no sort of the scores).
3. **Blend**: ``mixed = sigmoid(w * logit(plugin) + (1 - w) * logit(shrunk))`` with
   ``w = 1/2`` (:data:`WEIGHTS`), ``shrunk`` the "shrunk" strategy's thresholds (the
   observed curve's own optimum pulled toward the shared threshold, ``k = 6``). One leans
   on the calibration map, the other on the observed curve; their logit mean hedges the
   failure of either.
4. **Pull toward 0.5**: ``threshold = sigmoid(rho * logit(mixed))``, one ``rho`` per call
   from :data:`RHOS`, scored on the same held-out rows (paired): every row is decided by
   the thresholds built (steps 1-3) without its fold, and ``rho`` maximises the pooled
   out-of-fold macro-F1 + micro-F1; ties go to the smaller ``rho``. ``rho = 0`` is plain
   0.5: where tuning does not pay on held-out rows, it is undone.

``weights`` (a grid of ``w``) chooses ``w`` with ``rho`` on the same out-of-fold rows (ties
to ``w`` nearer 1/2). The grid (0, 1/4, 1/2, 3/4, 1) was measured: better on the grid's
selection part, but it lost micro-F1 to 0.5 in more unseen cases (one more knob chosen on
~100-row folds), so the default keeps ``w = 1/2``.

Cost: O(n L) reads plus batched two-parameter Newton fits on at most :data:`MAX_BINS`
units per label; validation sets above :data:`MAX_ROWS` rows are read through a fixed
random subset of that many rows (seeded by ``n``), which bounds the cost at large ``n``.

Macro and micro weigh 1 each (the two figures a default is judged on); ``tau``, ``w`` and
``rho`` are chosen by the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Candidate pulls toward 0.5 (0: every label at 0.5; 1: the blend as it is).
RHOS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Weights of the plug-in optimum in the blend (0: "shrunk" alone; 1: the plug-in alone).
WEIGHTS: tuple[float, ...] = (0.5,)
#: Candidate prior precisions of a label's Platt map around the pooled one (step 1).
TAUS: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
#: Weight of the micro-F1 term against the label's share of macro-F1 (step 2).
MICRO_WEIGHT = 1.0
#: Fixed-point steps of the micro linearisation (step 2); it usually settles in 2-3.
JOINT_ITERATIONS = 5
#: A label's distinct scores are its units (calibration and cuts) up to this many rows, else
#: as many equal-width bins of its clipped logit: the likelihood's sufficient statistics
#: (rows and positives per bin, each bin at its rows' mean logit) and the cuts' grid.
MAX_BINS = 1024
#: Scores are clipped this far inside (0, 1) before the calibration's logit.
SCORE_EPS = 1e-6
NEWTON_STEPS = 30
#: Validation sets above this many rows are read through a fixed random subset of it.
MAX_ROWS = 1 << 17
_LOGIT_EPS = 1e-9
_ROWS_PER_CHUNK = 1 << 15


def _logit(values: np.ndarray, eps: float = _LOGIT_EPS) -> np.ndarray:
    clipped = np.clip(np.asarray(values, dtype=np.float64), eps, 1.0 - eps)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def _f1(tp: np.ndarray, pp: np.ndarray, positives: np.ndarray) -> np.ndarray:
    denominator = pp + positives
    return np.where(denominator > 0, 2.0 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)


@dataclass(frozen=True)
class AdaptiveChoice:
    """What :func:`adaptive_thresholds` chose.

    ``thresholds`` (L,) the final thresholds; ``rho`` the pull, ``weight`` the plug-in's
    weight ``w`` and ``tau`` the calibration prior kept; ``plugin`` (L,) step 2 on all rows;
    ``mixed`` (L,) step 3 at the chosen ``w``; ``fold_thresholds`` (K, L) the final rule
    built without each fold (at the chosen ``w`` and ``rho``, for the cross-fitted
    estimate); ``scores`` (len(weights), len(RHOS)) the out-of-fold macro-F1 + micro-F1 of
    each pair.
    """

    thresholds: np.ndarray
    rho: float
    weight: float
    tau: float
    plugin: np.ndarray
    mixed: np.ndarray
    fold_thresholds: np.ndarray
    scores: np.ndarray


def _platt(
    x: np.ndarray,
    rows: np.ndarray,
    positives: np.ndarray,
    prior: np.ndarray | None = None,
    tau: float = 0.0,
) -> np.ndarray:
    """MAP ``(a, b)`` of ``P(y = 1) = sigmoid(a x + b)`` from per-value counts (Newton)."""
    weights = np.zeros(2) if prior is None else prior.copy()
    design = np.stack([x, np.ones_like(x)], axis=1)
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(design @ weights)
        gradient = design.T @ (rows * p - positives)
        hessian = (design * (rows * p * (1.0 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        if prior is not None:
            gradient += tau * (weights - prior)
            hessian += tau * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-9:
            break
    return weights


def _platt_labels(
    x: np.ndarray, rows: np.ndarray, positives: np.ndarray, prior: np.ndarray, tau: float
) -> np.ndarray:
    """:func:`_platt` for every label at once: ``x``, ``rows``, ``positives`` (L, U), a
    label's units in its row (padding weighs 0). The same Newton steps, each label stopping
    when its own step is below 1e-9, with the 2 x 2 systems solved in closed form."""
    n_labels = len(x)
    weights = np.tile(prior, (n_labels, 1))
    active = np.ones(n_labels, dtype=bool)
    for _ in range(NEWTON_STEPS):
        on = np.flatnonzero(active)
        if not len(on):
            break
        a, b = weights[on, :1], weights[on, 1:]
        xs, r, hits = x[on], rows[on], positives[on]
        p = _sigmoid(a * xs + b)
        residual = r * p - hits
        curvature = r * p * (1.0 - p)
        g_a = (residual * xs).sum(1) + tau * (weights[on, 0] - prior[0])
        g_b = residual.sum(1) + tau * (weights[on, 1] - prior[1])
        h_aa = (curvature * xs * xs).sum(1) + 1e-9 + tau
        h_ab = (curvature * xs).sum(1)
        h_bb = curvature.sum(1) + 1e-9 + tau
        det = h_aa * h_bb - h_ab * h_ab
        step = np.stack([(h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det], 1)
        weights[on] -= step
        active[on] = np.abs(step).max(1) >= 1e-9
    return weights


def _as_float64(part: Any) -> np.ndarray:
    """A numpy or torch (any device, any dtype) slice as a float64 numpy array."""
    if isinstance(part, torch.Tensor):
        return part.detach().to("cpu", torch.float64).numpy()
    return np.asarray(part, dtype=np.float64)


def _column(array: Any, label: int) -> np.ndarray:
    """One label's column as float64 (a copy of n values: the input is never copied whole)."""
    return _as_float64(array[:, label])


class _Calibration:
    """Each label's score units and, per row weighting, its rows and positives per unit.

    Units ascending: a label's distinct scores when it has at most :data:`MAX_BINS` rows,
    else equal-width bins of its clipped logit (no sort). Per label: ``x`` (U,) each unit's
    logit (a bin's rows' mean); ``rows``, ``positives`` (W, U), weighting 0 all rows and
    weighting ``f + 1`` all rows but fold ``f``'s; ``low``, ``high`` (U,) the unit's score
    range (a bin's edges; 0 and 1 close the outer bins); ``top`` the highest score.
    """

    def __init__(self, scores: Any, targets: Any, folds: np.ndarray, n_folds: int) -> None:
        self.x: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.positives: list[np.ndarray] = []
        self.low: list[np.ndarray] = []
        self.high: list[np.ndarray] = []
        self.top: list[float] = []
        for j in range(scores.shape[1]):
            column = _column(scores, j)
            truth = _column(targets, j)
            if len(column) <= MAX_BINS:
                values, index = np.unique(column, return_inverse=True)
                x, low, high = _logit(values, SCORE_EPS), values, values
            else:
                logits = _logit(column, SCORE_EPS)
                start, stop = float(logits.min()), float(logits.max())
                width = max(stop - start, 1e-12) / MAX_BINS
                index = np.minimum(((logits - start) / width).astype(np.int64), MAX_BINS - 1)
                counts = np.bincount(index, minlength=MAX_BINS)
                used = np.flatnonzero(counts)
                x = np.bincount(index, logits, MAX_BINS)[used] / counts[used]
                low = _sigmoid(start + width * used)
                high = _sigmoid(start + width * (used + 1))
                low[0], high[-1] = 0.0, 1.0
                # Bin number -> rank among the used bins: a gather, not a search per row.
                rank = np.zeros(MAX_BINS, dtype=np.int64)
                rank[used] = np.arange(len(used))
                index = rank[index]
            size = len(x)
            # One bincount per fold and unit: the training rows are all rows minus the fold's.
            keyed = folds * size + index
            by_fold = np.bincount(keyed, minlength=n_folds * size).reshape(n_folds, size)
            hits = np.bincount(keyed, truth, n_folds * size).reshape(n_folds, size)
            total, total_hits = by_fold.sum(0), hits.sum(0)
            self.x.append(x)
            self.rows.append(np.vstack([total, total - by_fold]).astype(np.float64))
            self.positives.append(np.vstack([total_hits, total_hits - hits]))
            self.low.append(np.asarray(low, dtype=np.float64))
            self.high.append(np.asarray(high, dtype=np.float64))
            self.top.append(float(column.max()))

    def fit(self, weighting: int, tau: float) -> np.ndarray:
        """(L, 2) Platt maps of every label under ``weighting`` with prior precision ``tau``."""
        pooled = _platt(
            np.concatenate(self.x),
            np.concatenate([r[weighting] for r in self.rows]),
            np.concatenate([p[weighting] for p in self.positives]),
        )
        x, rows, positives = self._padded(weighting)
        return _platt_labels(x, rows, positives, pooled, tau)

    def _padded(self, weighting: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(L, U_max) units, rows and positives under ``weighting``; padding weighs 0."""
        width = max(len(x) for x in self.x)
        x = np.zeros((len(self.x), width))
        rows, positives = np.zeros_like(x), np.zeros_like(x)
        for j, (units, r, p) in enumerate(zip(self.x, self.rows, self.positives, strict=True)):
            x[j, : len(units)] = units
            rows[j, : len(units)] = r[weighting]
            positives[j, : len(units)] = p[weighting]
        return x, rows, positives

    def held_out_loss(self, fold: int, maps: np.ndarray) -> float:
        """Log-loss of fold ``fold``'s rows (all rows minus its training rows) under ``maps``."""
        total = 0.0
        for j, (x, r, p) in enumerate(zip(self.x, self.rows, self.positives, strict=True)):
            rows, positives = r[0] - r[fold + 1], p[0] - p[fold + 1]
            z = maps[j, 0] * x + maps[j, 1]
            # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
            total += float(
                positives @ np.logaddexp(0.0, -z) + (rows - positives) @ np.logaddexp(0.0, z)
            )
        return total


class _Curves:
    """Every label's expected true positives and predicted positives at its cuts, per
    weighting: ``etp[j]``, ``pp[j]`` (W, U_j + 1); column 0 "predict nothing", column
    c >= 1 "the top c units" (units of :class:`_Calibration`, descending)."""

    def __init__(self, calibration: _Calibration, maps: np.ndarray) -> None:
        self.etp: list[np.ndarray] = []
        self.pp: list[np.ndarray] = []
        self.low = [low[::-1] for low in calibration.low]
        self.high = [high[::-1] for high in calibration.high]
        self.top = calibration.top
        for j, (x, rows) in enumerate(zip(calibration.x, calibration.rows, strict=True)):
            # Each weighting's own calibration map (maps[w, j]) gives its expected positives.
            q = _sigmoid(maps[:, j, :1] * x[::-1] + maps[:, j, 1:])
            zero = np.zeros((len(rows), 1))
            self.etp.append(np.hstack([zero, np.cumsum(q * rows[:, ::-1], axis=1)]))
            self.pp.append(np.hstack([zero, np.cumsum(rows[:, ::-1], axis=1)]))

    def threshold(self, label: int, row: int, column: int) -> float:
        """The threshold of ``column`` under weighting ``row``: the midpoint between the
        lowest weighted unit predicted positive and the highest weighted one predicted
        negative (units of weight 0, a held-out fold's rows, do not move it)."""
        if column == 0:
            top = self.top[label]
            return float(np.nextafter(top, np.inf)) if top < 1.0 else 1.0
        pp, low, high = self.pp[label][row], self.low[label], self.high[label]
        # The run of columns whose added units all weigh 0 ends where the count next grows.
        end = column + int(np.searchsorted(pp[column:], pp[column], side="right")) - 1
        below = float(high[end]) if end < len(high) else 0.0
        return 0.5 * (float(low[column - 1]) + below)


def _plugin_optima(curves: _Curves, row: int) -> np.ndarray:
    """Step 2 under weighting ``row``: (L,) thresholds."""
    n_labels = len(curves.etp)
    tps = [tp[row] for tp in curves.etp]
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
    return np.array([curves.threshold(j, row, i) for j, i in enumerate(picks)])


def _blend(plugin: np.ndarray, shrunk: np.ndarray, weight: float) -> np.ndarray:
    return _sigmoid(weight * _logit(plugin) + (1.0 - weight) * _logit(shrunk))


def _out_of_fold_scores(
    scores: Any, targets: Any, folds: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """(C,) macro-F1 + micro-F1 of the pooled decisions of each candidate (C, K, L): every
    row at its own fold's thresholds. One pass over row chunks for all candidates."""
    n_candidates, _, n_labels = candidates.shape
    tp = np.zeros((n_candidates, n_labels))
    pp = np.zeros((n_candidates, n_labels))
    positives = np.zeros(n_labels)
    for start in range(0, len(scores), _ROWS_PER_CHUNK):
        rows = slice(start, start + _ROWS_PER_CHUNK)
        chunk = _as_float64(scores[rows])
        truth = _as_float64(targets[rows]) != 0
        positives += truth.sum(0)
        for c in range(n_candidates):
            decided = chunk >= candidates[c][folds[rows]]
            tp[c] += (decided & truth).sum(0)
            pp[c] += decided.sum(0)
    macro = _f1(tp, pp, positives[None, :]).mean(1)
    micro = _f1(tp.sum(1), pp.sum(1), np.full(n_candidates, positives.sum()))
    return macro + micro


def adaptive_thresholds(
    scores: Any,
    targets: Any,
    folds: np.ndarray,
    shrunk: np.ndarray,
    fold_shrunk: np.ndarray,
    weights: tuple[float, ...] = WEIGHTS,
) -> AdaptiveChoice:
    """The "adaptive" thresholds (see the module docstring for the rule).

    ``scores`` (n, L) float probabilities and ``targets`` (n, L) 0/1, numpy arrays or torch
    tensors of any dtype and device (read a label column or a row chunk at a time, never
    copied whole); ``folds``
    (n,) int, each row's fold in ``0..K-1`` (the tune's :class:`tuning.estimate.FoldPlan`);
    ``shrunk`` (L,) the "shrunk" strategy's thresholds on all rows and ``fold_shrunk``
    (K, L) the same tuned without each fold; ``weights`` the candidate blend weights ``w``.
    Deterministic: no randomness beyond the fold plan's.
    """
    folds = np.asarray(folds, dtype=np.int64)
    fold_shrunk = np.asarray(fold_shrunk, dtype=np.float64)
    if len(folds) > MAX_ROWS:
        # Two calibration parameters and one pull per label need far fewer rows than a
        # large validation set holds: a fixed random subset (seeded by n) bounds the cost.
        keep = np.sort(np.random.default_rng(len(folds)).choice(len(folds), MAX_ROWS, False))
        index = torch.from_numpy(keep) if isinstance(scores, torch.Tensor) else keep
        scores, targets, folds = scores[index], targets[index], folds[keep]
    n_folds = len(fold_shrunk)
    calibration = _Calibration(scores, targets, folds, n_folds)
    losses = [
        sum(calibration.held_out_loss(f, calibration.fit(f + 1, tau)) for f in range(n_folds))
        for tau in TAUS
    ]
    tau = TAUS[int(np.argmin(losses))]
    maps = np.stack([calibration.fit(w, tau) for w in range(n_folds + 1)])  # (W, L, 2)
    curves = _Curves(calibration, maps)
    plugin = _plugin_optima(curves, 0)
    fold_plugin = np.stack([_plugin_optima(curves, f + 1) for f in range(n_folds)])
    shrunk = np.asarray(shrunk, dtype=np.float64)
    candidates = np.stack(
        [
            _sigmoid(rho * _logit(_blend(fold_plugin, fold_shrunk, weight)))
            for weight in weights
            for rho in RHOS
        ]
    )
    found = _out_of_fold_scores(scores, targets, folds, candidates)
    found = found.reshape(len(weights), len(RHOS))
    # The best pair; ties to the smaller rho, then to the weight nearer 1/2.
    order = sorted(
        ((w, r) for w in range(len(weights)) for r in range(len(RHOS))),
        key=lambda pair: (RHOS[pair[1]], abs(weights[pair[0]] - 0.5)),
    )
    w_index, r_index = max(order, key=lambda pair: found[pair])  # max keeps the first
    weight, rho = weights[w_index], RHOS[r_index]
    mixed = _blend(plugin, shrunk, weight)
    return AdaptiveChoice(
        thresholds=_sigmoid(rho * _logit(mixed)),
        rho=rho,
        weight=weight,
        tau=tau,
        plugin=plugin,
        mixed=mixed,
        fold_thresholds=_sigmoid(rho * _logit(_blend(fold_plugin, fold_shrunk, weight))),
        scores=found,
    )
