"""A Python client of Steward's agent API: `StewardBackend` over HTTP (httpx).

    with StewardClient("https://steward.example.com", token) as steward:
        info = steward.request("rollback-model", {"model": "churn", "version": "12"}, "p95 latency doubled")
        info = steward.wait(info.id, timeout=3600)

Refusals come back as `ApiError`, as the server sent them (a 429 with `retry_after` from Retry-After).
Every request carries an idempotency key (a fresh uuid4 unless given), and a request whose answer was
lost on the way (the connection failed) is sent again with the same key, so a retry never makes a
second request.
"""

from __future__ import annotations

import time
import uuid
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from bot.agents.models import (
    API_PREFIX,
    MAX_WAIT_SECONDS,
    ActionInfo,
    ActionList,
    AnswerInfo,
    ApiError,
    NewRequest,
    RequestInfo,
)

UNREACHABLE = 503  # the status of an ApiError for a server that could not be reached


class WaitTimeoutError(ApiError, TimeoutError):
    """`StewardClient.wait` gave up: the request was not final in time (it goes on regardless)."""

    def __init__(self, request_id: str, status: str, timeout: float) -> None:
        message = f"request {request_id} is still {status} after {timeout:g} s"
        super().__init__(408, "timeout", message, field="timeout")
        self.request_id = request_id


class StewardClient:
    """Steward's agent API at `url` (the server's base URL) with an agent's `token`. `timeout` bounds
    each HTTP exchange (a long-poll gets its wait on top); `retries` is how often a request whose
    answer was lost is sent again, `backoff` the first pause between tries (doubled each time)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.http = httpx.Client(
            base_url=url.rstrip("/") + API_PREFIX,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> StewardClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def actions(self) -> list[ActionInfo]:
        """The catalog actions this agent may request."""
        return ActionList.model_validate(self._call("GET", "/actions")).actions

    def request(
        self,
        new: NewRequest | str,
        parameters: dict[str, Any] | None = None,
        reason: str | None = None,
        *,
        channel: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> RequestInfo:
        """Ask for an action: a `NewRequest`, or its action, parameters and reason. The server validates
        the fields (422 names the one at fault) and the policy decides at once."""
        if isinstance(new, NewRequest):
            body = new.model_dump(mode="json", exclude_none=True)
        else:
            given = {
                "parameters": parameters,
                "reason": reason,
                "channel": channel,
                "callback_url": callback_url,
            }
            body = {"action": new, "idempotency_key": idempotency_key} | given
            body = {name: value for name, value in body.items() if value is not None}
        body.setdefault("idempotency_key", str(uuid.uuid4()))
        for attempt in range(self.retries + 1):
            try:
                return RequestInfo.model_validate(
                    self._call("POST", "/requests", body=body, send_errors=True)
                )
            except httpx.TransportError as exc:  # the answer was lost: the same key finds the same request
                if attempt == self.retries:
                    raise self._unreachable(exc) from exc
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        """The request; with `wait` (at most MAX_WAIT_SECONDS), as soon as it is final or after `wait` s."""
        query = {"wait": f"{wait:g}"} if wait > 0 else None
        path = f"/requests/{quote(request_id, safe='')}"
        return RequestInfo.model_validate(self._call("GET", path, query=query, extra_time=wait))

    def wait(self, request_id: str, timeout: float | None = None, poll: float = 30.0) -> RequestInfo:
        """The request once it is final, long-polling `poll` seconds at a time; `WaitTimeoutError` (an
        ApiError and a TimeoutError) when it is not final after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = min(max(poll, 0.0), MAX_WAIT_SECONDS)
        while True:
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            try:
                info = self.get(request_id, wait=max(left, 0.0))
            except ApiError as exc:
                if exc.status != 429 or (deadline is not None and time.monotonic() >= deadline):
                    raise
                time.sleep(exc.retry_after or 1.0)  # too many long-polls at once: try again shortly
                continue
            if info.final:
                return info
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(request_id, info.status, timeout or 0.0)

    def cancel(self, request_id: str) -> RequestInfo:
        """Withdraw a request that has not run."""
        return RequestInfo.model_validate(
            self._call("POST", f"/requests/{quote(request_id, safe='')}/cancel")
        )

    def ask(self, question: str) -> AnswerInfo:
        """Steward's answer from the knowledge base."""
        return AnswerInfo.model_validate(self._call("POST", "/ask", body={"question": question}))

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
        extra_time: float = 0.0,
        send_errors: bool = False,
    ) -> Any:
        """One exchange: the JSON answer, or the server's refusal as ApiError. With `send_errors`, a
        failed connection is raised as httpx's own error (the caller retries)."""
        try:
            response = self.http.request(
                method, path, json=body, params=query, timeout=httpx.Timeout(self.timeout + extra_time)
            )
        except httpx.TransportError as exc:
            if send_errors:
                raise
            raise self._unreachable(exc) from exc
        if not response.is_success:
            raise refusal(response)
        try:
            return response.json()
        except ValueError:  # a proxy's page: say what came back instead of failing on it
            text = " ".join(response.text.split())[:200]
            raise ApiError(
                502, "not_json", f"HTTP {response.status_code} without JSON from {path}: {text}"
            ) from None

    def _unreachable(self, error: httpx.TransportError) -> ApiError:
        where = self.http.base_url
        return ApiError(
            UNREACHABLE, "unreachable", f"Steward at {where} could not be reached: {type(error).__name__}"
        )


def refusal(response: httpx.Response) -> ApiError:
    """The server's error body as ApiError (a proxy's page that is not one: its status and first words)."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")
    retry_after = error.get("retry_after")
    header = response.headers.get("Retry-After", "")
    if header.strip().isdigit():
        retry_after = float(header)
    return ApiError(response.status_code, code, message, field=error.get("field"), retry_after=retry_after)
