"""Pace Steward's posts per channel, the way Slack rate-limits chat.postMessage (about 1 a second)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ChannelPacer:
    """A token bucket per channel: short bursts pass, a steady stream is spread out.

    Waiting happens on the worker threads, never on the acknowledgement path. A 429 that still
    comes back is retried by the Web API client after Slack's `Retry-After`.
    """

    def __init__(
        self,
        per_second: float,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._due: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, channel: str) -> float:
        """Book the channel's next slot; returns how many seconds to wait for it."""
        with self._lock:
            now = self.clock()
            # GCRA: `due` is when the channel's bucket would be empty again; `burst` posts may run ahead.
            due = max(self._due.get(channel, now), now)
            self._due[channel] = due + self.interval
            if len(self._due) > 10_000:  # forget quiet channels
                self._due = {key: value for key, value in self._due.items() if value > now}
            return max(0.0, due - (self.burst - 1) * self.interval - now)

    def wait(self, channel: str) -> float:
        """Block until a post to the channel is due; returns the time waited."""
        delay = self.reserve(channel)
        if delay > 0:
            self.sleep(delay)
        return delay
