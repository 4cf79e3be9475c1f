"""/api/v1/saved-searches: a photo to watch. Confident matches on catalogue images added later are listed at
/{id}/matches and, with a webhook_url, POSTed there. For any API key; each key sees its own."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Response, UploadFile, status

from app.api.deps import SavedDep, SettingsDep
from app.api.schemas import SavedMatchRead, SavedSearchRead
from app.api.security import ReadCaller
from app.api.uploads import read_upload

router = APIRouter(prefix="/api/v1/saved-searches", tags=["saved searches"])
SavedId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A saved search's id.")]


@router.post(
    "",
    response_model=SavedSearchRead,
    status_code=status.HTTP_201_CREATED,
    responses={401: {"description": "No API key"}, 422: {"description": "Not a usable photo or webhook URL"}},
)
def create_saved_search(
    saved: SavedDep,
    settings: SettingsDep,
    caller: ReadCaller,
    image: Annotated[UploadFile, File(description="The product photo to watch for.")],
    name: Annotated[str, Form(min_length=1, max_length=255, description="What it is, for you.")],
    webhook_url: Annotated[
        str | None, Form(max_length=2048, description="Where each new match is POSTed as JSON (public http(s)).")
    ] = None,
) -> SavedSearchRead:
    photo = read_upload(image, settings.max_upload_bytes)
    return SavedSearchRead.model_validate(saved.create(photo, name, webhook_url, caller), from_attributes=True)


@router.get("", response_model=list[SavedSearchRead])
def list_saved_searches(saved: SavedDep, caller: ReadCaller) -> list[SavedSearchRead]:
    return [SavedSearchRead.model_validate(s, from_attributes=True) for s in saved.recent(caller)]


@router.get("/{saved_id}", response_model=SavedSearchRead)
def read_saved_search(saved: SavedDep, caller: ReadCaller, saved_id: SavedId) -> SavedSearchRead:
    return SavedSearchRead.model_validate(saved.get(saved_id, caller), from_attributes=True)


@router.get("/{saved_id}/matches", response_model=list[SavedMatchRead])
def saved_search_matches(saved: SavedDep, caller: ReadCaller, saved_id: SavedId) -> list[SavedMatchRead]:
    """The confident matches found since the search was saved, oldest first: poll this."""
    return [SavedMatchRead.model_validate(m, from_attributes=True) for m in saved.matches(saved_id, caller)]


@router.delete("/{saved_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_saved_search(saved: SavedDep, caller: ReadCaller, saved_id: SavedId) -> Response:
    saved.delete(saved_id, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
