"""Per-label probability calibration for multi-label sigmoid outputs.

Each label is calibrated on its own (independent sigmoids, never a softmax across labels),
from validation scores ``(n, L)`` and 0/1 targets ``(n, L)``:

- ``"none"``: the scores as they are;
- ``"temperature"``: ``p = sigmoid(z / T_j)``, one ``T_j > 0`` per label on the logit ``z``,
  fit by minimising the log loss, with ``T_j`` in ``[0.01, 100]``;
- ``"platt"``: ``p = sigmoid(a_j z + b_j)``, Platt's (2000) logistic fit on the logit with
  his smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` as the regulariser,
  the objective of scikit-learn's ``CalibratedClassifierCV(method="sigmoid")``;
  both are fit by Newton's method on all labels at once (``calibration_fit``);
- ``"isotonic"``: a non-decreasing step-linear map fit by pool-adjacent-violators on the
  probability, with scikit-learn's ``IsotonicRegression(out_of_bounds="clip", y_min=0,
  y_max=1)`` semantics, stored as breakpoints ``(x, y)`` and applied with ``np.interp``
  (probabilities are clipped to ``[PROBA_EPS, 1 - PROBA_EPS]`` there too).

A fitted :class:`Calibrator` is plain arrays: it serialises to a small JSON-able dict
(:meth:`Calibrator.to_dict` / :meth:`Calibrator.from_dict`) and applies with numpy and
scipy only, to probabilities (:meth:`Calibrator.apply`) or logits
(:meth:`Calibrator.apply_logits`); either gives calibrated probabilities ``(n, L)`` in the
input's float dtype (float32 or float64; anything else gives float64). Probabilities are
clipped to ``[PROBA_EPS, 1 - PROBA_EPS]`` and logits to ``±LOGIT_CLIP`` before use, so 0, 1
and infinite logits are safe.

A label with fewer than ``min_count`` positives or negatives is not fitted: it keeps the
identity map (``T = 1``; ``a = 1, b = 0``; breakpoints ``(0, 0), (1, 1)``) and is marked
``fitted = False``. Platt's slope is kept at or above ``PLATT_MIN_SLOPE`` (as temperature's
``1 / T`` is): a label with no signal, or ranked backwards, gets a nearly constant map at
its prevalence rather than a flipped one. Every calibrator is thus non-decreasing in the
score (temperature and Platt strictly), and thresholds tuned on raw scores map onto
calibrated ones (:meth:`Calibrator.map_thresholds`).

A calibrator may also carry a per-label ``logit_offset`` (zero unless set by
:meth:`Calibrator.with_priors`): the label-shift adjustment of Saerens et al. (2002),
``logit p' = logit p + logit(pi_new) - logit(pi_old)``, applied after calibration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.special import expit

from labelcut.tuning.calibration_fit import fit_inverse_temperatures, fit_platt
from labelcut.tuning.stacked_interp import StackedInterp

METHODS = ("none", "temperature", "platt", "isotonic")
SCHEMA_VERSION = 1
PROBA_EPS = 1e-12
LOGIT_CLIP = math.log((1.0 - PROBA_EPS) / PROBA_EPS)  # 27.63: the logit of 1 - PROBA_EPS
TEMPERATURE_RANGE = (1e-2, 1e2)
PLATT_MIN_SLOPE = 1 / TEMPERATURE_RANGE[1]  # 0.01, the least scale temperature allows
DEFAULT_MIN_COUNT = 3
STACKED_ROWS = 256  # isotonic batches up to this many rows use StackedInterp, larger np.interp


def to_logits(probabilities: np.ndarray) -> np.ndarray:
    """Logits float64 of probabilities, clipped to ``[PROBA_EPS, 1 - PROBA_EPS]`` first."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), PROBA_EPS, 1.0 - PROBA_EPS)
    return np.log(p) - np.log1p(-p)


