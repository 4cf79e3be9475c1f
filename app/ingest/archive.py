"""Unpack an uploaded catalogue ZIP, refusing hostile archives before a single byte is extracted.

Checked from the central directory first: member count, total size, each member's compression ratio,
names that are absolute, climb out with '..', use backslashes or drive letters, and symbolic links.
Extraction then counts real bytes too, since a member's declared size is enforced by zipfile's reader.
"""

import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.core.errors import InvalidInputError

MANIFEST = "manifest.csv"
SMALL_MEMBER = 64 * 1024  # below this a member may compress absurdly well (a blank CSV) and still be harmless


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int
    max_files: int
    max_ratio: float


def extract_catalogue(archive: Path, destination: Path, limits: ZipLimits) -> Path:
    """Extract a ZIP holding manifest.csv (at the top or in one folder) and images; returns the manifest path."""
    extract_members(archive, destination, limits)
    return find_manifest(destination)


def extract_members(archive: Path, destination: Path, limits: ZipLimits) -> list[PurePosixPath]:
    """Every file of the ZIP under `destination`, after the checks; returns their names, in the archive's order."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            check_members(members, limits)
            for info in members:
                _extract(zf, info, destination)
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(f"not a valid ZIP archive ({exc})") from exc
    except (NotImplementedError, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise InvalidInputError(f"the archive cannot be read ({exc})") from exc
    return [safe_name(info.filename) for info in members]


def check_members(members: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(members) > limits.max_files:
        raise InvalidInputError(f"archive has {len(members):,} files; the limit is {limits.max_files:,}")
    total = sum(info.file_size for info in members)
    if total > limits.max_total_bytes:
        raise InvalidInputError(f"archive unpacks to {total:,} bytes; the limit is {limits.max_total_bytes:,}")
    # Many small members each under the per-member check would still add up: the archive as a whole too.
    packed = sum(info.compress_size for info in members)
    if total > SMALL_MEMBER and total > limits.max_ratio * max(packed, 1):
        raise InvalidInputError(f"archive expands {total / max(packed, 1):,.0f}× (limit {limits.max_ratio:g}×)")
    seen: set[str] = set()
    for info in members:
        name = safe_name(info.filename).as_posix()
        if name.casefold() in seen:
            raise InvalidInputError(f"archive member {info.filename!r} appears twice; refused")
        seen.add(name.casefold())
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidInputError(f"archive member {info.filename!r} is a symbolic link; refused")
        if info.file_size > SMALL_MEMBER and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise InvalidInputError(
                f"archive member {info.filename!r} expands {ratio:,.0f}× (limit {limits.max_ratio:g}×); refused"
            )


def safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    control = any(ord(char) < 32 for char in name)
    if control or not path.parts or "\\" in name or name.startswith("/") or ":" in path.parts[0] or ".." in path.parts:
        raise InvalidInputError(f"archive member name {name!r} is unsafe (absolute or escaping); refused")
    return path


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path) -> None:
    target = destination.joinpath(*safe_name(info.filename).parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1024 * 1024)  # pragma: no mutate (a buffer size: the same bytes)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:  # "a" as a file and as a folder
        raise InvalidInputError(f"archive member {info.filename!r} clashes with another member's path") from exc


def find_manifest(root: Path) -> Path:
    if (root / MANIFEST).is_file():
        return root / MANIFEST
    candidates = sorted(root.glob(f"*/{MANIFEST}"))
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidInputError(f"the archive must hold {MANIFEST} at its top level or in one folder")
