"""The local engine: every pass in this process, one partition at a time.

For small datasets and the service's own jobs: no cluster to start, memory bounded by one
partition plus the running statistics, and a cancel takes effect before the next partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labelcut.app.engine.partition import PartitionTask, reduce_partition
from labelcut.app.engine.progress import Tracker


def run_local(plan: Any, tasks: Sequence[PartitionTask], tracker: Tracker) -> None:
    """Drive `plan` (a `StatsTuning`) to its end: for each pass it asks for, reduce every
    partition in order and feed it the running merge of all of them."""
    while (pass_ := plan.next_pass()) is not None:
        tracker.start_pass()
        merged = None
        for task in tasks:
            tracker.check_cancel()
            part = reduce_partition(task, pass_)
            # Counts add, so a running merge equals any merge tree over the same parts.
            merged = part if merged is None else merged.merge(part)
            tracker.partition_done(task.partition.rows)
        plan.feed(merged)
