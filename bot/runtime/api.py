"""The agent API on `steward serve` (`/api/v1`): JSON over HTTP with an agent's bearer token.

A thin transport: each route authenticates the token, checks its scope, reads and validates the body,
makes one call on the agent's `StewardBackend` (the in-process gateway) and writes the result as JSON.
Every refusal is an `ApiError` body with a stable code and the field at fault; an unexpected failure
is logged with a reference and answered 500 with that reference, never with a traceback. The OpenAPI
description (`GET /api/v1/openapi.json`) is generated from the same route table and pydantic models.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse

from pydantic import BaseModel, ValidationError

from bot.agents.models import (
    API_PREFIX,
    MAX_WAIT_SECONDS,
    ActionList,
    Agent,
    AnswerInfo,
    ApiError,
    Authenticator,
    NewRequest,
    Question,
    RequestInfo,
    StewardBackend,
)
from bot.errors import BadRequest, Refused, Situation, StewardError, Unavailable
from bot.metrics import API_REQUESTS, API_SECONDS
from bot.runtime.openapi import describe

log = logging.getLogger("steward.api")

MAX_BODY_BYTES = 64 * 1024  # a request's reason and parameters fit many times over
UNMATCHED = "unmatched"  # the metrics' route for paths and methods no route serves
FAILED = Situation(
    unexpected="Steward failed to handle this request; quote reference {reference} to its operators.",
    context="agent API failed route={route} agent={agent} reference={reference}",
)
KNOWN_FAILURES: dict[type[StewardError], tuple[int, str]] = {
    Unavailable: (503, "unavailable"),
    BadRequest: (400, "bad_request"),
    Refused: (403, "forbidden"),
}


@dataclass(frozen=True)
class Call:
    """One authenticated call: the agent's backend, the path's parameters, the query, the parsed body."""

    backend: StewardBackend
    path: dict[str, str]
    query: dict[str, list[str]]
    body: Any = None


Handler = Callable[[Call], tuple[int, BaseModel]]


@dataclass(frozen=True)
class Route:
    """A method and path template under API_PREFIX, what it needs and what it answers."""

    method: str
    template: str
    operation: str  # the OpenAPI operationId
    summary: str
    handler: Handler | None  # None: the OpenAPI description itself
    scope: str | None  # the token scope it needs; None: served without a token
    status: int = 200
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]{1,128})", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def label(self) -> str:
        """The route in /metrics and the log: method and template, never an id."""
        return f"{self.method} {API_PREFIX}{self.template}"


def _wait(query: dict[str, list[str]]) -> float:
    """The long-poll's `wait` query parameter: seconds from 0 to MAX_WAIT_SECONDS."""
    values = query.get("wait", [])
    if not values:
        return 0.0
    advice = f"give wait=SECONDS, a number from 0 to {MAX_WAIT_SECONDS:g}"
    if len(values) > 1:
        raise ApiError(400, "bad_wait", f"wait is given {len(values)} times; {advice}", field="wait")
    try:
        wait = float(values[0])
    except ValueError:
        raise ApiError(
            400, "bad_wait", f"wait={values[0][:40]!r} is not a number; {advice}", "wait"
        ) from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:  # NaN fails both comparisons
        raise ApiError(400, "bad_wait", f"wait={values[0][:40]} is out of range; {advice}", field="wait")
    return wait


def _actions(call: Call) -> tuple[int, BaseModel]:
    return 200, ActionList(actions=call.backend.actions())


def _create(call: Call) -> tuple[int, BaseModel]:
    info = call.backend.request(call.body)
    return (200 if info.replayed else 201), info


def _get(call: Call) -> tuple[int, BaseModel]:
    return 200, call.backend.get(call.path["id"], _wait(call.query))


def _cancel(call: Call) -> tuple[int, BaseModel]:
    return 200, call.backend.cancel(call.path["id"])


def _ask(call: Call) -> tuple[int, BaseModel]:
    return 200, call.backend.ask(call.body.question)


AUTHENTICATED = (401, 403, 500, 503)
WITH_BODY = (400, 413, 415, 422)
ROUTES = (
    Route(
        "GET",
        "/actions",
        "listActions",
        "The catalog actions this agent may request, each with the JSON Schema of its parameters",
        _actions,
        "request",
        response=ActionList,
        errors=AUTHENTICATED,
    ),
    Route(
        "POST",
        "/requests",
        "createRequest",
        "Ask for an action: the policy decides at once (denied, run, or pending approval in Slack). "
        "201 for a new request; 200 with `replayed` when its idempotency key matched an earlier one",
        _create,
        "request",
        status=201,
        body=NewRequest,
        response=RequestInfo,
        errors=(*AUTHENTICATED, *WITH_BODY, 409, 429),
    ),
    Route(
        "GET",
        "/requests/{id}",
        "getRequest",
        "A request's state, decision, approvals and result; with `wait`, answers as soon as the request "
        "is final or after `wait` seconds (a long-poll)",
        _get,
        "request",
        response=RequestInfo,
        errors=(*AUTHENTICATED, 400, 404),
    ),
    Route(
        "POST",
        "/requests/{id}/cancel",
        "cancelRequest",
        "Withdraw a request that has not run",
        _cancel,
        "request",
        response=RequestInfo,
        errors=(*AUTHENTICATED, 404, 409),
    ),
    Route(
        "POST",
        "/ask",
        "ask",
        "Steward's answer from the knowledge base, with its confidence and citations",
        _ask,
        "ask",
        body=Question,
        response=AnswerInfo,
        errors=(*AUTHENTICATED, *WITH_BODY, 429),
    ),
    Route("GET", "/openapi.json", "openapi", "This description (served without a token)", None, None),
)


