"""Catalogue archives: members checked from the central directory before anything is extracted."""

import zipfile

import pytest
from jobtools import zip_of

from app.core.errors import InvalidInputError
from app.ingest.archive import ZipLimits, check_members, extract_catalogue, find_manifest, safe_name

LIMITS = ZipLimits(max_total_bytes=10_000, max_files=3, max_ratio=10.0)
HEADER = b"factory_id,product_id,image\n"


def member(name: str, size: int, packed: int, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.file_size, info.compress_size, info.external_attr = size, packed, mode << 16
    return info


@pytest.mark.parametrize(
    "name", ["images/a.jpg", "a.jpg", "deep/er/still/a-b_c.1.jpg", "images/a:b.jpg", "my photos/mug 1.jpg"]
)
def test_safe_names(name):
    assert str(safe_name(name)) == name


@pytest.mark.parametrize(
    "name", ["/etc/x", "../x", "a/../../x", "a\\b.jpg", "c:x.jpg", "C:/x.jpg", "", ".", "a\nb.jpg", "a\x1fb.jpg"]
)
def test_unsafe_names_are_refused(name):
    with pytest.raises(InvalidInputError, match="unsafe"):
        safe_name(name)


def test_member_count_size_and_ratio_limits():
    check_members([member(f"{i}.jpg", 100, 100) for i in range(3)], LIMITS)  # at the count limit
    with pytest.raises(InvalidInputError, match="4 files; the limit is 3"):
        check_members([member(f"{i}.jpg", 100, 100) for i in range(4)], LIMITS)
    check_members([member("a.jpg", 10_000, 5_000)], LIMITS)  # at the size limit
    with pytest.raises(InvalidInputError, match="unpacks to 10,001 bytes"):
        check_members([member("a.jpg", 5_000, 5_000), member("b.jpg", 5_001, 5_001)], LIMITS)
    big = ZipLimits(max_total_bytes=10**9, max_files=3, max_ratio=10.0)
    check_members([member("a.jpg", 20_000_000, 2_000_000)], big)  # exactly 10x
    with pytest.raises(InvalidInputError, match="expands 11×"):
        check_members([member("a.jpg", 22_000_000, 2_000_000)], big)
    check_members([member("blank.csv", 60 * 1024, 1)], big)  # a small member may compress absurdly well
    with pytest.raises(InvalidInputError, match="expands"):  # but not a mebibyte of it
        check_members([member("blank.csv", 1024 * 1024, 1)], big)
    # Members each too small to be checked alone still add up: the archive's overall ratio is checked too.
    many = [member(f"{i}.jpg", 60 * 1024, 100) for i in range(3)]
    with pytest.raises(InvalidInputError, match="archive expands"):
        check_members(many, ZipLimits(max_total_bytes=10**9, max_files=10, max_ratio=10.0))
    with pytest.raises(InvalidInputError, match="symbolic link"):
        check_members([member("a.jpg", 10, 10, mode=0o120777)], LIMITS)


def test_the_manifest_is_found_at_the_top_or_in_one_folder(tmp_path):
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "manifest.csv").write_bytes(HEADER)
    assert find_manifest(tmp_path / "top") == tmp_path / "top" / "manifest.csv"
    for folder in ("one", "two"):
        (tmp_path / "nested" / folder).mkdir(parents=True)
    (tmp_path / "nested" / "one" / "manifest.csv").write_bytes(HEADER)
    assert find_manifest(tmp_path / "nested") == tmp_path / "nested" / "one" / "manifest.csv"
    (tmp_path / "nested" / "two" / "manifest.csv").write_bytes(HEADER)
    with pytest.raises(InvalidInputError, match="one folder"):
        find_manifest(tmp_path / "nested")  # two candidates: which one?


def test_names_that_repeat_or_clash_are_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="appears twice"):
        check_members([member("a.jpg", 10, 10), member("A.JPG", 10, 10)], LIMITS)
    archive = tmp_path / "clash.zip"
    archive.write_bytes(zip_of({"manifest.csv": HEADER, "images": b"a file", "images/a.jpg": b"jpeg"}))
    with pytest.raises(InvalidInputError, match="clashes"):
        extract_catalogue(archive, tmp_path / "out", ZipLimits(10_000, 10, 10.0))


def test_names_beyond_ascii_are_extracted_as_they_read(tmp_path):
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.csv", HEADER)
        info = zipfile.ZipInfo("images/caf\u00e9.jpg")
        archive.writestr(info, b"jpeg")  # written as UTF-8 with the flag; reread as such
    path = tmp_path / "c.zip"
    path.write_bytes(buffer.getvalue())
    extract_catalogue(path, tmp_path / "out", LIMITS)
    assert (tmp_path / "out" / "images" / "caf\u00e9.jpg").read_bytes() == b"jpeg"


def test_extraction_writes_members_under_the_destination(tmp_path):
    archive = tmp_path / "c.zip"
    archive.write_bytes(zip_of({"cat/manifest.csv": HEADER, "cat/images/a.jpg": b"jpeg", "cat/images/": b""}))
    manifest = extract_catalogue(archive, tmp_path / "out", LIMITS)
    assert manifest == tmp_path / "out" / "cat" / "manifest.csv"
    assert (tmp_path / "out" / "cat" / "images" / "a.jpg").read_bytes() == b"jpeg"
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InvalidInputError, match="not a valid ZIP"):
        extract_catalogue(garbage, tmp_path / "out2", LIMITS)


def test_one_bomb_among_honest_members_is_named_with_its_ratio():
    """The archive as a whole stays under the ratio (its other members do not compress), so it is the member's
    own check that refuses it, naming it and how far it expands."""
    big = ZipLimits(max_total_bytes=10**9, max_files=3, max_ratio=10.0)
    members = [member("bomb.csv", 2_000_000, 100), member("a.jpg", 300_000, 300_000)]
    with pytest.raises(InvalidInputError) as refused:
        check_members(members, big)
    assert str(refused.value) == "archive member 'bomb.csv' expands 20,000× (limit 10×); refused"
    # A member of exactly the small size may compress as well as it likes.
    check_members([member("blank.csv", 64 * 1024, 1), member("a.jpg", 300_000, 300_000)], big)


def test_the_whole_archives_ratio_is_told_even_when_almost_nothing_is_packed():
    limits = ZipLimits(max_total_bytes=10**9, max_files=10, max_ratio=10.0)
    with pytest.raises(InvalidInputError) as refused:
        check_members([member("a.csv", 60 * 1024, 0), member("b.csv", 60 * 1024, 1)], limits)
    assert str(refused.value) == "archive expands 122,880× (limit 10×)"
