"""Log-loss fits of temperature and Platt scaling for many labels at once.

Both losses are convex in their parameters, so a damped Newton method converges in a few
steps; it runs on all labels together (each step is O(n L) numpy work), where a scipy
optimiser per label would loop in Python. Each label stops when its gradient is below
``GRADIENT_TOL``; a step is halved until the label's loss does not increase (Armijo).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

GRADIENT_TOL = 1e-10
MAX_STEPS = 100
MAX_HALVINGS = 40


def _loss(u: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mean log loss per column of logits ``u`` against (soft) targets ``t``, both (n, k)."""
    return np.mean(np.logaddexp(0.0, u) - t * u, axis=0)


def fit_inverse_temperatures(
    z: np.ndarray, y: np.ndarray, bounds: tuple[float, float]
) -> np.ndarray:
    """Per column, ``s`` in ``bounds`` minimising the log loss of ``sigmoid(s z)`` against
    0/1 ``y``: float64 ``(k,)`` for ``z``, ``y`` float64 ``(n, k)``. ``T = 1 / s``."""
    lo, hi = bounds
    s = np.ones(z.shape[1])
    active = np.ones(z.shape[1], dtype=bool)
    for _ in range(MAX_STEPS):
        if not active.any():
            break
        cols = np.flatnonzero(active)
        zc, yc, sc = z[:, cols], y[:, cols], s[cols]
        p = expit(zc * sc)
        grad = np.mean((p - yc) * zc, axis=0)
        hess = np.mean(p * (1 - p) * zc * zc, axis=0) + 1e-12
        # Converged: a small gradient, or a bound the gradient pushes against.
        at_bound = ((sc <= lo) & (grad > 0)) | ((sc >= hi) & (grad < 0))
        done = (np.abs(grad) < GRADIENT_TOL) | at_bound
        step = -grad / hess
        base = _loss(zc * sc, yc)
        alpha = np.ones(len(cols))
        for _ in range(MAX_HALVINGS):
            trial = np.clip(sc + alpha * step, lo, hi)
            worse = _loss(zc * trial, yc) > base + 1e-4 * alpha * grad * step
            worse &= ~done
            if not worse.any():
                break
            alpha[worse] /= 2
        moved = np.clip(sc + alpha * step, lo, hi)
        s[cols] = np.where(done, sc, moved)
        done |= np.abs(moved - sc) < 1e-14 * np.maximum(1.0, np.abs(sc))
        active[cols[done]] = False
    return s


def _fit_intercepts(z: np.ndarray, t: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Per column, ``b`` minimising the log loss of ``sigmoid(a z + b)`` for fixed ``a``."""
    mean_t = np.clip(t.mean(axis=0), 1e-12, 1 - 1e-12)
    b = np.log(mean_t / (1 - mean_t))
    active = np.ones(z.shape[1], dtype=bool)
    for _ in range(MAX_STEPS):
        if not active.any():
            break
        cols = np.flatnonzero(active)
        base_u = z[:, cols] * a[cols]
        tc, bc = t[:, cols], b[cols]
        p = expit(base_u + bc)
        grad = np.mean(p - tc, axis=0)
        step = -grad / (np.mean(p * (1 - p), axis=0) + 1e-12)
        done = np.abs(grad) < GRADIENT_TOL
        base = _loss(base_u + bc, tc)
        alpha = np.ones(len(cols))
        for _ in range(MAX_HALVINGS):
            trial = base_u + (bc + alpha * step)
            worse = (_loss(trial, tc) > base + 1e-4 * alpha * grad * step) & ~done
            if not worse.any():
                break
            alpha[worse] /= 2
        b[cols] = np.where(done, bc, bc + alpha * step)
        active[cols[done]] = False
    return b


def fit_platt(
    z: np.ndarray, t: np.ndarray, min_slope: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, ``(a, b)`` minimising the log loss of ``sigmoid(a z + b)`` against the
    soft targets ``t`` subject to ``a >= min_slope``: two float64 ``(k,)`` arrays for ``z``,
    ``t`` float64 ``(n, k)``. The loss is convex, so where the free optimum has
    ``a < min_slope`` the constrained one has ``a = min_slope`` (``b`` refit for it)."""
    k = z.shape[1]
    mean_t = np.clip(t.mean(axis=0), 1e-12, 1 - 1e-12)
    a, b = np.zeros(k), np.log(mean_t / (1 - mean_t))  # start: the constant model
    active = np.ones(k, dtype=bool)
    for _ in range(MAX_STEPS):
        if not active.any():
            break
        cols = np.flatnonzero(active)
        zc, tc, ac, bc = z[:, cols], t[:, cols], a[cols], b[cols]
        u = zc * ac + bc
        p = expit(u)
        r, w = p - tc, p * (1 - p)
        ga, gb = np.mean(r * zc, axis=0), np.mean(r, axis=0)
        # A tiny ridge keeps the 2x2 Hessian invertible when a label's z is constant.
        haa = np.mean(w * zc * zc, axis=0) + 1e-12
        hab = np.mean(w * zc, axis=0)
        hbb = np.mean(w, axis=0) + 1e-12
        det = haa * hbb - hab * hab
        da, db = -(hbb * ga - hab * gb) / det, -(haa * gb - hab * ga) / det
        done = np.maximum(np.abs(ga), np.abs(gb)) < GRADIENT_TOL
        base = _loss(u, tc)
        slope = ga * da + gb * db  # negative: a descent direction
        alpha = np.ones(len(cols))
        for _ in range(MAX_HALVINGS):
            trial = zc * (ac + alpha * da) + (bc + alpha * db)
            worse = (_loss(trial, tc) > base + 1e-4 * alpha * slope) & ~done
            if not worse.any():
                break
            alpha[worse] /= 2
        a[cols] = np.where(done, ac, ac + alpha * da)
        b[cols] = np.where(done, bc, bc + alpha * db)
        active[cols[done]] = False
    low = a < min_slope
    if low.any():
        a[low] = min_slope
        b[low] = _fit_intercepts(z[:, low], t[:, low], a[low])
    return a, b
