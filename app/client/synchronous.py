"""The client for scripts and tools: one httpx.Client, calls that return the API's models."""

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

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
from app.client import calls
from app.client.requests import Filters, Photo, read

J = TypeVar("J", IngestJobRead, QueryJobRead)  # a job report: ingest or batch query


class SourceLens:
    """`SourceLens(base_url, key=...)`: every method sends one request (wait_for_job polls) and returns the
    answer as the API's model, or raises SourceLensError."""

    def __init__(
        self, base_url: str, key: str | None = None, timeout: float = 60.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "SourceLens":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: calls.Call) -> Any:
        request = call.request
        return read(self.http.request(request.method, request.path, **request.kwargs()), call.model)

    def wait_for_job(
        self,
        job_id: str,
        progress: Callable[[IngestJobRead], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> IngestJobRead:
        """Polls an ingest job until it is done, failed or cancelled (calling `progress` with each report)."""
        return self._wait(self.job, job_id, progress, poll_s, timeout_s)

    def wait_for_query_job(
        self,
        job_id: str,
        progress: Callable[[QueryJobRead], None] | None = None,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> QueryJobRead:
        """Polls a batch query job until it is done, failed or cancelled (calling `progress` with each report)."""
        return self._wait(self.query_job, job_id, progress, poll_s, timeout_s)

    def _wait(
        self,
        read: Callable[[str], J],
        job_id: str,
        progress: Callable[[J], None] | None,
        poll_s: float,
        timeout_s: float | None,
    ) -> J:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            report = read(job_id)
            if progress:
                progress(report)
            if report.state in calls.FINISHED:
                return report
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {report.state} after {timeout_s} s")
            time.sleep(poll_s)

    def search(
        self,
        *photos: Photo,
        text: str | None = None,
        boxes: list[str | None] | None = None,
        filters: Filters | None = None,
        top_k: int | None = None,
        offset: int = 0,
        min_score: float | None = None,
        include_weak: bool = False,
        verify: bool = True,
        auto_crop: bool = True,
        per_subject: bool = False,
        urls: list[str] | None = None,
    ) -> SearchRead:
        """Ranked factories for a product: one photo, several views of it, words, or both. `boxes`: per
        photo, its product's box 'x0,y0,x1,y1' (pixels or 0..1), or None. `urls`: photos the server fetches
        (public addresses), after the given ones."""
        return self._send(
            calls.search(
                list(photos),
                text=text,
                boxes=boxes,
                filters=filters,
                top_k=top_k,
                offset=offset,
                min_score=min_score,
                include_weak=include_weak,
                verify=verify,
                auto_crop=auto_crop,
                per_subject=per_subject,
                urls=urls,
            )
        )

    def similar(
        self, image_id: int, filters: Filters | None = None, top_k: int | None = None, offset: int = 0
    ) -> SearchRead:
        """More like this: factories with products that look like a catalogue image."""
        return self._send(calls.similar(image_id, filters, top_k, offset))

    def subjects(self, photo: Photo) -> SubjectsRead:
        """The products seen in a photo, each a box to search with."""
        return self._send(calls.subjects(photo))

    def facets(self) -> FacetsRead:
        """The catalogue's filter values with their product counts."""
        return self._send(calls.facets())

    def calibration(self) -> CalibrationRead:
        """The match thresholds in use and where they came from."""
        return self._send(calls.calibration())

    def health(self) -> HealthRead:
        return self._send(calls.health())

    def factories(self, offset: int = 0, limit: int = 50) -> list[FactoryRead]:
        return self._send(calls.factories(offset, limit))

    def factory(self, factory_id: str) -> FactoryRead:
        return self._send(calls.factory(factory_id))

    def create_factory(self, factory_id: str, name: str, region: str | None = None, **attributes: Any) -> FactoryRead:
        return self._send(calls.create_factory(factory_id, name, region, **attributes))

    def update_factory(self, factory_id: str, **changes: Any) -> FactoryRead:
        return self._send(calls.update_factory(factory_id, **changes))

    def delete_factory(self, factory_id: str) -> None:
        """Deletes the factory, its products and images (and their vectors)."""
        self._send(calls.delete_factory(factory_id))

    def products(self, factory_id: str | None = None, offset: int = 0, limit: int = 50) -> list[ProductRead]:
        return self._send(calls.products(factory_id, offset, limit))

    def product(self, product_id: str) -> ProductRead:
        return self._send(calls.product(product_id))

    def create_product(self, product_id: str, factory_id: str, title: str, **fields: Any) -> ProductRead:
        """`fields`: category, price, moq, attributes."""
        return self._send(calls.create_product(product_id, factory_id, title, **fields))

    def update_product(self, product_id: str, **changes: Any) -> ProductRead:
        return self._send(calls.update_product(product_id, **changes))

    def delete_product(self, product_id: str) -> None:
        self._send(calls.delete_product(product_id))

    def product_images(self, product_id: str) -> list[ImageRead]:
        return self._send(calls.product_images(product_id))

    def add_image(self, product_id: str, photo: Photo) -> ImageUploadRead:
        """Adds a photo to a product (the same bytes twice are stored once)."""
        return self._send(calls.add_image(product_id, photo))

    def delete_image(self, image_id: int) -> None:
        self._send(calls.delete_image(image_id))

    def submit_job(self, catalogue: str | Path) -> IngestJobRead:
        """Sends a ZIP (manifest.csv and images) or a CSV of image URLs as a resumable ingest job."""
        return self._send(calls.submit_job(catalogue))

    def job(self, job_id: str) -> IngestJobRead:
        return self._send(calls.job(job_id))

    def jobs(self, offset: int = 0, limit: int = 20) -> list[IngestJobRead]:
        return self._send(calls.jobs(offset, limit))

    def job_errors_csv(self, job_id: str) -> str:
        """Every failed row of the job as CSV, with an error column."""
        return self._send(calls.job_errors_csv(job_id))

    def cancel_job(self, job_id: str) -> IngestJobRead:
        return self._send(calls.cancel_job(job_id))

    def create_key(self, name: str, role: str, factory_ids: list[str] | None = None) -> KeyCreatedRead:
        """An admin makes a key; its token is in the answer, this once."""
        return self._send(calls.create_key(name, role, factory_ids))

    def api_keys(self) -> list[KeyRead]:
        return self._send(calls.keys())

    def revoke_key(self, key_id: int) -> KeyRead:
        return self._send(calls.revoke_key(key_id))

    def submit_query_job(
        self, photos: str | Path, top_k: int = 3, include_weak: bool = False, filters: Filters | None = None
    ) -> QueryJobRead:
        """Many photos (a ZIP, or a CSV/text list of image URLs) searched as a resumable job."""
        return self._send(calls.submit_query_job(photos, top_k, include_weak, filters))

    def query_job(self, job_id: str) -> QueryJobRead:
        return self._send(calls.query_job(job_id))

    def query_jobs(self, offset: int = 0, limit: int = 20) -> list[QueryJobRead]:
        return self._send(calls.query_jobs(offset, limit))

    def query_results(self, job_id: str) -> list[QueryAnswerRead]:
        """Each photo's answer (or error) so far."""
        return self._send(calls.query_results(job_id))

    def query_results_csv(self, job_id: str) -> str:
        """The same as CSV: a row per photo and factory."""
        return self._send(calls.query_results_csv(job_id))

    def cancel_query_job(self, job_id: str) -> QueryJobRead:
        return self._send(calls.cancel_query_job(job_id))

    def save_search(self, photo: Photo, name: str, webhook_url: str | None = None) -> SavedSearchRead:
        """Watch for catalogue images added later that match this photo confidently."""
        return self._send(calls.save_search(photo, name, webhook_url))

    def saved_searches(self) -> list[SavedSearchRead]:
        return self._send(calls.saved_searches())

    def saved_matches(self, saved_id: int) -> list[SavedMatchRead]:
        """The matches found since it was saved: poll this."""
        return self._send(calls.saved_matches(saved_id))

    def delete_saved_search(self, saved_id: int) -> None:
        self._send(calls.delete_saved_search(saved_id))
