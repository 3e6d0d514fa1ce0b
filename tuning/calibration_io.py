"""Reading a stored calibrator dict back, with every field checked (the dict may come
from a file or a database row, so nothing in it is trusted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from labelcut.tuning.calibration import METHODS, SCHEMA_VERSION

if TYPE_CHECKING:
    from labelcut.tuning.calibration import Calibrator

MAX_LABELS = 100_000
MAX_BREAKPOINTS = 1_000_000
MIN_GAP = 1e-300  # np.interp divides by the gaps: subnormal ones would overflow


def _numbers(data: Mapping[str, Any], key: str, n: int) -> np.ndarray:
    values = data.get(key)
    if not isinstance(values, list | tuple) or len(values) != n:
        raise ValueError(f"calibrator field {key!r} must be a list of {n} numbers.")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ValueError(f"calibrator field {key!r} must hold only numbers.")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"calibrator field {key!r} must hold finite numbers.")
    return array


def _breakpoints(data: Mapping[str, Any], n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    items = data.get("breakpoints")
    if not isinstance(items, list) or len(items) != n:
        raise ValueError(f"calibrator field 'breakpoints' must be a list of {n} entries.")
    out = []
    for j, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"calibrator breakpoints of label {j} must be an object with x, y.")
        size = len(item.get("x") or ())
        if not 1 <= size <= MAX_BREAKPOINTS:
            raise ValueError(f"calibrator breakpoints of label {j} need 1 to {MAX_BREAKPOINTS}.")
        x, y = _numbers(item, "x", size), _numbers(item, "y", size)
        if (np.diff(x) < MIN_GAP).any() or (np.diff(y) < 0).any():
            raise ValueError(
                f"calibrator breakpoints of label {j}: x must increase (by at least "
                f"{MIN_GAP:g}) and y must not decrease."
            )
        if (x < 0).any() or (x > 1).any() or (y < 0).any() or (y > 1).any():
            raise ValueError(f"calibrator breakpoints of label {j}: x and y must lie in [0, 1].")
        out.append((x, y))
    return tuple(out)


def parse_calibrator(cls: type[Calibrator], data: Mapping[str, Any]) -> Calibrator:
    """Build ``cls`` from a dict written by ``Calibrator.to_dict``; ValueError if malformed."""
    if not isinstance(data, Mapping):
        raise ValueError("a calibrator must be a JSON object.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"calibrator schema_version must be {SCHEMA_VERSION}, "
            f"got {data.get('schema_version')!r}."
        )
    method = data.get("method")
    if method not in METHODS:
        raise ValueError(f"calibrator method must be one of {METHODS}, got {method!r}.")
    n = data.get("n_labels")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LABELS:
        raise ValueError(f"calibrator n_labels must be an integer in [1, {MAX_LABELS}].")
    fitted = data.get("fitted")
    if (
        not isinstance(fitted, list)
        or len(fitted) != n
        or not all(isinstance(v, bool) for v in fitted)
    ):
        raise ValueError(f"calibrator field 'fitted' must be a list of {n} booleans.")
    offset = _numbers(data, "logit_offset", n)
    fields: dict[str, Any] = {}
    if method == "temperature":
        temperature = _numbers(data, "temperature", n)
        if (temperature <= 0).any():
            raise ValueError("calibrator temperatures must be positive.")
        fields["temperature"] = temperature
    elif method == "platt":
        fields["slope"] = _numbers(data, "slope", n)
        fields["intercept"] = _numbers(data, "intercept", n)
    elif method == "isotonic":
        fields["breakpoints"] = _breakpoints(data, n)
    return cls(method, n, np.asarray(fitted, dtype=bool), logit_offset=offset, **fields)
