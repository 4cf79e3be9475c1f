"""The FastAPI application: middleware, routes, error mapping and the web page; services built in the lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.access.limiter import RateLimiter
from app.api.deps import AppState
from app.api.errors import install_error_handlers
from app.api.middleware import AdmitSearches, BodySizeLimit
from app.api.protection import HostCheck, OriginCheck, RateLimit, SecurityHeaders
from app.api.routes import factories, health, images, ingest_jobs, keys, products, search
from app.api.security import Public
from app.bootstrap import Services, build_services, make_scheduler
from app.core.config import Settings

WEB_DIR = Path(__file__).parent / "web"
MULTIPART_SLACK = 65536  # a body's framing around the file it carries
SEARCH_PATH = "/api/v1/search"


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app for `settings`. With `services` (tests, the demo), those are served as they are and left open at
    shutdown; otherwise the lifespan builds them, off the event loop, and closes them."""
    settings = services.settings if services else (settings or Settings())
    scheduler = services.scheduler if services else make_scheduler(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        built = services if services is not None else await run_in_threadpool(build_services, settings, None, scheduler)
        if settings.index_preload:
            built.keeper.preload_in_background()
        built.runner.start(requeue_interrupted=built.engine.dialect.name == "sqlite")
        yield AppState(
            settings=settings,
            search=built.search,
            catalog=built.catalog,
            jobs=built.jobs,
            intake=built.intake,
            scheduler=built.scheduler,
            keys=built.keys,
        )
        await run_in_threadpool(built.runner.stop)
        if services is None:
            await run_in_threadpool(built.close)

    app = FastAPI(
        title="SourceLens", version="0.1.0", lifespan=lifespan, description="Find the factory behind a product photo."
    )
    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(AdmitSearches, scheduler=scheduler, path=SEARCH_PATH)
    app.add_middleware(BodySizeLimit, limits=body_limits(settings))
    limiter = RateLimiter(settings.rate_limit_storage, settings.rate_limit_per_key, settings.rate_limit_per_address)
    app.add_middleware(RateLimit, limiter=limiter)
    app.add_middleware(OriginCheck, origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
            expose_headers=["Retry-After", "Location"],
        )
    app.add_middleware(HostCheck, hosts=settings.trusted_hosts)
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    for module in (search, factories, products, images, ingest_jobs, keys, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    page = lambda: FileResponse(WEB_DIR / "index.html")  # noqa: E731
    app.add_api_route("/", page, include_in_schema=False, dependencies=[Public])
    return app


def body_limits(settings: Settings) -> dict[str, int]:
    """Largest request body per path prefix ("" for every other path)."""
    return {
        "/api/v1/ingest-jobs": settings.max_job_upload_bytes + MULTIPART_SLACK,
        "": settings.max_upload_bytes + MULTIPART_SLACK,
    }
