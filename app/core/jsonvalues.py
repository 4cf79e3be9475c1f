"""Limits on JSON values that callers send (attributes, filters): size and nesting."""

import json
from typing import Any

from app.core.errors import InvalidInputError

MAX_DEPTH = 8


def check_json(value: Any, max_bytes: int, what: str) -> None:
    """Refuse a value whose JSON is larger than `max_bytes` or nested deeper than MAX_DEPTH."""
    if _depth(value) > MAX_DEPTH:
        raise InvalidInputError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > max_bytes:
        raise InvalidInputError(f"{what} is {size:,} bytes of JSON; the limit is {max_bytes:,}")


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:  # deep enough to refuse; no need to walk further
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
