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
    QueryAnswerRead,
    QueryJobRead,
    SavedMatchRead,
    SavedSearchRead,
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


def job_errors_csv(job_id: str) -> Call:
    """Every failed row of an ingest job as CSV, with an error column: the rows to fix and send again."""
    return Call(Request("GET", f"{API}/ingest-jobs/{job_id}/errors"), str)


def cancel_job(job_id: str) -> Call:
    return Call(Request("DELETE", f"{API}/ingest-jobs/{job_id}"), IngestJobRead)


def create_key(name: str, role: str, factory_ids: list[str] | None = None) -> Call:
    body = {"name": name, "role": role, "factory_ids": factory_ids or []}
    return Call(Request("POST", f"{API}/keys", json=body), KeyCreatedRead)


def keys() -> Call:
    return Call(Request("GET", f"{API}/keys"), list[KeyRead])


def revoke_key(key_id: int) -> Call:
    return Call(Request("DELETE", f"{API}/keys/{key_id}"), KeyRead)


def submit_query_job(
    photos: str | Path, top_k: int = 3, include_weak: bool = False, filters: Filters | None = None
) -> Call:
    """A ZIP of photos, or a CSV/text list of image URLs, searched photo by photo as a job."""
    path = Path(photos)
    files = [("file", (path.name, path.read_bytes(), "application/octet-stream"))]
    data = {**(filters or Filters()).fields(), "top_k": str(top_k), "include_weak": str(include_weak).lower()}
    data.pop("factory_attributes", None)  # not a batch option
    return Call(Request("POST", f"{API}/query-jobs", data=data, files=files), QueryJobRead)


def query_job(job_id: str) -> Call:
    return Call(Request("GET", f"{API}/query-jobs/{job_id}"), QueryJobRead)


def query_jobs(offset: int = 0, limit: int = 20) -> Call:
    return Call(Request("GET", f"{API}/query-jobs", params=_paged(offset, limit)), list[QueryJobRead])


def query_results(job_id: str) -> Call:
    return Call(Request("GET", f"{API}/query-jobs/{job_id}/results"), list[QueryAnswerRead])


def query_results_csv(job_id: str) -> Call:
    return Call(Request("GET", f"{API}/query-jobs/{job_id}/results", params={"format": "csv"}), str)


def cancel_query_job(job_id: str) -> Call:
    return Call(Request("DELETE", f"{API}/query-jobs/{job_id}"), QueryJobRead)


def save_search(photo: Photo, name: str, webhook_url: str | None = None) -> Call:
    data = {"name": name, **({"webhook_url": webhook_url} if webhook_url else {})}
    return Call(
        Request("POST", f"{API}/saved-searches", data=data, files=[("image", photo_file(photo))]), SavedSearchRead
    )


def saved_searches() -> Call:
    return Call(Request("GET", f"{API}/saved-searches"), list[SavedSearchRead])


def saved_matches(saved_id: int) -> Call:
    return Call(Request("GET", f"{API}/saved-searches/{saved_id}/matches"), list[SavedMatchRead])


def delete_saved_search(saved_id: int) -> Call:
    return Call(Request("DELETE", f"{API}/saved-searches/{saved_id}"), None)


FINISHED = ("done", "failed", "cancelled")
