"""One settings object for the whole service, read from SOURCELENS_* environment variables."""

import json
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "openclip:ViT-B-32:laion2b_s34b_b79k"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOURCELENS_", env_file=None, extra="ignore")

    data_dir: Path = Path("./sourcelens-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite inside the data directory."
    )
    model: str | None = Field(
        default=None,
        description="Embedder spec (see embeddings.registry). Unset: the model the data directory's index was "
        f"built with, or {DEFAULT_MODEL} for a new one.",
    )
    model_cache_dir: Path | None = Field(default=None, description="Where hub weights are cached.")
    model_fallback: str | None = Field(
        default=None,
        description="A model to use when the configured one cannot be loaded (e.g. effnet-lite0, which needs no "
        "network). Unset: a model that cannot be loaded stops the command with what to do.",
    )
    hub_timeout_s: float = Field(
        default=3.0, gt=0, description="How long to wait for the model hub before using the local cache only."
    )
    precision: str = Field(default="auto", pattern="^(auto|fp32|bf16)$")
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="Where the model runs: auto (a CUDA GPU where torch sees one, else the CPU), cpu, or cuda[:N].",
    )
    index: str = Field(
        default="auto",
        pattern="^(auto|flat|flat-fp16|ivf-sq8)$",
        description="Vector index: flat (exact), flat-fp16 (every vector, 16-bit: scores within 1e-4), ivf-sq8 "
        "(inverted file, 8-bit codes), or auto: flat until index_fp16_threshold vectors, flat-fp16 until "
        "index_ivf_threshold, then ivf-sq8, each rebuilt in the background.",
    )
    index_fp16_threshold: int = Field(default=10_000, ge=1)
    index_ivf_threshold: int = Field(default=50_000, ge=1)
    vector_store: str = Field(
        default="faiss",
        max_length=2048,
        pattern=r"^(faiss|milvus(\+https)?://\S+|\S+\.db)$",
        description="Where the vectors live: faiss (an index in the data directory, in this process), "
        "milvus://host:19530 (a Milvus server shared by several API processes and workers), or a Milvus Lite "
        "file path ending in .db (one process). Needs the milvus extra for Milvus.",
    )
    milvus_ef: int = Field(default=128, ge=1, le=32_768, description="Milvus HNSW search breadth (ef).")
    milvus_filtered_ef: int = Field(
        default=4096,
        ge=1,
        le=32_768,
        description="Milvus HNSW search breadth for a filtered search: wide enough that a filter keeping 1% of the "
        "catalogue still finds its true top 10 (docs/benchmarks.md, bench_scale).",
    )
    index_preload: bool = Field(
        default=True,
        description="An IVF index opens memory-mapped (serving at once); then read it into memory in the "
        "background, where searches run faster. False keeps it mapped: less private memory, pages shared.",
    )
    torch_threads: int = Field(default=0, ge=0, description="0: one per usable core (app/cores.py).")
    faiss_threads: int = Field(default=1, ge=0, description="OpenMP threads per FAISS search; 0: one per core.")
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    decode_side: int = Field(
        default=320,
        ge=64,
        le=4096,
        description="Decode and keep images at about this size (never below the model's input size): JPEG "
        "DCT scaling makes big photos cheap, and the stored copy serves thumbnails and reindex.",
    )
    search_batch_max: int = Field(default=16, ge=1, le=256, description="Most searches in one forward pass.")
    search_batch_wait_ms: float = Field(
        default=50.0,
        ge=0,
        description="How long a batch waits for searches already on their way (never "
        "for searches not yet received, so a lone search does not wait).",
    )
    read_workers: int = Field(default=2, ge=1, le=64, description="Threads that fetch and decode for ingest.")

    # Limits: checked before an image is decoded, so hostile files are refused cheaply.
    max_image_bytes: int = Field(default=30 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=80_000_000, ge=1)
    max_upload_bytes: int = Field(default=30 * 1024 * 1024, ge=1)
    max_job_upload_bytes: int = Field(default=2 * 1024**3, ge=1, description="A ZIP or CSV posted as a job.")
    max_zip_total_bytes: int = Field(default=8 * 1024**3, ge=1, description="Sum of a ZIP's unpacked sizes.")
    max_zip_files: int = Field(default=100_000, ge=1)
    max_zip_ratio: float = Field(default=200.0, gt=1, description="Largest unpacked/packed size of a member.")
    max_query_items: int = Field(default=1000, ge=1, le=100_000, description="Photos in one batch query job.")
    max_saved_searches: int = Field(default=20, ge=0, le=10_000, description="Saved searches per API key.")
    saved_search_interval_s: float = Field(
        default=30.0, gt=0, description="How often saved searches are checked (only when the catalogue grew)."
    )
    auto_migrate: bool = Field(
        default=True,
        description="Bring the database to the newest schema at start; false: refuse to start until "
        "`sourcelens db upgrade` has been run (for operators who migrate as a separate step).",
    )
    lock_wait_s: float = Field(
        default=30.0, ge=0, description="How long a database write waits for another's lock before answering 503."
    )
    job_poll_s: float = Field(default=2.0, gt=0)
    job_stale_after_s: float = Field(default=300.0, gt=0, description="Heartbeat age after which a job is retaken.")
    job_slice_s: float = Field(
        default=60.0, gt=0, description="Longest turn of one job while others wait (jobs take turns)."
    )
    run_jobs: bool = Field(
        default=True,
        description="Run ingest and batch-query jobs in this server process; false when `sourcelens worker` "
        "processes do it (docs/operations.md, Workers).",
    )
    near_duplicate_similarity: float | None = Field(
        default=None,
        ge=-1,
        le=1.01,
        description="Cosine above which a hit is a confident near-duplicate without local-feature proof; "
        "unset: the model's calibrated default (app/search/scoring.py).",
    )
    max_top_k: int = Field(default=100, ge=1)
    max_subjects: int = Field(
        default=4, ge=1, le=6, description="Products answered separately in one photo (per_subject searches)."
    )
    default_top_k: int = Field(default=10, ge=1)

    # Image URLs in manifests.
    url_timeout_s: float = Field(default=15.0, gt=0)
    url_max_redirects: int = Field(default=3, ge=0)
    url_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts exempt from the public-address check (intranets, tests): 'host' for ports 80 and 443, "
        "'host:port' for another port.",
    )

    url_deadline_s: float = Field(
        default=60.0, gt=0, description="Longest a URL fetch may take in all, however slowly bytes trickle in."
    )
    max_concurrent_fetches: int = Field(default=8, ge=1, le=256, description="URL fetches in flight at once.")

    # Catalogue input.
    max_manifest_rows: int = Field(default=100_000, ge=1, description="Rows in one manifest or job.")
    max_attributes_bytes: int = Field(
        default=16 * 1024, ge=2, description="Largest JSON of a factory's or product's attributes."
    )

    # Access and abuse limits.
    anonymous_search: bool = Field(
        default=False,
        description="Let callers without a key search and read the public catalogue (a public seller page). "
        "Writes always need a key.",
    )
    rate_limit_per_key: str = Field(default="600/minute", description="Requests per API key (limits syntax).")
    rate_limit_per_address: str = Field(default="120/minute", description="Requests per client address.")
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where rate-limit counts live: memory:// for one process, redis://host:6379 for several.",
    )
    search_queue_max: int = Field(
        default=32,
        ge=1,
        description="Searches admitted and waiting for the model; beyond it a search gets 503 and Retry-After.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="Host headers the server answers (DNS-rebinding protection); '*' for any. Serving on "
        "0.0.0.0 behind a name: add the name.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins allowed to call the API from a browser; none by default, and a cross-origin "
        "write from an origin not listed is refused.",
    )

    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a key (behind a private network); else an admin key."
    )
    shutdown_grace_s: float = Field(
        default=20.0, ge=0, description="On SIGTERM, how long requests in flight may take to finish."
    )
    log_format: str = Field(
        default="auto", pattern="^(auto|json|text)$", description="auto: JSON for serve, worker, demo; else text."
    )

    host: str = "127.0.0.1"
    port: int = 8000

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'sourcelens.db').resolve()}"

    @property
    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return stored_index_model(self.index_dir) or DEFAULT_MODEL

    @property
    def trusted_hosts(self) -> list[str]:
        """allowed_hosts, and the address `serve` binds to when it is a particular one."""
        bound = [] if self.host in ("0.0.0.0", "::", "") else [self.host]
        return [*self.allowed_hosts, *bound]

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def query_jobs_dir(self) -> Path:
        return self.data_dir / "query-jobs"

    @property
    def saved_photos_dir(self) -> Path:
        return self.data_dir / "saved"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.index_dir, self.media_dir, self.jobs_dir, self.query_jobs_dir):
            path.mkdir(parents=True, exist_ok=True)


def stored_index_model(index_dir: Path) -> str | None:
    """The embedder recorded by an existing index, so a data directory keeps the model it was built with."""
    try:
        embedder = json.loads((index_dir / "meta.json").read_text())["embedder"]
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: the index is rebuilt at start
        return None
    return embedder if isinstance(embedder, str) else None
