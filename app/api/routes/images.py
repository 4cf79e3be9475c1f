"""/api/v1/images/{id}: metadata, the stored picture, delete (removes the vector)."""

from fastapi import APIRouter, status
from fastapi.responses import FileResponse

from app.api.deps import CatalogDep, ImageId
from app.api.mapping import image_read
from app.api.schemas import ImageRead
from app.api.security import ReadCaller, WriteCaller

router = APIRouter(prefix="/api/v1/images", tags=["images"])


@router.get("/{image_id}", response_model=ImageRead)
def read_image(catalog: CatalogDep, _caller: ReadCaller, image_id: ImageId) -> ImageRead:
    return image_read(catalog.get_image(image_id))


@router.get("/{image_id}/file", response_class=FileResponse, responses={200: {"content": {"image/jpeg": {}}}})
def image_file(catalog: CatalogDep, _caller: ReadCaller, image_id: ImageId) -> FileResponse:
    return FileResponse(
        catalog.image_file(image_id),
        media_type="image/jpeg",
        headers={"Cache-Control": "public, max-age=86400, immutable"},
    )


@router.delete("/{image_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(catalog: CatalogDep, caller: WriteCaller, image_id: ImageId) -> None:
    catalog.delete_image(image_id, caller)
