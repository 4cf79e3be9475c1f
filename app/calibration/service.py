"""`sourcelens calibrate`: competitor-style queries built from the catalogue's own images, and unknown
products made by leaving a product out of its own search, answered by the real search; the thresholds fitted
on them (fit.py), stored with the model and the catalogue as it was, and used by the search from then on.

A catalogue without a calibration is searched with the shipped defaults, and says so.
"""

import io
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.calibration.fit import Fit, Observation, Rates, fit
from app.calibration.models import Calibration
from app.calibration.transforms import TRANSFORMS
from app.catalog.media import MediaStore
from app.catalog.models import Image as ImageRow
from app.catalog.models import Product
from app.core.errors import InvalidInputError
from app.search.options import QueryPhoto, SearchOptions
from app.search.pipeline import SearchService
from app.search.scoring import Hit, Thresholds

log = logging.getLogger(__name__)
MIN_PRODUCTS = 20  # fewer cannot say anything about a 1% rate
STALE_GROWTH = 0.2  # a calibration is stale once the catalogue has grown by this share


@dataclass(frozen=True)
class CalibrationInfo:
    """What the search uses: a calibration's thresholds and where they came from, or the defaults."""

    thresholds: Thresholds
    calibrated_at: datetime | None = None
    target: float | None = None
    rates: Rates | None = None
    catalogue_images: int | None = None
    stale: bool = False  # the catalogue has grown much since

    @property
    def source(self) -> str:
        return "catalogue" if self.calibrated_at else "default"


@dataclass(frozen=True)
class CalibrationPlan:
    target: float = 0.01
    copies: int = 300  # catalogue images queried as competitor-style copies
    unknown: int = 150  # products searched with themselves left out
    seed: int = 0


class CalibrationService:
    def __init__(
        self, search: SearchService, sessions: sessionmaker[Session], media: MediaStore, model_name: str
    ) -> None:
        self.search = search
        self.sessions = sessions
        self.media = media
        self.model_name = model_name

    def current(self) -> CalibrationInfo:
        """The newest calibration for this model, or the defaults (the search's own thresholds)."""
        with self.sessions() as session:
            row = session.scalars(
                select(Calibration).where(Calibration.model == self.model_name).order_by(Calibration.id.desc())
            ).first()
            images = _image_count(session)
        if row is None:
            return CalibrationInfo(replace(self.search.thresholds, source="default"))
        return _info(row, images)

    def apply_stored(self) -> CalibrationInfo:
        """Use the newest stored calibration, if any (at start)."""
        info = self.current()
        if info.calibrated_at is not None:
            self.search.use_thresholds(info.thresholds)
            log.info("match thresholds calibrated on this catalogue %s", f"{info.calibrated_at:%Y-%m-%d %H:%M}")
        else:
            log.info("match thresholds: shipped defaults (run `sourcelens calibrate` on this catalogue)")
        return info

    def run(self, plan: CalibrationPlan, progress: Callable[[int], None] | None = None) -> CalibrationInfo:
        """Query, fit, store and use. Raises InvalidInputError for a catalogue too small to calibrate."""
        started = time.perf_counter()
        rng = random.Random(plan.seed)
        with self.sessions() as session:
            rows = session.execute(
                select(ImageRow.id, ImageRow.product_id, ImageRow.content_hash, Product.factory_id)
                .join(Product, Product.id == ImageRow.product_id)
                .order_by(ImageRow.id)
            ).all()
            images, newest = _image_count(session), max((r.id for r in rows), default=0)
        first_images = {r.product_id: r for r in reversed(rows)}  # each product's first image
        products = sorted(first_images)
        if len(products) < MIN_PRODUCTS:
            raise InvalidInputError(f"the catalogue has {len(products)} products; calibrating needs {MIN_PRODUCTS}")
        rng.shuffle(products)
        unknown = products[: min(plan.unknown, len(products) // 3)]
        copies = rng.sample(rows, min(plan.copies, len(rows)))
        base = self.search.thresholds
        observations = []
        names = list(TRANSFORMS)
        for number, row in enumerate(copies):
            photo = self._photo(row.content_hash, names[number % len(names)], plan.seed)
            observations.append(Observation(row.factory_id, self._evidence(photo, None)))
            if progress:
                progress(1)
        for number, product_id in enumerate(unknown):
            row = first_images[product_id]
            photo = self._photo(row.content_hash, names[number % len(names)], plan.seed)
            observations.append(Observation(None, self._evidence(photo, product_id)))
            if progress:
                progress(1)
        fitted = fit(observations, plan.target, base, source="catalogue")
        seconds = time.perf_counter() - started
        self._store(fitted, plan, images, newest, len(copies), len(unknown), seconds)
        info = self.current()
        self.search.use_thresholds(info.thresholds)
        return info

    def _photo(self, content_hash: str, transform: str, seed: int) -> bytes:
        with self.media.open(content_hash) as stored:
            picture = TRANSFORMS[transform](stored.convert("RGB"), random.Random(f"{seed}:{content_hash}"))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def _evidence(self, photo: bytes, exclude_product: str | None) -> list[Hit]:
        options = SearchOptions(top_k=10, include_weak=True, verify_all=True)  # every candidate's evidence, to replay
        result = self.search.run([QueryPhoto(photo)], None, options, exclude_product=exclude_product)
        return result.evidence

    def _store(
        self, fitted: Fit, plan: CalibrationPlan, images: int, newest: int, copies: int, unknown: int, seconds: float
    ) -> None:
        thresholds = {f.name: getattr(fitted.thresholds, f.name) for f in fields(Thresholds) if f.name != "source"}
        measured = {**asdict(fitted.rates), "met": fitted.met, "copies": copies, "unknown": unknown}
        measured["seconds"] = round(seconds, 1)
        with self.sessions() as session:
            session.add(
                Calibration(
                    model=self.model_name,
                    catalogue_images=images,
                    newest_image_id=newest,
                    thresholds=thresholds,
                    target=plan.target,
                    measured=measured,
                )
            )
            session.commit()


def _image_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ImageRow)) or 0


def _info(row: Calibration, images_now: int) -> CalibrationInfo:
    known = {f.name for f in fields(Thresholds)}
    values = {name: value for name, value in row.thresholds.items() if name in known}
    thresholds = Thresholds(**{**values, "source": f"catalogue ({row.created_at:%Y-%m-%d})"})
    rate_fields = {f.name for f in fields(Rates)}
    rates = Rates(**{name: row.measured[name] for name in rate_fields if name in row.measured})
    return CalibrationInfo(
        thresholds=thresholds,
        calibrated_at=row.created_at,
        target=row.target,
        rates=rates,
        catalogue_images=row.catalogue_images,
        stale=images_now > row.catalogue_images * (1 + STALE_GROWTH),
    )
