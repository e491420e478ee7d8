"""The ``history:`` section: the on-box trend store behind the status page's charts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.shared import Seconds, StrictModel


class HistoryConfig(StrictModel):
    """Per-point minute buckets (count, mean, min, max, last) and the alarm transitions, for the charts.

    Not the journal: nothing here is sent anywhere, and losing the last ``flush_interval`` of it in a
    power cut costs a few minutes of chart, never a reading. Bounded by age and by size.
    """

    enabled: bool = True
    path: Path | None = Field(default=None, description="default <state_dir>/history.sqlite")
    retention: Seconds = Field(default=7 * 86400.0, ge=3600, le=400 * 86400.0,
                               description="buckets and alarm transitions older than this are deleted")
    max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024**3,
                           description="the file is kept under this by deleting the oldest buckets")
    flush_interval: Seconds = Field(default=300.0, ge=5, le=3600,
                                    description="buckets are written in one transaction this often "
                                    "(an SD card lives longer with few, batched writes)")
    max_alarm_rows: int = Field(default=5000, ge=100, le=1_000_000)
