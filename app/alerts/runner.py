"""Checks the saved searches every few seconds on a thread of its own (each check does nothing unless the
catalogue has gained images); stops at shutdown."""

import logging
import threading

from app.alerts.service import SavedSearches

log = logging.getLogger(__name__)


class AlertRunner:
    def __init__(self, saved: SavedSearches, interval_s: float) -> None:
        self.saved = saved
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="saved-searches", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.saved.check_all()
            except Exception:  # a database hiccup or a bad photo: log it, try again at the next tick
                log.exception("saved searches check")
