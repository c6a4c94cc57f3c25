"""The fake Slack's fault injection: the next calls of a method answer 429, 5xx or an error."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tests.support.slack.server import Reply, json_reply


@dataclass
class Failure:
    """A queued failure for one method."""

    status: int
    retry_after: int
    error: str


class Faults:
    """Mixed into FakeSlack: failures queued per method, consumed by the calls that come in."""

    _condition: threading.Condition
    _failures: dict[str, list[Failure]]

    def fail(
        self, method: str, status: int = 429, times: int = 1, retry_after: int = 1, error: str = "ratelimited"
    ) -> None:
        """Answer the next `times` calls of `method` with HTTP `status` (429, 5xx, or 200 with `error`)."""
        with self._condition:
            queue = self._failures.setdefault(method, [])
            queue.extend(Failure(status, retry_after, error) for _ in range(times))

    def _injected_failure(self, method: str) -> Reply | None:
        """Consume a queued failure for `method`, if any (lock held)."""
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue.pop(0)
        if failure.status == 429:
            return json_reply(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(failure.retry_after)}
            )
        if failure.status >= 500:
            return json_reply(failure.status, {"ok": False, "error": "internal_error"})
        return json_reply(failure.status, {"ok": False, "error": failure.error})
