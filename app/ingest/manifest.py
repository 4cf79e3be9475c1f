"""Read an ingest manifest (CSV) into validated rows; a bad row becomes a RowError, not an exception.

Columns: factory_id,factory_name,region,product_id,title,category,price,moq,image — `image` is a path
relative to the CSV or an http(s) URL; any other column becomes a product attribute. The file is read as a
stream and stops at `max_rows`, so an oversized manifest is refused without being held in memory.
"""

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import InvalidInputError
from app.core.ids import ID_PATTERN

KNOWN_COLUMNS = ("factory_id", "factory_name", "region", "product_id", "title", "category", "price", "moq", "image")
REQUIRED_COLUMNS = ("factory_id", "product_id", "image")
_ID = re.compile(ID_PATTERN)
MAX_FIELD = 2048
MAX_INT = 2**31 - 1  # the database's INTEGER column
MAX_COLUMNS = 64
# Longest value of each column that is stored in a column of that size.
FIELD_LIMITS = {"factory_name": 255, "region": 255, "title": 500, "category": 255}


@dataclass(frozen=True)
class ManifestRow:
    line: int
    factory_id: str
    product_id: str
    image: str
    factory_name: str = ""
    region: str = ""
    title: str = ""
    category: str = ""
    price: float | None = None
    moq: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ManifestLimits:
    max_rows: int = 100_000
    max_attributes_bytes: int = 16 * 1024  # the JSON of a row's extra columns


@dataclass(frozen=True)
class RowError:
    line: int
    image: str
    reason: str


def read_manifest(path: Path, limits: ManifestLimits = ManifestLimits()) -> list[ManifestRow | RowError]:
    try:
        # utf-8-sig: spreadsheets write a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return parse_rows(handle, limits)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path.name} is not UTF-8 text ({exc.reason})") from exc


def parse_manifest(text: str, limits: ManifestLimits = ManifestLimits()) -> list[ManifestRow | RowError]:
    return parse_rows(io.StringIO(text, newline=""), limits)


def parse_rows(lines: Iterable[str], limits: ManifestLimits) -> list[ManifestRow | RowError]:
    reader = csv.DictReader(lines)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as exc:
        raise InvalidInputError(f"manifest header: {exc}") from exc
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InvalidInputError(f"manifest lacks required column(s): {', '.join(missing)}; header is {header[:20]}")
    if len(header) > MAX_COLUMNS:
        raise InvalidInputError(f"manifest has {len(header)} columns; the limit is {MAX_COLUMNS}")
    reader.fieldnames = header
    rows: list[ManifestRow | RowError] = []
    try:
        for record in reader:
            if len(rows) == limits.max_rows:
                raise InvalidInputError(f"manifest has more than {limits.max_rows:,} rows; split it into several jobs")
            rows.append(parse_row(reader.line_num, record, limits.max_attributes_bytes))
    except csv.Error as exc:
        raise InvalidInputError(f"manifest line {reader.line_num}: {exc}") from exc
    return rows


def parse_row(
    line: int, record: dict[str, str | None], max_attributes_bytes: int = 16 * 1024
) -> ManifestRow | RowError:
    values = {key: (value or "").strip() for key, value in record.items() if key is not None}
    image = values.get("image", "")
    try:
        return ManifestRow(
            line=line,
            factory_id=_id(values, "factory_id"),
            product_id=_id(values, "product_id"),
            image=_required(values, "image"),
            factory_name=_text(values, "factory_name"),
            region=_text(values, "region"),
            title=_text(values, "title"),
            category=_text(values, "category"),
            price=_number(values.get("price", ""), "price", float),
            moq=_number(values.get("moq", ""), "moq", int),
            attributes=_attributes(values, max_attributes_bytes),
        )
    except ValueError as exc:
        return RowError(line, image, str(exc))


def _text(values: dict[str, str], name: str) -> str:
    value = values.get(name, "")
    if len(value) > FIELD_LIMITS[name]:
        raise ValueError(f"{name} is longer than {FIELD_LIMITS[name]} characters")
    return value


def _attributes(values: dict[str, str], max_bytes: int) -> dict[str, Any]:
    extra = {k: v for k, v in values.items() if k not in KNOWN_COLUMNS and v}
    if any(len(v) > MAX_FIELD for v in extra.values()):
        raise ValueError(f"an attribute value is longer than {MAX_FIELD} characters")
    if len(json.dumps(extra)) > max_bytes:
        raise ValueError(f"the row's attributes are larger than {max_bytes:,} bytes")
    return extra


def _required(values: dict[str, str], name: str) -> str:
    value = values.get(name, "")
    if not value:
        raise ValueError(f"{name} is empty")
    if len(value) > MAX_FIELD:
        raise ValueError(f"{name} is longer than {MAX_FIELD} characters")
    return value


def _id(values: dict[str, str], name: str) -> str:
    value = _required(values, name)
    if not _ID.match(value):
        raise ValueError(f"{name} {value!r} must be 1-64 letters, digits, '.', '_', ':' or '-'")
    return value


def _number(text: str, name: str, kind: type) -> Any:
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not {'a whole number' if kind is int else 'a number'}") from None
    in_range = 1 <= value <= MAX_INT if kind is int else math.isfinite(value) and value >= 0
    if not in_range:
        raise ValueError(f"{name} {text!r} is out of range")
    return value
