"""Upload intake: a ZIP or a CSV/text manifest becomes a queued job with its files under the jobs folder;
an upload over the cap is refused while it streams, word for word, leaving nothing; a factory cancels its own."""

import io

import pytest

from app.core.access import Principal, Role
from app.core.errors import NotFoundError, PayloadTooLargeError
from app.ingest.intake import CHUNK, save_upload

MANIFEST = b"factory_id,product_id,image\nF1,P1,http://127.0.0.1:9/a.jpg\n"
OWNER = Principal(Role.FACTORY, frozenset({"F1"}), key_id=5, name="f1")
STRANGER = Principal(Role.FACTORY, frozenset({"F2"}), key_id=6, name="f2")


class Recording(io.BytesIO):
    """A stream that remembers how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(size)
        return super().read(size)


def test_an_upload_is_streamed_in_chunks_and_refused_past_the_cap_word_for_word(tmp_path):
    upload = Recording(b"x" * (CHUNK * 2 + 10))
    save_upload(upload, tmp_path / "ok", max_bytes=CHUNK * 3)
    assert (tmp_path / "ok").stat().st_size == CHUNK * 2 + 10
    assert upload.asked and all(size == CHUNK for size in upload.asked)  # never the whole body at once
    with pytest.raises(PayloadTooLargeError) as refused:
        save_upload(io.BytesIO(b"x" * 1001), tmp_path / "big", max_bytes=1000)
    assert str(refused.value) == "upload is larger than the 1,000-byte limit"


@pytest.mark.parametrize("name", ["catalogue.csv", "catalogue.TXT", ""])
def test_a_csv_or_text_manifest_becomes_a_queued_job(make_services, tiny_embedder, name):
    services = make_services(tiny_embedder)
    report = services.intake.submit(name, io.BytesIO(MANIFEST), OWNER)
    assert report.state == "queued" and report.total == 1
    assert (services.settings.jobs_dir / report.job_id / "files" / "manifest.csv").read_bytes() == MANIFEST


def test_jobs_go_under_a_jobs_folder_made_on_demand(make_services, tiny_embedder, tmp_path):
    services = make_services(tiny_embedder)
    services.intake.jobs_dir = tmp_path / "not" / "yet" / "there"
    report = services.intake.submit("c.csv", io.BytesIO(MANIFEST), OWNER)
    assert (tmp_path / "not" / "yet" / "there" / report.job_id).is_dir()


def test_a_factory_cancels_its_own_job_and_cannot_see_anothers(make_services, tiny_embedder):
    services = make_services(tiny_embedder)
    report = services.intake.submit("c.csv", io.BytesIO(MANIFEST), OWNER)
    with pytest.raises(NotFoundError):
        services.intake.cancel(report.job_id, STRANGER)
    assert services.intake.cancel(report.job_id, OWNER).state == "cancelled"
    assert not (services.settings.jobs_dir / report.job_id).exists()  # a queued job's files go at once
