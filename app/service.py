"""The running service's state: the loaded model, the store and the active threshold set.

Routes read `Service.active` once per request: it is an immutable snapshot that
an activation replaces in a single assignment, so a request sees one whole set
even while another is being activated.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from labelcut import tuning
from labelcut.app.calibrate_set import attach_cross_fitted, calibrate, expected_figures
from labelcut.app.config import Settings
from labelcut.app.scoring import score_inputs
from labelcut.app.store import (
    ActivePointer,
    ActiveWatcher,
    ModelIdentity,
    NewThresholdSet,
    StoreUnavailable,
    ThresholdSet,
    ThresholdStore,
    database_url_from,
)
from labelcut.app.store.engine import locate
from labelcut.app.tune_form import TuneParams, tune_keywords
from labelcut.app.uploads import InputSpec, UploadError, ValidationData
from labelcut.models import LoadedModel, load_model
from labelcut.models.files import sha256_file
from labelcut.tuning.calibration import Calibrator

log = logging.getLogger("labelcut")

DEFAULT_THRESHOLD = 0.5
CURVE_POINTS = 1000  # per label, kept with each threshold set for plots
STORE_RETRY_S = 1.0  # while a shared store cannot be reached at start


@dataclass(frozen=True)
class ActiveThresholds:
    """The thresholds every request uses: a stored set, or 0.5 everywhere when `set` is None."""

    set: ThresholdSet | None
    thresholds: np.ndarray  # (L,) float64, in model label order
    decision_rule: str = "threshold"  # the set's default /predict rule
    k: int | None = None
    # What the model's outputs mean: "sigmoid" (multi-label) or "softmax" (one class per
    # row, served as the argmax; `confidence` is then the set's abstain threshold on the
    # top probability, None when no set is active: always answer).
    activation: str = "sigmoid"
    confidence: float | None = None
    # decision_rule "abstain": labels with lower <= score < upper (= thresholds) go to review.
    lower: np.ndarray | None = None
    # A calibrated set: `/predict` serves calibrator.apply(model probabilities) and applies
    # the thresholds to those; None serves the model's own probabilities.
    calibrator: Calibrator | None = None
    # What the validation data led us to expect per label, for the drift gauges.
    expected_positive_rate: np.ndarray | None = None
    expected_mean_score: np.ndarray | None = None

    @property
    def set_id(self) -> int | None:
        return None if self.set is None else self.set.id


__all__ = ["ActiveThresholds", "Service", "TuneParams", "TunedSet", "tune_data", "tune_scores"]

# What a multi-label set keeps of its report (beside params and thresholds).
RESULT_KEYS = (
    "per_label",
    "summary",
    "strategy",
    "global_threshold",
    "diagnosis",
    "lower_thresholds",
    "calibration",
)


@dataclass(frozen=True)
class TunedSet:
    """A tune's outcome, ready to store: the set's `params`, `thresholds` (model label
    order), the `result` kept with it, the full `report`, and the curves (or None)."""

    params: dict[str, Any]
    thresholds: list[float]
    result: dict[str, Any]
    report: dict[str, Any]
    curves: list[dict[str, Any]] | None


class Service:
    """Owns the model, the threshold store and the active set, for one process (replica).

    The store may be shared with other replicas: an `ActiveWatcher` re-reads the active
    pointer when another replica activates a set, and `_install` keeps the newest
    snapshot by activation id, so every replica converges on the last committed one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store_location = locate(database_url_from(settings), settings.store_path)
        self.store: ThresholdStore | None = None
        self.store_error: str | None = None  # why the store could not be opened yet
        self.model: LoadedModel | None = None
        self.identity: ModelIdentity | None = None
        self.load_error: str | None = None
        self.watcher: ActiveWatcher | None = None
        self._active: ActiveThresholds | None = None
        self._activation_id = 0  # of the installed snapshot; 0: none (0.5 everywhere)
        self._activation_lock = threading.Lock()
        self._closing = threading.Event()
        self.tune_lock = threading.Lock()
        self.ready = threading.Event()

    # --- start-up ---------------------------------------------------------------------

    def load(self) -> None:
        """Load and warm the model, open the store, restore the active set, start watching.

        Runs in a worker thread. A PostgreSQL store that cannot be reached is retried until
        it answers (/readyz says so meanwhile); a SQLite file that cannot be opened fails.
        """
        try:
            model = load_model(
                self.settings.model_dir, device=self.settings.device, dtype=self.settings.dtype
            )
            self.model = model
            self.identity = ModelIdentity(model.name, model.sha256, tuple(model.labels))
            store = self._open_store()
            if store is None:  # shutting down before the store ever answered
                return
            self.store = store
            self._restore_active(store, self.identity)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("Could not start: %s", self.load_error)
            raise
        self.watcher = ActiveWatcher(store, self.identity.key, lambda _seen: self.refresh())
        self.watcher.start(self._activation_id or None)
        log.info(
            "Model '%s' (%s, sha256 %s) ready on %s with %d labels; store %s; "
            "active threshold set: %s",
            model.name,
            model.format,
            model.sha256[:12],
            model.device,
            len(model.labels),
            store.shown,
            self.active.set_id if self.active.set else "none (0.5 for every label)",
        )
        self.ready.set()

    def _open_store(self) -> ThresholdStore | None:
        where = self.store_location
        while True:
            try:
                store = ThresholdStore(location=where)
            except StoreUnavailable as exc:
                if where.dialect == "sqlite":
                    raise
                if self.store_error is None:
                    log.error("%s; retrying every %.0f s", exc, STORE_RETRY_S)
                self.store_error = str(exc)
                if self._closing.wait(STORE_RETRY_S):
                    return None
                continue
            self.store_error = None
            return store

    def _restore_active(self, store: ThresholdStore, identity: ModelIdentity) -> None:
        pointer = store.active(identity.key)
        if pointer is None:
            # Same weights, other labels or order: say why its set is not applied.
            for other in store.actives_for_weights(identity.sha256):
                log.warning(
                    "Not applying threshold set %d, active for these weights: %s Activate "
                    "a set tuned for this model's labels (or tune one).",
                    other.set.id,
                    other.set.mismatch_with(identity),
                )
        last = store.last_activation()
        if last is not None and last[1] != identity.sha256:
            log.warning(
                "The last activated threshold set (%d) was tuned for another model "
                "(sha256 %s); not applying it. Using this model's own last active set: %s.",
                last[0],
                last[1][:12],
                pointer.set.id if pointer else "none",
            )
        self._install(pointer)

    def _install(self, pointer: ActivePointer | None) -> bool:
        """Make `pointer` this replica's snapshot unless the one held is as new; True if so."""
        identity = self.identity
        assert identity is not None
        with self._activation_lock:
            stale = pointer is None or pointer.activation_id <= self._activation_id
            if self._active is not None and stale:
                return False
            if pointer is not None:
                reason = pointer.set.mismatch_with(identity)
                if reason is not None:  # the key matched, so only a corrupt row gets here
                    log.error("Not applying threshold set %d: %s", pointer.set.id, reason)
                    pointer = None
            self._active = self._snapshot(
                None if pointer is None else pointer.set, self.loaded_model
            )
            self._activation_id = 0 if pointer is None else pointer.activation_id
        return pointer is not None

    def refresh(self) -> None:
        """Re-read this model's active pointer and install it if newer (the watcher, and
        after every local write: whichever replica's activation committed last wins)."""
        pointer = self.require_store().active(self.model_key)
        if self._install(pointer) and pointer is not None:
            log.info(
                "Threshold set %d is active (activation %d)", pointer.set.id, pointer.activation_id
            )

    def _refresh_after_write(self) -> None:
        try:
            self.refresh()
        except StoreUnavailable as exc:  # committed, but lost before reading back: the
            log.warning("%s; the watcher will catch up", exc)  # watcher catches up later

    @staticmethod
    def _snapshot(found: ThresholdSet | None, model: LoadedModel) -> ActiveThresholds:
        activation = getattr(model, "activation", "sigmoid")
        if found is None:
            values = np.full(len(model.labels), DEFAULT_THRESHOLD)
            values.setflags(write=False)
            rule = "exactly_one" if activation == "softmax" else "threshold"
            return ActiveThresholds(
                set=None, thresholds=values, decision_rule=rule, activation=activation
            )
        values = _frozen(found.thresholds)
        rule, k = decision_rule_of(found)
        params = found.params
        confidence = params.get("confidence_threshold")
        calibration = params.get("calibration") or {}
        expected = calibration.get("expected") or params.get("expected") or {}
        return ActiveThresholds(
            set=found,
            thresholds=values,
            decision_rule=rule,
            k=k,
            activation=activation,
            confidence=None if confidence is None else float(confidence),
            lower=_frozen(params["lower_thresholds"]) if params.get("lower_thresholds") else None,
            calibrator=(
                Calibrator.from_dict(calibration["calibrator"])
                if calibration.get("calibrator")
                else None
            ),
            expected_positive_rate=_frozen(expected.get("positive_rate")),
            expected_mean_score=_frozen(expected.get("mean_score")),
        )

    def stop_waiting(self) -> None:
        """Shutting down: a load still waiting for the store stops retrying."""
        self._closing.set()

    def close(self) -> None:
        self._closing.set()
        if self.watcher is not None:
            self.watcher.stop()
        if self.store is not None:
            self.store.close()

    # --- reading ----------------------------------------------------------------------

    @property
    def loaded_model(self) -> LoadedModel:
        if self.model is None:
            raise RuntimeError("The model is not loaded yet.")
        return self.model

    @property
    def model_key(self) -> str:
        """The loaded model's identity in the store: weights sha256 and labels in order."""
        if self.identity is None:
            raise RuntimeError("The model is not loaded yet.")
        return self.identity.key

    def require_store(self) -> ThresholdStore:
        if self.store is None:
            raise StoreUnavailable(self.store_error or "The threshold store is not open yet.")
        return self.store

    def store_problem(self) -> str | None:
        """Why the store is unreachable now (for /readyz), or None while it answers."""
        if self.store is None:
            return self.store_error
        health = self.store.health
        if health.reachable:
            return None
        since = datetime.fromtimestamp(health.since, UTC).isoformat(timespec="seconds")
        return f"{health.error} (since {since}; serving the last active set held)"

    @property
    def active(self) -> ActiveThresholds:
        if self._active is None:
            raise RuntimeError("The model is not loaded yet.")
        return self._active

    @property
    def input_spec(self) -> InputSpec:
        model = self.loaded_model
        return InputSpec(
            labels=list(model.labels),
            input_shape=tuple(model.input_shape),
            feature_names=model.feature_names,
        )

    def is_active(self, found: ThresholdSet) -> bool:
        return self._active is not None and self._active.set_id == found.id

    # --- changing ---------------------------------------------------------------------

    def activate(self, set_id: int) -> ThresholdSet:
        """Make a stored set active: in the store first, then in this replica's snapshot
        (re-read from the store, so a concurrent activation elsewhere that won shows)."""
        assert self.identity is not None
        found = self.require_store().activate(set_id, model=self.identity)
        log.info("Activated threshold set %d", set_id)
        self._refresh_after_write()
        return found

    def archive(self, set_id: int) -> ThresholdSet:
        """Hide a set from the default history (SetIsActive for an active set)."""
        found = self.require_store().archive(set_id)
        log.info("Archived threshold set %d", set_id)
        return found

    def tune(
        self, data: ValidationData, params: TuneParams, *, data_sha256: str, activate: bool
    ) -> tuple[ThresholdSet, dict[str, Any]]:
        """Score (if needed), tune, store, and optionally activate. Blocking: run in a thread."""
        model = self.loaded_model
        store = self.require_store()
        if not store.health.reachable:  # known lost: answer 503 before the work, not after
            raise StoreUnavailable(store.health.error or "The threshold store is unreachable.")
        tuned = tune_data(model, data, params, device=self.settings.device)
        stored = self.store_tuned(
            tuned, params, data_sha256=data_sha256, n_samples=data.n_samples, activate=activate
        )
        return stored, tuned.report

    def store_tuned(
        self,
        tuned: TunedSet,
        params: TuneParams,
        *,
        data_sha256: str,
        n_samples: int,
        activate: bool,
        within: Callable[[Any, int], None] | None = None,
    ) -> ThresholdSet:
        """Store a tuned set for the served model (and activate it). ``within``: a step run
        in the same transaction (a job marks itself succeeded there)."""
        model = self.loaded_model
        new = NewThresholdSet(
            model_name=model.name,
            model_sha256=model.sha256,
            labels=list(model.labels),
            objective=params.objective,
            params=tuned.params,
            data_sha256=data_sha256,
            n_samples=n_samples,
            thresholds=tuned.thresholds,
            result=tuned.result,
        )
        stored = self.require_store().save(
            new, activate=activate, curves=tuned.curves, within=within
        )
        if activate:
            self._refresh_after_write()
        log.info(
            "Stored threshold set %d (objective %s, %d rows)%s",
            stored.id,
            params.objective,
            n_samples,
            ", activated" if activate else "",
        )
        return stored


