"""The model scheduler: admission, micro-batching of searches, bulk passes after them, turn-taking with
searches' CPU work, thread settings, and failures that reach every waiting request."""

import contextlib
import sys
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest
import torch

from app.bootstrap import make_scheduler
from app.core.config import Settings
from embeddings import ModelLoadError
from embeddings.scheduler import GIL_SWITCH_INTERVAL_S, ModelScheduler, SchedulerBusy, SchedulerPolicy


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
    with pytest.raises(RuntimeError, match=r"^the model scheduler has no model yet: call start\(model\)$"):
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
    with pytest.raises(RuntimeError, match=r"^the model scheduler is closed$"):
        scheduler.embed(pixels_for(tiny_embedder, 1))


class EchoModel(GatedModel):
    """A GatedModel whose vectors echo each image's mark (see `marked`), so every caller can tell its own."""

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        super().embed_pixels(pixels)
        return pixels[:, 0, 0, :4].copy()


def marked(*marks: int) -> np.ndarray:
    """Tiny images, each filled with its mark."""
    return np.stack([np.full((3, 8, 8), mark, np.float32) for mark in marks])


def echoed(*marks: int) -> np.ndarray:
    return np.repeat(np.array(marks, np.float32)[:, None], 4, axis=1)


@pytest.mark.parametrize(("max_waiting", "max_batch", "retry_after_s"), [(5, 2, 3), (4, 16, 1)])
def test_admission_refuses_searches_beyond_the_waiting_limit_with_a_retry_hint(max_waiting, max_batch, retry_after_s):
    scheduler = ModelScheduler(SchedulerPolicy(cores=2, max_batch=max_batch, max_waiting=max_waiting))
    tickets = [scheduler.admit() for _ in range(max_waiting)]
    assert scheduler.stats.waiting == max_waiting
    with pytest.raises(SchedulerBusy) as refused:
        scheduler.admit()
    # a pass clears up to max_batch of the waiting searches: one second for each pass, and one more
    assert refused.value.retry_after_s == retry_after_s and isinstance(refused.value.retry_after_s, int)
    assert str(refused.value) == f"{max_waiting} searches are waiting for the model; retry in {retry_after_s}s"
    assert scheduler.stats.waiting == max_waiting  # a refused search is not counted
    tickets[0].release()
    tickets[0].release()  # releasing twice is harmless
    assert scheduler.stats.waiting == max_waiting - 1
    tickets[0] = scheduler.admit()  # room for one again
    with pytest.raises(SchedulerBusy):
        scheduler.admit()
    for ticket in tickets:
        ticket.release()
    assert scheduler.stats.waiting == 0
    scheduler.close()


def test_a_search_whose_request_went_away_stops_holding_batches_back_but_the_others_still_do():
    model = EchoModel()
    model.release.set()
    scheduler = started(model, max_batch=8, max_wait_s=60)  # waiting out the window would hang the test
    gone, late = scheduler.admit(), scheduler.admit()
    gone.release()  # its client hung up before its upload was read
    results: dict[str, np.ndarray] = {}
    early = threading.Thread(target=lambda: results.update(early=scheduler.embed(marked(1))), daemon=True)
    early.start()
    wait_until(lambda: len(scheduler._searches) == 1)
    assert not model.running.wait(0.3)  # the pass still waits for the late search, not for the one gone
    results["late"] = scheduler.embed(marked(2, 3), late)
    early.join(10)
    assert model.passes == [3]  # both in one pass
    np.testing.assert_array_equal(results["early"], echoed(1))
    np.testing.assert_array_equal(results["late"], echoed(2, 3))
    assert scheduler.stats.waiting == 0
    scheduler.close()


def test_a_pass_takes_the_waiting_searches_in_order_while_they_fit_within_the_cap():
    model = EchoModel()
    scheduler = started(model, max_batch=4, max_wait_s=0.01)
    results: dict[str, np.ndarray] = {}
    threads: list[threading.Thread] = []

    def search(name: str, marks: list[int]) -> None:
        thread = threading.Thread(target=lambda: results.update({name: scheduler.embed(marked(*marks))}), daemon=True)
        thread.start()
        threads.append(thread)

    searches = {"a": [1, 2], "b": [3, 4], "c": [5, 6, 7], "d": [8]}
    search("blocker", [0])
    assert model.running.wait(10)  # its pass holds the model while the others queue up, in order
    for queued, (name, marks) in enumerate(searches.items(), 1):
        search(name, marks)
        wait_until(lambda queued=queued: len(scheduler._searches) == queued)
    model.release.set()
    for thread in threads:
        thread.join(10)
    assert model.passes == [1, 4, 4]  # a and b fill the cap exactly; c does not fit beside them, d fits beside c
    for name, marks in {"blocker": [0], **searches}.items():
        np.testing.assert_array_equal(results[name], echoed(*marks))
    assert (scheduler.stats.batches, scheduler.stats.images) == (3, 9)
    scheduler.close()


