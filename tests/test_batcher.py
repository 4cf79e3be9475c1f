"""Micro-batching of concurrent searches."""

import threading

import numpy as np

from embeddings.batcher import MicroBatcher


def pixels_for(embedder, count: int, seed: int = 0) -> np.ndarray:
    size = embedder.preprocess.size
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


def test_concurrent_requests_share_forward_passes_and_get_their_own_vectors(tiny_embedder):
    batcher = MicroBatcher(tiny_embedder, max_batch=8, max_wait_s=0.5)
    pixels = pixels_for(tiny_embedder, 12)
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(12)

    def request(i: int) -> None:
        with batcher.announce():
            start.wait()
            results[i] = batcher.embed(pixels[i])

    threads = [threading.Thread(target=request, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    batcher.close()
    expected = tiny_embedder.embed_pixels(pixels)
    np.testing.assert_allclose(np.stack([results[i] for i in range(12)]), expected, atol=2e-4)
    assert batcher.images == 12 and batcher.batches <= 4  # 12 requests, batches of up to 8


def test_a_lone_request_does_not_wait_for_the_window(tiny_embedder):
    batcher = MicroBatcher(tiny_embedder, max_batch=8, max_wait_s=60)  # waiting would hang the test
    done = threading.Event()

    def request() -> None:
        with batcher.announce():
            batcher.embed(pixels_for(tiny_embedder, 1)[0])
        done.set()

    threading.Thread(target=request, daemon=True).start()
    assert done.wait(20)
    assert (batcher.batches, batcher.images) == (1, 1)
    batcher.close()


def test_a_request_that_has_its_vector_no_longer_holds_batches_back(tiny_embedder):
    batcher = MicroBatcher(tiny_embedder, max_batch=8, max_wait_s=60)  # waiting would hang the test
    first_embedded, second_done, release = threading.Event(), threading.Event(), threading.Event()

    def searching_on() -> None:  # embeds, then goes on searching and verifying inside its announcement
        with batcher.announce():
            batcher.embed(pixels_for(tiny_embedder, 1)[0])
            first_embedded.set()
            release.wait(30)

    def second() -> None:
        with batcher.announce():
            batcher.embed(pixels_for(tiny_embedder, 1, seed=1)[0])
        second_done.set()

    threading.Thread(target=searching_on, daemon=True).start()
    assert first_embedded.wait(20)
    threading.Thread(target=second, daemon=True).start()
    assert second_done.wait(20)
    release.set()
    assert (batcher.batches, batcher.images) == (2, 2)
    batcher.close()


class Broken:
    """Fails every forward pass after `gate` opens, so requests can pile up into one batch first."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def embed_pixels(self, pixels):
        self.calls += 1
        self.gate.wait(30)
        raise RuntimeError("model exploded")


def test_a_failed_batch_fails_every_request_in_it(tiny_embedder):
    model = Broken()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.01)
    pixels = pixels_for(tiny_embedder, 6)
    outcomes: dict[int, str] = {}

    def request(i: int) -> None:
        try:
            batcher.embed(pixels[i])
            outcomes[i] = "vector"
        except RuntimeError as exc:
            outcomes[i] = str(exc)

    first = threading.Thread(target=request, args=(0,), daemon=True)
    first.start()  # its pass blocks on the gate; the next five queue up behind it as one batch
    while model.calls == 0:
        threading.Event().wait(0.01)
    rest = [threading.Thread(target=request, args=(i,), daemon=True) for i in range(1, 6)]
    for thread in rest:
        thread.start()
    while len(batcher._pending) < 5:
        threading.Event().wait(0.01)
    model.gate.set()
    for thread in [first, *rest]:
        thread.join(20)
        assert not thread.is_alive(), "a request of the failed batch was left waiting"
    assert outcomes == dict.fromkeys(range(6), "model exploded")
    assert model.calls == 2  # one failed pass for the first, one for the other five together
    batcher.close()


class GatedEmbedder:
    """Returns zero vectors; each forward pass waits for `release` and records that it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = threading.Event()

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.running.set()
        assert self.release.wait(30)
        return np.zeros((len(pixels), 4), np.float32)


def test_exclusive_passes_wait_for_cpu_work_in_progress(tiny_embedder):
    batcher = MicroBatcher(tiny_embedder, max_batch=8, max_wait_s=0.01, exclusive=True, max_phase_wait_s=60)
    pixels = pixels_for(tiny_embedder, 1)[0]
    verifying, release, embedded = threading.Event(), threading.Event(), threading.Event()

    def verifying_search() -> None:
        with batcher.cpu_turn():
            verifying.set()
            release.wait(30)

    def new_search() -> None:
        batcher.embed(pixels)
        embedded.set()

    threading.Thread(target=verifying_search, daemon=True).start()
    assert verifying.wait(10)
    threading.Thread(target=new_search, daemon=True).start()
    assert not embedded.wait(0.5) and batcher.batches == 0  # the pass waits for the verification
    release.set()
    assert embedded.wait(20) and batcher.batches == 1
    batcher.close()


def test_exclusive_passes_wait_for_cpu_work_only_so_long(tiny_embedder):
    batcher = MicroBatcher(tiny_embedder, max_batch=8, max_wait_s=0.01, exclusive=True, max_phase_wait_s=0.2)
    with batcher.cpu_turn():
        done = threading.Event()
        threading.Thread(
            target=lambda: (batcher.embed(pixels_for(tiny_embedder, 1)[0]), done.set()), daemon=True
        ).start()
        assert done.wait(20)  # while this turn still runs
    batcher.close()


def test_cpu_work_waits_while_an_exclusive_pass_runs():
    model = GatedEmbedder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.01, exclusive=True)
    threading.Thread(target=lambda: batcher.embed(np.zeros((3, 8, 8), np.float32)), daemon=True).start()
    assert model.running.wait(10)
    entered = threading.Event()

    def decode() -> None:
        with batcher.cpu_turn():
            entered.set()

    threading.Thread(target=decode, daemon=True).start()
    assert not entered.wait(0.5)  # the pass holds the cores
    model.release.set()
    assert entered.wait(10)
    batcher.close()


def test_cpu_turns_never_wait_when_the_model_does_not_hold_every_core():
    model = GatedEmbedder()
    batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.01, exclusive=False)
    threading.Thread(target=lambda: batcher.embed(np.zeros((3, 8, 8), np.float32)), daemon=True).start()
    assert model.running.wait(10)
    entered = threading.Event()

    def decode() -> None:
        with batcher.cpu_turn():
            entered.set()

    threading.Thread(target=decode, daemon=True).start()
    assert entered.wait(5)  # while the pass still runs
    model.release.set()
    batcher.close()
