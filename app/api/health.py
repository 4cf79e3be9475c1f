"""GET /healthz."""

from fastapi import APIRouter

from app.api.deps import RuntimeDep
from app.schemas import HealthRead

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthRead)
def healthz(runtime: RuntimeDep) -> HealthRead:
    embedder = runtime.embedder
    return HealthRead(
        status="ok",
        model=embedder.name,
        precision=embedder.precision,
        dim=embedder.dim,
        images=len(runtime.index),
        index=runtime.settings.index,
    )
