"""The tunes' memory budget on its own: reservations share one total, a reservation that
does not fit waits for a release or fails with BudgetBusy, one larger than the total fails
at once, and a tune's reservation lasts until its thread ends even if the caller leaves."""

from __future__ import annotations

import asyncio
import threading

import pytest

from labelcut.app.budget import (
    FREE_LABELS,
    TUNE_BYTES_PER_LABEL,
    TUNE_COST_FACTOR,
    BudgetBusy,
    MemoryBudget,
    NeverFits,
    TuneRunner,
    tune_cost,
)
from labelcut.app.config import Settings


def run(coro):
    return asyncio.run(coro)


def test_reservations_share_the_total_and_release():
    async def scenario():
        budget = MemoryBudget(100)
        async with budget.reserve(60, wait_s=0):
            assert budget.free == 40
            async with budget.reserve(40, wait_s=0):
                assert budget.free == 0
            with pytest.raises(BudgetBusy) as busy:
                async with budget.reserve(41, wait_s=0):
                    pass
            assert busy.value.retry_after >= 1 and "LABELCUT_MAX_DATA_MB" in str(busy.value)
        assert budget.free == 100

    run(scenario())


def test_a_waiting_reservation_gets_in_when_another_ends():
    async def scenario():
        budget = MemoryBudget(100)
        order = []
        first_in = asyncio.Event()
        release = asyncio.Event()

        async def first():
            async with budget.reserve(80, wait_s=0):
                order.append("first in")
                first_in.set()
                await release.wait()
            order.append("first out")

        async def second():
            await first_in.wait()
            async with budget.reserve(50, wait_s=30):
                order.append("second in")

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await first_in.wait()
        await asyncio.sleep(0)
        assert order == ["first in"]  # the second one is waiting, holding nothing
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["first in", "first out", "second in"]

    run(scenario())


def test_more_than_the_whole_budget_never_fits():
    async def scenario():
        with pytest.raises(NeverFits, match="LABELCUT_MAX_DATA_MB"):
            async with MemoryBudget(100).reserve(101, wait_s=30):
                pass

    run(scenario())


def test_runner_holds_the_reservation_until_the_thread_ends(tmp_path):
    runner = TuneRunner(Settings(data_dir=tmp_path, max_data_mb=1))
    started, finish = threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        finish.wait(10)
        return "done"

    async def scenario():
        task = asyncio.create_task(runner.run(1000, work))
        await asyncio.to_thread(started.wait, 10)
        assert runner.budget.used == TUNE_COST_FACTOR * 1000
        task.cancel()  # the client went away
        await asyncio.sleep(0.05)
        assert runner.budget.used == TUNE_COST_FACTOR * 1000  # the thread still runs
        finish.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert runner.budget.used == 0

    run(scenario())
    runner.close()


def test_a_tune_reserves_per_label_too(tmp_path):
    # Wide models hold working arrays per label whatever the rows: a 2,000 x 5,000 tune
    # held 8x its data, so 3x the data alone would promise memory the tune then exceeds.
    # Up to FREE_LABELS labels those arrays share the tuning's fixed budgets.
    assert tune_cost(1000, 0) == tune_cost(1000, FREE_LABELS) == TUNE_COST_FACTOR * 1000
    assert tune_cost(1000, 5000) == (
        TUNE_COST_FACTOR * 1000 + (5000 - FREE_LABELS) * TUNE_BYTES_PER_LABEL
    )
    runner = TuneRunner(Settings(data_dir=tmp_path, max_data_mb=64))
    seen = []

    async def scenario():
        await runner.run(1000, lambda: seen.append(runner.budget.used), n_labels=2100)
        with pytest.raises(NeverFits, match="per label"):
            await runner.run(1000, lambda: None, n_labels=FREE_LABELS + 1100)  # 69 MB

    run(scenario())
    runner.close()
    assert seen == [tune_cost(1000, 2100)]
