"""Micro-batching: concurrent single-image embeds become one batched forward pass.

A batched pass costs far less per image than single passes (ViT-B-32 fp32 on 2 cores: 133 ms for one image
alone, ~80 ms per image in a batch of 4 or more). Requests `announce()` themselves as early as they can (the
HTTP layer does so when a search arrives, before its upload is parsed); the batching thread takes the
first waiting image and, only while more announced requests are still on their way, waits up to
`max_wait_s` for them, up to `max_batch` images. A lone request therefore never waits.

When the model's threads hold every core (`exclusive`), searches' own CPU work (decoding, searching,
verifying: wrapped in `cpu_turn()`) and forward passes take turns: the work waits while a pass runs, and
the next pass waits, up to `max_phase_wait_s`, until the work in progress is done. Work beside a pass
preempts one of torch's OpenMP threads and the other then stalls at every barrier, so the pass lost about
twice the work's own CPU time: under load the model ran at about half its bare batched rate.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from embeddings.base import Embedder

log = logging.getLogger(__name__)


class _Announcement:
    counted = True  # still counted among the requests a forming batch waits for


_current: ContextVar[_Announcement | None] = ContextVar("announced_search", default=None)
_Item = tuple[np.ndarray, Future, bool]  # a request's pixels, its future, whether it was announced


class MicroBatcher:
    def __init__(
        self,
        embedder: Embedder,
        max_batch: int = 16,
        max_wait_s: float = 0.05,
        exclusive: bool = False,
        max_phase_wait_s: float = 0.5,
    ) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.exclusive = exclusive
        self.max_phase_wait_s = max_phase_wait_s
        self.batches = 0  # forward passes run, images embedded, seconds in the model: for metrics and tests
        self.images = 0
        self.busy_s = 0.0
        # One condition guards the queue and the counts below; every change to them notifies it.
        self._state = threading.Condition()
        self._pending: deque[_Item] = deque()
        self._in_flight = 0  # announced requests that have not had their vectors yet
        self._cpu_busy = 0  # searches inside cpu_turn()
        self._model_running = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    @contextmanager
    def announce(self) -> Iterator[None]:
        """Wrap a request from its arrival on, so batches wait for it. Never blocks. The request stops
        counting once it has its first vectors (see `embed_many`): batches must not wait for a request that
        is busy searching or verifying. Code run from inside the block sees it through a context variable,
        which the HTTP layer's thread pool carries over."""
        announcement = _Announcement()
        with self._state:
            self._in_flight += 1
        token = _current.set(announcement)
        try:
            yield
        finally:
            _current.reset(token)
            self._withdraw(announcement)

    def _withdraw(self, announcement: _Announcement) -> None:
        with self._state:
            if announcement.counted:
                announcement.counted = False
                self._in_flight -= 1
                self._state.notify_all()

    @contextmanager
    def cpu_turn(self) -> Iterator[None]:
        """Wrap a search's CPU work (decode, search, verify); never a wait for vectors inside it, or the
        next pass waits for that work in vain. In exclusive mode, waits while a forward pass runs."""
        if not self.exclusive:
            yield
            return
        with self._state:
            self._state.wait_for(lambda: not self._model_running)
            self._cpu_busy += 1
        try:
            yield
        finally:
            with self._state:
                self._cpu_busy -= 1
                self._state.notify_all()

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """One preprocessed image (3, S, S) → its unit vector, computed in a shared batch."""
        return self.embed_many(pixels[None])[0]

    def embed_many(self, pixels: np.ndarray) -> np.ndarray:
        """One request's images (n, 3, S, S) → (n, dim), kept together in one forward pass when they fit."""
        future: Future[np.ndarray] = Future()
        announcement = _current.get()
        counted = announcement is not None and announcement.counted
        with self._state:
            self._pending.append((pixels, future, counted))
            self._state.notify_all()
        try:
            return future.result()
        finally:
            if counted:
                self._withdraw(announcement)

    def close(self, timeout: float = 10.0) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._state:
                self._state.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                self._wait_for_company()
                batch = self._take_batch()
                self._model_running = True
            try:
                self._run(batch)
            finally:
                with self._state:
                    self._model_running = False
                    self._state.notify_all()

    def _wait_for_company(self) -> None:
        """Holding the lock, with a request waiting: wait while more announced requests are on their way
        (up to max_wait_s) or, in exclusive mode, while searches' CPU work runs (up to max_phase_wait_s)."""
        started = time.monotonic()
        while True:
            queued = sum(len(pixels) for pixels, _, _ in self._pending)
            announced = sum(counted for _, _, counted in self._pending)
            waited = time.monotonic() - started
            deadlines = []
            if self._in_flight > announced and waited < self.max_wait_s:
                deadlines.append(self.max_wait_s)
            if self.exclusive and self._cpu_busy and waited < self.max_phase_wait_s:
                deadlines.append(self.max_phase_wait_s)
            if queued >= self.max_batch or not deadlines or self._closed:
                return
            self._state.wait(timeout=min(deadlines) - waited)

    def _take_batch(self) -> list[_Item]:
        batch = [self._pending.popleft()]
        images = len(batch[0][0])
        while self._pending and images + len(self._pending[0][0]) <= self.max_batch:
            batch.append(self._pending.popleft())
            images += len(batch[-1][0])
        return batch

    def _run(self, batch: list[_Item]) -> None:
        try:
            started = time.perf_counter()
            vectors = self.embedder.embed_pixels(np.concatenate([pixels for pixels, _, _ in batch]))
            self.busy_s += time.perf_counter() - started
        except Exception as exc:  # every waiting request gets the error, none hangs
            log.exception("batched embedding failed")
            for _, future, _ in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.images += len(vectors)
        start = 0
        for pixels, future, _ in batch:
            future.set_result(vectors[start : start + len(pixels)])
            start += len(pixels)
