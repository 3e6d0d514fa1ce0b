"""Rebuild the bundled default model: a multi-label MLP on MULAN's yeast data.

Run ``python -m labelcut.models.train`` (optionally ``--out DIR --seed N --epochs N``). The
model is trained on ``yeast_train.npz`` with ``BCEWithLogitsLoss``; the test split
is only scored, never used for fitting or model selection. Training is seeded and
runs on the CPU, so the same seed on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from labelcut.models.architectures import MLP
from labelcut.models.manifest import read_manifest, write_manifest
from labelcut.models.paths import DEFAULT_MODEL_DIR, YEAST_TEST, YEAST_TRAIN
from labelcut.models.runtime import load_model
from labelcut.models.saving import save_bundle

DEFAULT_NAME = "yeast-mlp"
THRESHOLD = 0.5


def train_default_model(
    out_dir: str | Path = DEFAULT_MODEL_DIR,
    *,
    train_path: str | Path = YEAST_TRAIN,
    test_path: str | Path | None = YEAST_TEST,
    seed: int = 0,
    epochs: int = 20,
    hidden_sizes: Sequence[int] = (256,),
    dropout: float = 0.5,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train the yeast MLP, write it as a safetensors bundle in ``out_dir``, return metrics.

    Steps: load the splits (``X`` float32 ``(n, 103)``, ``Y`` 0/1 ``(n, 14)``), compute
    the train split's per-feature mean and std (stored in the manifest and applied
    by ``LoadedModel``), train ``MLP(103 -> hidden_sizes -> 14)`` with AdamW on
    ``BCEWithLogitsLoss`` for ``epochs`` passes over shuffled mini-batches, save the
    bundle, reload it from disk on the CPU, and score each split at threshold 0.5
    (label positive iff probability >= 0.5). The scores go into the manifest
    under ``"metrics"`` so tests can check that the shipped bundle reproduces them.

    Returns ``{"train": {"macro_f1", "micro_f1", "n"}, "test": {...} (when
    test_path is given), "threshold": 0.5, "seconds": float, "directory": str,
    "sha256": str}``. With ``verbose`` the figures are printed too.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    x_train, y_train, feature_names, label_names = _load_split(train_path)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0).astype(np.float32)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(x_train.shape[1], y_train.shape[1], hidden_sizes=hidden_sizes, dropout=dropout)
        _fit(model, (x_train - mean) / std, y_train, seed, epochs, lr, weight_decay, batch_size)

    save_bundle(
        model,
        out_dir,
        labels=label_names,
        input_shape=(x_train.shape[1],),
        format="safetensors",
        name=DEFAULT_NAME,
        version="1",
        feature_names=feature_names,
        mean=mean,
        std=std,
    )
    splits = {"train": (Path(train_path), x_train, y_train)}
    if test_path is not None:
        x_test, y_test, _, _ = _load_split(test_path)
        splits["test"] = (Path(test_path), x_test, y_test)
    metrics = score_bundle(out_dir, {k: (x, y) for k, (_, x, y) in splits.items()})
    metrics["threshold"] = THRESHOLD
    training = {
        "data": {k: p.name for k, (p, _, _) in splits.items()},
        "seed": seed,
        "epochs": epochs,
        "hidden_sizes": list(hidden_sizes),
        "dropout": dropout,
        "optimizer": "AdamW",
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "loss": "BCEWithLogitsLoss",
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
        _print_summary(result)
    return result


def score_bundle(
    directory: str | Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """Macro- and micro-F1 at threshold 0.5 of the bundle in ``directory`` on each split.

    ``splits`` maps a name to ``(X, Y)``. Scoring runs on the CPU in float32.
    Returns ``{name: {"macro_f1": float, "micro_f1": float, "n": int}}``.
    """
    model = load_model(directory, device="cpu")
    scores: dict[str, Any] = {}
    for split, (x, y) in splits.items():
        predicted = model.predict_proba(x) >= THRESHOLD
        scores[split] = {
            "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(y, predicted, average="micro", zero_division=0)),
            "n": int(x.shape[0]),
        }
    return scores


def _load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    with np.load(path, allow_pickle=False) as data:
        x = data["X"].astype(np.float32)
        y = data["Y"].astype(np.float32)
        features = [str(name) for name in data["feature_names"]]
        labels = [str(name) for name in data["label_names"]]
    return x, y, features, labels


def _fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
) -> None:
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    targets = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    shuffler = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(inputs.shape[0], generator=shuffler)
        for start in range(0, inputs.shape[0], batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[index]), targets[index])
            loss.backward()
            optimizer.step()
    model.eval()


def _print_summary(result: dict[str, Any]) -> None:
    print(f"default model written to {result['directory']} (sha256 {result['sha256'][:16]}...)")
    for split in ("train", "test"):
        if split in result:
            m = result[split]
            print(
                f"{split:>5} (n={m['n']}): macro-F1 {m['macro_f1']:.4f}  "
                f"micro-F1 {m['micro_f1']:.4f}  at threshold {THRESHOLD}"
            )
    print(f"took {result['seconds']:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labelcut.models.train", description="Rebuild the bundled yeast model."
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="bundle directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    train_default_model(args.out, seed=args.seed, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
