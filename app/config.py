"""Service settings, read from `LABELCUT_*` environment variables (or CLI flags)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    database_url: SecretStr | None = Field(
        default=None,
        description="postgresql://user:password@host/db: a threshold store shared by "
        "replicas; unset: thresholds.sqlite3 in data_dir.",
    )
    admin_key_file: Path | None = Field(
        default=None, description="A file holding the admin key (a mounted secret)."
    )
    api_key_file: Path | None = Field(
        default=None, description="A file holding the /predict key (a mounted secret)."
    )
    max_upload_mb: float = Field(default=512, gt=0, description="Largest request body, in MB.")
    max_data_mb: float = Field(
        default=2048,
        gt=0,
        description="Memory for uploaded data in flight, in MB: no upload may decode to more, "
        "and the tunes running at once share it (each costs TUNE_COST_FACTOR x its data, "
        "and more for models of over 2,048 labels).",
    )
    tune_workers: int = Field(
        default=2, ge=1, le=64, description="Tunes that run at once (their own thread pool)."
    )
    tune_wait_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long a tune waits for its share of LABELCUT_MAX_DATA_MB before 503.",
    )
    max_header_kb: float = Field(
        default=64, gt=0, le=1 << 20, description="Largest request line plus headers, in KB."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a client may take to send a request's headers."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait between two pieces of a request body."
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="How long an idle keep-alive connection stays open."
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
    # --- tune jobs (issue 17; app/jobs.py) ---
    data_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Roots a tune's source= may name datasets under: local directories or "
        "fsspec URL prefixes (s3://bucket/prefix); a JSON list or comma-separated. Empty: "
        "source= is refused.",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="A Dask scheduler (tcp://host:8786) that source= jobs run on; unset: "
        "they run in this process, one partition at a time.",
    )
    job_upload_mb: float = Field(
        default=64,
        ge=0,
        description="Uploads that decode to more than this (MB) tune as a job (202); "
        "smaller ones answer at once.",
    )
    job_workers: int = Field(default=1, ge=1, le=64, description="Jobs that run at once.")
    max_jobs: int = Field(
        default=32, ge=1, le=10_000, description="Jobs queued or running per process (503 past)."
    )
    job_retention_h: float = Field(
        default=168, gt=0, description="Finished jobs are forgotten after this many hours."
    )
    job_stale_s: float = Field(
        default=30,
        gt=0,
        le=86_400,
        description="A job whose process sent no heartbeat for this long is marked failed.",
    )
    test_only_job_delay_s: float = Field(
        default=0,
        ge=0,
        le=3600,
        description="TESTS ONLY: every job waits this long (cancellable) before its work.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("admin_key", "api_key", "database_url", mode="before")
    @classmethod
    def _empty_key_is_unset(cls, value: object) -> object:
        # `-e LABELCUT_ADMIN_KEY=` must not become a key that is the empty string.
        return None if value == "" else value

    @model_validator(mode="after")
    def _keys_from_files(self) -> Settings:
        # LABELCUT_ADMIN_KEY_FILE / LABELCUT_API_KEY_FILE: a secret mounted as a file
        # (Docker/Kubernetes secrets), so the key is not in the environment.
        for name in ("admin_key", "api_key"):
            path = getattr(self, f"{name}_file")
            if path is None:
                continue
            variable = f"LABELCUT_{name.upper()}"
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{variable} and {variable}_FILE are both set; set only one of them."
                )
            setattr(self, name, SecretStr(read_key_file(path, f"{variable}_FILE")))
        return self

    @field_validator("data_sources", mode="before")
    @classmethod
    def _split_data_sources(cls, value: object) -> object:
        # LABELCUT_DATA_SOURCES='["/data", "s3://bucket/sets"]' or '/data,s3://bucket/sets'.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

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


def read_key_file(path: Path, variable: str) -> str:
    """The key in `path`: its text without the trailing newline (`echo key > file`).

    Raises ValueError naming the variable when the file cannot be read or holds no key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{variable}: cannot read the key file '{path}': {exc}") from exc
    key = text.rstrip("\r\n")
    if not key.strip():
        raise ValueError(f"{variable}: the key file '{path}' is empty.")
    if "\n" in key:
        raise ValueError(f"{variable}: the key file '{path}' holds more than one line.")
    return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
