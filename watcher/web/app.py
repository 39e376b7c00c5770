"""The ASGI application: every router, and the service's lifespan (HTTP client, scheduler)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from watcher import editing
from watcher.app import App
from watcher.exceptions import StorageError, WatcherError
from watcher.web import admin, api, errors, feeds, health, public, subscribe

log = logging.getLogger(__name__)


def make_keys(web: FastAPI) -> None:
    """Make the keys kept in the database (without ``WATCHER_SECRET_KEY``: the admin's
    session key and the unsubscribe links' key) at startup, so that no GET is what stores
    them. A database out of reach now is not fatal: a key is then made when first needed."""
    try:
        admin.prepare(web)
        feeds.prepare(web.state.app)
    except StorageError as e:
        log.warning("the web keys could not be read or made now: %s", e)


def remove_interrupted_writes(app: App) -> None:
    """Remove the temp files that a save killed midway (a crash, a kill -9) left beside
    config.toml or a rule file; never one of a write in progress (see
    ``editing.remove_interrupted_writes``)."""
    try:
        removed = editing.remove_interrupted_writes(app)
    except (OSError, WatcherError) as e:
        log.warning("could not look for temp files left by interrupted saves: %s", e)
        return
    for path in removed:
        log.warning("removed %s, left by a save that was interrupted", path)


def create_app(app: App, *, run_scheduler: bool = False) -> FastAPI:
    """The web application for ``app``. With ``run_scheduler`` (``watcher run``) the
    scheduler runs in the same event loop, when this process holds the scheduler lock."""

    @asynccontextmanager
    async def lifespan(_web: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        app.http = app.new_http_client()
        await asyncio.to_thread(remove_interrupted_writes, app)
        await asyncio.to_thread(make_keys, web)
        if run_scheduler:
            # The poll workers start now, not during the first poll.
            await asyncio.to_thread(app.warm_up_workers)
            from watcher.scheduler import Scheduler

            scheduler = Scheduler(app)
            from notifications.schedule import digest_jobs, personal_digest_jobs

            scheduler.job_providers.append(digest_jobs)
            scheduler.job_providers.append(personal_digest_jobs)
            web.state.scheduler = scheduler
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                await scheduler.stop()
            await app.http.aclose()
            app.http = None

    web = FastAPI(
        title="EU-bevakning",
        description="EU funding and policy items for the Gothenburg region's EU network.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its scripts from a CDN: the spec is at openapi_url
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    web.state.app = app
    web.state.scheduler = None
    web.include_router(health.router)
    feeds.install(web, app)  # feeds, calendars, unsubscribe; cache hooked to app.hooks
    web.include_router(api.router)
    public.install(web, app)  # pages, static files; the timeline's cache on app.hooks
    subscribe.install(web)  # /prenumerera: sign-up, confirmation, preferences
    errors.install(web)  # error pages
    admin.install(web)  # session middleware, login, admin routes
    return web
