"""Search: a photo (or several views, or text, or both) in, ranked source factories out; more like this."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from app.api.deps import FetcherDep, ImageId, MetricsDep, SearchCountsDep, SearchDep, SettingsDep, TicketDep
from app.api.mapping import search_read
from app.api.schemas import SearchRead, SubjectSearchRead, SubjectsRead
from app.api.security import ReadCaller
from app.api.uploads import read_upload
from app.core.errors import InvalidInputError
from app.core.jsonvalues import check_json
from app.ingest.fetch import Fetcher, FetchError
from app.search.options import QueryPhoto, SearchFilters, SearchOptions

router = APIRouter(prefix="/api/v1", tags=["search"])
MAX_FILTER_BYTES = 4096
MAX_PHOTOS = 8  # views of one product (the search's own limit; URLs are refused before any is fetched)
MAX_URL_CHARS = 2048

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Text search with a model that has no text encoder"},
    413: {"description": "Image too large"},
    422: {"description": "Not a usable image, or a bad option"},
}


class SearchParams(BaseModel):
    """Options shared by every search; form fields on POST, query parameters on GET."""

    top_k: int | None = Field(default=None, ge=-(2**31), le=2**31, description="Factories per page (default 10).")
    offset: int = Field(default=0, ge=0, le=2**31, description="Factories to skip, for paging.")
    min_score: float | None = Field(
        default=None, allow_inf_nan=False, description="Leave out products scoring below this."
    )
    region: str | None = Field(default=None, max_length=255, description="Only factories in this region.")
    category: str | None = Field(default=None, max_length=255, description="Only products of this category.")
    max_moq: int | None = Field(default=None, ge=1, le=2**31 - 1, description="Only products with at most this MOQ.")
    min_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    factory_attributes: str | None = Field(
        default=None,
        max_length=MAX_FILTER_BYTES,
        description='JSON object the factory\'s attributes must match, e.g. {"oem": true}.',
    )
    verify: bool = Field(default=True, description="Check the top candidates with local features.")
    include_weak: bool = Field(default=False, description="List candidates even without a confident match.")

    def options(self, default_top_k: int, auto_crop: bool = True) -> SearchOptions:
        filters = SearchFilters(
            region=self.region,
            category=self.category,
            max_moq=self.max_moq,
            min_price=self.min_price,
            max_price=self.max_price,
            factory_attributes=_attributes(self.factory_attributes),
        )
        top_k = default_top_k if self.top_k is None else self.top_k
        return SearchOptions(top_k, self.offset, self.min_score, filters, self.verify, self.include_weak, auto_crop)


def _urls(urls: list[str] | None, uploads: int) -> list[str]:
    urls = [url.strip() for url in urls or [] if url.strip()]
    if uploads + len(urls) > MAX_PHOTOS:
        raise InvalidInputError(f"at most {MAX_PHOTOS} photos of one product per search")
    for url in urls:
        if len(url) > MAX_URL_CHARS or not url.lower().startswith(("http://", "https://")):
            raise InvalidInputError(f"image_url must be an http(s) URL of at most {MAX_URL_CHARS} characters")
    return urls


def _fetched(fetcher: Fetcher, url: str) -> bytes:
    try:
        return fetcher.fetch(url)
    except FetchError as exc:
        raise InvalidInputError(f"image_url {url[:200]}: {exc}") from None


def _attributes(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"factory_attributes is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidInputError("factory_attributes is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidInputError("factory_attributes must be a JSON object")
    check_json(value, MAX_FILTER_BYTES, "factory_attributes")
    return value


@router.post("/search", response_model=SearchRead, responses=ERRORS)
def search_route(
    search: SearchDep,
    settings: SettingsDep,
    fetcher: FetcherDep,
    counts: SearchCountsDep,
    ticket: TicketDep,
    metrics: MetricsDep,
    _caller: ReadCaller,
    params: Annotated[SearchParams, Form()],
    image: Annotated[
        list[UploadFile] | None,
        File(description="The product photo; several files are several views of one product."),
    ] = None,
    image_url: Annotated[
        list[str] | None,
        Form(description="A photo by its http(s) URL (public addresses only), after any uploaded ones; repeatable."),
    ] = None,
    text: Annotated[str | None, Form(description="Words describing the product (CLIP models only).")] = None,
    bbox: Annotated[
        list[str] | None,
        Form(description="Per photo, the product's box 'x0,y0,x1,y1' in pixels or 0..1 fractions; '' for none."),
    ] = None,
    auto_crop: Annotated[
        bool,
        Form(description="When the photo alone finds no confident match, also search it straightened and trimmed."),
    ] = True,
    per_subject: Annotated[
        bool, Form(description="One photo of several products: answer for each of them (see `subjects`).")
    ] = False,
) -> SearchRead:
    # A sync route: FastAPI runs it in its thread pool, so decoding, the model and FAISS never block the loop.
    photos = [QueryPhoto(read_upload(upload, settings.max_upload_bytes)) for upload in image or []]
    photos += [QueryPhoto(_fetched(fetcher, url)) for url in _urls(image_url, len(photos))]
    if bbox:
        if len(bbox) != len(photos):
            raise InvalidInputError(f"{len(bbox)} bbox values for {len(photos)} photos; give one per photo")
        photos = [QueryPhoto(photo.data, box or None) for photo, box in zip(photos, bbox, strict=True)]
    options = params.options(settings.default_top_k, auto_crop)
    if per_subject:
        if len(photos) != 1 or bbox:
            raise InvalidInputError("per_subject answers for the products of one photo: send one image, no bbox")
        answers = search.per_subject(photos[0].data, text or None, options, ticket)
        subjects = [SubjectSearchRead(box=box, answer=search_read(result, options.offset)) for box, result in answers]
        return subjects[0].answer.model_copy(update={"subjects": subjects})
    result = search.run(photos, text or None, options, ticket)
    shown = [hit for ranked in result.factories for hit in ranked.matches]
    counts.record({hit.product_id for hit in shown}, {hit.product_id for hit in shown if hit.confident})
    for stage, ms in result.timings_ms.items():
        if stage != "passes":
            metrics.search_stage.labels(stage).observe(ms / 1000)
    return search_read(result, options.offset)


@router.post("/subjects", response_model=SubjectsRead, responses={413: ERRORS[413], 422: ERRORS[422]})
def subjects_route(
    search: SearchDep,
    settings: SettingsDep,
    _caller: ReadCaller,
    image: Annotated[UploadFile, File(description="A photo that may show several products.")],
) -> SubjectsRead:
    """The products in a photo, each as a box to search with (the page's crop box starts on the first)."""
    return SubjectsRead(boxes=search.subjects(read_upload(image, settings.max_upload_bytes)))


@router.get("/images/{image_id}/similar", response_model=SearchRead, responses={404: {"description": "No image"}})
def similar_route(
    search: SearchDep,
    settings: SettingsDep,
    _caller: ReadCaller,
    image_id: ImageId,
    params: Annotated[SearchParams, Query()],
) -> SearchRead:
    """More like this: factories with products that look like a catalogue image (its own product left out)."""
    options = params.options(settings.default_top_k)
    return search_read(search.similar(image_id, options), options.offset)
