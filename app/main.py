"""The FastAPI application: middleware, routes, error mapping, the web page and the API docs (served from a
package's copies of Swagger UI and ReDoc: no CDN); services built in the lifespan."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.access.limiter import RateLimiter
from app.api.deps import AppState
from app.api.errors import install_error_handlers
from app.api.middleware import AdmitSearches, BodySizeLimit
from app.api.observability import RequestLog
from app.api.protection import HostCheck, OriginCheck, RateLimit, SecurityHeaders
from app.api.routes import (
    calibration,
    facets,
    factories,
    health,
    images,
    ingest_jobs,
    keys,
    products,
    query_jobs,
    saved_searches,
    search,
)
from app.api.security import Public
from app.bootstrap import Services, build_services, make_scheduler
from app.core import logs
from app.core.config import Settings
from app.core.metrics import Metrics

WEB_DIR = Path(__file__).parent / "web"
DOCS_ASSETS = Path(str(resources.files("fastapi_offline") / "static"))  # Swagger UI and ReDoc, as a package
MULTIPART_SLACK = 65536  # a body's framing around the file it carries
SEARCH_PATH = "/api/v1/search"
TITLE = "SourceLens"


def create_app_in_worker_process() -> FastAPI:
    """`sourcelens serve --workers N`: each of uvicorn's processes builds its app from the environment (which
    the command filled from its options), with the same logging as `serve`."""
    settings = Settings()
    logs.configure(settings.log_format if settings.log_format != "auto" else "json")
    return create_app(settings)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The app for `settings`. With `services` (tests, the demo, `serve`), those are served as they are and left
    open at shutdown; otherwise the lifespan builds them, off the event loop, and closes them."""
    settings = services.settings if services else (settings or Settings())
    metrics = services.metrics if services else Metrics()
    scheduler = services.scheduler if services else make_scheduler(settings, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        built = (
            services
            if services is not None
            else await run_in_threadpool(build_services, settings, None, scheduler, metrics)
        )
        if settings.index_preload:
            built.keeper.preload_in_background()
        if settings.run_jobs:  # else `sourcelens worker` processes run them
            only_worker = built.engine.dialect.name == "sqlite"
            built.runner.start(requeue_interrupted=only_worker)
            built.query_runner.start(requeue_interrupted=only_worker)
        built.alert_runner.start()
        built.search_counts.start()
        yield AppState(
            settings=settings,
            search=built.search,
            catalog=built.catalog,
            jobs=built.jobs,
            intake=built.intake,
            scheduler=built.scheduler,
            keys=built.keys,
            metrics=built.metrics,
            calibration=built.calibration,
            fetcher=built.fetcher,
            queries=built.queries,
            saved=built.saved,
            search_counts=built.search_counts,
        )
        await run_in_threadpool(built.runner.stop)  # after its batch; the job resumes at the next start
        await run_in_threadpool(built.query_runner.stop)  # after the photo in hand
        await run_in_threadpool(built.alert_runner.stop)
        await run_in_threadpool(built.search_counts.stop)  # the last counts written
        # Saved here, not only by whoever closes the services: after a SIGTERM, uvicorn re-raises the signal as
        # soon as the lifespan ends, and the process exits before any code after uvicorn.run.
        await run_in_threadpool(built.keeper.save)
        if services is None:
            await run_in_threadpool(built.close)

    app = FastAPI(
        title=TITLE,
        version="0.1.0",
        lifespan=lifespan,
        description="Find the factory behind a product photo.",
        docs_url=None,
        redoc_url=None,
    )
    reject = _counter(metrics)
    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(AdmitSearches, scheduler=scheduler, path=SEARCH_PATH, reject=reject)
    app.add_middleware(BodySizeLimit, limits=body_limits(settings), reject=reject)
    limiter = RateLimiter(settings.rate_limit_storage, settings.rate_limit_per_key, settings.rate_limit_per_address)
    app.add_middleware(RateLimit, limiter=limiter, reject=reject)
    app.add_middleware(OriginCheck, origins=settings.cors_origins, reject=reject)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "Location", "X-Request-ID"],
        )
    app.add_middleware(HostCheck, hosts=settings.trusted_hosts, reject=reject)
    app.add_middleware(RequestLog, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    for module in (
        search,
        query_jobs,
        saved_searches,
        calibration,
        facets,
        factories,
        products,
        images,
        ingest_jobs,
        keys,
        health,
    ):
        app.include_router(module.router)
    # The page's scripts and style sheet gzipped for browsers that ask (47 KiB -> 16 KiB for the seller page, on
    # a phone's connection); the API's answers are not, their size is small and their CPU is the search's.
    app.mount("/static", GZipMiddleware(StaticFiles(directory=WEB_DIR), minimum_size=512), name="static")
    app.mount("/static-docs", GZipMiddleware(StaticFiles(directory=DOCS_ASSETS), minimum_size=512), name="static-docs")
    app.add_api_route("/", _page, include_in_schema=False, dependencies=[Public])
    app.add_api_route("/portal", _portal, include_in_schema=False, dependencies=[Public])
    app.add_api_route("/docs", _swagger, include_in_schema=False, dependencies=[Public])
    app.add_api_route("/redoc", _redoc, include_in_schema=False, dependencies=[Public])
    return app


def body_limits(settings: Settings) -> dict[str, int]:
    """Largest request body per path prefix ("" for every other path)."""
    return {
        "/api/v1/ingest-jobs": settings.max_job_upload_bytes + MULTIPART_SLACK,
        "/api/v1/query-jobs": settings.max_job_upload_bytes + MULTIPART_SLACK,
        "": settings.max_upload_bytes + MULTIPART_SLACK,
    }


def _counter(metrics: Metrics) -> Callable[[str], None]:
    def reject(reason: str) -> None:
        metrics.rejected.labels(reason).inc()

    return reject


def _page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html")


def _portal() -> FileResponse:
    return FileResponse(WEB_DIR / "portal.html")


def _swagger() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} API",
        swagger_js_url="/static-docs/swagger-ui-bundle.js",
        swagger_css_url="/static-docs/swagger-ui.css",
        swagger_favicon_url="/static-docs/favicon.png",
    )


def _redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} API",
        redoc_js_url="/static-docs/redoc.standalone.js",
        redoc_favicon_url="/static-docs/favicon.png",
        with_google_fonts=False,
    )
