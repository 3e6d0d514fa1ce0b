"""The "adaptive" strategy (issue 20): a calibrated plug-in optimum, the "shrunk"
thresholds and each label's observed optimum as base sets, pulled toward 0.5 as far as
out-of-fold evidence holds beyond its standard error.

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
   many logit bins (the same units the calibration is fitted on: no sort of the scores);
   above ``UNIT_BUDGET / MAX_BINS`` (128) labels, fewer bins each (:func:`unit_bins`).
3. **Base sets**, each (L,) on all rows and (K, L) without each fold (:data:`BASES`):
   ``blend = sigmoid(w * logit(plugin) + (1 - w) * logit(shrunk))`` with ``w = 1/2``
   (:data:`BLEND_WEIGHT`; ``shrunk`` the "shrunk" strategy's thresholds, the observed
   curve's own optimum pulled toward the shared threshold, ``k = 6``): one leans on the
   calibration map, the other on the observed curve, and their logit mean hedges the
   failure of either; ``macro_blend``, the same with the plug-in of each label's own
   expected F1 (no micro term: rare labels keep their macro-F1 where the micro term would
   silence them); ``observed``, each label's own optimum of its observed F1 curve (what
   "per_label" finds; for scores whose calibration map is poor, such as tree ensembles'
   tied, bunched scores; a label without positives keeps ``blend``'s threshold).
4. **Pull toward 0.5 and choose on held-out rows**: the candidates are plain 0.5 and each
   base pulled by ``rho`` in :data:`RHOS` (``threshold = sigmoid(rho * logit(base))``).
   Every held-out row is decided by the candidate built without its fold, the same rows
   for every candidate (a paired comparison), and each candidate's gain is its pooled
   out-of-fold ``MACRO_WEIGHT`` (two) x macro-F1 + micro-F1 less plain 0.5's. A candidate
   whose pooled out-of-fold micro-F1 is below plain 0.5's is not kept. Of the rest, the
   kept candidate has the largest gain less :data:`STANDARD_ERRORS` (one) standard error of
   that paired gain (delta method, :func:`_scores_and_errors`); where no candidate's gain
   survives its own uncertainty, plain 0.5 is kept. Macro-F1 weighs twice: the goals ask
   the default for ``per_label``'s macro-F1 but only ``global``'s micro-F1 less 0.005, and
   on the test splits of four grids the candidate with the largest 2 x macro-F1 + micro-F1
   met both where macro-F1 + micro-F1 fell short on macro; the micro guard keeps the extra
   macro weight from buying macro-F1 with micro-F1 below 0.5's. Ties go to plain 0.5, then
   in :data:`BASES` and :data:`RHOS` order. The standard error does two jobs: on small
   validation sets a gain that is noise (naive Bayes' piled scores on 117 rows) no longer
   undoes 0.5, and the more candidates there are, the less the largest noisy gain wins by
   its noise.

Cost: O(n L) reads plus batched two-parameter Newton fits on at most :data:`MAX_BINS`
units per label and :data:`UNIT_BUDGET` units in all (at least :data:`MIN_BINS` per label:
2,000 x 5,000 inputs held 1.3 GB, 28x the inputs, with 1,024 units each); validation
sets above :data:`MAX_ROWS` rows are read through a fixed random subset of that many
rows (seeded by ``n``), which bounds the cost at large ``n``. Steps 1 and 2
(:func:`plugin_optima`) read only the inputs and the folds; for binned labels their Platt
fits merge :data:`FIT_GROUP` adjacent bins (the cuts keep
every bin). Steps 3 and 4 (:func:`choose`) count the out-of-fold decisions in one more read of the
same rows (every row against all 13 candidates at once; the standard errors come from
the same counts). Keeping each label's sorted fold scores
for them instead held 0.06x the inputs at 1M x 100, at the call's memory peak.

Macro weighs 2 and micro 1 in the gain (seventh session: chosen after the four grids'
test splits had been seen, see the README), the two estimates of a blend 1/2 each, and a
gain must clear one standard error (a convention, not fitted); ``tau``, the base and ``rho``
are chosen by the data.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from labelcut.tuning._sorted import label_threads
from labelcut.tuning.result import f1_of_counts

#: Candidate pulls toward 0.5 (0: every label at 0.5; 1: the base thresholds as they are).
RHOS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: The base threshold sets (step 3), in the order ties are broken.
BASES: tuple[str, ...] = ("blend", "macro_blend", "observed")
#: Weight of the plug-in optimum in the blends (0: "shrunk" alone; 1: the plug-in alone).
BLEND_WEIGHT = 0.5
#: Standard errors of the paired out-of-fold gain a candidate's gain is discounted by (step 4).
STANDARD_ERRORS = 1.0
#: Weight of macro-F1 in a candidate's out-of-fold gain, against micro-F1's 1 (step 4).
MACRO_WEIGHT = 2.0
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
#: Units of all labels together at most (the (weightings, labels, units) arrays of the fits
#: and curves): with more than UNIT_BUDGET / MAX_BINS labels each gets fewer bins (at least
#: MIN_BINS), so memory and time grow with the labels by far less than MAX_BINS each.
UNIT_BUDGET = 1 << 17
MIN_BINS = 64
#: Scores are clipped this far inside (0, 1) before the calibration's logit.
SCORE_EPS = 1e-6
NEWTON_STEPS = 30
#: Above MAX_BINS rows, the Platt fits merge this many adjacent bins (1024 -> 256 units).
FIT_GROUP = 4
#: Step halvings at most per Newton step (a step that still raises the loss is 2^-20 long).
_HALVINGS = 20
#: Validation sets above this many rows are read through a fixed random subset of it.
MAX_ROWS = 1 << 16
_LOGIT_EPS = 1e-9
#: The units' row and positive counts: whole numbers up to MAX_ROWS, exact in float32 (any
#: integer below 2**24), so every sum and product with them is what float64 counts gave, in
#: half the memory the plug-in stage adds to the call's peak (it runs while the sorted keys
#: are kept).
COUNT_DTYPE = np.float32
_ROWS_PER_CHUNK = 1 << 15
#: Row x candidate x label comparisons per chunk of the out-of-fold count (4 MB of bools).
_CUT_ELEMENTS = 1 << 22


def _logit(values: np.ndarray, eps: float = _LOGIT_EPS) -> np.ndarray:
    clipped = np.clip(np.asarray(values, dtype=np.float64), eps, 1.0 - eps)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


@dataclass(frozen=True)
class ReplicatePull:
    """How the bootstrap maps one label's re-tuned replicates onto the adaptive threshold.

    The kept threshold is ``sigmoid(rho * logit(base))``. A replicate re-tunes only the part
    of the base read off the observed curve (``component``): ``"shrunk"``, the "shrunk"
    rule's threshold, which enters the blends with weight ``1 - BLEND_WEIGHT``; ``"own"``,
    the label's own optimum, the "observed" base (weight 1). The plug-in optimum, ``tau``,
    the base and ``rho`` are held at their values on all rows, as the shared threshold is.
    A replicate's threshold is ``sigmoid(rho * (base_logit + weight * (logit(c) -
    logit(at_data))))`` for its re-tuned component ``c`` (``at_data``: the component on
    all rows), so a replicate that repeats the data gives the reported threshold exactly.
    Plain 0.5 (``rho`` 0) has weight 0: every replicate keeps 0.5.
    """

    base_logit: float
    rho: float
    weight: float
    component: str
    at_data: float

    def thresholds(self, component: np.ndarray) -> np.ndarray:
        """(B,) the replicates' thresholds from their re-tuned ``component`` (B,)."""
        shift = _logit(component) - _logit(np.array([self.at_data]))[0]
        return _sigmoid(self.rho * (self.base_logit + self.weight * shift))


