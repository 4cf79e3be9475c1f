"""Read an uploaded file with a size cap."""

from fastapi import UploadFile

from embeddings import ImageTooLarge, NotAnImage


def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"upload is larger than the {max_bytes:,}-byte limit")
    if not data:
        raise NotAnImage("the uploaded file is empty")
    return data
