"""A typed Python client for the SourceLens HTTP API (httpx; sync and async).

    from app.client import SourceLens

    with SourceLens("http://127.0.0.1:8000", key="sl_...") as lens:
        result = lens.search("photo.jpg", region="Yiwu", top_k=5)
        for factory in result.factories:
            print(factory.name, factory.match_words)

Results are the API's own response models (app.api.schemas); an error answer raises SourceLensError with
the server's status and message. `AsyncSourceLens` has the same methods, to await.

May import: app.api.schemas, app.core (and httpx, pydantic). Nothing of the server's internals.
"""

from app.client.asynchronous import AsyncSourceLens
from app.client.requests import Filters, Photo, SourceLensError
from app.client.synchronous import SourceLens

__all__ = ["AsyncSourceLens", "Filters", "Photo", "SourceLens", "SourceLensError"]
