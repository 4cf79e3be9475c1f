"""Wiring: every service built once from the settings, each given exactly what it uses. The server's lifespan,
the CLI, the demo and the scripts all call `build_services`; nothing below reaches for a global."""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.access.keys import KeyStore
from app.alerts.service import SavedSearches
from app.batch.runner import BatchRunner
from app.batch.service import BatchQueries
from app.calibration.service import CalibrationService
from app.catalog.keeper import IndexKeeper
from app.catalog.local_features import LocalFeatureStore
from app.catalog.media import MediaStore
from app.catalog.search_counts import SearchCounter
from app.catalog.service import CatalogService
from app.core.config import Settings
from app.core.cores import usable_cores
from app.core.metrics import Metrics
from app.core.periodic import Periodic
from app.database import open_database
from app.ingest.archive import ZipLimits
from app.ingest.fetch import Fetcher, FetchPolicy
from app.ingest.intake import UploadIntake
from app.ingest.jobs import JobStore
from app.ingest.manifest import ManifestLimits
from app.ingest.pipeline import IngestPipeline, IngestSettings
from app.ingest.runner import JobRunner
from app.search.evidence import verify_span
from app.search.lookup import SearchLookup
from app.search.pipeline import SearchPolicy, SearchService
from app.search.scoring import Thresholds, default_near_duplicate
from app.search.verify import FEATURES_VERSION, FeatureCache, one_thread_per_pair
from embeddings import Embedder, ImageDecoder, ModelLoadError, ModelScheduler, SchedulerPolicy, load_embedder
from index import VectorIndex

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    scheduler: ModelScheduler
    keeper: IndexKeeper
    media: MediaStore
    catalog: CatalogService
    search: SearchService
    jobs: JobStore
    intake: UploadIntake
    ingest: IngestPipeline
    runner: JobRunner  # started by the server only
    verify_pool: ThreadPoolExecutor
    keys: KeyStore
    metrics: Metrics
    calibration: CalibrationService
    queries: BatchQueries  # batch query jobs
    query_runner: BatchRunner  # started by the server only
    saved: SavedSearches  # saved searches
    alert_runner: Periodic  # checks the saved searches; started by the server only
    search_counts: SearchCounter  # how often each product was shown; written by a thread the server starts

    @property
    def fetcher(self) -> Fetcher:
        """Fetches image URLs behind the public-address check: the ingest pipeline's, shared with search."""
        return self.ingest.fetcher

    @property
    def index(self) -> VectorIndex:
        return self.keeper.index

    @property
    def model(self) -> Embedder:
        assert self.scheduler.model is not None  # build_services starts the scheduler with its model
        return self.scheduler.model

    def close(self) -> None:
        """Stop the runners and the model's thread, save the index, release connections."""
        self.runner.stop()
        self.query_runner.stop()
        self.alert_runner.stop()
        self.search_counts.stop()
        self.scheduler.close()
        self.verify_pool.shutdown()
        self.keeper.close()
        self.engine.dispose()


def make_scheduler(settings: Settings, metrics: Metrics | None = None) -> ModelScheduler:
    """The model's CPU scheduler, sized by the cores this process may use. It admits searches before the model
    is loaded, so the server builds it first."""
    policy = SchedulerPolicy(
        cores=usable_cores(),
        torch_threads=settings.torch_threads,
        max_batch=settings.search_batch_max,
        max_wait_s=settings.search_batch_wait_ms / 1000,
        max_waiting=settings.search_queue_max,
    )
    on_batch = (lambda images, _seconds: metrics.model_batch.observe(images)) if metrics else None
    return ModelScheduler(policy, on_batch)