class _MethodNotAllowedError(ApiError):
    def __init__(self, method: str, allow: list[str]) -> None:
        super().__init__(405, "method_not_allowed", f"{method} is not served here; use {', '.join(allow)}")
        self.allow = allow


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route serving `method` at `path` (under API_PREFIX) and its path parameters; 404 or 405."""
    tail = path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
    allow: list[str] = []
    for route in ROUTES:
        found = route.pattern.fullmatch(tail)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allow.append(route.method)
    if allow:
        raise _MethodNotAllowedError(method, allow)
    raise ApiError(
        404, "not_found", f"no such endpoint: {path[:200]}; the routes are in {API_PREFIX}/openapi.json"
    )


def read_json(environ: dict[str, Any], model: type[BaseModel], max_bytes: int) -> BaseModel:
    """The request's JSON body as `model`: 415 unless JSON, 413 over `max_bytes` (declared by
    Content-Length, so the body is never read), 400 when unreadable, 422 naming each invalid field."""
    media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        message = f"send the body as application/json (Content-Type was {media[:80] or 'missing'})"
        raise ApiError(415, "unsupported_media_type", message, field="Content-Type")
    declared = (environ.get("CONTENT_LENGTH") or "").strip()
    if not declared.isdigit():
        message = "send a JSON object with a Content-Length header"
        if declared:
            message = f"Content-Length {declared[:40]!r} is not a number of bytes; {message}"
        raise ApiError(400, "bad_request", message, field="Content-Length")
    size = int(declared)
    if size > max_bytes:
        raise ApiError(413, "too_large", f"the body is {size} bytes; the limit is {max_bytes}", field="body")
    raw = environ["wsgi.input"].read(size) if size else b""
    if len(raw) != size:
        raise ApiError(400, "bad_request", f"the body ended after {len(raw)} of {size} bytes", field="body")
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        message = f"the body is not JSON: {str(exc)[:200] or type(exc).__name__}"
        raise ApiError(400, "malformed_json", message, field="body") from None
    if not isinstance(data, dict):
        raise ApiError(
            400, "not_an_object", f"the body must be a JSON object, not {_kind(data)}", field="body"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from None


def _phrase(status: int) -> str:
    """The reason phrase (empty for a status HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _kind(data: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(data), "a number"
    )


def invalid(error: ValidationError) -> ApiError:
    """422 naming each invalid field by its path (`parameters.version`) with pydantic's message."""
    problems = [(".".join(str(part) for part in e["loc"]) or "body", e["msg"]) for e in error.errors()]
    message = "; ".join(f"{where}: {what}" for where, what in problems[:5])
    if len(problems) > 5:
        message += f"; and {len(problems) - 5} more"
    return ApiError(422, "invalid", message, field=problems[0][0])


class AgentApi:
    """The WSGI application of /api/v1: `authenticate` turns the Authorization header into an agent,
    `backends` gives that agent's backend (the gateway's `for_agent`)."""

    def __init__(
        self,
        authenticate: Authenticator,
        backends: Callable[[Agent], StewardBackend],
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.authenticate = authenticate
        self.backends = backends
        self.max_body_bytes = max_body_bytes
        self._description: bytes | None = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        label, agent = UNMATCHED, "-"
        headers: list[tuple[str, str]] = []
        try:
            route, path = match(method, environ.get("PATH_INFO", ""))
            label = route.label
            if route.handler is None:
                status, data = 200, self.description()
            else:
                caller = self.authenticate(environ.get("HTTP_AUTHORIZATION"))
                agent = caller.name
                if route.scope not in caller.scopes:
                    message = (
                        f"this token lacks the scope {route.scope!r}; `steward agents add --scope` grants it"
                    )
                    raise ApiError(403, "missing_scope", message, field="scope")
                body = read_json(environ, route.body, self.max_body_bytes) if route.body is not None else None
                query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                status, result = route.handler(Call(self.backends(caller), path, query, body))
                data = result.model_dump_json().encode()
        except ApiError as error:
            status, data, headers = self._refusal(error, label, agent)
        except StewardError as error:
            known = next(
                (KNOWN_FAILURES[kind] for kind in type(error).__mro__ if kind in KNOWN_FAILURES), None
            )
            if known is None:  # a ConfigurationError: the operators' to fix, logged with its reference
                status, data = self._failure(error, label, agent)
            else:
                status, data, headers = self._refusal(ApiError(*known, error.user_message), label, agent)
        except Exception as error:
            status, data = self._failure(error, label, agent)
        API_REQUESTS.labels(label, str(status)).inc()
        API_SECONDS.labels(label).observe(time.perf_counter() - started)
        start_response(
            f"{status} {_phrase(status)}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                *headers,
            ],
        )
        return [data]

    def _refusal(self, error: ApiError, route: str, agent: str) -> tuple[int, bytes, list[tuple[str, str]]]:
        headers = []
        if isinstance(error, _MethodNotAllowedError):
            headers.append(("Allow", ", ".join(error.allow)))
        if error.status == 429 and error.retry_after is not None:
            headers.append(("Retry-After", str(max(0, math.ceil(error.retry_after)))))
        log.info(
            "agent API refused route=%s agent=%s status=%s code=%s", route, agent, error.status, error.code
        )
        return error.status, json.dumps(error.body()).encode(), headers

    def _failure(self, error: BaseException, route: str, agent: str) -> tuple[int, bytes]:
        message = FAILED.render(error, log, route=route, agent=agent)
        return 500, json.dumps({"error": {"code": "internal", "message": message}}).encode()

    def description(self) -> bytes:
        """The OpenAPI document, built once."""
        if self._description is None:
            self._description = json.dumps(describe(ROUTES), indent=1).encode()
        return self._description