class SlowEchoModel(EchoModel):
    """An EchoModel whose passes take 20 ms, long enough to be told from one another in the stats."""

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(0.02)
        return super().embed_pixels(pixels)


def test_on_batch_hears_of_every_search_pass_and_not_of_bulk_passes():
    model = SlowEchoModel()
    model.release.set()
    heard: list[tuple] = []
    policy = SchedulerPolicy(cores=2, torch_threads=2, max_batch=8, max_wait_s=0.01)
    scheduler = ModelScheduler(policy, on_batch=lambda *args: heard.append(args))
    scheduler.start(model)
    np.testing.assert_array_equal(scheduler.embed(marked(1, 2, 3)), echoed(1, 2, 3))
    np.testing.assert_array_equal(scheduler.embed_bulk(marked(4, 5)), echoed(4, 5))
    np.testing.assert_array_equal(scheduler.embed(marked(6)), echoed(6))
    scheduler.close()
    assert [images for images, _ in heard] == [3, 1]  # (images, seconds) of each search pass
    assert all(0.02 <= seconds < 5 for _, seconds in heard)  # each pass's own duration
    assert sum(seconds for _, seconds in heard) == pytest.approx(scheduler.stats.busy_s, abs=2e-3)  # summed


def test_bulk_embedding_returns_each_callers_vectors_in_one_pass():
    model = EchoModel()
    scheduler = started(model, max_batch=2, max_wait_s=0.01)
    results: dict[str, np.ndarray] = {}
    first = threading.Thread(target=lambda: results.update(first=scheduler.embed_bulk(marked(1))), daemon=True)
    first.start()
    assert model.running.wait(10)
    second = threading.Thread(target=lambda: results.update(second=scheduler.embed_bulk(marked(2, 3, 4))), daemon=True)
    second.start()
    wait_until(lambda: len(scheduler._bulk) == 1)
    model.release.set()
    first.join(10)
    second.join(10)
    assert model.passes == [1, 3]  # bulk work is not split by the search cap, nor merged with other bulk work
    np.testing.assert_array_equal(results["first"], echoed(1))
    np.testing.assert_array_equal(results["second"], echoed(2, 3, 4))
    assert scheduler.stats == type(scheduler.stats)(0, 0, 0.0, 0)
    scheduler.close()


class ThreadRecordingModel(EchoModel):
    """Notes the thread of every call that would run torch: its loading, passes and text encodings."""

    def __init__(self, threads: list[str]) -> None:
        threads.append(threading.current_thread().name)
        super().__init__()
        self.release.set()
        self.threads = threads

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        return super().embed_pixels(pixels)

    def embed_text(self, texts) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if texts == ["fail"]:
            raise ValueError("cannot encode that")
        return np.ones((len(texts), 3), np.float32)


def test_the_model_is_loaded_and_runs_and_encodes_text_on_the_schedulers_thread_alone():
    threads: list[str] = []
    scheduler = ModelScheduler(SchedulerPolicy(cores=2, torch_threads=2))
    with pytest.raises(RuntimeError, match="no model"):
        scheduler.embed_text("a red chair")
    model = scheduler.start_with(lambda: ThreadRecordingModel(threads))
    assert scheduler.model is model
    searches = [threading.Thread(target=scheduler.embed, args=(marked(n),)) for n in range(3)]
    for thread in searches:
        thread.start()
    np.testing.assert_array_equal(scheduler.embed_text("a red chair"), np.ones(3))
    scheduler.embed_bulk(marked(7))
    for thread in searches:
        thread.join()
    with pytest.raises(ValueError, match="cannot encode"):  # a failing text fails its caller, not the thread
        scheduler.embed_text("fail")
    np.testing.assert_array_equal(scheduler.embed_text("a cup"), np.ones(3))
    scheduler.close()
    assert len(threads) >= 1 + 2 + 3 and set(threads) == {"model-scheduler"}
    assert scheduler.stats.images == 3  # texts are no search passes


def test_a_text_is_encoded_while_a_batch_waits_for_the_search_it_belongs_to():
    # The text's search holds a ticket: a batch forming would wait for it, and the search waits for its text.
    scheduler = started(ThreadRecordingModel([]), max_wait_s=5.0)
    ticket = scheduler.admit()
    other = threading.Thread(target=scheduler.embed, args=(marked(1),))
    other.start()
    wait_until(lambda: len(scheduler._searches) == 1)
    time.sleep(0.3)  # the batch is forming by now, waiting up to 5 s for the ticket's search
    began = time.monotonic()
    scheduler.embed_text("a red chair")
    assert time.monotonic() - began < 2.0  # not the rest of the window
    scheduler.embed(marked(2), ticket)
    other.join()
    scheduler.close()


