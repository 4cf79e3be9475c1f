"""The model scheduler: admission, micro-batching of searches, bulk passes after them, turn-taking with
searches' CPU work, thread settings, and failures that reach every waiting request."""

import sys
import threading
import time

import numpy as np
import pytest
import torch

from app.bootstrap import make_scheduler
from app.core.config import Settings
from embeddings.scheduler import GIL_SWITCH_INTERVAL_S, ModelScheduler, SchedulerPolicy


def pixels_for(embedder, count: int, seed: int = 0) -> np.ndarray:
    size = embedder.preprocess.size
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def started(model, **policy) -> ModelScheduler:
    scheduler = ModelScheduler(SchedulerPolicy(**{"cores": 2, "torch_threads": 2, **policy}))
    scheduler.start(model)
    return scheduler


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("cores", "torch_threads", "threads", "exclusive", "read_ahead"),
    [
        (2, 0, 2, True, False),  # one thread per core: the model holds every core
        (4, 2, 2, False, True),  # cores to spare beside the model
        (2, 4, 4, True, False),
    ],
)
def test_the_policy_follows_the_cores(cores, torch_threads, threads, exclusive, read_ahead):
    policy = SchedulerPolicy(cores=cores, torch_threads=torch_threads)
    assert (policy.threads, policy.exclusive, policy.read_ahead) == (threads, exclusive, read_ahead)


def test_starting_sets_the_model_threads_and_the_gil_interval(tiny_embedder, monkeypatch):
    monkeypatch.setattr("app.bootstrap.usable_cores", lambda: 3)
    before_threads, before_interval = torch.get_num_threads(), sys.getswitchinterval()
    try:
        scheduler = make_scheduler(Settings(torch_threads=0, search_batch_max=5, search_batch_wait_ms=20))
        assert (scheduler.policy.cores, scheduler.policy.max_batch, scheduler.policy.max_wait_s) == (3, 5, 0.02)
        scheduler.start(tiny_embedder)
        assert torch.get_num_threads() == 3 and sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S)
        scheduler.close()
        one = make_scheduler(Settings(torch_threads=1))
        one.start(tiny_embedder)
        assert torch.get_num_threads() == 1
        one.close()
    finally:
        torch.set_num_threads(before_threads)
        sys.setswitchinterval(before_interval)


def test_no_forward_pass_before_a_model_is_given(tiny_embedder):
    scheduler = ModelScheduler(SchedulerPolicy(cores=2))
    with scheduler.admit():  # admission needs no model
        pass
    with pytest.raises(RuntimeError, match="no model"):
        scheduler.embed(pixels_for(tiny_embedder, 1))
    scheduler.close()


def test_concurrent_searches_share_forward_passes_and_get_their_own_vectors(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=0.5)
    pixels = pixels_for(tiny_embedder, 12)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(12)

    def request(i: int) -> None:
        with scheduler.admit() as ticket:
            start.wait()
            results[i] = scheduler.embed(pixels[i : i + 1], ticket)[0]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    scheduler.close()
    expected = tiny_embedder.embed_pixels(pixels)
    np.testing.assert_allclose(np.stack([results[i] for i in range(12)]), expected, atol=2e-4)
    assert scheduler.stats.images == 12 and scheduler.stats.batches <= 4  # 12 requests, batches of up to 8


def test_one_searchs_images_stay_together_and_batches_stay_within_the_cap(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=4, max_wait_s=0.01)
    vectors = scheduler.embed(pixels_for(tiny_embedder, 3))
    assert vectors.shape == (3, tiny_embedder.dim) and scheduler.stats.batches == 1
    assert scheduler.embed(pixels_for(tiny_embedder, 6)).shape == (6, tiny_embedder.dim)  # alone, even if larger
    assert scheduler.stats == type(scheduler.stats)(2, 9, scheduler.stats.busy_s) and scheduler.stats.busy_s > 0
    scheduler.close()


def test_a_lone_search_does_not_wait_for_the_window(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=60)  # waiting would hang the test
    done = threading.Event()

    def request() -> None:
        with scheduler.admit() as ticket:
            scheduler.embed(pixels_for(tiny_embedder, 1), ticket)
        done.set()

    threading.Thread(target=request, daemon=True).start()
    assert done.wait(20)
    assert (scheduler.stats.batches, scheduler.stats.images) == (1, 1)
    scheduler.close()


def test_a_batch_waits_for_an_admitted_search_on_its_way(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=5)
    late = scheduler.admit()  # arrived, still uploading its photo
    first = threading.Thread(target=lambda: scheduler.embed(pixels_for(tiny_embedder, 1)), daemon=True)
    first.start()
    time.sleep(0.3)
    assert scheduler.stats.batches == 0  # the pass waits for the admitted search
    scheduler.embed(pixels_for(tiny_embedder, 1, seed=1), late)
    first.join(10)
    assert (scheduler.stats.batches, scheduler.stats.images) == (1, 2)  # both in one pass
    scheduler.close()


def test_a_search_that_has_its_vector_no_longer_holds_batches_back(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=60)  # waiting would hang the test
    first_embedded, second_done, release = threading.Event(), threading.Event(), threading.Event()

    def searching_on() -> None:  # embeds, then goes on searching and verifying, its request still open
        with scheduler.admit() as ticket:
            scheduler.embed(pixels_for(tiny_embedder, 1), ticket)
            first_embedded.set()
            release.wait(30)

    def second() -> None:
        with scheduler.admit() as ticket:
            scheduler.embed(pixels_for(tiny_embedder, 1, seed=1), ticket)
        second_done.set()

    threading.Thread(target=searching_on, daemon=True).start()
    assert first_embedded.wait(20)
    threading.Thread(target=second, daemon=True).start()
    assert second_done.wait(20)
    release.set()
    assert (scheduler.stats.batches, scheduler.stats.images) == (2, 2)
    scheduler.close()


