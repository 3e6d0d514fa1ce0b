"""Start-up and shut-down: start the batcher, then in the background load the model, open
the threshold store and start its watcher (activations made by other replicas); on exit,
drain the batcher's queue, then stop the watcher and close the store."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from labelcut import _cpu
from labelcut.app.batching import Batcher
from labelcut.app.service import Service

log = logging.getLogger("labelcut")


def _warn_about_open_admin(service: Service) -> None:
    if service.settings.admin_key is None:
        log.warning(
            "LABELCUT_ADMIN_KEY is not set: /tune-thresholds, /thresholds/{id}/activate and "
            "/thresholds/{id}/archive answer only clients on loopback."
        )


async def _load(app: FastAPI, service: Service) -> None:
    try:
        await asyncio.to_thread(service.load)
    except Exception:
        # A service that cannot load its model must not pretend to be alive: the CLI
        # passes a callback that stops the server, then exits non-zero with the reason.
        if app.state.on_load_error is not None:
            app.state.on_load_error()
        return
    if app.state.freeze_gc:
        # torch, the model and the app leave ~10^6 long-lived objects that every full
        # collection would walk again (pauses of ~100 ms under load, measured with
        # bench/bench_predict.py): move them out of the collector's reach, and collect
        # the young generations less often (a request allocates a few hundred objects).
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 100)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    service = Service(settings)
    app.state.service = service
    _warn_about_open_admin(service)
    if _cpu.SORT_KERNELS != "numpy's own choice":  # Zen 4, or the user's own setting
        log.info("numpy sort kernels: %s", _cpu.SORT_KERNELS)
    # The batcher reads the model at each pass, so it can start before the model has
    # loaded: /predict reaches it only once the service is ready.
    batcher = Batcher(
        lambda: service.loaded_model,
        max_batch_size=settings.max_batch_size,
        max_wait=settings.max_batch_wait_s,
        threads=settings.forward_threads,
        observer=app.state.metrics.observe_batch,
    )
    app.state.batcher = batcher
    # Loading runs beside the server so /healthz answers and /readyz says 503 until ready.
    task = asyncio.create_task(_load(app, service))
    try:
        yield
    finally:
        service.stop_waiting()  # a load still waiting for the store gives up now
        if not task.done():
            await asyncio.wait({task}, timeout=30)
        await batcher.close()
        runner = getattr(app.state, "tune_runner", None)
        if runner is not None:
            runner.close()  # the tunes' own thread pool
        service.close()
