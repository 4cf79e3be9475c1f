"""The FastAPI application: routes, error mapping, the web page, and the runtime made in the lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from app.api import factories, health, images, products, search
from app.api.errors import install_error_handlers
from app.api.limits import BodySizeLimit
from app.config import Settings
from app.runtime import Runtime

WEB_DIR = Path(__file__).parent / "web"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model is loaded once, here, off the event loop.
        app.state.runtime = runtime or await run_in_threadpool(Runtime.start, settings)
        yield
        await run_in_threadpool(app.state.runtime.close)

    app = FastAPI(
        title="SourceLens", version="0.1.0", lifespan=lifespan, description="Find the factory behind a product photo."
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes + 64 * 1024)
    install_error_handlers(app)
    for module in (search, factories, products, images, health):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.add_api_route("/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False)
    return app