@dataclass(frozen=True)
class AdaptiveChoice:
    """What :func:`adaptive_thresholds` chose.

    ``thresholds`` (L,) the final thresholds; ``base`` the base set kept (one of
    :data:`BASES`; ``"0.5"`` when no candidate's gain held) and ``rho`` its pull; ``tau``
    the calibration prior kept; ``plugin`` (L,) step 2 on all rows; ``mixed`` (L,) the base
    set kept on all rows, before the pull (0.5 for ``"0.5"``); ``fold_thresholds`` (K, L)
    the kept candidate built without each fold (for the cross-fitted estimate; choosing
    each fold's candidate on the other folds instead was measured: a more pessimistic
    estimate, mean |expected - test| 0.0202 against 0.0163); ``candidates``
    the (base, rho) pairs scored, plain 0.5 first; ``scores`` (C,) their out-of-fold
    2 x macro-F1 + micro-F1 and ``lower_bounds`` (C,) their gain over plain 0.5 less
    :data:`STANDARD_ERRORS` standard errors (0 for plain 0.5 itself); ``from_own`` (L,)
    whether a label's kept base is its own observed optimum (the "observed" base of a label
    with positives) rather than a blend with the "shrunk" threshold (see
    :class:`ReplicatePull`).
    """

    thresholds: np.ndarray
    base: str
    rho: float
    tau: float
    plugin: np.ndarray
    mixed: np.ndarray
    fold_thresholds: np.ndarray
    candidates: tuple[tuple[str, float], ...]
    scores: np.ndarray
    lower_bounds: np.ndarray
    from_own: np.ndarray

    def replicate_pulls(self, shrunk: np.ndarray, own: np.ndarray) -> list[ReplicatePull]:
        """Each label's :class:`ReplicatePull`, given the "shrunk" thresholds (L,) and the
        labels' own optima (L,) on all rows."""
        base_logit = _logit(self.mixed)
        weight = 0.0 if self.base == "0.5" else 1.0 - BLEND_WEIGHT
        return [
            ReplicatePull(
                base_logit=float(base_logit[j]),
                rho=float(self.rho),
                weight=1.0 if from_own else weight,
                component="own" if from_own else "shrunk",
                at_data=float(own[j] if from_own else shrunk[j]),
            )
            for j, from_own in enumerate(self.from_own.tolist())
        ]

    def report(self) -> dict[str, Any]:
        """What was kept and why, for ``TuningResult.to_dict()["summary"]["adaptive"]``:
        ``base`` and its pull ``rho`` (``"0.5"`` and 0.0: plain 0.5), ``tau``, and the kept
        candidate's pooled out-of-fold 2 x macro-F1 + micro-F1 gain over plain 0.5, before
        (``held_out_gain``) and after (``lower_bound``) :data:`STANDARD_ERRORS` standard
        errors are taken off (both 0 for plain 0.5), with a sentence, ``why``."""
        best = self.candidates.index((self.base, self.rho))
        gain = float(self.scores[best] - self.scores[0]) if best else 0.0
        bound = float(self.lower_bounds[best])
        if best == 0:
            why = (
                f"plain 0.5: no candidate's held-out gain over 0.5 ({MACRO_WEIGHT:g} x "
                f"macro-F1 + micro-F1, micro-F1 not below 0.5's) held beyond "
                f"{STANDARD_ERRORS:g} standard error(s)"
            )
        else:
            why = (
                f"{self.base} pulled toward 0.5 by rho={self.rho:g}: held-out "
                f"{MACRO_WEIGHT:g} x macro-F1 + micro-F1 {gain:+.4f} over 0.5 ({bound:+.4f} after "
                f"{STANDARD_ERRORS:g} standard error(s))"
            )
        return {
            "base": self.base,
            "rho": float(self.rho),
            "tau": float(self.tau),
            "held_out_gain": gain,
            "lower_bound": bound,
            "why": why,
        }


