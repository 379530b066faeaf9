"""The Spot interruption watcher: polls IMDS every few seconds on a thread of its own.

EC2 gives about two minutes' notice; polling every 5 s leaves the game most of it to save.
The watcher stops after the first notice (the agent saves, stops the game and reports once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .imds import Imds

log = logging.getLogger(__name__)


class SpotWatcher:
    """Calls ``on_notice`` once when IMDS reports a pending interruption."""

    def __init__(self, imds: Imds, interval_s: float, on_notice: Callable[[dict[str, Any]], None]) -> None:
        self._imds = imds
        self._interval = interval_s
        self._on_notice = on_notice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spot-watch", daemon=True)
        self._warned = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def poll_once(self) -> bool:
        """One look at IMDS; True when a notice was found and handed on."""
        try:
            notice = self._imds.spot_notice()
        except OSError as exc:
            if not self._warned:
                log.warning("IMDS unreachable (%s); will keep trying", exc)
                self._warned = True
            return False
        if notice is None:
            return False
        log.warning("spot interruption notice: %s", notice)
        self._on_notice(notice)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self.poll_once():
                return
