"""Where the bundled model and data live inside the installed package."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

#: The bundled default model: a yeast MLP in safetensors format (see ``models.train``).
DEFAULT_MODEL_DIR: Path = PACKAGE_DIR / "default"

#: MULAN's yeast splits as NumPy archives (arrays X, Y, label_names, feature_names).
YEAST_TRAIN: Path = PACKAGE_DIR / "data" / "yeast_train.npz"
YEAST_TEST: Path = PACKAGE_DIR / "data" / "yeast_test.npz"
