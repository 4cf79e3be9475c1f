"""Every call of the API as (request, the model its answer is read as): the clients send them."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.api.schemas import (
    CalibrationRead,
    FacetsRead,
    FactoryRead,
    HealthRead,
    ImageRead,
    ImageUploadRead,
    IngestJobRead,
    KeyCreatedRead,
    KeyRead,
    ProductRead,
    SearchRead,
    SubjectsRead,
)
from app.client.requests import API, Filters, Photo, Request, photo_file, search_request, similar_request


@dataclass(frozen=True)
class Call:
    request: Request
    model: Any  # what the answer is read as; None for no body


def search(photos: list[Photo], **options: Any) -> Call:
    return Call(search_request(photos, **options), SearchRead)


def similar(image_id: int, filters: Filters | None = None, top_k: int | None = None, offset: int = 0) -> Call:
    return Call(similar_request(image_id, filters, top_k, offset), SearchRead)


def subjects(photo: Photo) -> Call:
    return Call(Request("POST", f"{API}/subjects", files=[("image", photo_file(photo))]), SubjectsRead)


def facets() -> Call:
    return Call(Request("GET", f"{API}/facets"), FacetsRead)


def calibration() -> Call:
    return Call(Request("GET", f"{API}/calibration"), CalibrationRead)


def health() -> Call:
    return Call(Request("GET", "/healthz"), HealthRead)


def _paged(offset: int, limit: int, **more: str | None) -> dict[str, str]:
    return {"offset": str(offset), "limit": str(limit), **{k: v for k, v in more.items() if v is not None}}


def factories(offset: int = 0, limit: int = 50) -> Call:
    return Call(Request("GET", f"{API}/factories", params=_paged(offset, limit)), list[FactoryRead])


def factory(factory_id: str) -> Call:
    return Call(Request("GET", f"{API}/factories/{factory_id}"), FactoryRead)


def create_factory(factory_id: str, name: str, region: str | None = None, **attributes: Any) -> Call:
    body = {"id": factory_id, "name": name, "region": region, "attributes": attributes}
    return Call(Request("POST", f"{API}/factories", json=body), FactoryRead)


def update_factory(factory_id: str, **changes: Any) -> Call:
    return Call(Request("PATCH", f"{API}/factories/{factory_id}", json=changes), FactoryRead)


def delete_factory(factory_id: str) -> Call:
    return Call(Request("DELETE", f"{API}/factories/{factory_id}"), None)


def products(factory_id: str | None = None, offset: int = 0, limit: int = 50) -> Call:
    params = _paged(offset, limit, factory_id=factory_id)
    return Call(Request("GET", f"{API}/products", params=params), list[ProductRead])


def product(product_id: str) -> Call:
    return Call(Request("GET", f"{API}/products/{product_id}"), ProductRead)


def create_product(product_id: str, factory_id: str, title: str, **fields: Any) -> Call:
    body = {"id": product_id, "factory_id": factory_id, "title": title, **fields}
    return Call(Request("POST", f"{API}/products", json=body), ProductRead)


def update_product(product_id: str, **changes: Any) -> Call:
    return Call(Request("PATCH", f"{API}/products/{product_id}", json=changes), ProductRead)


def delete_product(product_id: str) -> Call:
    return Call(Request("DELETE", f"{API}/products/{product_id}"), None)


def product_images(product_id: str) -> Call:
    return Call(Request("GET", f"{API}/products/{product_id}/images"), list[ImageRead])


def add_image(product_id: str, photo: Photo) -> Call:
    files = [("image", photo_file(photo))]
    return Call(Request("POST", f"{API}/products/{product_id}/images", files=files), ImageUploadRead)


def delete_image(image_id: int) -> Call:
    return Call(Request("DELETE", f"{API}/images/{image_id}"), None)


def submit_job(catalogue: str | Path) -> Call:
    """A ZIP (manifest.csv and its images) or a CSV of image URLs, as a resumable ingest job."""
    path = Path(catalogue)
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream"))]
    return Call(Request("POST", f"{API}/ingest-jobs", files=files), IngestJobRead)


def job(job_id: str) -> Call:
    return Call(Request("GET", f"{API}/ingest-jobs/{job_id}"), IngestJobRead)


def jobs(offset: int = 0, limit: int = 20) -> Call:
    return Call(Request("GET", f"{API}/ingest-jobs", params=_paged(offset, limit)), list[IngestJobRead])


def cancel_job(job_id: str) -> Call:
    return Call(Request("DELETE", f"{API}/ingest-jobs/{job_id}"), IngestJobRead)


def create_key(name: str, role: str, factory_ids: list[str] | None = None) -> Call:
    body = {"name": name, "role": role, "factory_ids": factory_ids or []}
    return Call(Request("POST", f"{API}/keys", json=body), KeyCreatedRead)


def keys() -> Call:
    return Call(Request("GET", f"{API}/keys"), list[KeyRead])


def revoke_key(key_id: int) -> Call:
    return Call(Request("DELETE", f"{API}/keys/{key_id}"), KeyRead)


FINISHED = ("done", "failed", "cancelled")
