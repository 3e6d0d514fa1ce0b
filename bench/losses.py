"""The forum question, measured: CrossEntropyLoss or BCEWithLogitsLoss for one-class-per-row data?

Trains the same ``SmallCNN`` on scikit-learn's digits (10 classes, exactly one per
row) twice per seed: with ``CrossEntropyLoss`` (a softmax model) and with
``BCEWithLogitsLoss`` on one-hot targets (ten independent sigmoids). Same
initial weights, same mini-batches, same epochs. Data: ``digits_train.npz`` split
per seed into train (70 %) and validation (30 %, stratified); scored on the
untouched ``digits_test.npz``.

Prints, as mean and standard deviation over the seeds:

* argmax test accuracy of both models;
* for the sigmoid model, the share of test rows that get 0 labels and 2+ labels
  when every label is cut at 0.5, and after per-label thresholds tuned for F1 on
  the validation split (``tune_thresholds(strategy="per_label")``), and the share
  where the labels are exactly the true class;
* expected calibration error (15 equal-width bins of the top probability,
  weighted by rows) of each model's top-class confidence;
* the softmax model's logits served through sigmoids at 0.5 (the mix-up that a
  bundle's ``activation`` prevents): rows with 0 and 2+ labels, and exactly right;
* for the softmax model, the confidence threshold tuned on validation for 99 %
  accuracy (``coverage_at_accuracy``) and the coverage and accuracy it gives on test.

Usage: ``.venv/bin/python bench/losses.py [--seeds 0,1,2] [--epochs 30]`` (about
20 s on one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from labelcut.models import DIGITS_TEST, DIGITS_TRAIN, SmallCNN
from labelcut.models.digits import fit_classifier, load_digits_split, pixel_standardization
from labelcut.tuning import apply_thresholds, tune_thresholds
from labelcut.tuning.risk_coverage import apply_confidence_threshold, tune_confidence_threshold

N_CLASSES = 10
ECE_BINS = 15


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Top-label ECE: sum over equal-width bins of |accuracy - mean confidence| x share of rows."""
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        rows = which == b
        if rows.any():
            total += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total)


