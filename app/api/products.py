"""/api/v1/products and their images: uploading embeds and indexes; deleting removes the vectors."""

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from app.api.deps import Limit, Offset, RuntimeDep, SessionDep
from app.api.uploads import read_upload
from app.schemas import ImageRead, ImageUploadRead, ProductCreate, ProductRead, ProductUpdate
from app.services import catalog
from app.views import image_read, product_read

router = APIRouter(prefix="/api/v1/products", tags=["products"])


@router.post("", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
def create_product(session: SessionDep, body: ProductCreate) -> ProductRead:
    return product_read(catalog.create_product(session, body))


@router.get("", response_model=list[ProductRead])
def list_products(
    session: SessionDep, factory_id: str | None = None, offset: Offset = 0, limit: Limit = 50
) -> list[ProductRead]:
    return [product_read(p) for p in catalog.list_products(session, factory_id=factory_id, offset=offset, limit=limit)]


@router.get("/{product_id}", response_model=ProductRead)
def read_product(session: SessionDep, product_id: str) -> ProductRead:
    return product_read(catalog.get_product(session, product_id))


@router.patch("/{product_id}", response_model=ProductRead)
def update_product(session: SessionDep, product_id: str, body: ProductUpdate) -> ProductRead:
    return product_read(catalog.update_product(session, product_id, body))


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(runtime: RuntimeDep, session: SessionDep, product_id: str) -> None:
    catalog.delete_product(session, runtime.index, product_id)


@router.get("/{product_id}/images", response_model=list[ImageRead])
def list_product_images(session: SessionDep, product_id: str) -> list[ImageRead]:
    return [image_read(image) for image in catalog.get_product(session, product_id).images]


@router.post(
    "/{product_id}/images",
    response_model=ImageUploadRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "These bytes were already stored for the product"}, 413: {}, 422: {}},
)
def upload_image(
    runtime: RuntimeDep,
    session: SessionDep,
    product_id: str,
    response: Response,
    image: Annotated[UploadFile, File(description="A catalogue photo of the product.")],
) -> ImageUploadRead:
    data = read_upload(image, runtime.settings.max_image_bytes)
    stored, created = catalog.add_image(session, runtime, product_id, data, source=f"upload:{image.filename or ''}")
    if not created:
        response.status_code = status.HTTP_200_OK
    return ImageUploadRead(**image_read(stored).model_dump(), created=created)
