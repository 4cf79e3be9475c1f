"""The model's CPU, owned in one place: thread settings, admission of searches, micro-batching of their forward
passes, the bulk passes of ingest after them, and turn-taking between passes and searches' own CPU work.

Micro-batching: a batched pass costs far less per image than single passes (ViT-B-32 fp32 on 2 cores: 133 ms
for one image alone, ~80 ms per image in a batch of 4 or more). A search is admitted (`admit()` gives it a
`Ticket`) as early as possible, when its request arrives and before its upload is parsed; the batching thread
takes the first waiting search and, only while more admitted searches are still on their way, waits up to
`max_wait_s` for them, up to `max_batch` images. A lone search therefore never waits, and a search stops
holding batches back once it has its vectors.

Turn-taking (`policy.exclusive`: the model's threads hold every core): searches' CPU work (decoding, FAISS,
database, verification; wrapped in `cpu_turn()`) waits while a pass runs, and the next pass waits, up to
`max_phase_wait_s`, until the work in progress is done. Work beside a pass preempts one of torch's OpenMP
threads and the other then stalls at every barrier: under load the model ran at about half its bare rate.

Bulk passes (`embed_bulk`: ingest, uploads) run on the same thread, after any waiting searches.

One thread for every torch call of the process: the model's loading (`start_with(loader)`), its passes and its
text encodings. torch's OpenMP keeps a pool of worker threads per thread that calls it, and once the process
has more such threads than cores, libgomp stops spinning between parallel regions and sleeps instead (its
"throttled" wait). A pool left behind by the thread that loaded the model, or by a request thread that encoded
a text, made every later pass slower: ViT-B-32 bf16 on 2 cores took 30 ms a pass instead of 20.
"""

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from embeddings.base import Embedder

log = logging.getLogger(__name__)

# Python hands the GIL over every 5 ms by default. An eager forward issues hundreds of small ops from one
# thread, each needing the GIL back from decode threads; 0.5 ms cut that convoy from a 30% slowdown of the
# model to 2% (measured on ViT-B-32 bf16 with two reader threads, 2 cores).
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class SchedulerPolicy:
    cores: int  # cores the process may use (measured by the caller: affinity and CPU quota)
    torch_threads: int = 0  # 0: one per usable core
    max_batch: int = 16  # most search images in one forward pass
    max_wait_s: float = 0.05  # how long a forming batch waits for admitted searches on their way
    max_phase_wait_s: float = 0.5  # how long a pass waits for searches' CPU work in progress
    max_waiting: int = 64  # admitted searches without their vectors yet; more are refused, not queued

    @property
    def threads(self) -> int:
        return self.torch_threads or self.cores

    @property
    def exclusive(self) -> bool:
        """The model's threads hold every core, so its passes and other CPU work take turns."""
        return self.cores <= self.threads

    @property
    def read_ahead(self) -> bool:
        """There are cores beside the model's: ingest may read its next batch while a pass runs."""
        return self.cores > self.threads