def _train(loss: str, x: np.ndarray, y: np.ndarray, seed: int, epochs: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # same initial weights for both losses
        model = SmallCNN(8, 8, N_CLASSES)
    if loss == "cross_entropy":
        return fit_classifier(model, x, y, nn.CrossEntropyLoss(), seed=seed, epochs=epochs)
    one_hot = np.eye(N_CLASSES, dtype=np.float32)[y]
    return fit_classifier(model, x, one_hot, nn.BCEWithLogitsLoss(), seed=seed, epochs=epochs)


def _logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _label_counts(predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    counts = predicted.sum(axis=1)
    exact = (counts == 1) & predicted[np.arange(len(y)), y]
    return {"zero": (counts == 0).mean(), "two_plus": (counts >= 2).mean(), "exact": exact.mean()}


def run_seed(seed: int, epochs: int) -> dict[str, float]:
    """Every figure of one seed (see the module docstring)."""
    x_all, y_all = load_digits_split(DIGITS_TRAIN)
    x_test, y_test = load_digits_split(DIGITS_TEST)
    x_fit, x_val, y_fit, y_val = train_test_split(
        x_all, y_all, test_size=0.3, random_state=seed, stratify=y_all
    )
    mean, std = pixel_standardization(x_fit)
    fit, val, test = ((x - mean) / std for x in (x_fit, x_val, x_test))

    softmax_model = _train("cross_entropy", fit, y_fit, seed, epochs)
    sigmoid_model = _train("bce", fit, y_fit, seed, epochs)

    soft_val = torch.softmax(torch.from_numpy(_logits(softmax_model, val)), 1).numpy()
    soft_test = torch.softmax(torch.from_numpy(_logits(softmax_model, test)), 1).numpy()
    sig_val = torch.sigmoid(torch.from_numpy(_logits(sigmoid_model, val))).numpy()
    sig_test = torch.sigmoid(torch.from_numpy(_logits(sigmoid_model, test))).numpy()

    out: dict[str, float] = {}
    for name, proba in (("ce", soft_test), ("bce", sig_test)):
        correct = proba.argmax(axis=1) == y_test
        out[f"{name}_accuracy"] = float(correct.mean())
        out[f"{name}_ece"] = expected_calibration_error(proba.max(axis=1), correct)

    at_half = _label_counts(sig_test >= 0.5, y_test)
    tuned = tune_thresholds(
        sig_val, np.eye(N_CLASSES)[y_val], "f1", strategy="per_label", n_bootstrap=0, device="cpu"
    )
    after = _label_counts(apply_thresholds(sig_test, tuned.thresholds), y_test)
    for key in at_half:
        out[f"bce_{key}_at_0.5"] = float(at_half[key])
        out[f"bce_{key}_tuned"] = float(after[key])

    # The mix-up the output contract prevents: CrossEntropy logits served through sigmoids.
    mixed = torch.sigmoid(torch.from_numpy(_logits(softmax_model, test))).numpy()
    for key, value in _label_counts(mixed >= 0.5, y_test).items():
        out[f"ce_as_sigmoid_{key}"] = float(value)

    confidence = tune_confidence_threshold(soft_val, y_val, "coverage_at_accuracy", target=0.99)
    answers = apply_confidence_threshold(soft_test, confidence.threshold)
    answered = answers >= 0
    out["ce_threshold_99"] = confidence.threshold
    out["ce_coverage_99"] = float(answered.mean())
    out["ce_accuracy_99"] = float((answers[answered] == y_test[answered]).mean())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    # One thread: this model is tiny, and several threads on busy shared cores cost 30x.
    torch.set_num_threads(1)
    started = time.perf_counter()
    runs = [run_seed(seed, args.epochs) for seed in seeds]
    keys = runs[0].keys()
    stats = {k: (np.mean([r[k] for r in runs]), np.std([r[k] for r in runs])) for k in keys}

    def cell(key: str, percent: bool = True) -> str:
        mean, sd = stats[key]
        return f"{100 * mean:.1f} ± {100 * sd:.1f} %" if percent else f"{mean:.3f} ± {sd:.3f}"

    print(f"digits: SmallCNN, {args.epochs} epochs, seeds {seeds}, test rows 540\n")
    print("| | CrossEntropyLoss (softmax) | BCEWithLogitsLoss (sigmoids) |")
    print("|---|---|---|")
    print(f"| argmax test accuracy | {cell('ce_accuracy')} | {cell('bce_accuracy')} |")
    print(f"| top-label ECE | {cell('ce_ece', False)} | {cell('bce_ece', False)} |")
    print(f"| rows with 0 labels at 0.5 | – | {cell('bce_zero_at_0.5')} |")
    print(f"| rows with 2+ labels at 0.5 | – | {cell('bce_two_plus_at_0.5')} |")
    print(f"| labels exactly right at 0.5 | – | {cell('bce_exact_at_0.5')} |")
    print(f"| rows with 0 labels, tuned per label | – | {cell('bce_zero_tuned')} |")
    print(f"| rows with 2+ labels, tuned per label | – | {cell('bce_two_plus_tuned')} |")
    print(f"| labels exactly right, tuned per label | – | {cell('bce_exact_tuned')} |")
    print(
        f"| CE logits served through sigmoids at 0.5 (the mix-up): 0 / 2+ labels / exactly right "
        f"| {cell('ce_as_sigmoid_zero')} / {cell('ce_as_sigmoid_two_plus')} / "
        f"{cell('ce_as_sigmoid_exact')} | – |"
    )
    print(
        f"| confidence threshold for 99 % accuracy (validation) | "
        f"{cell('ce_threshold_99', False)} | – |"
    )
    print(
        f"| test coverage / accuracy at it | {cell('ce_coverage_99')} / "
        f"{cell('ce_accuracy_99')} | – |"
    )
    print(f"\ntook {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
