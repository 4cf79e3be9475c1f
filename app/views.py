"""Build API response bodies from service results; shared by the HTTP API and `sourcelens search --json`."""

from app.models import Factory, Image, IngestJob, Product
from app.schemas import (
    FactoryMatchRead,
    FactoryRead,
    ImageRead,
    IngestJobRead,
    ItemErrorRead,
    MatchRead,
    ProductRead,
    SearchRead,
)
from app.services.jobs import IngestReport
from app.services.search import SearchResult

API = "/api/v1"


def image_url(image_id: int) -> str:
    return f"{API}/images/{image_id}/file"


def factory_read(factory: Factory, product_count: int = 0) -> FactoryRead:
    return FactoryRead.model_validate(factory, from_attributes=True).model_copy(update={"product_count": product_count})


def product_read(product: Product) -> ProductRead:
    body = ProductRead.model_validate(product, from_attributes=True)
    return body.model_copy(update={"image_ids": sorted(image.id for image in product.images)})


def image_read(image: Image) -> ImageRead:
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


def search_read(result: SearchResult) -> SearchRead:
    factories = []
    for ranked in result.factories:
        factory = result.factory_rows[ranked.factory_id]
        matches = [
            MatchRead(
                product_id=hit.product_id,
                image_id=hit.image_id,
                score=round(hit.similarity, 4),
                title=result.product_rows[hit.product_id].title,
                image_url=image_url(hit.image_id),
            )
            for hit in ranked.matches
        ]
        factories.append(
            FactoryMatchRead(
                factory_id=factory.id,
                name=factory.name,
                region=factory.region,
                score=round(ranked.score, 4),
                matches=matches,
            )
        )
    return SearchRead(factories=factories, took_ms=round(result.took_ms, 1))


def job_read(job: IngestJob, report: IngestReport) -> IngestJobRead:
    return IngestJobRead(
        id=job.id,
        state=job.state,
        source=job.source,
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
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