def load_model(settings: Settings) -> Embedder:
    """The configured model; only when it cannot be loaded and the settings name a fallback, that one (said in one
    warning line). Otherwise ModelLoadError, whose message says what to do."""
    try:
        return _load(settings, settings.resolved_model)
    except ModelLoadError as exc:
        if not settings.model_fallback:
            raise
        log.warning("%s; using the fallback model %s (SOURCELENS_MODEL_FALLBACK)", exc, settings.model_fallback)
        settings.model = settings.model_fallback
        return _load(settings, settings.model_fallback)


def _load(settings: Settings, spec: str) -> Embedder:
    return load_embedder(
        spec,
        precision=settings.precision,
        cache_dir=settings.model_cache_dir,
        batch_size=settings.embed_batch_size,
        hub_timeout_s=settings.hub_timeout_s,
        device=settings.device,
    )


def build_services(
    settings: Settings,
    model: Embedder | Callable[[], Embedder] | None = None,
    scheduler: ModelScheduler | None = None,
    metrics: Metrics | None = None,
    *,
    saves_index: bool = True,
) -> Services:
    """Open the database, load the model, open the index and repair it against the database, and build the
    services on them. `model`: a loaded one (tests), or what loads it (the demo's choice); by default the
    configured one, loaded on the scheduler's thread like every torch call. `saves_index=False`: the index is
    kept in memory only, never written (a worker process beside a server that owns the FAISS index directory)."""
    engine, sessions = open_database(settings)
    metrics = metrics or Metrics()
    scheduler = scheduler or make_scheduler(settings, metrics)
    if isinstance(model, Embedder):
        model = scheduler.start(model)
    else:
        model = scheduler.start_with(model or partial(load_model, settings))
    keeper = IndexKeeper.open(
        sessions,
        settings.index_dir,
        model.name,
        model.dim,
        kind=settings.index,
        ivf_threshold=settings.index_ivf_threshold,
        fp16_threshold=settings.index_fp16_threshold,
        faiss_threads=settings.faiss_threads,
        store=settings.vector_store,
        saves=saves_index,
    )
    media = MediaStore(settings.media_dir)
    side = max(settings.decode_side, model.preprocess.size)  # a little above the model's input, no more
    images = ImageDecoder(settings.max_image_bytes, settings.max_image_pixels, side)
    uploads = ImageDecoder(settings.max_upload_bytes, settings.max_image_pixels, side)
    verify_pool = ThreadPoolExecutor(usable_cores(), thread_name_prefix="verify", initializer=one_thread_per_pair)
    near_duplicate = settings.near_duplicate_similarity
    policy = SearchPolicy(
        max_top_k=settings.max_top_k,
        max_subjects=settings.max_subjects,
        thresholds=Thresholds(default_near_duplicate(model.name) if near_duplicate is None else near_duplicate),
        verify_span=verify_span(model.name),
    )
    # Catalogue images' local features, extracted at ingest and stored, so a search extracts only its photo's.
    features = FeatureCache(media.open, store=LocalFeatureStore(settings.features_dir / FEATURES_VERSION))
    search = SearchService(
        scheduler=scheduler,
        preprocess=model.preprocess,
        decoder=uploads,
        index=keeper.index,
        lookup=SearchLookup(sessions),
        features=features,
        verify_pool=verify_pool,
        policy=policy,
    )
    catalog = CatalogService(
        sessions=sessions,
        index=keeper.index,
        media=media,
        decoder=images,
        preprocess=model.preprocess,
        scheduler=scheduler,
        model_name=model.name,
        max_attributes_bytes=settings.max_attributes_bytes,
    )
    jobs = JobStore(sessions)
    manifest_limits = ManifestLimits(settings.max_manifest_rows, settings.max_attributes_bytes)
    ingest = IngestPipeline(
        sessions=sessions,
        jobs=jobs,
        fetcher=Fetcher(
            FetchPolicy(
                timeout_s=settings.url_timeout_s,
                deadline_s=settings.url_deadline_s,
                max_redirects=settings.url_max_redirects,
                max_bytes=settings.max_image_bytes,
                allow_hosts=tuple(settings.url_allow_hosts),
                max_concurrent=settings.max_concurrent_fetches,
            )
        ),
        decoder=images,
        preprocess=model.preprocess,
        scheduler=scheduler,
        keeper=keeper,
        media=media,
        model_name=model.name,
        metrics=metrics,
        on_stored=features.precompute,
        settings=IngestSettings(
            batch_size=settings.embed_batch_size,
            read_workers=settings.read_workers,
            read_ahead=scheduler.policy.read_ahead,
            jobs_dir=settings.jobs_dir,
            manifest_limits=manifest_limits,
        ),
    )
    runner = JobRunner(
        ingest,
        jobs,
        poll_s=settings.job_poll_s,
        stale_after_s=settings.job_stale_after_s,
        slice_s=settings.job_slice_s,
    )
    intake = UploadIntake(
        jobs=jobs,
        jobs_dir=settings.jobs_dir,
        zip_limits=ZipLimits(settings.max_zip_total_bytes, settings.max_zip_files, settings.max_zip_ratio),
        max_bytes=settings.max_job_upload_bytes,
        manifest_limits=manifest_limits,
        on_submitted=runner.wake,
    )
    calibration = CalibrationService(search, sessions, media, model.name)
    _use_calibration(calibration, search, near_duplicate)
    queries = BatchQueries(
        sessions=sessions,
        search=search,
        fetcher=ingest.fetcher,
        jobs_dir=settings.query_jobs_dir,
        zip_limits=ZipLimits(settings.max_zip_total_bytes, settings.max_zip_files, settings.max_zip_ratio),
        max_bytes=settings.max_job_upload_bytes,
        max_items=settings.max_query_items,
    )
    query_runner = BatchRunner(queries, poll_s=settings.job_poll_s, stale_after_s=settings.job_stale_after_s)
    queries.on_submitted = query_runner.wake
    saved = SavedSearches(
        sessions=sessions,
        search=search,
        photos_dir=settings.saved_photos_dir,
        webhook_policy=FetchPolicy(
            timeout_s=min(settings.url_timeout_s, 10.0),
            allow_hosts=tuple(settings.url_allow_hosts),
        ),
        max_per_key=settings.max_saved_searches,
        max_photo_bytes=settings.max_upload_bytes,
    )
    return Services(
        settings,
        engine,
        sessions,
        scheduler,
        keeper,
        media,
        catalog,
        search,
        jobs,
        intake,
        ingest,
        runner,
        verify_pool,
        KeyStore(sessions),
        _watched(metrics, keeper, scheduler),
        calibration,
        queries,
        query_runner,
        saved,
        Periodic("saved-searches", settings.saved_search_interval_s, saved.check_all),
        SearchCounter(sessions),
    )


def _use_calibration(calibration: CalibrationService, search: SearchService, near_duplicate: float | None) -> None:
    """The catalogue's own calibration when there is one; SOURCELENS_NEAR_DUPLICATE_SIMILARITY, when set,
    overrides its near-duplicate cut all the same."""
    calibration.apply_stored()
    if near_duplicate is not None:
        search.use_thresholds(replace(search.thresholds, near_duplicate=near_duplicate))


def _watched(metrics: Metrics, keeper: IndexKeeper, scheduler: ModelScheduler) -> Metrics:
    """The readings taken at each scrape."""
    metrics.watch("sourcelens_index_vectors", "Vectors in the index", lambda: len(keeper.index))
    metrics.watch(
        "sourcelens_searches_waiting", "Searches admitted, waiting for the model", lambda: scheduler.stats.waiting
    )
    metrics.watch("sourcelens_model_busy_seconds", "Seconds of search forward passes", lambda: scheduler.stats.busy_s)
    metrics.watch(
        "sourcelens_index_build_seconds", "Seconds the last index rebuild took", lambda: keeper.last_rebuild_s or 0
    )
    return metrics
