"""What the store holds and the errors it raises: sets, model identities, failures."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def model_key(weights_sha256: str, labels: Sequence[str]) -> str:
    """One identity for a model: its weights *and* its labels in output order.

    hex sha256 of `weights_sha256 + "\\n" + json.dumps(labels)` (compact separators, UTF-8).
    The same weights with the labels in another order are another model: a set tuned for
    one must never put its `thresholds[i]` on the other's label `i`.
    """
    text = weights_sha256 + "\n" + json.dumps(list(labels), separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """The loaded model as the store sees it: name (for messages), weights and labels."""

    name: str
    sha256: str
    labels: tuple[str, ...]

    @property
    def key(self) -> str:
        return model_key(self.sha256, self.labels)


class UnknownThresholdSet(LookupError):
    """No threshold set has the requested id."""


class ModelMismatch(ValueError):
    """A threshold set was tuned for another model (weights, or labels and their order)."""


class SetIsActive(ValueError):
    """The set is some model's active set, so it cannot be archived."""


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (or is too busy); nothing was written.

    The message names the store with its password masked, never the credentials.
    """


@dataclass(frozen=True)
class NewThresholdSet:
    """What a tune produced, before the store gives it an id."""

    model_name: str
    model_sha256: str
    labels: list[str]
    objective: str
    params: dict[str, Any]
    data_sha256: str
    n_samples: int
    thresholds: list[float]
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def model_key(self) -> str:
        """The identity of the model this set belongs to (weights + labels in order)."""
        return model_key(self.model_sha256, self.labels)


@dataclass(frozen=True)
class ThresholdSet(NewThresholdSet):
    """A stored set. `thresholds[i]` belongs to `labels[i]`; positive iff score >= threshold.

    `archived` sets are hidden from the default history; nothing is ever deleted.
    """

    id: int = 0
    created_at: str = ""
    archived: bool = False

    def threshold_map(self) -> dict[str, float]:
        return dict(zip(self.labels, self.thresholds, strict=True))

    def mismatch_with(self, model: ModelIdentity) -> str | None:
        """Why this set must not be applied to `model`, or None when it belongs to it."""
        if self.model_sha256 != model.sha256:
            return (
                f"Threshold set {self.id} was tuned for model '{self.model_name}' "
                f"(sha256 {self.model_sha256[:12]}...), not for the loaded model "
                f"(sha256 {model.sha256[:12]}...)."
            )
        if list(self.labels) != list(model.labels):
            return (
                f"Threshold set {self.id} was tuned for the same weights with the labels "
                f"{_describe_labels(self.labels, model.labels)}; its thresholds would land "
                "on the wrong labels."
            )
        if len(self.thresholds) != len(model.labels):
            return f"Threshold set {self.id} has {len(self.thresholds)} thresholds."
        return None


@dataclass(frozen=True)
class ActivePointer:
    """A model's active set and the activation that made it so.

    `activation_id` grows with every activation in commit order (activations are
    serialised), so a replica holding a smaller one knows its snapshot is older.
    """

    set: ThresholdSet
    activation_id: int


def _describe_labels(stored: Sequence[str], loaded: Sequence[str]) -> str:
    if sorted(stored) == sorted(loaded):
        first = next(i for i, (a, b) in enumerate(zip(stored, loaded, strict=True)) if a != b)
        return (
            f"in another order (position {first + 1}: '{stored[first]}' in the set, "
            f"'{loaded[first]}' in the loaded model)"
        )
    extra = sorted(set(stored) - set(loaded))[:5]
    missing = sorted(set(loaded) - set(stored))[:5]
    count = "" if len(stored) == len(loaded) else f" ({len(stored)} instead of {len(loaded)})"
    return f"of another model{count}: only in the set {extra}, only in the model {missing}"