class SchedulerBusy(RuntimeError):
    """Too many searches are waiting for the model: the caller should come back after `retry_after_s`."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(f"{waiting} searches are waiting for the model; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class SchedulerStats:
    batches: int  # forward passes run for searches
    images: int  # search images embedded
    busy_s: float  # seconds of those passes
    waiting: int = 0  # admitted searches without their vectors yet


class Ticket:
    """A search's place with the scheduler, from its arrival until it has its first vectors: while it holds
    one, a forming batch may wait for it. Releasing twice is harmless."""

    def __init__(self, scheduler: "ModelScheduler") -> None:
        self._scheduler = scheduler
        self.counted = True

    def release(self) -> None:
        self._scheduler._withdraw(self)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_Item = tuple[np.ndarray, "Future[np.ndarray]", bool]  # pixels, the caller's future, whether it holds a ticket
_Call = tuple[Callable[[], Any], "Future[Any]"]  # other model work (text), run on the model's thread


class ModelScheduler:
    """Built without a model, so requests can be admitted before it is loaded; `start(model)` begins serving.
    `on_batch(images, seconds)` hears of every search pass (metrics)."""

    def __init__(self, policy: SchedulerPolicy, on_batch: Callable[[int, float], None] | None = None) -> None:
        self.policy = policy
        self.on_batch = on_batch
        self.model: Embedder | None = None
        self._batches = 0
        self._images = 0
        self._busy_s = 0.0
        # One condition guards the queues and the counts below; every change to them notifies it.
        self._state = threading.Condition()
        self._searches: deque[_Item] = deque()
        self._bulk: deque[_Item] = deque()
        self._calls: deque[_Call] = deque()
        self._in_flight = 0  # admitted searches that have not had their vectors yet
        self._cpu_busy = 0  # searches inside cpu_turn()
        self._model_running = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self, model: Embedder) -> Embedder:
        """Start serving a model loaded elsewhere (tests). Services use start_with, so that the loading too runs on
        the model's thread."""
        return self.start_with(lambda: model)

    def start_with(self, loader: Callable[[], Embedder]) -> Embedder:
        """Set the thread counts, start the model's thread and load the model there (see the module's note);
        returns it once loaded. The loader's exception (a model that cannot load) is raised here."""
        torch.set_num_threads(self.policy.threads)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        loaded: Future[Embedder] = Future()
        self._thread = threading.Thread(target=self._loop, args=(loader, loaded), name="model-scheduler", daemon=True)
        self._thread.start()
        return loaded.result()

    @property
    def stats(self) -> SchedulerStats:
        return SchedulerStats(self._batches, self._images, round(self._busy_s, 3), self._in_flight)

    def admit(self) -> Ticket:
        """A search has arrived: batches may wait for it from now on. Never blocks: with `max_waiting` searches
        already admitted and not yet embedded, raises SchedulerBusy instead of letting the queue grow."""
        with self._state:
            if self._in_flight >= self.policy.max_waiting:
                # Each pass clears up to max_batch of them; a second is a fair first guess for a pass.
                raise SchedulerBusy(self._in_flight, 1 + self._in_flight // self.policy.max_batch)
            self._in_flight += 1
        return Ticket(self)

    def _withdraw(self, ticket: Ticket) -> None:
        with self._state:
            if ticket.counted:
                ticket.counted = False
                self._in_flight -= 1
                self._state.notify_all()

    @contextmanager
    def cpu_turn(self) -> Iterator[None]:
        """Wrap a search's CPU work (decode, search, verify); never a wait for vectors inside it, or the next pass
        waits for that work in vain. With an exclusive model, waits while a forward pass runs."""
        if not self.policy.exclusive:
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

    def embed(self, pixels: np.ndarray, ticket: Ticket | None = None) -> np.ndarray:
        """A search's images (n, 3, S, S) → (n, dim), kept together in one shared forward pass when they fit.
        The ticket stops holding batches back once the vectors are there."""
        counted = ticket is not None and ticket.counted
        try:
            return self._submit(self._searches, pixels, counted)
        finally:
            if ticket is not None:
                ticket.release()

    def embed_bulk(self, pixels: np.ndarray) -> np.ndarray:
        """Ingest's and uploads' images (n, 3, S, S) → (n, dim), in passes run after any waiting searches."""
        return self._submit(self._bulk, pixels, False)

    def embed_text(self, text: str) -> np.ndarray:
        """One text → its unit vector, encoded on the model's thread ahead of any pass that has not begun."""
        model = self._model()
        future: Future[np.ndarray] = Future()
        with self._state:
            if self._closed:
                raise RuntimeError("the model scheduler is closed")
            self._calls.append((lambda: model.embed_text([text])[0], future))
            self._state.notify_all()
        return future.result()

    def _submit(self, queue: deque[_Item], pixels: np.ndarray, counted: bool) -> np.ndarray:
        self._model()
        future: Future[np.ndarray] = Future()
        with self._state:
            if self._closed:
                raise RuntimeError("the model scheduler is closed")
            queue.append((pixels, future, counted))
            self._state.notify_all()
        return future.result()

    def _model(self) -> Embedder:
        if self.model is None:
            raise RuntimeError("the model scheduler has no model yet: call start(model)")
        return self.model

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop."""
        with self._state:
            self._closed = True
            self._state.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self, loader: Callable[[], Embedder], loaded: "Future[Embedder]") -> None:
        # Set again from the thread that runs the passes: OpenMP keeps part of its thread settings per calling
        # thread, and passes here ran slower without it. Measured in a service on 2 cores (effnet-lite0, one
        # image after 20 ms of other work, in blocks of passes): 51-57 ms a pass without this line, 41-45 with.
        torch.set_num_threads(self.policy.threads)
        try:
            self.model = loader()
        except BaseException as exc:  # the caller of start_with raises it; this thread ends
            loaded.set_exception(exc)
            return
        loaded.set_result(self.model)
        while True:
            with self._state:
                self._state.wait_for(lambda: self._calls or self._searches or self._bulk or self._closed)
                if not self._calls and (self._searches or self._bulk):
                    self._wait_for_company()  # ends early when a text arrives
                work: Callable[[], None]
                if self._calls:  # a text waits for no batch to form (its search may be one the batch waits for)
                    work = partial(self._call, *self._calls.popleft())
                elif self._searches or self._bulk:
                    searches = bool(self._searches)
                    batch = self._take_searches() if searches else [self._bulk.popleft()]
                    work = partial(self._run, batch, searches)
                else:  # closed, and nothing left to do
                    return
                self._model_running = True
            try:
                work()
            finally:
                with self._state:
                    self._model_running = False
                    self._state.notify_all()

    @staticmethod
    def _call(work: Callable[[], Any], future: "Future[Any]") -> None:
        try:
            future.set_result(work())
        except Exception as exc:  # the caller gets the error; the model's thread goes on
            future.set_exception(exc)

    def _wait_for_company(self) -> None:
        """Holding the lock, with work waiting: while more admitted searches are on their way, wait for them (up
        to max_wait_s); with an exclusive model, wait while searches' CPU work runs (up to max_phase_wait_s)."""
        policy, started = self.policy, time.monotonic()
        while True:
            queued = sum(len(pixels) for pixels, _, _ in self._searches)
            announced = sum(counted for _, _, counted in self._searches)
            waited = time.monotonic() - started
            deadlines = []
            if self._searches and self._in_flight > announced and waited < policy.max_wait_s:
                deadlines.append(policy.max_wait_s)
            if policy.exclusive and self._cpu_busy and waited < policy.max_phase_wait_s:
                deadlines.append(policy.max_phase_wait_s)
            if queued >= policy.max_batch or not deadlines or self._closed or self._calls:
                return
            self._state.wait(timeout=min(deadlines) - waited)

    def _take_searches(self) -> list[_Item]:
        """Waiting searches, as many as fit in one pass (the first always)."""
        batch = [self._searches.popleft()]
        images = len(batch[0][0])
        while self._searches and images + len(self._searches[0][0]) <= self.policy.max_batch:
            batch.append(self._searches.popleft())
            images += len(batch[-1][0])
        return batch

    def _run(self, batch: list[_Item], searches: bool) -> None:
        model = self._model()
        try:
            started = time.perf_counter()
            vectors = model.embed_pixels(np.concatenate([pixels for pixels, _, _ in batch]))
            seconds = time.perf_counter() - started
        except Exception as exc:  # every waiting request gets the error, none hangs
            log.exception("forward pass failed")
            for _, future, _ in batch:
                future.set_exception(exc)
            return
        if searches:
            self._batches += 1
            self._images += len(vectors)
            self._busy_s += seconds
            if self.on_batch is not None:
                try:  # a metric's failure must not take the model's thread (and every waiting request) with it
                    self.on_batch(len(vectors), seconds)
                except Exception:
                    log.exception("on_batch callback failed")
        start = 0
        for pixels, future, _ in batch:
            future.set_result(vectors[start : start + len(pixels)])
            start += len(pixels)
