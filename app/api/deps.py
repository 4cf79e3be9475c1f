"""Dependency aliases for route signatures."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from app.runtime import Runtime
from app.services.job_runner import JobRunner


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_job_runner(request: Request) -> JobRunner:
    return request.app.state.job_runner


JobRunnerDep = Annotated[JobRunner, Depends(get_job_runner)]


# Paging parameters shared by the list endpoints.
Offset = Annotated[int, Query(ge=0, description="How many rows to skip.")]
Limit = Annotated[int, Query(ge=1, le=500, description="How many rows to return.")]