def _softplus_and_sigmoid(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log(1 + e^z), sigmoid(z)), both from one exp of -|z| (no overflow at any z)."""
    e = np.exp(-np.abs(z))
    softplus = np.maximum(z, 0.0) + np.log1p(e)
    return softplus, np.where(z >= 0, 1.0, e) / (1.0 + e)


def _platt_rows(
    x: np.ndarray,
    rows: np.ndarray,
    positives: np.ndarray,
    prior: np.ndarray,
    tau: float,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """(R, 2) MAP ``(a, b)`` of ``P(y = 1) = sigmoid(a x + b)`` for each row of per-unit
    counts ``x``, ``rows``, ``positives`` (R, U) (padding weighs 0), with a Gaussian prior of
    precision ``tau`` around ``prior`` (R, 2) (``tau = 0``: maximum likelihood).

    Newton steps from ``start`` (default: the prior), the 2 x 2 systems solved in closed
    form, each step halved until the penalised log-loss does not rise (a plain Newton step
    overshoots where the scores saturate: the curvature vanishes and the step explodes);
    each row stops when its own step is below 1e-9. The objective is strictly convex (for
    ``tau > 0``), so where it starts changes only how many steps it takes.
    """
    weights = np.array(prior if start is None else start, dtype=np.float64, copy=True)

    def loss_and_p(w: np.ndarray, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = w[:, :1] * x[on] + w[:, 1:]
        softplus, p = _softplus_and_sigmoid(z)
        # -log-likelihood: rows * log(1 + e^z) - positives * z, plus the prior's penalty.
        loss = (rows[on] * softplus - positives[on] * z).sum(1)
        return loss + 0.5 * tau * ((w - prior[on]) ** 2).sum(1), p

    on = np.arange(len(x))
    loss, p = loss_and_p(weights, on)
    for _ in range(NEWTON_STEPS):
        if not len(on):
            break
        xs, r = x[on], rows[on]
        residual = r * p - positives[on]
        curvature = r * p * (1.0 - p)
        g_a = (residual * xs).sum(1) + tau * (weights[on, 0] - prior[on, 0])
        g_b = residual.sum(1) + tau * (weights[on, 1] - prior[on, 1])
        weighted = curvature * xs
        h_aa = (weighted * xs).sum(1) + 1e-9 + tau
        h_ab = weighted.sum(1)
        h_bb = curvature.sum(1) + 1e-9 + tau
        det = h_aa * h_bb - h_ab * h_ab
        step = np.stack([(h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det], 1)
        trial = weights[on] - step
        trial_loss, trial_p = loss_and_p(trial, on)
        for _ in range(_HALVINGS):
            rising = trial_loss > loss + 1e-12 * np.abs(loss)
            if not rising.any():
                break
            step[rising] *= 0.5
            trial[rising] = weights[on[rising]] - step[rising]
            trial_loss[rising], trial_p[rising] = loss_and_p(trial[rising], on[rising])
        weights[on] = trial
        moving = np.abs(step).max(1) >= 1e-9
        on, loss, p = on[moving], trial_loss[moving], trial_p[moving]
    return weights


#: Scores read per block of labels by :class:`_Calibration` (its rows of them).
_READ_ELEMENTS = 1 << 20


def _rows(array: Any, rows: np.ndarray | None, first: int, last: int) -> np.ndarray:
    """Labels ``first:last`` of ``rows`` (sorted indices; all rows when None) of a numpy or
    torch (any device, any dtype) array, as numpy: float32 for bfloat16 (exact), else
    its own dtype."""
    part = array[:, first:last]
    if torch.is_tensor(part):
        if rows is not None:
            part = part[torch.from_numpy(rows).to(part.device)]
        part = part.detach().cpu()
        if part.dtype == torch.bfloat16:
            part = part.to(torch.float32)
        return part.numpy()
    part = np.asarray(part)
    return part if rows is None else part[rows]


def _held_out_dtype(dtype: np.dtype) -> type[np.floating]:
    """The dtype the sorted fold scores are kept in: float32 holds every float32, float16 and
    bfloat16 score exactly (half the memory of float64); wider scores stay float64."""
    return np.float32 if dtype.itemsize <= 4 else np.float64


def _at_least(cuts: np.ndarray, dtype: type[np.floating]) -> np.ndarray:
    """``cuts`` (float64) as the smallest ``dtype`` values at or above them: for a score
    ``s`` of that dtype, ``s >= cut`` exactly when ``s >= _at_least(cut)``."""
    if dtype == np.float64:
        return cuts
    rounded = cuts.astype(dtype)
    low = rounded.astype(np.float64) < cuts
    rounded[low] = np.nextafter(rounded[low], dtype(np.inf))
    return rounded


def _padded(parts: list[np.ndarray], width: int, dtype: type = np.float64) -> np.ndarray:
    """(L, ..., width) from per-label arrays whose last axis is at most ``width``; zeros pad."""
    out = np.zeros((len(parts), *parts[0].shape[:-1], width), dtype=dtype)
    for j, part in enumerate(parts):
        out[j, ..., : part.shape[-1]] = part
    return out


@dataclass(frozen=True)
class _LabelUnits:
    """One label's part of :class:`_Calibration` (see there)."""

    units: np.ndarray
    rows: np.ndarray
    positives: np.ndarray
    low: np.ndarray
    high: np.ndarray
    top: float
    fold_hits: np.ndarray


