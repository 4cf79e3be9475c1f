"""Read an ingest manifest (CSV) into validated rows; a bad row becomes a RowError, not an exception.

Columns: factory_id,factory_name,region,product_id,title,category,price,moq,image — `image` is a path
relative to the CSV or an http(s) URL; any other column becomes a product attribute.
"""

import csv
import io
import math
import re
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
class RowError:
    line: int
    image: str
    reason: str


def read_manifest(path: Path) -> list[ManifestRow | RowError]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # utf-8-sig: spreadsheets write a byte-order mark
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse_manifest(text)


def parse_manifest(text: str) -> list[ManifestRow | RowError]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InvalidInputError(f"manifest lacks required column(s): {', '.join(missing)}; header is {header}")
    reader.fieldnames = header
    rows: list[ManifestRow | RowError] = []
    try:
        for record in reader:
            rows.append(parse_row(reader.line_num, record))
    except csv.Error as exc:
        raise InvalidInputError(f"manifest line {reader.line_num}: {exc}") from exc
    return rows


def parse_row(line: int, record: dict[str, str | None]) -> ManifestRow | RowError:
    values = {key: (value or "").strip() for key, value in record.items() if key is not None}
    image = values.get("image", "")
    try:
        return ManifestRow(
            line=line,
            factory_id=_id(values, "factory_id"),
            product_id=_id(values, "product_id"),
            image=_required(values, "image"),
            factory_name=values.get("factory_name", ""),
            region=values.get("region", ""),
            title=values.get("title", ""),
            category=values.get("category", ""),
            price=_number(values.get("price", ""), "price", float),
            moq=_number(values.get("moq", ""), "moq", int),
            attributes={k: v for k, v in values.items() if k not in KNOWN_COLUMNS and v},
        )
    except ValueError as exc:
        return RowError(line, image, str(exc))


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