def model_scores(model: LoadedModel, data: ValidationData, progress: Any = None) -> np.ndarray:
    """The validation rows' probabilities (n, L): the file's own, or the model's (checked
    finite). `progress(rows)` is called as the model scores batches."""
    if data.scores is not None:
        return data.scores
    scores = score_inputs(model, data.inputs, progress=progress)
    _require_finite_scores(scores)
    return scores


def tune_data(
    model: LoadedModel,
    data: ValidationData,
    params: TuneParams,
    *,
    device: str,
    with_curves: bool = True,
    progress: Any = None,
) -> TunedSet:
    """Score (if needed) and tune `data` for `model`: per-label thresholds for a sigmoid
    model, the confidence threshold for a softmax one. Blocking.

    Raises `UploadError` (422) for softmax data whose rows do not have exactly one label,
    with `NotMultiClassError`'s message, before any scoring.
    """
    labels = list(model.labels)
    if getattr(model, "activation", "sigmoid") == "softmax":
        classes = _classes_of(data, labels)
        scores = model_scores(model, data, progress)
        return _tune_softmax(scores, classes, params, labels)
    scores = model_scores(model, data, progress)
    fit = None
    tuned_on = scores
    if params.calibration != "none" and params.calibration_tuning == "cross_fit":
        # Tune on out-of-fold calibrated scores: each row calibrated by a calibrator that
        # did not see it; the calibrator served is the one fit on every row.
        fit = tuning.cross_fit_calibrate(scores, data.targets, params.calibration, seed=0)
        tuned_on = fit.calibrated
    result = tune_scores(
        tuned_on, data.targets, params, device=device, return_curves=with_curves, labels=labels
    )
    report = result.to_dict(label_names=labels)
    stored_params = {**report["params"], "decision_rule": params.decision_rule, "k": params.k}
    lower = getattr(result, "lower_thresholds", None)
    if lower is not None:  # decision_rule "abstain": the lower thresholds, aligned with labels
        stored_params["lower_thresholds"] = [float(t) for t in lower]
    stored_params["expected"] = expected_figures(scores, np.asarray(result.thresholds))
    tuned = TunedSet(
        params=stored_params,
        thresholds=[float(t) for t in result.thresholds],
        result={key: report.get(key) for key in RESULT_KEYS},
        report=report,
        curves=label_curves(result, labels) if with_curves else None,
    )
    if fit is not None:
        tuned = attach_cross_fitted(tuned, fit, scores, data.targets, params.calibration, labels)
    elif params.calibration != "none":
        tuned = calibrate(tuned, scores, data.targets, params.calibration, labels)
    return tuned


