"""The FastAPI application: routes, error mapping, the web page, and the runtime made in the lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.api import factories, health, images, ingest_jobs, products, search
from app.api.errors import install_error_handlers
from app.api.limits import AnnounceSearches, BodySizeLimit
from app.config import Settings
from app.runtime import Runtime
from app.services import jobs
from app.services.job_runner import JobRunner

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model is loaded once, here, off the event loop.
        app.state.runtime = runtime or await run_in_threadpool(Runtime.start, settings)
        app.state.runtime.preload_index()
        app.state.job_runner = await run_in_threadpool(start_job_runner, app.state.runtime)
        yield
        await run_in_threadpool(app.state.job_runner.stop)
        await run_in_threadpool(app.state.runtime.close)

    app = FastAPI(
        title="SourceLens", version="0.1.0", lifespan=lifespan, description="Find the factory behind a product photo."
    )
    app.add_middleware(BodySizeLimit, limits=body_limits(settings))
    app.add_middleware(AnnounceSearches, path="/api/v1/search")
    install_error_handlers(app)
    for module in (search, factories, products, images, ingest_jobs, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.add_api_route("/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False)
    return app


def body_limits(settings: Settings) -> dict[str, int]:
    """Largest request body per path prefix ("" for every other path); multipart framing gets 64 KiB."""
    return {"/api/v1/ingest-jobs": settings.max_job_upload_bytes + 65536, "": settings.max_upload_bytes + 65536}


def start_job_runner(runtime: Runtime) -> JobRunner:
    settings = runtime.settings
    if runtime.engine.dialect.name == "sqlite":
        # SQLite means one embedded server: a job still marked running was cut off by a crash.
        with runtime.sessions() as session:
            if count := jobs.requeue_running(session):
                log.warning("%d ingest job(s) interrupted by a restart will resume", count)
    runner = JobRunner(runtime, poll_s=settings.job_poll_s, stale_after_s=settings.job_stale_after_s)
    runner.start()
    return runner