def test_a_model_that_cannot_load_fails_start_with_its_own_error():
    def cannot_load():
        raise ModelLoadError("cannot load model x: no weights")

    scheduler = ModelScheduler(SchedulerPolicy(cores=2))
    with pytest.raises(ModelLoadError, match="no weights"):
        scheduler.start_with(cannot_load)
    assert scheduler.model is None
    with pytest.raises(RuntimeError, match="no model"):
        scheduler.embed(np.zeros((1, 3, 4, 4), np.float32))
    scheduler.close()


def test_start_runs_one_daemon_thread_named_model_scheduler_and_close_stops_it():
    before = set(threading.enumerate())
    scheduler = started(EchoModel())
    new = [thread for thread in threading.enumerate() if thread not in before]
    assert [(thread.name, thread.daemon) for thread in new] == [("model-scheduler", True)]  # never blocks exit
    scheduler.close()
    assert not new[0].is_alive()


def test_close_finishes_what_is_queued_then_stops():
    model = EchoModel()
    scheduler = started(model, max_batch=8, max_wait_s=0.01)
    results: dict[str, np.ndarray] = {}
    running = threading.Thread(target=lambda: results.update(running=scheduler.embed(marked(1))), daemon=True)
    running.start()
    assert model.running.wait(10)
    queued = [
        threading.Thread(target=lambda: results.update(search=scheduler.embed(marked(2))), daemon=True),
        threading.Thread(target=lambda: results.update(bulk=scheduler.embed_bulk(marked(3, 4))), daemon=True),
    ]
    for thread in queued:
        thread.start()
    wait_until(lambda: len(scheduler._searches) == 1 and len(scheduler._bulk) == 1)
    closer = threading.Thread(target=scheduler.close, daemon=True)
    closer.start()
    wait_until(lambda: scheduler._closed)
    with pytest.raises(RuntimeError, match="closed"):
        scheduler.embed(marked(5))
    model.release.set()
    for thread in [closer, running, *queued]:
        thread.join(10)
        assert not thread.is_alive()
    assert not scheduler._thread.is_alive()
    assert model.passes == [1, 1, 2]
    for name, marks in {"running": [1], "search": [2], "bulk": [3, 4]}.items():
        np.testing.assert_array_equal(results[name], echoed(*marks))


def test_close_gives_up_waiting_for_a_stuck_pass_after_its_timeout():
    model = EchoModel()
    scheduler = started(model, max_batch=8, max_wait_s=0.01)
    try:
        threading.Thread(target=lambda: scheduler.embed(marked(1)), daemon=True).start()
        assert model.running.wait(10)
        closed = threading.Event()
        threading.Thread(target=lambda: (scheduler.close(timeout=0.2), closed.set()), daemon=True).start()
        assert closed.wait(5)  # while the pass is still stuck
        assert scheduler._thread.is_alive()
    finally:
        model.release.set()
    scheduler._thread.join(10)
    assert not scheduler._thread.is_alive()


def test_close_waits_ten_seconds_for_the_model_thread_by_default(monkeypatch):
    scheduler = started(EchoModel())
    joined: list[float | None] = []
    join = scheduler._thread.join
    monkeypatch.setattr(scheduler._thread, "join", lambda timeout=None: (joined.append(timeout), join(timeout))[1])
    scheduler.close()
    assert joined == [10.0]


def test_a_failing_on_batch_callback_leaves_no_request_waiting(monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the model thread may die of it: keep it quiet
    futures: list[Future] = []

    class Recorded(Future):  # so that the test can free whatever request it leaves waiting
        def __init__(self) -> None:
            super().__init__()
            futures.append(self)

    monkeypatch.setattr("embeddings.scheduler.Future", Recorded)
    model = EchoModel()
    model.release.set()

    def on_batch(images: int, seconds: float) -> None:
        raise ValueError("metrics broke")

    scheduler = ModelScheduler(SchedulerPolicy(cores=2, torch_threads=2, max_wait_s=0.01), on_batch)
    scheduler.start(model)
    requests: list[threading.Thread] = []

    def answered(call) -> bool:
        done = threading.Event()

        def request() -> None:
            with contextlib.suppress(Exception):  # vectors or an error: either is an answer
                call()
            done.set()

        requests.append(threading.Thread(target=request, daemon=True))
        requests[-1].start()
        return done.wait(2)

    try:
        assert answered(lambda: scheduler.embed(marked(1)))
        assert answered(lambda: scheduler.embed_bulk(marked(2)))  # and the scheduler still serves
    finally:
        for future in futures:
            if not future.done():
                future.set_exception(RuntimeError("abandoned by the test"))
        for thread in requests:
            thread.join(10)
        scheduler.close()
