"""Built-in architectures that a safetensors bundle can name.

A safetensors file holds tensors only, so the bundle must say which class to
build before the weights are loaded into it. Only the classes registered in
``ARCHITECTURES`` can be named; nothing is imported from the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from labelcut.models.errors import BundleError


class MLP(nn.Module):
    """A multi-label multilayer perceptron that outputs one logit per label.

    ``forward(x)`` takes a float tensor of shape ``(batch, input_size)`` and returns
    logits of shape ``(batch, num_labels)``; ``sigmoid(logit)`` is the probability of
    each label. Hidden layers are ``Linear -> ReLU -> Dropout``; dropout is only
    active in training mode.
    """

    architecture_name = "mlp"

    def __init__(
        self,
        input_size: int,
        num_labels: int,
        hidden_sizes: Sequence[int] = (256,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive_int("input_size", input_size)
        _check_positive_int("num_labels", num_labels)
        if isinstance(hidden_sizes, (str, bytes)) or not isinstance(hidden_sizes, Sequence):
            raise ValueError(
                f"hidden_sizes must be a list of positive integers; got {hidden_sizes!r}."
            )
        for size in hidden_sizes:
            _check_positive_int("each entry of hidden_sizes", size)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
        self.input_size = int(input_size)
        self.num_labels = int(num_labels)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.dropout = float(dropout)

        layers: list[nn.Module] = []
        width = self.input_size
        for hidden in self.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(self.dropout)]
            width = hidden
        layers.append(nn.Linear(width, self.num_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def architecture_config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this module (stored in the manifest)."""
        return {
            "input_size": self.input_size,
            "num_labels": self.num_labels,
            "hidden_sizes": list(self.hidden_sizes),
            "dropout": self.dropout,
        }


class SmallCNN(nn.Module):
    """A small convolutional classifier for one-channel images such as 8x8 digits.

    ``forward(x)`` takes ``(batch, height * width)`` flat pixels (a 1-D
    ``input_shape``, so CSV feature columns work) or ``(batch, 1, height, width)``
    and returns logits ``(batch, num_labels)``: train it with ``CrossEntropyLoss``
    for one class per row (bundle activation ``"softmax"``) or with
    ``BCEWithLogitsLoss`` for independent labels (``"sigmoid"``). Layers:
    two ``3x3 conv -> ReLU``, a ``2x2`` max-pool, ``Linear -> ReLU -> Dropout``,
    ``Linear``.
    """

    architecture_name = "small_cnn"

    def __init__(
        self,
        height: int,
        width: int,
        num_labels: int,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("height", height), ("width", width), ("num_labels", num_labels)):
            _check_positive_int(name, value)
        _check_positive_int("hidden", hidden)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise ValueError(f"channels must be two positive integers; got {channels!r}.")
        if len(channels) != 2:
            raise ValueError(f"channels must be two positive integers; got {channels!r}.")
        for size in channels:
            _check_positive_int("each entry of channels", size)
        if height < 2 or width < 2:
            raise ValueError(f"height and width must be at least 2; got {height}x{width}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r}.")
        self.height, self.width, self.num_labels = int(height), int(width), int(num_labels)
        self.channels = (int(channels[0]), int(channels[1]))
        self.hidden, self.dropout = int(hidden), float(dropout)
        first, second = self.channels
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = second * (self.height // 2) * (self.width // 2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, self.hidden),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, self.num_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(-1, 1, self.height, self.width)))

    def architecture_config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this module (stored in the manifest)."""
        return {
            "height": self.height,
            "width": self.width,
            "num_labels": self.num_labels,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "dropout": self.dropout,
        }


#: Architecture names a manifest may use, mapped to their classes.
ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "small_cnn": SmallCNN}


def build_architecture(name: str, config: Mapping[str, Any], *, source: str) -> nn.Module:
    """Build the registered architecture ``name`` from ``config`` (its keyword arguments).

    The module is built on the meta device: load a state dict into it with
    ``load_state_dict(state, strict=True, assign=True)`` before use.

    ``source`` names the file the request came from; it appears in error messages.
    """
    cls = ARCHITECTURES.get(name)
    if cls is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise BundleError(
            f"{source}: architecture {name!r} is not a built-in architecture (known: {known})."
        )
    try:
        # On the meta device: no memory and no random initialisation (which would also
        # advance the global RNG); callers load real tensors with assign=True.
        with torch.device("meta"):
            return cls(**dict(config))
    except (TypeError, ValueError) as exc:
        raise BundleError(
            f"{source}: architecture {name!r} cannot be built from config {dict(config)!r}: {exc}"
        ) from exc


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
