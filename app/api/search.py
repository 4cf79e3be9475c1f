"""POST /api/v1/search: a photo in, ranked source factories out."""

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api.deps import RuntimeDep, SessionDep
from app.api.uploads import read_upload
from app.schemas import SearchRead
from app.services.search import search_photo
from app.views import search_read

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.post(
    "/search",
    response_model=SearchRead,
    responses={413: {"description": "Image too large"}, 422: {"description": "Not a usable image, or bad top_k"}},
)
def search(
    runtime: RuntimeDep,
    session: SessionDep,
    image: Annotated[UploadFile, File(description="The product photo (JPEG, PNG, WebP, GIF, ...).")],
    top_k: Annotated[int | None, Form(description="How many factories to return (default 10).")] = None,
) -> SearchRead:
    # A sync route: FastAPI runs it in its thread pool, so decoding, the model and FAISS never block the loop.
    data = read_upload(image, runtime.settings.max_upload_bytes)
    top_k = runtime.settings.default_top_k if top_k is None else top_k
    return search_read(search_photo(session, runtime, data, top_k))
