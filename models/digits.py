"""The bundled multi-class example: a small CNN on scikit-learn's 8x8 handwritten digits.

Run ``python -m labelcut.models.digits`` (optionally ``--out DIR --seed N --epochs N``)
to rebuild ``models/digits/`` from ``models/data/digits_train.npz``;
``--refresh-data`` first rewrites both ``.npz`` splits from
``sklearn.datasets.load_digits`` (which ships with scikit-learn, no download).

The model is ``SmallCNN`` (10 classes, one per digit) trained with
``CrossEntropyLoss``, saved as a safetensors bundle with ``activation="softmax"``:
labelcut serves the softmax probabilities and the argmax. Training is seeded and
runs on the CPU in a few seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelcut.models.architectures import SmallCNN
from labelcut.models.manifest import read_manifest, write_manifest
from labelcut.models.paths import DIGITS_MODEL_DIR, DIGITS_TEST, DIGITS_TRAIN
from labelcut.models.runtime import load_model
from labelcut.models.saving import save_bundle

DIGITS_NAME = "digits-cnn"
CLASS_NAMES = [str(d) for d in range(10)]
FEATURE_NAMES = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
#: Example rows stored with the bundle for the output guard (taken from the train split).
EXAMPLE_ROWS = 32


def write_digits_data(
    train_path: str | Path = DIGITS_TRAIN, test_path: str | Path = DIGITS_TEST, seed: int = 0
) -> tuple[int, int]:
    """Write ``load_digits`` as a stratified 70/30 train/test split of ``.npz`` files.

    Each file holds ``X`` float32 ``(n, 64)`` pixel counts 0..16 (row-major 8x8),
    ``y`` int64 ``(n,)`` digit, ``Y`` uint8 ``(n, 10)`` one-hot, ``label_names``
    ``"0".."9"`` and ``feature_names`` ``pixel_<row>_<col>``. Returns the row counts.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=seed, stratify=y
    )
    for path, xs, ys in ((train_path, x_train, y_train), (test_path, x_test, y_test)):
        np.savez_compressed(
            path,
            X=xs,
            y=ys,
            Y=np.eye(10, dtype=np.uint8)[ys],
            label_names=np.array(CLASS_NAMES),
            feature_names=np.array(FEATURE_NAMES),
        )
    return len(y_train), len(y_test)


def load_digits_split(path: str | Path = DIGITS_TRAIN) -> tuple[np.ndarray, np.ndarray]:
    """``(X float32 (n, 64), y int64 (n,))`` of one digits ``.npz`` split."""
    with np.load(path, allow_pickle=False) as data:
        return data["X"].astype(np.float32), data["y"].astype(np.int64)


def fit_classifier(
    model: nn.Module,
    x: np.ndarray,
    targets: np.ndarray,
    loss_fn: nn.Module,
    *,
    seed: int = 0,
    epochs: int = 30,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
) -> nn.Module:
    """Train ``model`` in place with AdamW on ``loss_fn(model(x), targets)``; eval mode after.

    ``targets`` are class indices (for ``CrossEntropyLoss``) or 0/1 floats (for
    ``BCEWithLogitsLoss``); mini-batches are shuffled by a generator seeded with
    ``seed``. ``x`` is what the model takes (already standardised).
    """
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    goal = torch.from_numpy(np.ascontiguousarray(targets))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    shuffler = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=shuffler)
        for start in range(0, inputs.shape[0], batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(inputs[index]), goal[index]).backward()
            optimizer.step()
    return model.eval()


def pixel_standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One mean and one std over every pixel of ``x``, shape ``(1,)`` each (they broadcast)."""
    return np.array([x.mean()], np.float32), np.array([max(float(x.std()), 1e-6)], np.float32)


def train_digits(
    out_dir: str | Path = DIGITS_MODEL_DIR,
    *,
    train_path: str | Path = DIGITS_TRAIN,
    test_path: str | Path | None = DIGITS_TEST,
    seed: int = 0,
    epochs: int = 30,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train the digits CNN with ``CrossEntropyLoss``, save it as a softmax bundle, score it.

    The bundle (safetensors, ``SmallCNN``) stores a pixel mean/std, the feature
    names and ``EXAMPLE_ROWS`` training rows as example rows. It is reloaded from
    disk on the CPU and scored: argmax accuracy per split (stored under
    ``"metrics"``). Returns ``{"train": {"accuracy", "n"}, "test": {...},
    "seconds", "directory", "sha256"}``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    x_train, y_train = load_digits_split(train_path)
    mean, std = pixel_standardization(x_train)
    threads = torch.get_num_threads()
    try:
        # One thread: the model is tiny, and more threads on busy cores are far slower.
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = SmallCNN(8, 8, len(CLASS_NAMES))
            fit_classifier(
                model,
                (x_train - mean) / std,
                y_train,
                nn.CrossEntropyLoss(),
                seed=seed,
                epochs=epochs,
            )
    finally:
        torch.set_num_threads(threads)
    save_bundle(
        model,
        out_dir,
        labels=CLASS_NAMES,
        input_shape=(64,),
        format="safetensors",
        name=DIGITS_NAME,
        feature_names=FEATURE_NAMES,
        mean=mean,
        std=std,
        activation="softmax",
        examples=x_train[:EXAMPLE_ROWS],
    )
    splits = {"train": (x_train, y_train)}
    if test_path is not None:
        splits["test"] = load_digits_split(test_path)
    loaded = load_model(out_dir, device="cpu")
    metrics: dict[str, Any] = {
        name: {
            "accuracy": float((loaded.predict_proba(x).argmax(axis=1) == y).mean()),
            "n": len(y),
        }
        for name, (x, y) in splits.items()
    }
    metrics["decision"] = "argmax"
    training = {
        "data": {"train": Path(train_path).name},
        "seed": seed,
        "epochs": epochs,
        "loss": "CrossEntropyLoss",
        "optimizer": "AdamW",
        "torch": torch.__version__,
    }
    manifest = read_manifest(out_dir)
    write_manifest(out_dir, manifest.model_copy(update={"metrics": metrics, "training": training}))
    result = {
        **metrics,
        "seconds": round(time.perf_counter() - started, 2),
        "directory": str(out_dir),
        "sha256": manifest.weights.sha256,
    }
    if verbose:
        for split in ("train", "test"):
            if split in result:
                print(
                    f"{split:>5} (n={result[split]['n']}): accuracy {result[split]['accuracy']:.4f}"
                )
        print(f"digits model written to {out_dir} in {result['seconds']:.1f} s")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labelcut.models.digits",
        description="Rebuild the bundled multi-class digits model (softmax CNN).",
    )
    parser.add_argument("--out", type=Path, default=DIGITS_MODEL_DIR, help="bundle directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--refresh-data", action="store_true", help="rewrite the .npz splits from scikit-learn"
    )
    args = parser.parse_args(argv)
    if args.refresh_data:
        write_digits_data()
    train_digits(args.out, seed=args.seed, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
