"""The requests the clients send, built once for both (sync and async), and their answers read back.

Each method of the clients is `request = build(...)`, then send it, then `read(response, Model)`: the clients
only differ in how they send.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter

API = "/api/v1"

Photo = str | Path | bytes  # a path to an image file, or its bytes


class SourceLensError(Exception):
    """The server answered with an error: its HTTP status, its message and, for 429 and 503, when to retry."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Filters:
    """What a search may be narrowed to (all optional)."""

    region: str | None = None
    category: str | None = None
    max_moq: int | None = None
    min_price: float | None = None
    max_price: float | None = None
    factory_attributes: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, str]:
        values = {k: v for k, v in asdict(self).items() if v not in (None, {}) and k != "factory_attributes"}
        if self.factory_attributes:
            values["factory_attributes"] = json.dumps(self.factory_attributes)
        return {k: str(v) for k, v in values.items()}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] | None = None  # form fields (a value may be a list: one field per item)
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    json: Any = None

    def kwargs(self) -> dict[str, Any]:
        return {"params": self.params or None, "data": self.data, "files": self.files, "json": self.json}


def photo_file(photo: Photo, number: int = 0) -> tuple[str, bytes, str]:
    if isinstance(photo, bytes):
        return (f"photo{number}.jpg", photo, "application/octet-stream")
    path = Path(photo)
    return (path.name, path.read_bytes(), "application/octet-stream")


def search_request(
    photos: list[Photo],
    *,
    text: str | None = None,
    boxes: list[str | None] | None = None,
    filters: Filters | None = None,
    top_k: int | None = None,
    offset: int = 0,
    min_score: float | None = None,
    include_weak: bool = False,
    verify: bool = True,
    auto_crop: bool = True,
    per_subject: bool = False,
    urls: list[str] | None = None,
) -> Request:
    if boxes is not None and len(boxes) != len(photos) + len(urls or []):
        raise ValueError(f"{len(boxes)} boxes for {len(photos)} photos: give one per photo (None for none)")
    data: dict[str, Any] = {
        **(filters or Filters()).fields(),
        "offset": str(offset),
        "include_weak": str(include_weak).lower(),
        "verify": str(verify).lower(),
        "auto_crop": str(auto_crop).lower(),
        "per_subject": str(per_subject).lower(),
    }
    if top_k is not None:
        data["top_k"] = str(top_k)
    if min_score is not None:
        data["min_score"] = str(min_score)
    if text:
        data["text"] = text
    if boxes:
        data["bbox"] = [box or "" for box in boxes]
    if urls:
        data["image_url"] = list(urls)
    files = [("image", photo_file(photo, n)) for n, photo in enumerate(photos)]
    return Request("POST", f"{API}/search", data=data, files=files or None)


def similar_request(image_id: int, filters: Filters | None, top_k: int | None, offset: int) -> Request:
    params = {**(filters or Filters()).fields(), "offset": str(offset)}
    if top_k is not None:
        params["top_k"] = str(top_k)
    return Request("GET", f"{API}/images/{image_id}/similar", params=params)


def read(response: httpx.Response, model: Any) -> Any:
    """The body as `model` (a pydantic model, or a type such as list[Model]); SourceLensError for an error."""
    if response.is_error:
        raise error_of(response)
    if model is None or response.status_code == 204:
        return None
    if model is str:
        return response.text
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_validate(response.json())
    return TypeAdapter(model).validate_python(response.json())


def error_of(response: httpx.Response) -> SourceLensError:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    message = str(detail) if detail else (response.text[:200] or response.reason_phrase)
    retry = response.headers.get("Retry-After")
    return SourceLensError(response.status_code, message, float(retry) if retry else None)
