"""labelcut: serve multi-label PyTorch classifiers and tune their per-label thresholds.

The one import name of the project. In the repository its parts keep their own
folders (``app/``, ``tuning/``, ``models/``); ``pyproject.toml`` maps them to
``labelcut.app``, ``labelcut.tuning`` and ``labelcut.models``, so an install puts
only ``labelcut`` into site-packages.

The names below are loaded on first use, so ``import labelcut`` stays cheap (no
torch, no FastAPI) until one of them is touched.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from labelcut import _cpu

_cpu.prefer_avx2_sort()  # before anything imports numpy (see labelcut/_cpu.py)

try:
    __version__ = version("labelcut")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "tune_thresholds": "labelcut.tuning",
    "apply_thresholds": "labelcut.tuning",
    "precision_recall_curves": "labelcut.tuning",
    "TuningResult": "labelcut.tuning",
    "load_model": "labelcut.models",
    "save_bundle": "labelcut.models",
    "LoadedModel": "labelcut.models",
    "BundleError": "labelcut.models",
    "Client": "labelcut.app.client",
    "AsyncClient": "labelcut.app.client",
    "LabelcutError": "labelcut.app.client",
    "JobError": "labelcut.app.client",
}

__all__ = [  # noqa: RUF022 - grouped by package, as _PUBLIC
    "__version__",
    "tune_thresholds",
    "apply_thresholds",
    "precision_recall_curves",
    "TuningResult",
    "load_model",
    "save_bundle",
    "LoadedModel",
    "BundleError",
    "Client",
    "AsyncClient",
    "LabelcutError",
    "JobError",
]

if TYPE_CHECKING:  # pragma: no cover
    from labelcut.app.client import AsyncClient, Client, JobError, LabelcutError
    from labelcut.models import BundleError, LoadedModel, load_model, save_bundle
    from labelcut.tuning import (
        TuningResult,
        apply_thresholds,
        precision_recall_curves,
        tune_thresholds,
    )


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'labelcut' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
