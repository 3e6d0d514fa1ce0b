"""The shapes `/jobs` answers (and `/tune-thresholds` answers with 202), for OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from labelcut.app.schemas import TuneReport


class JobProgress(BaseModel):
    pass_index: int = Field(description="The pass over the rows (1-based; 0: not started).")
    passes: int = Field(description="Passes planned (an upper bound).")
    partitions_done: int = Field(description="Partitions read in this pass.")
    partitions: int | None = Field(description="Partitions in a pass (null: not known yet).")
    rows_done: int = Field(description="Rows read (or scored) in this pass.")
    rows: int | None = Field(description="Rows in all (null: not known yet).")
    elapsed_s: float = Field(description="Seconds since the job started running.")


class JobView(BaseModel):
    id: str = Field(description="32 hex digits.")
    kind: Literal["upload", "source"]
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    model_name: str
    source: str | None = Field(description="The dataset named by source=, or the file's name.")
    options: dict[str, Any] = Field(description="The tune's options as sent.")
    progress: JobProgress
    error: str | None = Field(description="Why a failed job failed.")
    cancel_requested: bool
    threshold_set_id: int | None = Field(description="The set a succeeded job stored.")
    result: TuneReport | None = Field(
        default=None,
        description="A succeeded job's result: what POST /tune-thresholds answers (only on "
        "GET /jobs/{id}).",
    )


class JobList(BaseModel):
    items: list[JobView]
