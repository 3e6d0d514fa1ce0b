"""POST /thresholds/{id}/adapt: move a stored set to the label priors of unlabelled rows.

The upload holds rows without labels (`labelcut.app.upload_unlabelled`). EM re-estimates
each label's prevalence on them (`tuning.adapt_to_unlabelled`, on the set's calibrated
scores); the set's calibrator gains the prior offset and its thresholds are re-tuned on
its stored curves under the new prior (or only mapped, where the objective cannot be
re-tuned). The result is stored as a NEW, inactive set (`params.adapted_from`, old and new
prevalence per label in `adaptation`); activate it like any other. Admin, like tuning;
it shares the tunes' memory budget and pool.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from labelcut import tuning
from labelcut.app.budget import TuneRunner
from labelcut.app.calibrate_set import expected_figures
from labelcut.app.deps import ReadyService, admin_bearer, reject_unknown_parameters, require_admin
from labelcut.app.routes.budgeted import run_upload, set_of_loaded_model, tune_runner
from labelcut.app.routes.thresholds import set_report
from labelcut.app.schemas import ErrorResponse, ThresholdSetReport
from labelcut.app.scoring import score_inputs
from labelcut.app.service import Service, sha256_of_file
from labelcut.app.store import NewThresholdSet, ThresholdSet
from labelcut.app.upload_unlabelled import estimate_unlabelled_bytes, read_unlabelled_file
from labelcut.app.uploads import UploadError
from labelcut.tuning.label_shift import map_thresholds

router = APIRouter(tags=["thresholds"], dependencies=[Depends(reject_unknown_parameters)])

# Objectives whose thresholds `retune_for_priors` can re-tune from a label's PR curve.
_RETUNABLE = ("f1", "fbeta", "recall_at_precision", "precision_at_recall")


def _loaded_models_set(service: Service, set_id: int) -> ThresholdSet:
    found = set_of_loaded_model(service, set_id, mismatch="It cannot be adapted.")
    if found.params.get("activation") == "softmax":
        raise HTTPException(
            422,
            detail=f"Threshold set {set_id} is a softmax (multi-class) set; adapting to new "
            "label priors applies to multi-label sets.",
        )
    return found


def _prior_of(found: ThresholdSet) -> np.ndarray:
    """The prevalence the set's scores reflect: stored with calibrated (and adapted) sets;
    for others, each label's validation support over the rows."""
    stored = (found.params.get("calibration") or {}).get("prior")
    if stored is not None:
        return np.asarray(stored, dtype=np.float64)
    rows = found.result.get("per_label") or []
    if len(rows) != len(found.labels):
        raise HTTPException(422, detail=f"Threshold set {found.id} has no per-label support.")
    return np.array([row["support"] / found.n_samples for row in rows], dtype=np.float64)


def _curves_of(service: Service, found: ThresholdSet):
    """The set's PR curves and positives, where its objective can be re-tuned on them."""
    if found.objective not in _RETUNABLE or found.params.get("decision_rule") == "abstain":
        return None, None
    stored = service.require_store().curves(found.id)
    rows = found.result.get("per_label") or []
    if not stored or len(stored) != len(found.labels) or len(rows) != len(found.labels):
        return None, None
    curves = [
        tuning.PRCurve(
            np.asarray(c["precision"]), np.asarray(c["recall"]), np.asarray(c["thresholds"])
        )
        for c in stored
    ]
    return curves, np.array([row["support"] for row in rows], dtype=np.float64)


def _adapt_upload(
    service: Service, found: ThresholdSet, file: UploadFile, fmt: str, max_data_bytes: int
) -> dict[str, Any]:
    model = service.loaded_model
    labels = list(model.labels)
    data_sha256 = sha256_of_file(file.file)
    data = read_unlabelled_file(file.file, fmt, service.input_spec, max_data_bytes=max_data_bytes)
    raw = data.scores if data.scores is not None else score_inputs(model, data.inputs)
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        raise UploadError(f"Row {int(np.argmax(bad)) + 1} drives the model to a non-finite output.")
    calibration = found.params.get("calibration") or {}
    calibrator = (
        tuning.Calibrator.from_dict(calibration["calibrator"])
        if calibration.get("calibrator")
        else tuning.Calibrator.identity(len(labels))
    )
    curves, positives = _curves_of(service, found)
    prior = _prior_of(found)
    adapted = tuning.adapt_to_unlabelled(
        calibrator,
        raw,
        prior,
        np.asarray(found.thresholds, dtype=np.float64),
        curves=curves,
        positives=positives,
        objective=found.objective,
        beta=float(found.params.get("beta") or 1.0),
        target=found.params.get("target"),
    )
    served = adapted.calibrator.apply(raw)
    params = {
        **found.params,
        "adapted_from": found.id,
        "calibration": {
            "method": calibration.get("method", "none"),
            "calibrator": adapted.calibrator.to_dict(),
            "prior": adapted.estimate.prior_new.tolist(),
            "expected": expected_figures(served, adapted.thresholds),
        },
    }
    params.pop("expected", None)
    if params.get("lower_thresholds") is not None:
        old, new = adapted.estimate.prior_old, adapted.estimate.prior_new
        params["lower_thresholds"] = map_thresholds(
            np.asarray(params["lower_thresholds"], dtype=np.float64), old, new
        ).tolist()
    adaptation = {
        "from_set": found.id,
        "n_rows": data.n_samples,
        "retuned": curves is not None,
        "per_label": adapted.report(labels),
    }
    new = NewThresholdSet(
        model_name=model.name,
        model_sha256=model.sha256,
        labels=labels,
        objective=found.objective,
        params=params,
        data_sha256=data_sha256,
        n_samples=data.n_samples,
        thresholds=adapted.thresholds.tolist(),
        # The per-label figures are the validation's, at the original thresholds.
        result={**found.result, "adaptation": adaptation},
    )
    stored = service.require_store().save(new, activate=False)
    return set_report(service, stored)


@router.post(
    "/thresholds/{set_id}/adapt",
    response_model=ThresholdSetReport,
    summary="Adapt a set to the label priors of unlabelled rows (stored as a new set)",
    dependencies=[Depends(admin_bearer), Depends(require_admin)],
    responses={code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 415, 422)},
)
async def adapt_set(
    set_id: int,
    service: ReadyService,
    runner: Annotated[TuneRunner, Depends(tune_runner)],
    file: Annotated[UploadFile, File(description="Unlabelled rows: .npz, .csv or .parquet.")],
) -> dict[str, Any]:
    found = await run_in_threadpool(_loaded_models_set, service, set_id)
    return await run_upload(
        service,
        runner,
        file,
        estimate_unlabelled_bytes,
        lambda fmt, limit: _adapt_upload(service, found, file, fmt, limit),
    )