class GatedModel:
    """Returns zero vectors; each forward pass waits for `release` and records what it ran."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.running = threading.Event()
        self.passes: list[int] = []
        self.fail = fail

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.passes.append(len(pixels))
        self.running.set()
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("model exploded")
        return np.zeros((len(pixels), 4), np.float32)


def test_a_failed_batch_fails_every_request_in_it():
    model = GatedModel(fail=True)
    scheduler = started(model, max_batch=8, max_wait_s=0.01)
    outcomes: dict[int, str] = {}

    def request(i: int) -> None:
        try:
            scheduler.embed(np.zeros((1, 3, 8, 8), np.float32))
            outcomes[i] = "vector"
        except RuntimeError as exc:
            outcomes[i] = str(exc)

    first = threading.Thread(target=request, args=(0,), daemon=True)
    first.start()  # its pass blocks on the gate; the next five queue up behind it as one batch
    assert model.running.wait(10)
    rest = [threading.Thread(target=request, args=(i,), daemon=True) for i in range(1, 6)]
    for thread in rest:
        thread.start()
    wait_until(lambda: len(scheduler._searches) == 5)
    model.release.set()
    for thread in [first, *rest]:
        thread.join(20)
        assert not thread.is_alive(), "a request of the failed batch was left waiting"
    assert outcomes == dict.fromkeys(range(6), "model exploded")
    assert model.passes == [1, 5]  # one failed pass for the first, one for the other five together
    scheduler.close()


def test_bulk_passes_run_after_waiting_searches():
    model = GatedModel()
    scheduler = started(model, max_batch=8, max_wait_s=0.01)
    blocker = threading.Thread(target=lambda: scheduler.embed_bulk(np.zeros((2, 3, 8, 8), np.float32)), daemon=True)
    blocker.start()
    assert model.running.wait(10)  # a bulk pass runs; then more bulk work and a search queue up
    bulk = threading.Thread(target=lambda: scheduler.embed_bulk(np.zeros((32, 3, 8, 8), np.float32)), daemon=True)
    bulk.start()
    wait_until(lambda: len(scheduler._bulk) == 1)
    search = threading.Thread(target=lambda: scheduler.embed(np.zeros((1, 3, 8, 8), np.float32)), daemon=True)
    search.start()
    wait_until(lambda: len(scheduler._searches) == 1)
    model.release.set()
    for thread in (blocker, bulk, search):
        thread.join(10)
    assert model.passes == [2, 1, 32]  # the search went before the bulk work queued ahead of it
    assert (scheduler.stats.batches, scheduler.stats.images) == (1, 1)  # bulk passes are not search stats
    scheduler.close()


def test_exclusive_passes_wait_for_cpu_work_in_progress(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=0.01, max_phase_wait_s=60)
    verifying, release, embedded = threading.Event(), threading.Event(), threading.Event()

    def verifying_search() -> None:
        with scheduler.cpu_turn():
            verifying.set()
            release.wait(30)

    def new_search() -> None:
        scheduler.embed(pixels_for(tiny_embedder, 1))
        embedded.set()

    threading.Thread(target=verifying_search, daemon=True).start()
    assert verifying.wait(10)
    threading.Thread(target=new_search, daemon=True).start()
    assert not embedded.wait(0.5) and scheduler.stats.batches == 0  # the pass waits for the verification
    release.set()
    assert embedded.wait(20) and scheduler.stats.batches == 1
    scheduler.close()


def test_exclusive_passes_wait_for_cpu_work_only_so_long(tiny_embedder):
    scheduler = started(tiny_embedder, max_batch=8, max_wait_s=0.01, max_phase_wait_s=0.2)
    with scheduler.cpu_turn():
        done = threading.Event()
        threading.Thread(
            target=lambda: (scheduler.embed(pixels_for(tiny_embedder, 1)), done.set()), daemon=True
        ).start()
        assert done.wait(20)  # while this turn still runs
    scheduler.close()


def test_cpu_work_waits_while_an_exclusive_pass_runs():
    model = GatedModel()
    scheduler = started(model, max_batch=8, max_wait_s=0.01)
    threading.Thread(target=lambda: scheduler.embed(np.zeros((1, 3, 8, 8), np.float32)), daemon=True).start()
    assert model.running.wait(10)
    entered = threading.Event()

    def decode() -> None:
        with scheduler.cpu_turn():
            entered.set()

    threading.Thread(target=decode, daemon=True).start()
    assert not entered.wait(0.5)  # the pass holds the cores
    model.release.set()
    assert entered.wait(10)
    scheduler.close()


def test_cpu_turns_never_wait_when_the_model_does_not_hold_every_core():
    model = GatedModel()
    scheduler = started(model, cores=4, torch_threads=2, max_batch=8, max_wait_s=0.01)
    threading.Thread(target=lambda: scheduler.embed(np.zeros((1, 3, 8, 8), np.float32)), daemon=True).start()
    assert model.running.wait(10)
    entered = threading.Event()

    def decode() -> None:
        with scheduler.cpu_turn():
            entered.set()

    threading.Thread(target=decode, daemon=True).start()
    assert entered.wait(5)  # while the pass still runs
    model.release.set()
    scheduler.close()


def test_a_closed_scheduler_refuses_new_work(tiny_embedder):
    scheduler = started(tiny_embedder)
    scheduler.close()
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.embed(pixels_for(tiny_embedder, 1))
