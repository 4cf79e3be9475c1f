"""Domain results to wire schemas; shared by the HTTP API and `sourcelens search --json`."""

from dataclasses import asdict

from app.access.keys import KeyInfo
from app.api.schemas import (
    CalibrationRead,
    CategoryRead,
    EvidenceRead,
    FacetsRead,
    FactoryMatchRead,
    FactoryRead,
    ImageRead,
    IngestJobRead,
    ItemErrorRead,
    KeyRead,
    MatchRead,
    ProductRead,
    SearchRead,
)
from app.calibration.service import CalibrationInfo
from app.catalog.facets import Facets
from app.catalog.types import FactoryInfo, ImageInfo, ProductInfo
from app.ingest.jobs import IngestReport
from app.search.pipeline import SearchResult
from app.search.scoring import FactoryScore, Hit, MatchLevel

API = "/api/v1"
NO_CONFIDENT_MATCH = (
    "No confident match: no catalogue image is the same photo or a near-duplicate. "
    "Send include_weak=true to list the closest candidates anyway."
)

# What each level means to a buyer; the page and the CLI show these words, not scores.
MATCH_WORDS = {
    MatchLevel.IDENTICAL: "same product",
    MatchLevel.NEAR_DUPLICATE: "very similar",
    MatchLevel.SHARES_PART: "shares a part",
    MatchLevel.SIMILAR: "looks alike",
}


def image_url(image_id: int) -> str:
    return f"{API}/images/{image_id}/file"


def factory_read(factory: FactoryInfo) -> FactoryRead:
    return FactoryRead.model_validate(factory, from_attributes=True)


def product_read(product: ProductInfo) -> ProductRead:
    return ProductRead.model_validate(product, from_attributes=True)


def image_read(image: ImageInfo) -> ImageRead:
    return ImageRead(
        id=image.id,
        product_id=image.product_id,
        content_hash=image.content_hash,
        source=image.source,
        width=image.width,
        height=image.height,
        created_at=image.created_at,
        url=image_url(image.id),
    )


def search_read(result: SearchResult, offset: int = 0) -> SearchRead:
    factories = [_factory_match_read(result, ranked) for ranked in result.factories]
    message = _empty_message(result, offset) if not factories else None
    return SearchRead(
        confident_match=result.confident_match,
        message=message,
        total=result.total,
        offset=offset,
        factories=factories,
        categories=[CategoryRead(category=c.category, confidence=c.confidence) for c in result.categories],
        thresholds=result.thresholds,
        took_ms=round(result.took_ms, 1),
        timings_ms=result.timings_ms,
    )


def _empty_message(result: SearchResult, offset: int) -> str:
    if result.total:
        return f"No factories beyond offset {offset}: {result.total} found in all."
    if result.gated and not result.confident_match:
        return NO_CONFIDENT_MATCH
    return "Nothing in the catalogue matched; check the filters."


def _factory_match_read(result: SearchResult, ranked: FactoryScore) -> FactoryMatchRead:
    factory = result.factory_rows[ranked.factory_id]
    return FactoryMatchRead(
        factory_id=factory.id,
        name=factory.name,
        region=factory.region,
        attributes=factory.attributes,
        score=round(ranked.score, 4),
        match_level=ranked.matches[0].level,
        match_words=MATCH_WORDS[ranked.matches[0].level],
        confident=ranked.confident,
        matches=[_match_read(result.product_rows[hit.product_id], hit) for hit in ranked.matches],
    )


def _match_read(product: ProductInfo, hit: Hit) -> MatchRead:
    check = hit.verification
    evidence = None
    if check is not None:
        evidence = EvidenceRead(
            inliers=check.inliers,
            agreement=check.agreement,
            region=check.region,
            mirrored=check.mirrored,
            aligned_by=check.aligned_by,
        )
    return MatchRead(
        product_id=hit.product_id,
        image_id=hit.image_id,
        score=round(hit.rank_score, 4),
        similarity=round(hit.similarity, 4),
        match_level=hit.level,
        match_words=MATCH_WORDS[hit.level],
        evidence=evidence,
        title=product.title,
        category=product.category,
        price=product.price,
        moq=product.moq,
        image_url=image_url(hit.image_id),
    )


def job_read(report: IngestReport) -> IngestJobRead:
    return IngestJobRead(
        id=report.job_id,
        state=report.state,
        source=report.source,
        total=report.total,
        done=report.done,
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        failed=report.failed,
        images_per_s=round(report.images_per_s, 2),
        items_per_s=round(report.items_per_s, 2),
        stage_seconds={name: round(seconds, 3) for name, seconds in report.stage_seconds.items()},
        errors=[ItemErrorRead(line=e.line, image=e.image, reason=e.reason) for e in report.errors],
        error=report.error,
        created_at=report.created_at,
        finished_at=report.finished_at,
    )


def key_read(key: KeyInfo) -> KeyRead:
    return KeyRead.model_validate(key, from_attributes=True)


def calibration_read(info: CalibrationInfo) -> CalibrationRead:
    thresholds = {k: v for k, v in asdict(info.thresholds).items() if isinstance(v, float)}
    return CalibrationRead(
        source=info.source,
        calibrated_at=info.calibrated_at,
        stale=info.stale,
        catalogue_images=info.catalogue_images,
        target=info.target,
        confident_wrong=info.rates.confident_wrong if info.rates else None,
        unknown_confident=info.rates.unknown_confident if info.rates else None,
        thresholds=thresholds,
    )


def facets_read(facets: Facets) -> FacetsRead:
    return FacetsRead.model_validate(facets, from_attributes=True)
