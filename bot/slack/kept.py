"""A small thread-safe store of values that are good for a while (Slack lookups, card excerpts)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    """Values by key, each good for `keep_seconds` after it was put."""

    def __init__(self, keep_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep_seconds = keep_seconds
        self.clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, or None when there is none or it is too old."""
        with self._lock:
            kept = self._values.get(key)
        return kept[1] if kept is not None and kept[0] > self.clock() else None

    def put(self, key: K, value: V) -> V:
        """Keep `value` from now on; returns it."""
        with self._lock:
            self._values[key] = (self.clock() + self.keep_seconds, value)
        return value
