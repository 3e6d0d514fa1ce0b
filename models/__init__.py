"""Model bundles: save a trained PyTorch classifier, load it on a device, run it.

Public API (see docs/CONTRACTS.md)::

    DEFAULT_MODEL_DIR, YEAST_TRAIN, YEAST_TEST          # the multi-label yeast example
    DIGITS_MODEL_DIR, DIGITS_TRAIN, DIGITS_TEST        # the multi-class digits example
    BundleError
    load_model(directory=None, *, device="auto", dtype=None, warmup=True) -> LoadedModel
    save_bundle(module, directory, *, labels, input_shape, format="export", ...) -> Path
    resolve_device(spec) -> torch.device
    train_default_model(out_dir=DEFAULT_MODEL_DIR, *, train_path=YEAST_TRAIN, seed=0, ...)
    train_digits(out_dir=DIGITS_MODEL_DIR, *, train_path=DIGITS_TRAIN, seed=0, ...)

The ``export`` and ``torchscript`` formats can run code when loaded: load only
bundles you trust. ``safetensors`` bundles hold tensors only. Pickled
checkpoints are refused without being unpickled.
"""

from labelcut.models.architectures import MLP, SmallCNN
from labelcut.models.device import resolve_device
from labelcut.models.errors import BundleError
from labelcut.models.manifest import Manifest
from labelcut.models.paths import (
    DEFAULT_MODEL_DIR,
    DIGITS_MODEL_DIR,
    DIGITS_TEST,
    DIGITS_TRAIN,
    YEAST_TEST,
    YEAST_TRAIN,
)
from labelcut.models.runtime import LoadedModel, load_model
from labelcut.models.saving import save_bundle

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DIGITS_MODEL_DIR",
    "DIGITS_TEST",
    "DIGITS_TRAIN",
    "MLP",
    "YEAST_TEST",
    "YEAST_TRAIN",
    "BundleError",
    "LoadedModel",
    "Manifest",
    "SmallCNN",
    "load_model",
    "resolve_device",
    "save_bundle",
    "train_default_model",
    "train_digits",
]


def __getattr__(name: str):
    # Imported lazily so that `python -m labelcut.models.train` does not import itself twice.
    if name == "train_default_model":
        from labelcut.models.train import train_default_model

        return train_default_model
    if name == "train_digits":
        from labelcut.models.digits import train_digits

        return train_digits
    raise AttributeError(f"module 'models' has no attribute {name!r}")
