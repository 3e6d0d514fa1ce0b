"""Service settings, read from `LABELCUT_*` environment variables (or CLI flags)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Per-user data directory: `$XDG_DATA_HOME/labelcut`, else `~/.local/share/labelcut`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "labelcut"


class Settings(BaseSettings):
    """Every setting of the service; `LABELCUT_<NAME>` in the environment sets `<name>`."""

    model_config = SettingsConfigDict(env_prefix="LABELCUT_", extra="ignore")

    model_dir: Path | None = Field(
        default=None, description="Model bundle directory; unset serves the bundled yeast model."
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        default=None, description="Compute dtype on the GPU; outputs are always float32."
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    admin_key: SecretStr | None = None
    api_key: SecretStr | None = None
    max_upload_mb: float = Field(default=512, gt=0, description="Largest request body, in MB.")
    max_data_mb: float = Field(
        default=2048, gt=0, description="Largest arrays after parsing or inflating, in MB."
    )
    max_batch_rows: int = Field(default=10_000, gt=0, description="Rows per /predict request.")
    max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Rows per model forward pass that concurrent /predict requests share; "
        "1 turns batching off. A request with more rows runs alone.",
    )
    max_batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="Longest a request waits for others to join its forward pass, in ms; "
        "applies only while traffic is concurrent, so a lone request never waits.",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Intra-op threads of the forward passes on CPU; unset: one less than the "
        "CPU cores (at least 1), leaving a core to the event loop.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("admin_key", "api_key", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        # `-e LABELCUT_ADMIN_KEY=` must not become a key that is the empty string.
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_data_bytes(self) -> int:
        return int(self.max_data_mb * 1024 * 1024)

    @property
    def forward_threads(self) -> int:
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) - 1)

    @property
    def max_batch_wait_s(self) -> float:
        return self.max_batch_wait_ms / 1000

    @property
    def store_path(self) -> Path:
        return self.data_dir / "thresholds.sqlite3"


@lru_cache
def get_settings() -> Settings:
    return Settings()
