"""Request and response bodies of the HTTP API (XCreate / XUpdate / XRead)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.access import Role
from app.core.ids import ID_PATTERN


class FactoryBase(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    attributes: dict[str, Any] = Field(default_factory=dict)


class FactoryCreate(FactoryBase):
    id: str = Field(pattern=ID_PATTERN, description="Your stable id for the factory, e.g. 'yiwu-0042'.")


class FactoryUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    attributes: dict[str, Any] | None = None


class FactoryRead(FactoryBase):
    model_config = ConfigDict(from_attributes=True)
    id: str
    created_at: datetime
    product_count: int = 0


MAX_INT = 2**31 - 1  # the database's INTEGER column


class ProductBase(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    category: str | None = Field(default=None, max_length=255)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    moq: int | None = Field(default=None, ge=1, le=MAX_INT, description="Minimum order quantity.")
    attributes: dict[str, Any] = Field(default_factory=dict)


class ProductCreate(ProductBase):
    id: str = Field(pattern=ID_PATTERN)
    factory_id: str = Field(pattern=ID_PATTERN)


class ProductUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=500)
    category: str | None = Field(default=None, max_length=255)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    moq: int | None = Field(default=None, ge=1, le=MAX_INT)
    attributes: dict[str, Any] | None = None


class ProductRead(ProductBase):
    model_config = ConfigDict(from_attributes=True)
    id: str
    factory_id: str
    created_at: datetime
    image_ids: list[int] = Field(default_factory=list)


class ImageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    product_id: str
    content_hash: str
    source: str
    width: int
    height: int
    created_at: datetime
    url: str = Field(description="Where the stored (reduced) copy of the image is served.")


class ImageUploadRead(ImageRead):
    created: bool = Field(description="False when the product already had an image with these bytes.")


class EvidenceRead(BaseModel):
    inliers: int = Field(description="Local-feature matches consistent with one rotation, scale and shift.")
    agreement: float = Field(
        description="Correlation of the aligned pixels, -1..1 (0.9+ is the same photo); 0 when under 12 inliers."
    )
    region: tuple[float, float, float, float] | None = Field(
        description="Matched area of the catalogue image: x0, y0, x1, y1 as fractions of its size."
    )
    mirrored: bool = Field(description="The query matched once mirrored.")
    aligned_by: Literal["keypoints", "outline"] = Field(
        "keypoints",
        description="How the pair was lined up: local-feature keypoints, or (a product too plain for them: a "
        "flag's stripes, a plain shape) its outlines.",
    )


class MatchRead(BaseModel):
    product_id: str
    image_id: int
    score: float = Field(description="Ranking score: the similarity, plus a bonus when verified identical.")
    similarity: float = Field(description="Cosine similarity of the query to this catalogue image.")
    match_level: str = Field(
        description="identical, near_duplicate, shares_part or similar; only the first two are confident. "
        "See docs/ranking.md."
    )
    match_words: str = Field(description='The level in plain words, e.g. "same product", "shares a part".')
    evidence: EvidenceRead | None = Field(description="Local-feature check; null when it was not run.")
    title: str
    category: str | None
    price: float | None
    moq: int | None
    image_url: str


class FactoryMatchRead(BaseModel):
    factory_id: str
    name: str
    region: str | None
    score: float = Field(description="Factory score; see docs/ranking.md.")
    match_level: str = Field(description="The level of its best match.")
    match_words: str = Field(description="That level in plain words.")
    attributes: dict[str, Any] = Field(description="The factory's own attributes (contact details, certificates).")
    confident: bool
    matches: list[MatchRead] = Field(description="Its best-matching products, one image each, best first.")


class CategoryRead(BaseModel):
    category: str
    confidence: float = Field(description="0..1: the nearest products' vote, blended with the text tower's reading.")


class SearchRead(BaseModel):
    confident_match: bool = Field(description="False: nothing cleared the calibrated threshold.")
    message: str | None = Field(description="Why the list is empty, when it is.")
    total: int = Field(description="Factories found over all pages.")
    offset: int
    factories: list[FactoryMatchRead]
    categories: list[CategoryRead] = Field(
        description="The photo's likely catalogue categories, most likely first (at most 3), confident match or not."
    )
    thresholds: str = Field(
        description="Where the match levels' thresholds come from: 'catalogue' (calibrated on this catalogue by "
        "`sourcelens calibrate`) or 'default' (the shipped defaults)."
    )
    took_ms: float
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage (decode, preprocess, embed, search, lookup, verify), summed over both "
        "passes when the photo's crops were searched too; then also passes: 2."
    )
    subjects: "list[SubjectSearchRead] | None" = Field(
        default=None,
        description="With per_subject=true: an answer for each product seen in the photo, largest first, each with "
        "its box (the top-level answer is the first one's).",
    )


class SubjectSearchRead(BaseModel):
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 as fractions of the photo's size.")
    answer: SearchRead


class HealthRead(BaseModel):
    status: str
    model: str
    precision: str
    dim: int
    images: int
    index: str
    search_batches: int = Field(description="Forward passes run for searches since start.")
    searches_embedded: int
    model_busy_s: float = Field(description="Seconds the model spent on searches since start.")


class ItemErrorRead(BaseModel):
    line: int = Field(description="Line of the manifest (1 is the header).")
    image: str
    reason: str


class IngestJobRead(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    source: str
    total: int
    done: int
    added: int
    updated: int
    unchanged: int
    failed: int
    images_per_s: float = Field(description="Images added per second of run time.")
    items_per_s: float
    stage_seconds: dict[str, float] = Field(description="Time in read (thread-seconds), embed and write.")
    errors: list[ItemErrorRead]
    error: str | None = Field(description="Why the whole job failed, if it did.")
    created_at: datetime | None
    finished_at: datetime | None


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255, description="Who or what the key is for.")
    role: Role = Field(description="admin (everything), factory (its factories' catalogue and jobs), search.")
    factory_ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list, max_length=100, description="For a factory key: the factories it may write."
    )


class KeyRead(BaseModel):
    id: int
    name: str
    role: Role
    factory_ids: list[str]
    prefix: str = Field(description="The token's first characters, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreatedRead(KeyRead):
    token: str = Field(description="The key itself. Shown this once: store it now.")


class ReadyRead(BaseModel):
    ready: bool
    model_loaded: bool
    database: bool = Field(description="The database answers.")
    index_in_step: bool = Field(description="The index holds a vector for each image row.")
    images: int
    vectors: int


class CalibrationRead(BaseModel):
    source: str = Field(description="'catalogue' (fitted on this catalogue) or 'default' (shipped defaults).")
    calibrated_at: datetime | None
    stale: bool = Field(description="The catalogue has grown much since; run `sourcelens calibrate` again.")
    catalogue_images: int | None = Field(description="Images in the catalogue when it was calibrated.")
    target: float | None = Field(description="The confident-wrong rate it was fitted for.")
    confident_wrong: float | None = Field(description="The confident-wrong rate measured at the chosen thresholds.")
    unknown_confident: float | None = Field(description="Unknown products answered confidently, measured.")
    thresholds: dict[str, float] = Field(description="What each level requires; see docs/ranking.md.")


class FacetValueRead(BaseModel):
    value: str
    products: int = Field(description="Products with this value.")


class FacetsRead(BaseModel):
    regions: list[FacetValueRead] = Field(description="Factory regions, most products first.")
    categories: list[FacetValueRead]
    min_price: float | None
    max_price: float | None
    min_moq: int | None
    max_moq: int | None
    products: int
    factories: int


class SubjectsRead(BaseModel):
    boxes: list[tuple[float, float, float, float]] = Field(
        description="The products seen in the photo, largest first: x0, y0, x1, y1 as fractions of its size "
        "(search's bbox takes them as they are). One box when the photo shows one product."
    )


class QueryJobRead(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, failed or cancelled")
    source: str
    total: int = Field(description="Photos in the job.")
    done: int = Field(description="Photos searched so far (answered or failed).")
    failed: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    options: dict[str, Any] = Field(description="top_k, include_weak and filters each photo is searched with.")


class QueryAnswerRead(BaseModel):
    number: int = Field(description="The photo's place in the upload, from 1.")
    name: str = Field(description="Its name in the ZIP, or its URL.")
    answer: dict[str, Any] | None = Field(
        description="confident_match, factories (factory_id, name, region, match_level, confident, score, "
        "similarity, product_id, title, image_id) and categories; null until searched or when it failed."
    )
    error: str | None


class SavedSearchRead(BaseModel):
    id: int
    name: str
    webhook_url: str | None
    checked_to: int = Field(description="Catalogue images up to this id have been checked for it.")
    created_at: datetime
    matches: int = Field(description="Confident matches found since it was saved.")


class SavedMatchRead(BaseModel):
    id: int
    image_id: int
    product_id: str
    factory_id: str
    match_level: str
    similarity: float
    found_at: datetime
    delivered: bool = Field(description="Delivered to the webhook (true when there is none).")


class SearchCountRead(BaseModel):
    product_id: str
    shown: int = Field(description="Searches that showed the product on a page of results.")
    confident: int = Field(description="Of those, searches where it was a confident match.")
    last_at: datetime = Field(description="When it was last shown (counts are written every few seconds).")