def _classes_of(data: ValidationData, labels: list[str]) -> np.ndarray:
    if data.classes is not None:
        return data.classes
    try:
        return tuning.class_indices(data.targets, class_names=labels)
    except tuning.NotMultiClassError as exc:
        raise UploadError(str(exc)) from None


def _tune_softmax(
    scores: np.ndarray, classes: np.ndarray, params: TuneParams, labels: list[str]
) -> TunedSet:
    """The confidence threshold from the exact risk-coverage curve; stored as SPEC-wave2
    says: `params.confidence_threshold`, thresholds `[t] * C`, the curve in the result."""
    found = tuning.tune_confidence_threshold(
        scores, classes, params.objective, target=params.target
    )
    multiclass = found.to_dict(label_names=labels, max_points=CURVE_POINTS)
    curve = multiclass.pop("curve")
    stored = {"activation": "softmax", "multiclass": multiclass, "risk_coverage": curve}
    return TunedSet(
        params={
            "activation": "softmax",
            "decision_rule": "exactly_one",
            "k": None,
            "confidence_threshold": float(found.threshold),
            **multiclass["params"],
        },
        thresholds=[float(found.threshold)] * len(labels),
        result=stored,
        report={
            **stored,
            "params": multiclass["params"],
            "objective": params.objective,
            "n_samples": multiclass["n_samples"],
            "thresholds": dict.fromkeys(labels, float(found.threshold)),
        },
        curves=None,  # GET /thresholds/{id}/curves answers the result's risk_coverage
    )