def to_probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid float64 of logits, clipped to ``±LOGIT_CLIP`` first (NaN stays NaN)."""
    return expit(np.clip(np.asarray(logits, dtype=np.float64), -LOGIT_CLIP, LOGIT_CLIP))


def _out_dtype(array: np.ndarray) -> np.dtype:
    return array.dtype if array.dtype in (np.float32, np.float64) else np.dtype(np.float64)


@dataclass(frozen=True, eq=False)
class Calibrator:
    """A fitted per-label calibrator for ``n_labels`` labels (see the module docstring).

    Arrays are float64 ``(L,)``: ``temperature`` (method ``"temperature"``), ``slope`` and
    ``intercept`` (``"platt"``: ``sigmoid(slope * z + intercept)``), ``breakpoints`` one
    ``(x, y)`` pair of increasing float64 arrays per label in probability space
    (``"isotonic"``); the others are None. ``fitted`` bool ``(L,)``: False where the label
    kept the identity map. ``logit_offset`` float64 ``(L,)``: added to the calibrated
    logit (label-shift adjustment; zeros by default).
    """

    method: str
    n_labels: int
    fitted: np.ndarray
    temperature: np.ndarray | None = None
    slope: np.ndarray | None = None
    intercept: np.ndarray | None = None
    breakpoints: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None
    logit_offset: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.logit_offset is None:
            object.__setattr__(self, "logit_offset", np.zeros(self.n_labels))
        if self.breakpoints is not None:  # one np.searchsorted for all labels (small batches)
            object.__setattr__(self, "_stacked", StackedInterp(self.breakpoints))

    @classmethod
    def identity(cls, n_labels: int) -> Calibrator:
        """The ``"none"`` calibrator: probabilities pass unchanged."""
        return cls("none", n_labels, np.zeros(n_labels, dtype=bool))

    # -- applying ---------------------------------------------------------------------------

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(n, L)`` from model probabilities ``(n, L)`` in [0, 1].

        Values outside [0, 1] are clipped; NaN stays NaN (the caller checks model output)."""
        p = self._check_input(probabilities, "probabilities")
        dtype = _out_dtype(p)
        if self.method == "isotonic":
            return self._offset(self._interpolate(p.astype(np.float64)), dtype)
        if self.method == "none":
            if not self.logit_offset.any():
                return p.astype(dtype, copy=True)
            return self._offset(p.astype(np.float64), dtype)
        return self._from_logits(to_logits(p), dtype)

    def apply_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(n, L)`` from model logits ``(n, L)``."""
        z = self._check_input(logits, "logits")
        dtype = _out_dtype(z)
        if self.method in ("none", "isotonic"):
            return self.apply(to_probabilities(z).astype(dtype))
        return self._from_logits(z.astype(np.float64), dtype)

    def _from_logits(self, z: np.ndarray, dtype: np.dtype) -> np.ndarray:
        z = np.clip(z, -LOGIT_CLIP, LOGIT_CLIP)
        if self.method == "temperature":
            z = z / self.temperature
        elif self.method == "platt":
            z = z * self.slope + self.intercept
        elif self.method == "none":
            pass
        else:  # pragma: no cover - isotonic never reaches here
            raise AssertionError(self.method)
        return to_probabilities(z + self.logit_offset).astype(dtype)

    def _interpolate(self, p: np.ndarray) -> np.ndarray:
        assert self.breakpoints is not None
        # Scores below PROBA_EPS (or above 1 - PROBA_EPS) are one value: np.interp divides
        # by the gaps between breakpoints, and gaps of subnormal size would overflow.
        p = np.clip(p, PROBA_EPS, 1.0 - PROBA_EPS)
        if len(p) <= STACKED_ROWS:  # serving: ~18 us for 1 row of 100 labels, not ~300
            return np.clip(self._stacked(p), 0.0, 1.0)
        out = np.empty_like(p)
        for j, (x, y) in enumerate(self.breakpoints):
            out[:, j] = np.interp(p[:, j], x, y)  # constant outside [x[0], x[-1]]
        return np.clip(out, 0.0, 1.0)

    def _offset(self, p: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if self.logit_offset.any():
            p = to_probabilities(to_logits(p) + self.logit_offset)
        return p.astype(dtype)

    def _check_input(self, values: np.ndarray, name: str) -> np.ndarray:
        array = np.asarray(values)
        if array.ndim != 2 or array.shape[1] != self.n_labels:
            raise ValueError(
                f"{name} must have shape (n, {self.n_labels}) for this calibrator, "
                f"got {array.shape}."
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(
            array.dtype, np.complexfloating
        ):
            raise ValueError(f"{name} must be real numbers, got dtype {array.dtype}.")
        return array

    def map_thresholds(self, thresholds: np.ndarray) -> np.ndarray:
        """Thresholds float64 ``(L,)`` on calibrated scores from thresholds on raw
        probabilities: ``apply(t)``.

        Every map here is non-decreasing, so ``p >= t`` implies ``apply(p) >= apply(t)``.
        Where it is strictly increasing (temperature, Platt) the converse holds too, so the
        decisions are exactly those of ``t`` on the raw scores, but for ties that rounding
        creates (and scores below ``PROBA_EPS``, which count as one value). Isotonic maps
        are flat on steps: rows below ``t`` on ``t``'s step turn positive too.
        """
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape != (self.n_labels,):
            raise ValueError(f"thresholds must have shape ({self.n_labels},), got {t.shape}.")
        if not np.isfinite(t).all() or (t < 0).any() or (t > 1).any():
            raise ValueError("thresholds must be finite numbers in [0, 1].")
        return self.apply(t[None, :])[0]

    # -- label shift ------------------------------------------------------------------------

    def with_priors(self, prior_from: np.ndarray, prior_to: np.ndarray) -> Calibrator:
        """This calibrator followed by the label-shift adjustment from one prior to another.

        ``prior_from`` ``(L,)`` is the prevalence the calibrated probabilities reflect (the
        validation prevalence, or the last adapted prior); ``prior_to`` ``(L,)`` the new one.
        Labels whose priors are not both in (0, 1) are left unadjusted. Offsets add up, so
        adapting an adapted calibrator again chains correctly.
        """
        old = np.asarray(prior_from, dtype=np.float64)
        new = np.asarray(prior_to, dtype=np.float64)
        if old.shape != (self.n_labels,) or new.shape != (self.n_labels,):
            raise ValueError(f"prior_from and prior_to must have shape ({self.n_labels},).")
        ok = (old > 0) & (old < 1) & (new > 0) & (new < 1)
        delta = np.zeros(self.n_labels)
        delta[ok] = to_logits(new[ok]) - to_logits(old[ok])
        return replace(self, logit_offset=self.logit_offset + delta)

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of plain Python types (floats round-trip exactly)."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "n_labels": self.n_labels,
            "fitted": [bool(v) for v in self.fitted],
            "logit_offset": [float(v) for v in self.logit_offset],
        }
        if self.method == "temperature":
            out["temperature"] = [float(v) for v in self.temperature]
        elif self.method == "platt":
            out["slope"] = [float(v) for v in self.slope]
            out["intercept"] = [float(v) for v in self.intercept]
        elif self.method == "isotonic":
            out["breakpoints"] = [
                {"x": [float(v) for v in x], "y": [float(v) for v in y]}
                for x, y in self.breakpoints
            ]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """Rebuild a calibrator from :meth:`to_dict`'s output; ValueError if malformed."""
        from labelcut.tuning.calibration_io import parse_calibrator

        return parse_calibrator(cls, data)


