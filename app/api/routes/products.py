"""/api/v1/products and their images: uploading embeds and indexes; deleting removes the vectors."""

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile, status

from app.api.deps import CatalogDep, Limit, Offset, SettingsDep
from app.api.mapping import image_read, product_read
from app.api.schemas import ImageRead, ImageUploadRead, ProductCreate, ProductRead, ProductUpdate
from app.api.security import ReadCaller, WriteCaller
from app.api.uploads import read_upload
from app.catalog.types import NewProduct

router = APIRouter(prefix="/api/v1/products", tags=["products"])


@router.post("", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
def create_product(catalog: CatalogDep, caller: WriteCaller, body: ProductCreate) -> ProductRead:
    return product_read(catalog.create_product(NewProduct(**body.model_dump()), caller))


@router.get("", response_model=list[ProductRead])
def list_products(
    catalog: CatalogDep, _caller: ReadCaller, factory_id: str | None = None, offset: Offset = 0, limit: Limit = 50
) -> list[ProductRead]:
    return [product_read(p) for p in catalog.list_products(factory_id=factory_id, offset=offset, limit=limit)]


@router.get("/{product_id}", response_model=ProductRead)
def read_product(catalog: CatalogDep, _caller: ReadCaller, product_id: str) -> ProductRead:
    return product_read(catalog.get_product(product_id))


@router.patch("/{product_id}", response_model=ProductRead)
def update_product(catalog: CatalogDep, caller: WriteCaller, product_id: str, body: ProductUpdate) -> ProductRead:
    return product_read(catalog.update_product(product_id, body.model_dump(exclude_unset=True), caller))


@router.delete("/{product_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_product(catalog: CatalogDep, caller: WriteCaller, product_id: str) -> None:
    catalog.delete_product(product_id, caller)


@router.get("/{product_id}/images", response_model=list[ImageRead])
def list_product_images(catalog: CatalogDep, _caller: ReadCaller, product_id: str) -> list[ImageRead]:
    return [image_read(image) for image in catalog.product_images(product_id)]


@router.post(
    "/{product_id}/images",
    response_model=ImageUploadRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "These bytes were already stored for the product"}, 413: {}, 422: {}},
)
def upload_image(
    catalog: CatalogDep,
    settings: SettingsDep,
    caller: WriteCaller,
    product_id: str,
    response: Response,
    image: Annotated[UploadFile, File(description="A catalogue photo of the product.")],
) -> ImageUploadRead:
    data = read_upload(image, settings.max_image_bytes)
    stored, created = catalog.add_image(product_id, data, f"upload:{image.filename or ''}", caller)
    if not created:
        response.status_code = status.HTTP_200_OK
    return ImageUploadRead(**image_read(stored).model_dump(), created=created)