_TUNE_ARGUMENTS = frozenset(inspect.signature(tuning.tune_thresholds).parameters)


def tune_scores(
    scores: np.ndarray,
    targets: np.ndarray,
    params: TuneParams,
    *,
    device: str,
    return_curves: bool = False,
    labels: list[str] | None = None,
) -> tuning.TuningResult:
    """`tuning.tune_thresholds` with a tune's options: every option sent that it takes
    (`tune_form.tune_keywords`), so a new option of the parameter table flows through.

    `return_curves=True` also keeps each label's compact PR curve from the tune's own
    sorted pass (no second sort), for `label_curves`. `labels` name the columns (cost maps
    are keyed by label).
    """
    keywords = tune_keywords(params, _TUNE_ARGUMENTS.__contains__)
    if labels is not None and "label_names" in _TUNE_ARGUMENTS:
        keywords["label_names"] = labels
    return tuning.tune_thresholds(
        scores,
        targets,
        params.objective,
        device=device,
        return_curves=return_curves,
        **keywords,
    )


def _frozen(values: Any) -> Any:
    """A read-only float64 array of `values` (None stays None): snapshots are shared."""
    if values is None:
        return None
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


def decision_rule_of(found: ThresholdSet) -> tuple[str, int | None]:
    """The default /predict rule stored with a set (sets from before rules: threshold)."""
    return str(found.params.get("decision_rule") or "threshold"), found.params.get("k")


