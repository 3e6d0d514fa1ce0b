"""The threshold store: every set ever tuned and each model's active set, in SQLite (the
default, one file) or PostgreSQL (shared by replicas). See `core.ThresholdStore`."""

from labelcut.app.store.core import NOTIFY_CHANNEL, StoreHealth, ThresholdStore
from labelcut.app.store.engine import DATABASE_URL_ENV, database_url_from
from labelcut.app.store.model import (
    ActivePointer,
    ModelIdentity,
    ModelMismatch,
    NewThresholdSet,
    SetIsActive,
    StoreUnavailable,
    ThresholdSet,
    UnknownThresholdSet,
    model_key,
)
from labelcut.app.store.schema import LATEST_VERSION, SchemaTooNew
from labelcut.app.store.watch import ActiveWatcher

__all__ = [
    "DATABASE_URL_ENV",
    "LATEST_VERSION",
    "NOTIFY_CHANNEL",
    "ActivePointer",
    "ActiveWatcher",
    "ModelIdentity",
    "ModelMismatch",
    "NewThresholdSet",
    "SchemaTooNew",
    "SetIsActive",
    "StoreHealth",
    "StoreUnavailable",
    "ThresholdSet",
    "ThresholdStore",
    "UnknownThresholdSet",
    "database_url_from",
    "model_key",
]
