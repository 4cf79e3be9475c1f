"""The periodic worker: calls its function every interval, goes on after a failure, stops when told."""

import threading

from app.core.periodic import Periodic


def test_it_calls_again_after_a_failure_and_stops_when_told(caplog):
    calls: list[int] = []
    enough = threading.Event()

    def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a hiccup")
        if len(calls) >= 3:
            enough.set()

    worker = Periodic("test-periodic", 0.01, work)
    worker.start()
    worker.start()  # a second start is harmless: one thread
    assert enough.wait(5)
    worker.stop()
    done = len(calls)
    assert done >= 3 and "test-periodic failed" in caplog.text
    assert not [t for t in threading.enumerate() if t.name == "test-periodic"]
    enough.wait(0.05)
    assert len(calls) == done  # nothing after stop