def _require_finite_scores(scores: np.ndarray) -> None:
    # Finite inputs near float32's limits can overflow inside the model.
    bad = ~np.isfinite(scores).all(axis=1)
    if bad.any():
        raise UploadError(
            f"Row {int(np.argmax(bad)) + 1} of the inputs drives the model to a non-finite "
            "output: its values are too large for float32 arithmetic."
        )


def label_curves(result: tuning.TuningResult, labels: list[str]) -> list[dict[str, Any]]:
    """JSON-ready compact PR curves per label, with the tuned and 0.5 points kept exactly.

    `result` comes from `tune_scores(..., return_curves=True)`: the curves are built from
    the tune's own sorted pass (at most `CURVE_POINTS` points each).
    """
    if result.curves is None:
        raise ValueError("label_curves needs a result tuned with return_curves=True.")
    return [
        {
            "label": label,
            "threshold": float(threshold),
            "default_threshold": DEFAULT_THRESHOLD,
            "precision": curve.precision.tolist(),
            "recall": curve.recall.tolist(),
            "thresholds": curve.thresholds.tolist(),
            "chosen_index": tuning.operating_index(curve, float(threshold)),
            "default_index": tuning.operating_index(curve, DEFAULT_THRESHOLD),
        }
        for label, threshold, curve in zip(labels, result.thresholds, result.curves, strict=True)
    ]


def sha256_of_file(fileobj: Any) -> str:
    """Hex sha256 of a seekable binary file's whole content; leaves it at position 0
    (the models package's one sha256 helper)."""
    return sha256_file(fileobj)