# -- fitting ----------------------------------------------------------------------------------


def check_fit_inputs(
    scores: np.ndarray, targets: np.ndarray, logits: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` and ``targets`` as float64 ``(n, L)`` arrays, checked; ValueError if not."""
    s = np.asarray(scores)
    y = np.asarray(targets)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (n, L), got shape {s.shape}.")
    if y.shape != s.shape:
        raise ValueError(f"targets must have the shape of scores {s.shape}, got {y.shape}.")
    if len(s) == 0:
        raise ValueError("scores must have at least one row.")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers.")
    if not logits and ((s < 0).any() or (s > 1).any()):
        raise ValueError("scores must be probabilities in [0, 1] (pass logits=True for logits).")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("targets must be 0 or 1.")
    return s, y.astype(np.float64)


def _fit_isotonic(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.clip(p, PROBA_EPS, 1.0 - PROBA_EPS)  # as applied (see Calibrator._interpolate)
    order = np.argsort(p, kind="stable")
    x_sorted, y_sorted = p[order], y[order]
    # Tied scores share one point: the mean of their targets, weighted by their count
    # (scikit-learn's _make_unique).
    x_unique, starts, counts = np.unique(x_sorted, return_index=True, return_counts=True)
    means = np.add.reduceat(y_sorted, starts) / counts
    fitted = np.clip(isotonic_regression(means, weights=counts).x, 0.0, 1.0)
    # Keep only the ends of each constant run: the same piecewise-linear function.
    keep = np.ones(len(fitted), dtype=bool)
    if len(fitted) > 2:
        keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return x_unique[keep].copy(), fitted[keep].copy()


def fit_calibrator(
    scores: np.ndarray,
    targets: np.ndarray,
    method: str = "temperature",
    *,
    logits: bool = False,
    min_count: int = DEFAULT_MIN_COUNT,
    fit_labels: np.ndarray | None = None,
) -> Calibrator:
    """Fit one calibrator per label on validation data.

    ``scores`` ``(n, L)``: probabilities in [0, 1], or logits with ``logits=True``.
    ``targets`` ``(n, L)`` 0/1. A label is fitted when it has at least ``min_count``
    positives and negatives (and, if given, ``fit_labels[j]`` is True); otherwise it keeps
    the identity map. Temperature and Platt work on the logit, isotonic on the probability.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if int(min_count) < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}.")
    s, y = check_fit_inputs(scores, targets, logits)
    n_labels = s.shape[1]
    positives = y.sum(axis=0)
    fitted = (positives >= min_count) & (len(y) - positives >= min_count)
    if fit_labels is not None:
        fitted &= np.asarray(fit_labels, dtype=bool)
    if method == "none":
        return Calibrator.identity(n_labels)
    if method == "isotonic":
        p = to_probabilities(s) if logits else s
        identity = (np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        points = tuple(
            _fit_isotonic(p[:, j], y[:, j]) if fitted[j] else identity for j in range(n_labels)
        )
        return Calibrator(method, n_labels, fitted, breakpoints=points)
    z = np.clip(s, -LOGIT_CLIP, LOGIT_CLIP) if logits else to_logits(s)
    cols = np.flatnonzero(fitted)
    if method == "temperature":
        temperature = np.ones(n_labels)
        lo, hi = TEMPERATURE_RANGE
        temperature[cols] = 1.0 / fit_inverse_temperatures(z[:, cols], y[:, cols], (1 / hi, 1 / lo))
        return Calibrator(method, n_labels, fitted, temperature=temperature)
    # Platt's targets: (N+ + 1) / (N+ + 2) for positives, 1 / (N- + 2) for negatives.
    yc = y[:, cols]
    pos, neg = yc.sum(axis=0), len(yc) - yc.sum(axis=0)
    soft = np.where(yc > 0, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    slope, intercept = np.ones(n_labels), np.zeros(n_labels)
    # The slope is kept >= PLATT_MIN_SLOPE: a label the model ranks backwards is not
    # "calibrated" by flipping it, and every calibrator stays strictly increasing.
    slope[cols], intercept[cols] = fit_platt(z[:, cols], soft, PLATT_MIN_SLOPE)
    return Calibrator(method, n_labels, fitted, slope=slope, intercept=intercept)
