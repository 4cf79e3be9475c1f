"""/api/v1/images/{id}: metadata, the stored picture, delete (removes the vector)."""

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from app.api.deps import RuntimeDep, SessionDep
from app.schemas import ImageRead
from app.services import catalog
from app.services.errors import NotFoundError
from app.views import image_read

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.get("/{image_id}", response_model=ImageRead)
def read_image(session: SessionDep, image_id: int) -> ImageRead:
    return image_read(catalog.get_image(session, image_id))


@router.get("/{image_id}/file", response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}}}})
def image_file(runtime: RuntimeDep, session: SessionDep, image_id: int) -> FileResponse:
    path = runtime.media.path(catalog.get_image(session, image_id).content_hash)
    if not path.exists():
        raise NotFoundError(f"the stored copy of image {image_id} is missing")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400, immutable"})


@router.delete("/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(runtime: RuntimeDep, session: SessionDep, image_id: int) -> None:
    catalog.delete_image(session, runtime.index, image_id)
