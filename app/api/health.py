"""GET /healthz."""

from fastapi import APIRouter

from app.api.deps import RuntimeDep
from app.schemas import HealthRead

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthRead)
def healthz(runtime: RuntimeDep) -> HealthRead:
    embedder, batcher = runtime.embedder, runtime.batcher
    return HealthRead(
        status="ok",
        model=embedder.name,
        precision=embedder.precision,
        dim=embedder.dim,
        images=len(runtime.index),
        index=runtime.index.describe(),
        search_batches=batcher.batches,
        searches_embedded=batcher.images,
        model_busy_s=round(batcher.busy_s, 3),
    )
