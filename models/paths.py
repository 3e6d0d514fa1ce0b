"""Where the bundled model and data live inside the installed package."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

#: The bundled default model: a yeast MLP in safetensors format (see ``models.train``).
DEFAULT_MODEL_DIR: Path = PACKAGE_DIR / "default"

#: MULAN's yeast splits as NumPy archives (arrays X, Y, label_names, feature_names).
YEAST_TRAIN: Path = PACKAGE_DIR / "data" / "yeast_train.npz"
YEAST_TEST: Path = PACKAGE_DIR / "data" / "yeast_test.npz"

#: The bundled multi-class example: a small CNN on scikit-learn's 8x8 digits (softmax).
DIGITS_MODEL_DIR: Path = PACKAGE_DIR / "digits"

#: The digits splits (arrays X, y, Y, label_names, feature_names); see models/data/README.md.
DIGITS_TRAIN: Path = PACKAGE_DIR / "data" / "digits_train.npz"
DIGITS_TEST: Path = PACKAGE_DIR / "data" / "digits_test.npz"
