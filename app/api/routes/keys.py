"""/api/v1/keys: API keys (admin only). A key's token is in the creation response, and nowhere ever after."""

from typing import Annotated

from fastapi import APIRouter, Path, status

from app.api.deps import KeysDep
from app.api.mapping import key_read
from app.api.schemas import KeyCreate, KeyCreatedRead, KeyRead
from app.api.security import AdminCaller

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])
KeyId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.post("", response_model=KeyCreatedRead, status_code=status.HTTP_201_CREATED)
def create_key(keys: KeysDep, _caller: AdminCaller, body: KeyCreate) -> KeyCreatedRead:
    new = keys.create(body.name, body.role, body.factory_ids)
    return KeyCreatedRead(**key_read(new.info).model_dump(), token=new.token)


@router.get("", response_model=list[KeyRead])
def list_keys(keys: KeysDep, _caller: AdminCaller) -> list[KeyRead]:
    return [key_read(key) for key in keys.list()]


@router.delete("/{key_id}", response_model=KeyRead)
def revoke_key(keys: KeysDep, _caller: AdminCaller, key_id: KeyId) -> KeyRead:
    """Revoke a key: it stops working at once. Its record stays, for the audit trail."""
    return key_read(keys.revoke(key_id))