def unit_bins(n_labels: int) -> int:
    """Units per label of the calibration for ``n_labels`` labels: :data:`MAX_BINS` while
    all labels' units fit :data:`UNIT_BUDGET`, else fewer, down to :data:`MIN_BINS`."""
    return max(MIN_BINS, min(MAX_BINS, UNIT_BUDGET // max(n_labels, 1)))


def _label_units(
    scores: Any,
    targets: Any,
    folds: np.ndarray,
    n_folds: int,
    bins: int,
    j: int,
) -> _LabelUnits:
    """Column ``j``'s units (its distinct scores up to ``bins`` rows, else ``bins``
    equal-width logit bins), its rows and positives per weighting and unit, and each fold's
    positives (:class:`_Calibration`), from numpy ``scores``, ``targets`` (n, C)."""
    column = np.asarray(scores[:, j], dtype=np.float64)
    truth = np.asarray(targets[:, j], dtype=np.float64)
    if len(column) <= bins:
        values, index = np.unique(column, return_inverse=True)
        units, low, high = _logit(values, SCORE_EPS), values, values
    else:
        logits = _logit(column, SCORE_EPS)
        start, stop = float(logits.min()), float(logits.max())
        width = max(stop - start, 1e-12) / bins
        index = np.minimum(((logits - start) / width).astype(np.int64), bins - 1)
        counts = np.bincount(index, minlength=bins)
        used = np.flatnonzero(counts)
        units = np.bincount(index, logits, bins)[used] / counts[used]
        low = _sigmoid(start + width * used)
        high = _sigmoid(start + width * (used + 1))
        low[0], high[-1] = 0.0, 1.0
        # Bin number -> rank among the used bins: a gather, not a search per row.
        rank = np.zeros(bins, dtype=np.int64)
        rank[used] = np.arange(len(used))
        index = rank[index]
    size = len(units)
    # One bincount per fold and unit: the training rows are all rows minus the fold's.
    keyed = folds * size + index
    by_fold = np.bincount(keyed, minlength=n_folds * size).reshape(n_folds, size)
    hits = np.bincount(keyed, truth, n_folds * size).reshape(n_folds, size)
    total, total_hits = by_fold.sum(0), hits.sum(0)
    return _LabelUnits(
        units=units,
        rows=np.vstack([total, total - by_fold]).astype(COUNT_DTYPE),
        positives=np.vstack([total_hits, total_hits - hits]).astype(COUNT_DTYPE),
        low=np.asarray(low, dtype=np.float64),
        high=np.asarray(high, dtype=np.float64),
        top=float(column.max()),
        fold_hits=hits.sum(1).astype(np.int64),
    )


class _Calibration:
    """Each label's score units and, per row weighting, its rows and positives per unit.

    Units ascending: a label's distinct scores when it has at most :data:`MAX_BINS` rows,
    else equal-width bins of its clipped logit (no sort). Padded to the widest label
    (padding weighs 0): ``x`` (L, U) each unit's logit (a bin's rows' mean); ``rows``,
    ``positives`` (W, L, U), weighting 0 all rows and weighting ``f + 1`` all rows but fold
    ``f``'s; per label ``low``, ``high`` (U_j,) the unit's score range (a bin's edges; 0 and
    1 close the outer bins); ``top`` the highest score; ``fold_hits`` (K, L) each fold's
    positives. :meth:`out_of_fold_counts` reads the same rows again.
    """

    def __init__(
        self,
        scores: Any,
        targets: Any,
        folds: np.ndarray,
        n_folds: int,
        subset: np.ndarray | None = None,
    ) -> None:
        """``subset`` (sorted row indices, optional): read only those rows (``folds`` is
        then theirs)."""
        self._scores, self._targets, self._subset = scores, targets, subset
        self.fold_order = np.argsort(folds, kind="stable")
        self.fold_bounds = np.searchsorted(folds[self.fold_order], np.arange(n_folds + 1))
        # Labels a block at a time: the block's rows (the subset's, when given) are read
        # once, whole rows of it (a strided read per label would miss the cache on every
        # row), then each label's units are made on the worker threads from LABEL_THREAD_ROWS
        # rows on (numpy releases the GIL in their sorts and gathers; below, the GIL-bound
        # small calls gain nothing). This runs after the sorted pass with no other work.
        n_labels = scores.shape[1]
        n_rows = len(folds)
        bins = unit_bins(n_labels)
        width = max(1, min(n_labels, _READ_ELEMENTS // max(n_rows, 1)))
        threads = min(label_threads(n_rows), n_labels)
        pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        per_label: list[_LabelUnits] = []
        try:
            for first in range(0, n_labels, width):
                last = min(first + width, n_labels)
                read = functools.partial(
                    _label_units,
                    _rows(scores, subset, first, last),
                    _rows(targets, subset, first, last),
                    folds,
                    n_folds,
                    bins,
                )
                labels = range(last - first)
                per_label.extend(map(read, labels) if pool is None else pool.map(read, labels))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        x = [part.units for part in per_label]
        rows = [part.rows for part in per_label]
        positives = [part.positives for part in per_label]
        self.low = [part.low for part in per_label]
        self.high = [part.high for part in per_label]
        self.top = [part.top for part in per_label]
        self.fold_hits = np.array([part.fold_hits for part in per_label]).T  # (K, L)
        width = max(len(units) for units in x)
        self.sizes = [len(units) for units in x]
        self.x = _padded(x, width)
        self.rows = _padded(rows, width, COUNT_DTYPE).transpose(1, 0, 2)  # (W, L, U)
        self.positives = _padded(positives, width, COUNT_DTYPE).transpose(1, 0, 2)
        self.n_positives = self.positives[0].sum(1)
        # The Platt fits (and the held-out loss that picks tau) read the units' counts only:
        # binned labels are fitted on every FIT_GROUP adjacent bins merged (a 4x cheaper
        # Newton step, the same two parameters to well within their noise), while the
        # plug-in's cuts keep every bin. Distinct-score units (small sets) are fitted as is.
        if len(folds) > bins and width > FIT_GROUP:
            self.fit_x, self.fit_rows, self.fit_positives = _merged(
                self.x, self.rows, self.positives, FIT_GROUP
            )
        else:
            self.fit_x, self.fit_rows, self.fit_positives = self.x, self.rows, self.positives
        self._pooled: dict[int, np.ndarray] = {}

    def out_of_fold_counts(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, K, L) true and predicted positives of each candidate (C, K, L) on each fold's
        rows at that fold's thresholds (``score >= threshold`` is positive), from one more
        read of the rows.

        In chunks of one fold's rows, whole rows of every label (so the read is sequential
        in memory), each compared with all candidates at once; the chunks run on the
        worker threads (numpy releases the GIL in the comparisons and sums).
        """
        dtype = _held_out_dtype(self._scores.dtype)
        n_cuts, n_folds, n_labels = candidates.shape
        # Exact: the scores in their own precision, the cuts rounded up to it.
        cuts = _at_least(np.asarray(candidates, dtype=np.float64), dtype)
        order = self.fold_order if self._subset is None else self._subset[self.fold_order]
        step = max(1, _CUT_ELEMENTS // max(n_cuts * n_labels, 1))
        chunks = [
            (fold, low, min(low + step, last))
            for fold, (first, last) in enumerate(itertools.pairwise(self.fold_bounds.tolist()))
            for low in range(first, last, step)
        ]

        def count(chunk: tuple[int, int, int]) -> tuple[int, np.ndarray]:
            fold, low, high = chunk
            rows = np.sort(order[low:high])  # ascending: the read goes forward in memory
            values = np.asarray(_rows(self._scores, rows, 0, n_labels), dtype=dtype)
            hit = _rows(self._targets, rows, 0, n_labels) != 0
            above = values[:, None, :] >= cuts[None, :, fold, :]  # (rows, C, L)
            found = np.empty((2, n_cuts, n_labels), dtype=np.int64)
            # uint8 sums into int32: twice as fast as summing the bools.
            found[1] = np.add.reduce(above.view(np.uint8), axis=0, dtype=np.int32)
            np.logical_and(above, hit[:, None, :], out=above)
            found[0] = np.add.reduce(above.view(np.uint8), axis=0, dtype=np.int32)
            return fold, found

        threads = min(label_threads(len(order)), len(chunks))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                parts = list(pool.map(count, chunks))
        else:
            parts = [count(chunk) for chunk in chunks]
        totals = np.zeros((2, n_cuts, n_folds, n_labels))
        for fold, found in parts:
            totals[:, :, fold, :] += found
        return totals[0], totals[1]

    def fit(self, weighting: int, tau: float, start: np.ndarray | None = None) -> np.ndarray:
        """(L, 2) Platt maps of every label under ``weighting`` with prior precision ``tau``
        around the map of all labels pooled (fitted once per weighting)."""
        x, rows, positives = self.fit_x, self.fit_rows[weighting], self.fit_positives[weighting]
        pooled = self._pooled.get(weighting)
        if pooled is None:
            pooled = _platt_rows(
                x.reshape(1, -1),
                rows.reshape(1, -1),
                positives.reshape(1, -1),
                np.zeros((1, 2)),
                0.0,
            )[0]
            self._pooled[weighting] = pooled
        prior = np.tile(pooled, (len(x), 1))
        return _platt_rows(x, rows, positives, prior, tau, start)

    def held_out_loss(self, fold: int, maps: np.ndarray) -> float:
        """Log-loss of fold ``fold``'s rows (all rows minus its training rows) under ``maps``."""
        rows = self.fit_rows[0] - self.fit_rows[fold + 1]
        positives = self.fit_positives[0] - self.fit_positives[fold + 1]
        z = maps[:, :1] * self.fit_x + maps[:, 1:]
        # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
        return float(
            (positives * np.logaddexp(0.0, -z) + (rows - positives) * np.logaddexp(0.0, z)).sum()
        )


def _merged(
    x: np.ndarray, rows: np.ndarray, positives: np.ndarray, group: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``group`` adjacent units merged: ``x`` (L, U) -> (L, U / group), each merged
    unit at its rows' mean logit (all-rows weighting); ``rows``, ``positives`` (W, L, U)
    summed. Padding (rows 0) stays weightless."""
    n_labels, width = x.shape
    wide = -(-width // group) * group
    pad = ((0, 0), (0, wide - width))
    x, rows = np.pad(x, pad), np.pad(rows, ((0, 0), *pad))
    positives = np.pad(positives, ((0, 0), *pad))
    weight = rows[0].reshape(n_labels, -1, group)
    total = weight.sum(-1)
    merged_x = (x.reshape(n_labels, -1, group) * weight).sum(-1) / np.where(total > 0, total, 1)
    shape = (len(rows), n_labels, -1, group)
    return merged_x, rows.reshape(shape).sum(-1), positives.reshape(shape).sum(-1)


class _Curves:
    """Every label's expected true positives and predicted positives at its cuts, per
    weighting, padded to the widest label: ``etp``, ``pp`` (W, L, U + 1); column 0 "predict
    nothing", column c >= 1 "the top c units" (units of :class:`_Calibration`,
    descending). A label's padding repeats its last column ("predict every row"), which the
    searches below never prefer (ties go to the smaller column)."""

    def __init__(self, calibration: _Calibration, maps: np.ndarray) -> None:
        self.low = [low[::-1] for low in calibration.low]
        self.high = [high[::-1] for high in calibration.high]
        self.top = calibration.top
        width = calibration.x.shape[1]
        n_weightings, n_labels = maps.shape[:2]
        self.etp = np.zeros((n_weightings, n_labels, width + 1))
        self.pp = np.zeros_like(self.etp)
        self.otp = np.zeros_like(self.etp)  # observed true positives
        for j, size in enumerate(calibration.sizes):
            x = calibration.x[j, size - 1 :: -1] if size else calibration.x[j, :0]
            rows = calibration.rows[:, j, size - 1 :: -1] if size else calibration.rows[:, j, :0]
            # Each weighting's own calibration map (maps[w, j]) gives its expected positives.
            q = _sigmoid(maps[:, j, :1] * x + maps[:, j, 1:])
            hits = calibration.positives[:, j, size - 1 :: -1] if size else rows
            self.etp[:, j, 1 : size + 1] = np.cumsum(q * rows, axis=1)
            self.pp[:, j, 1 : size + 1] = np.cumsum(rows, axis=1)
            self.otp[:, j, 1 : size + 1] = np.cumsum(hits, axis=1)
            for counts in (self.etp, self.pp, self.otp):
                counts[:, j, size + 1 :] = counts[:, j, size : size + 1]

    def threshold(self, label: int, row: int, column: int) -> float:
        """The threshold of ``column`` under weighting ``row``: the midpoint between the
        lowest weighted unit predicted positive and the highest weighted one predicted
        negative (units of weight 0, a held-out fold's rows, do not move it)."""
        if column == 0:
            top = self.top[label]
            return float(np.nextafter(top, np.inf)) if top < 1.0 else 1.0
        low, high = self.low[label], self.high[label]
        pp = self.pp[row, label, : len(low) + 1]
        # The run of columns whose added units all weigh 0 ends where the count next grows.
        end = column + int(np.searchsorted(pp[column:], pp[column], side="right")) - 1
        below = float(high[end]) if end < len(high) else 0.0
        return 0.5 * (float(low[column - 1]) + below)


def _plugin_optima(curves: _Curves, row: int, micro_weight: float = MICRO_WEIGHT) -> np.ndarray:
    """Step 2 under weighting ``row``: (L,) thresholds (``micro_weight`` 0: each label's own
    expected F1 alone)."""
    tp, pp = curves.etp[row], curves.pp[row]  # (L, U + 1)
    n_labels = len(tp)
    positives = tp[:, -1]
    total_positives = float(positives.sum())
    f1 = f1_of_counts(tp, pp, positives[:, None])
    labels = np.arange(n_labels)
    # Ties go to the higher threshold (the smaller column), as in the core search.
    picks = np.argmax(f1[:, 1:], axis=1) + 1
    for _ in range(JOINT_ITERATIONS):
        denominator = max(float(pp[labels, picks].sum()) + total_positives, 1e-12)
        micro = 2.0 * float(tp[labels, picks].sum()) / denominator
        gain = f1 / n_labels + micro_weight * (2.0 * tp - micro * pp) / denominator
        new = np.argmax(gain, axis=1)
        if np.array_equal(new, picks):
            break
        picks = new
    return np.array([curves.threshold(j, row, int(i)) for j, i in enumerate(picks)])


def _observed_optima(curves: _Curves, row: int) -> np.ndarray:
    """(L,) each label's own optimum of its observed F1 curve under weighting ``row`` (what
    "per_label" finds, on the calibration's units; ties to the higher threshold); NaN for a
    label with no positives under it."""
    tp, pp = curves.otp[row], curves.pp[row]
    positives = tp[:, -1]
    picks = np.argmax(f1_of_counts(tp, pp, positives[:, None])[:, 1:], axis=1) + 1
    found = [curves.threshold(j, row, int(i)) for j, i in enumerate(picks)]
    return np.where(positives > 0, found, np.nan)


def _blend(plugin: np.ndarray, shrunk: np.ndarray, weight: float) -> np.ndarray:
    return _sigmoid(weight * _logit(plugin) + (1.0 - weight) * _logit(shrunk))


def _out_of_fold_counts(
    calibration: _Calibration, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(C, K, L) true and predicted positives of each candidate (C, K, L) on each fold's
    held-out rows at that fold's thresholds (``score >= threshold`` is positive)."""
    return calibration.out_of_fold_counts(candidates)


def _fold_positives(calibration: _Calibration) -> np.ndarray:
    """(K, L) each fold's held-out positives per label."""
    return calibration.fold_hits


def _scores_and_errors(
    hits: np.ndarray, tp: np.ndarray, pp: np.ndarray, macro_weight: float = MACRO_WEIGHT
) -> tuple[np.ndarray, np.ndarray]:
    """(C,) pooled out-of-fold ``macro_weight`` x macro-F1 + micro-F1 of each candidate and
    (C,) the standard error of its gain over candidate 0 (plain 0.5), from the counts
    (C, K, L) and the folds' positives ``hits`` (K, L).

    Delta method: to first order a row changes ``w`` x macro-F1 + micro-F1 by
    ``g = sum_j d_j (2 A_j y_j - B_j) - y_j B_j`` (``d_j``, ``y_j`` its decision and target
    for label ``j``; ``A_j = w / (L D_j) + 1 / M``, ``B_j = w F1_j / (L D_j) + m / M``, ``D_j``
    and ``M`` label ``j``'s and the pooled predicted positives plus positives, ``m`` the
    micro-F1), and the gain's variance is the sum of the rows' squared paired differences.
    Summed per label (the covariance of one row's labels is left out), the rows fall into
    eight cells per fold and label (decided by the candidate, by 0.5, target), whose sizes
    the counts give: the decided sets are nested (both are "score >= cut").
    """
    positives = hits.sum(0).astype(np.float64)  # (L,)
    n_labels = len(positives)
    total_tp, total_pp = tp.sum(1), pp.sum(1)  # (C, L)
    f1 = f1_of_counts(total_tp, total_pp, positives[None, :])
    micro_denominator = total_pp.sum(1) + positives.sum()  # (C,)
    micro = _pooled_micro(hits, tp, pp)
    scores = macro_weight * f1.mean(1) + micro
    denominator = total_pp + positives[None, :]
    inverse = np.where(denominator > 0, 1.0 / np.where(denominator > 0, denominator, 1.0), 0.0)
    per_micro = np.where(micro_denominator > 0, 1.0 / np.maximum(micro_denominator, 1e-12), 0.0)
    a = (macro_weight * inverse / n_labels + per_micro[:, None])[:, None, :]  # (C, 1, L)
    b = (macro_weight * f1 * inverse / n_labels + (micro * per_micro)[:, None])[:, None, :]
    # Cells: (candidate decides, 0.5 decides) among positives (value with y = 1) and
    # among negatives (y = 0); both decide = the smaller nested set.
    both_tp, both_fp = np.minimum(tp, tp[:1]), np.minimum(pp - tp, pp[:1] - tp[:1])
    cells = (
        (both_tp, 2 * a - b - (2 * a[:1] - b[:1]) - (b - b[:1])),
        (tp - both_tp, 2 * a - b - (b - b[:1])),
        (tp[:1] - both_tp, -(2 * a[:1] - b[:1]) - (b - b[:1])),
        (hits[None] - tp - tp[:1] + both_tp, -(b - b[:1])),
        (both_fp, -b + b[:1]),
        (pp - tp - both_fp, -b),
        (pp[:1] - tp[:1] - both_fp, b[:1]),
    )  # the eighth cell, negatives neither decides, differs by 0
    variance = sum((count * value**2).sum((1, 2)) for count, value in cells)
    return scores, np.sqrt(np.maximum(variance, 0.0))


@dataclass(frozen=True)
class PlugIn:
    """Steps 1 and 2 of the rule, which read only the scores, targets and folds (not the
    "shrunk" thresholds): ``tau`` the calibration prior kept, ``plugin``
    (L,) the plug-in optimum on all rows, ``fold_plugin`` (K, L) the same without each
    fold, the rows' sorted fold scores the out-of-fold scoring counts in, ``macro_plugin``
    the plug-in without the micro term and ``observed`` each label's observed optimum
    (NaN: no positives), each with its (K, L) fold versions."""

    tau: float
    plugin: np.ndarray
    fold_plugin: np.ndarray
    calibration: _Calibration
    macro_plugin: np.ndarray
    fold_macro_plugin: np.ndarray
    observed: np.ndarray
    fold_observed: np.ndarray


def plugin_optima(scores: Any, targets: Any, folds: np.ndarray, n_folds: int) -> PlugIn:
    """Steps 1 and 2 (see the module docstring) on ``scores``, ``targets`` (n, L) (numpy or
    torch, any dtype and device; read a label column at a time) and ``folds`` (n,) in
    ``0..n_folds-1``."""
    folds = np.asarray(folds, dtype=np.int64)
    if len(folds) > MAX_ROWS:
        # Two calibration parameters and one pull per label need far fewer rows than a
        # large validation set holds: a fixed random subset (seeded by n) bounds the cost.
        # Read column by column: the tune runs this while its sorted keys are kept (most of
        # its memory), so no copy of all labels' subset rows is made.
        subset = np.sort(np.random.default_rng(len(folds)).choice(len(folds), MAX_ROWS, False))
        folds = folds[subset]
    else:
        subset = None
    calibration = _Calibration(scores, targets, folds, n_folds, subset)
    # Every tau's maps: all rows, then each fold's training rows starting from the all-rows
    # fit (the same optimum in fewer Newton steps). tau minimises the folds' held-out loss.
    fitted, losses = [], []
    for tau in TAUS:
        everything = calibration.fit(0, tau)
        by_fold = [calibration.fit(f + 1, tau, everything) for f in range(n_folds)]
        fitted.append(np.stack([everything, *by_fold]))  # (W, L, 2)
        losses.append(sum(calibration.held_out_loss(f, m) for f, m in enumerate(by_fold)))
    best = int(np.argmin(losses))
    curves = _Curves(calibration, fitted[best])
    weightings = range(n_folds + 1)
    plugin = np.stack([_plugin_optima(curves, w) for w in weightings])
    macro_plugin = np.stack([_plugin_optima(curves, w, 0.0) for w in weightings])
    observed = np.stack([_observed_optima(curves, w) for w in weightings])
    return PlugIn(
        tau=TAUS[best],
        plugin=plugin[0],
        fold_plugin=plugin[1:],
        calibration=calibration,
        macro_plugin=macro_plugin[0],
        fold_macro_plugin=macro_plugin[1:],
        observed=observed[0],
        fold_observed=observed[1:],
    )


def _lower_bounds(
    hits: np.ndarray, tp: np.ndarray, pp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(C,) out-of-fold scores and (C,) gains over plain 0.5 (candidate 0) less
    :data:`STANDARD_ERRORS` standard errors (0 for plain 0.5), from the counts of the folds
    given (:func:`_scores_and_errors`)."""
    scores, errors = _scores_and_errors(hits, tp, pp)
    lower = scores - scores[0] - STANDARD_ERRORS * errors
    lower[0] = 0.0
    return scores, lower


def _pooled_micro(hits: np.ndarray, tp: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """(C,) pooled out-of-fold micro-F1 of each candidate from the counts (C, K, L)."""
    return f1_of_counts(tp.sum((1, 2)), pp.sum((1, 2)), float(hits.sum()))


def _micro_at_least_half(hits: np.ndarray, tp: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """(C,) bool: the candidate's pooled out-of-fold micro-F1 is at least plain 0.5's
    (candidate 0, so always True for it), from the same counts as :func:`_lower_bounds`."""
    micro = _pooled_micro(hits, tp, pp)
    return micro >= micro[0]


def _bases(
    plugin: PlugIn, shrunk: np.ndarray, fold_shrunk: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Step 3: each base set of :data:`BASES` as (L,) on all rows and (K, L) by fold."""
    blend = _blend(plugin.plugin, shrunk, BLEND_WEIGHT)
    fold_blend = _blend(plugin.fold_plugin, fold_shrunk, BLEND_WEIGHT)
    return {
        "blend": (blend, fold_blend),
        "macro_blend": (
            _blend(plugin.macro_plugin, shrunk, BLEND_WEIGHT),
            _blend(plugin.fold_macro_plugin, fold_shrunk, BLEND_WEIGHT),
        ),
        # A label with no positives has no observed optimum: it keeps the blend's threshold.
        "observed": (
            np.where(np.isnan(plugin.observed), blend, plugin.observed),
            np.where(np.isnan(plugin.fold_observed), fold_blend, plugin.fold_observed),
        ),
    }


def choose(plugin: PlugIn, shrunk: np.ndarray, fold_shrunk: np.ndarray) -> AdaptiveChoice:
    """Steps 3 and 4: the base sets from ``plugin`` and ``shrunk`` (L,) (with its fold
    versions ``fold_shrunk`` (K, L)), each pulled toward 0.5, and the candidate whose
    out-of-fold gain over 0.5 holds best."""
    shrunk = np.asarray(shrunk, dtype=np.float64)
    fold_shrunk = np.asarray(fold_shrunk, dtype=np.float64)
    bases = _bases(plugin, shrunk, fold_shrunk)
    keys: list[tuple[str, float]] = [("0.5", 0.0)]
    keys += [(base, rho) for base in BASES for rho in RHOS if rho > 0]
    n_folds, n_labels = fold_shrunk.shape
    candidates = np.stack(
        [np.full((n_folds, n_labels), 0.5)]
        + [_sigmoid(rho * _logit(bases[base][1])) for base, rho in keys[1:]]
    )
    tp, pp = _out_of_fold_counts(plugin.calibration, candidates)
    hits = _fold_positives(plugin.calibration)
    scores, lower = _lower_bounds(hits, tp, pp)
    allowed = _micro_at_least_half(hits, tp, pp)
    # The first of equals: plain 0.5, then BASES and RHOS order.
    best = int(np.argmax(np.where(allowed, lower, -np.inf)))
    base, rho = keys[best]
    mixed = bases[base][0] if best else np.full(n_labels, 0.5)
    return AdaptiveChoice(
        thresholds=_sigmoid(rho * _logit(mixed)),
        base=base,
        rho=rho,
        tau=plugin.tau,
        plugin=plugin.plugin,
        mixed=mixed,
        fold_thresholds=candidates[best],
        candidates=tuple(keys),
        scores=scores,
        lower_bounds=lower,
        from_own=(
            ~np.isnan(plugin.observed) if base == "observed" else np.zeros(n_labels, dtype=bool)
        ),
    )


def adaptive_thresholds(
    scores: Any,
    targets: Any,
    folds: np.ndarray,
    shrunk: np.ndarray,
    fold_shrunk: np.ndarray,
) -> AdaptiveChoice:
    """The "adaptive" thresholds (see the module docstring for the rule):
    :func:`plugin_optima` then :func:`choose`.

    ``scores`` (n, L) float probabilities and ``targets`` (n, L) 0/1, numpy arrays or torch
    tensors of any dtype and device (read a label column at a time, never copied whole);
    ``folds`` (n,) int, each row's fold in ``0..K-1`` (the tune's
    :class:`tuning.estimate.FoldPlan`); ``shrunk`` (L,) the "shrunk" strategy's thresholds
    on all rows and ``fold_shrunk`` (K, L) the same tuned without each fold.
    Deterministic: no randomness beyond the fold plan's.
    """
    fold_shrunk = np.asarray(fold_shrunk, dtype=np.float64)
    found = plugin_optima(scores, targets, folds, len(fold_shrunk))
    return choose(found, shrunk, fold_shrunk)
