"""The search pipeline's decisions on catalogues large enough for them to matter: how views are fused,
how many candidates are drawn from the index, and how deep verification goes."""

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from app.models import Factory, Product
from app.models import Image as ImageRow
from app.sample_catalogue import Design, factory_palette, render_product
from app.services.index_sync import vector_to_bytes
from app.services.search import ImageRef, _fuse_views, search
from app.services.search_options import QueryPhoto, SearchOptions


def test_views_are_fused_by_the_mean_so_a_product_matching_every_view_wins():
    rows = [
        ImageRef(1, "PA", "h1", "FA"),
        ImageRef(2, "PB", "h2", "FB"),
        ImageRef(5, "PB", "h5", "FB"),
        ImageRef(4, "PC", "h4", "FC"),
    ]
    per_view = [{1: 0.9, 2: 0.75, 5: 0.2, 4: 0.3}, {1: 0.5, 2: 0.75}]
    hits = {hit.product_id: hit for hit in _fuse_views(per_view, rows)}
    assert [h.product_id for h in _fuse_views(per_view, rows)] == ["PB", "PA", "PC"]
    assert hits["PB"].similarity == pytest.approx(0.75) and hits["PB"].image_id == 2  # its best image
    assert hits["PA"].similarity == pytest.approx(0.7)  # one great view, one poor: the mean, not the max
    # A product missing from a view counts with that view's lowest similarity in the pool (0.5 here).
    assert hits["PC"].similarity == pytest.approx(0.4)


def test_one_view_keeps_each_products_best_image():
    rows = [ImageRef(1, "PA", "h1", "FA"), ImageRef(2, "PA", "h2", "FA")]
    (hit,) = _fuse_views([{1: 0.6, 2: 0.8}], rows)
    assert (hit.image_id, hit.similarity) == (2, pytest.approx(0.8))


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def at_similarity(query: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with the unit `query` is exactly `similarity`."""
    noise = rng.standard_normal(query.shape).astype(np.float32)
    noise -= noise.dot(query) * query
    noise /= np.linalg.norm(noise)
    return (similarity * query + np.sqrt(1 - similarity**2) * noise).astype(np.float32)


class Catalogue:
    """Rows written straight to the database and index, with embeddings at chosen similarities to a query."""

    def __init__(self, runtime, query_data: bytes) -> None:
        self.runtime = runtime
        loaded = runtime.load_image(query_data)
        self.query = runtime.embedder.embed_images([loaded.image])[0]
        self.rng = np.random.default_rng(0)
        self.next_id = 0

    def add(self, factory_id: str, product_id: str, similarity: float, picture: Image.Image | None = None) -> None:
        rt, self.next_id = self.runtime, self.next_id + 1
        digest = hashlib.sha256(f"{product_id}:{self.next_id}".encode()).hexdigest()
        vector = at_similarity(self.query, similarity, self.rng)
        if picture is not None:
            rt.media.save(digest, picture)
        with rt.sessions() as session:
            if session.get(Factory, factory_id) is None:
                session.add(Factory(id=factory_id, name=factory_id, attributes={}))
            if session.get(Product, product_id) is None:
                session.add(Product(id=product_id, factory_id=factory_id, title=product_id, attributes={}))
            image = ImageRow(
                product_id=product_id,
                content_hash=digest,
                source="test",
                width=320,
                height=320,
                embedder=rt.embedder.name,
                embedding=vector_to_bytes(vector),
            )
            session.add(image)
            session.commit()
            rt.index.upsert(np.array([image.id]), vector[None, :])


def run(runtime, data: bytes, **options) -> list:
    with runtime.sessions() as session:
        return search(session, runtime, [QueryPhoto(data)], None, SearchOptions(**options))


def test_the_top_30_products_are_verified_and_no_more(make_runtime, tiny_embedder):
    photo = render_product(Design(seed=1001, palette=factory_palette(3)), size=320)
    runtime = make_runtime(tiny_embedder)
    catalogue = Catalogue(runtime, jpeg(photo))
    for rank in range(29):  # lookalikes, closer than the copies by the embedding alone
        other = render_product(Design(seed=2000 + rank, palette=factory_palette(rank)), size=320)
        catalogue.add(f"D{rank:02d}", f"D{rank:02d}-P", 0.99 - rank * 0.001, other)
    catalogue.add("FT", "T", 0.95, photo)  # 30th by similarity: verified, so found to be the same photo
    catalogue.add("FT2", "T2", 0.949, photo)  # 31st: the same photo too, but beyond the verified depth
    result = run(runtime, jpeg(photo))
    assert [f.factory_id for f in result.factories] == ["FT"]
    assert result.factories[0].matches[0].level == "identical"
    weak = run(runtime, jpeg(photo), include_weak=True, top_k=40)
    levels = {f.factory_id: f.matches[0].level for f in weak.factories}
    assert levels["FT2"] == "similar" and levels["FT2"] != levels["FT"]


@pytest.fixture(scope="module")
def crowded(tmp_path_factory, tiny_embedder):
    """Factory A's 150 images and A2's 85 come before B's and C's one each."""
    from app.config import Settings
    from app.runtime import Runtime

    settings = Settings(data_dir=tmp_path_factory.mktemp("crowded"), model=tiny_embedder.name, precision="fp32")
    runtime = Runtime.start(settings, tiny_embedder)
    photo = jpeg(render_product(Design(seed=7, palette=factory_palette(7)), size=320))
    catalogue = Catalogue(runtime, photo)
    for i in range(150):
        catalogue.add("A", f"A-{i}", 0.95 - i * 0.001)
    for i in range(85):
        catalogue.add("A2", f"A2-{i}", 0.7 - i * 0.001)
    catalogue.add("B", "B-1", 0.5)
    catalogue.add("C", "C-1", 0.4)
    yield runtime, photo
    runtime.close()


@pytest.mark.parametrize(
    ("top_k", "offset", "factories_found"),
    [
        (1, 0, 2),  # at least 200 candidates: A's 150 and A2's best 50
        (10, 0, 2),  # 20 per factory asked for is 200 too
        (12, 0, 4),  # 240: everyone
        (2, 10, 4),  # the pages skipped count: (10 + 2) x 20
    ],
)
def test_the_candidate_pool_grows_with_the_factories_asked_for(crowded, top_k, offset, factories_found):
    runtime, photo = crowded
    result = run(runtime, photo, top_k=top_k, offset=offset, include_weak=True, verify=False, auto_crop=False)
    assert result.total == factories_found
