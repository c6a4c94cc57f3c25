"""The agent API (bot/runtime/api.py) on a real waitress server on loopback, called over real HTTP with
httpx and with Steward's client (bot/agents/client.py): its routes, every refusal (400, 401, 403, 404,
405, 409, 413, 415, 422, 429, 500, 503) with the field at fault, the long-poll's `wait`, the OpenAPI
description checked by a real validator, /metrics, and the client's idempotent retry.

The backend behind the HTTP layer here is `Desk`, a small in-test StewardBackend, so that each refusal
the gateway may raise can be produced at will; the HTTP layer is the subject.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate as validate_openapi
from pydantic import SecretStr
from waitress.server import create_server

from bot.agents.client import StewardClient, WaitTimeoutError
from bot.agents.models import (
    API_PREFIX,
    ActionInfo,
    Agent,
    AnswerInfo,
    ApiError,
    Approvals,
    Citation,
    DecisionInfo,
    NewRequest,
    RequestInfo,
    Status,
)
from bot.errors import ConfigurationError, Unavailable
from bot.metrics import REGISTRY
from bot.runtime.api import MAX_BODY_BYTES, ROUTES, AgentApi
from bot.runtime.http import WSGIApp
from bot.runtime.openapi import ErrorBody
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, build_test_app, running_bot
from tests.slackbot import serving as slack_serving
from tests.support.slack import FakeSlack

DEPLOYER = Agent(name="deployer", token_id="tok1", owner="UOWNER", scopes=("request",))
ASKER = Agent(name="asker", token_id="tok2", owner="UOWNER", scopes=("ask",))
OTHER = Agent(name="other", token_id="tok3", owner="UOTHER")
TOKENS = {"stw_deployer": DEPLOYER, "stw_asker": ASKER, "stw_other": OTHER}
ROLLBACK = ActionInfo(
    name="rollback-model",
    description="Roll a model back to an earlier version",
    risk="high",
    idempotent=True,
    input_schema={"type": "object", "properties": {"version": {"type": "string"}}, "required": ["version"]},
)
GOOD = {"action": "rollback-model", "parameters": {"version": "12"}, "reason": "p95 latency doubled"}


def authenticate(authorization: str | None) -> Agent:
    """The test's Authenticator: three tokens."""
    if authorization is None:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", field="Authorization")
    agent = TOKENS.get(authorization.removeprefix("Bearer ").strip())
    if agent is None:
        raise ApiError(401, "unauthorized", "the token is wrong or revoked", field="Authorization")
    return agent


class Desk:
    """Requests in memory, shared by every agent's backend; `fail` makes the next call raise it."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.requests: dict[str, tuple[Agent, RequestInfo]] = {}
        self.keys: dict[tuple[str, str], str] = {}
        self.fail: BaseException | None = None
        self.waits: list[float] = []
        self.created = 0

    def for_agent(self, agent: Agent) -> Window:
        """The agent's backend."""
        return Window(self, agent)

    def finish(self, request_id: str, status: Status) -> None:
        """Move a request to `status` (as approvers and the executor would) and wake long-polls."""
        with self.changed:
            agent, info = self.requests[request_id]
            self.requests[request_id] = (agent, info.model_copy(update={"status": status, "final": True}))
            self.changed.notify_all()


class Window:
    """One agent's StewardBackend over the desk."""

    def __init__(self, desk: Desk, agent: Agent) -> None:
        self.desk = desk
        self.agent = agent

    def _check(self) -> None:
        failure, self.desk.fail = self.desk.fail, None
        if failure is not None:
            raise failure

    def _own(self, request_id: str) -> RequestInfo:
        agent, info = self.desk.requests.get(request_id, (None, None))
        if agent != self.agent or info is None:
            raise ApiError(404, "not_found", f"no request {request_id}", field="id")
        return info

    def actions(self) -> list[ActionInfo]:
        self._check()
        return [ROLLBACK]

    def request(self, new: NewRequest) -> RequestInfo:
        self._check()
        if new.action != ROLLBACK.name:
            raise ApiError(422, "unknown_action", f"no action {new.action}", field="action")
        if "version" not in new.parameters:
            raise ApiError(422, "invalid", "parameters.version: Field required", field="parameters.version")
        with self.desk.changed:
            key = (self.agent.name, new.idempotency_key or uuid.uuid4().hex)
            if key in self.desk.keys:
                earlier = self.desk.requests[self.desk.keys[key]][1]
                return earlier.model_copy(update={"replayed": True})
            self.desk.created += 1
            info = RequestInfo(
                id=f"req{self.desk.created}",
                action=new.action,
                parameters=new.parameters,
                reason=new.reason,
                status="pending",
                final=False,
                decision=DecisionInfo(outcome="require_approval", rule="production", reason="two ML leads"),
                approvals=Approvals(required=2, groups=["ml-leads"], approvers=[]),
                created_at=time.time(),
                agent=self.agent.name,
            )
            self.desk.requests[info.id] = (self.agent, info)
            self.desk.keys[key] = info.id
            return info

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        self._check()
        self.desk.waits.append(wait)
        with self.desk.changed:
            self.desk.changed.wait_for(lambda: self._own(request_id).final, timeout=wait)
            return self._own(request_id)

    def cancel(self, request_id: str) -> RequestInfo:
        self._check()
        if self._own(request_id).final:
            raise ApiError(409, "conflict", f"request {request_id} is already final")
        self.desk.finish(request_id, "cancelled")
        return self._own(request_id)

    def ask(self, question: str) -> AnswerInfo:
        self._check()
        citation = Citation(title="Rolling back a model", path="knowledge/runbooks/rollback.md")
        return AnswerInfo(
            answer=f"About {question!r}: see the runbook.",
            abstained=False,
            confidence=0.9,
            citations=[citation],
        )


def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for `condition`, failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.005)


@contextmanager
def api_server(app: WSGIApp) -> Iterator[str]:
    """`app` on a real waitress server on a free loopback port; yields its base URL."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4, ident="steward")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        try:  # closed by its own thread, as HttpServer.close does, and directly when the trigger is gone
            server.trigger.pull_trigger(server.close)
        except OSError:
            server.close()
        thread.join(timeout=5)


@pytest.fixture
def desk() -> Desk:
    return Desk()


@pytest.fixture
def base(desk: Desk) -> Iterator[str]:
    with api_server(AgentApi(authenticate, desk.for_agent)) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base + API_PREFIX, headers={"Authorization": "Bearer stw_deployer"}) as client:
        yield client


@pytest.fixture
def steward(base: str) -> Iterator[StewardClient]:
    with StewardClient(base, "stw_deployer", backoff=0) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The refusal's error object, checked against the error body the OpenAPI description states."""
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    ErrorBody.model_validate(body)
    assert "Traceback" not in response.text
    error: dict[str, Any] = body["error"]
    return error


# -- the routes ------------------------------------------------------------------------------------


def test_openapi_description_is_valid_and_served_without_a_token(base: str) -> None:
    """openapi.json passes a real OpenAPI 3.1 validator, needs no token and describes every route."""
    response = httpx.get(f"{base}{API_PREFIX}/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate_openapi(document)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described == {(route.method, API_PREFIX + route.template) for route in ROUTES}
    create = document["paths"][f"{API_PREFIX}/requests"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewRequest"
    }
    assert {"201", "200", "422", "429"} <= set(create["responses"])
    assert "Retry-After" in document["components"]["responses"]["TooManyRequests"]["headers"]
    assert document["paths"][f"{API_PREFIX}/openapi.json"]["get"]["security"] == []


def test_actions_request_get_cancel_and_ask(http: httpx.Client, desk: Desk) -> None:
    """Each route answers with its model: 201 for a new request, 200 for the others."""
    actions = http.get("/actions")
    assert actions.status_code == 200 and actions.json()["actions"][0]["name"] == "rollback-model"
    created = http.post("/requests", json=GOOD)
    assert created.status_code == 201
    info = RequestInfo.model_validate(created.json())
    assert (info.status, info.agent, info.replayed) == ("pending", "deployer", False)
    assert RequestInfo.model_validate(http.get(f"/requests/{info.id}").json()).status == "pending"
    cancelled = http.post(f"/requests/{info.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    asker = {"Authorization": "Bearer stw_asker"}
    answer = http.post("/ask", json={"question": "How do I roll back?"}, headers=asker)
    assert answer.status_code == 200
    assert AnswerInfo.model_validate(answer.json()).citations[0].path == "knowledge/runbooks/rollback.md"


def test_same_idempotency_key_answers_200_with_the_earlier_request(http: httpx.Client, desk: Desk) -> None:
    """A replayed key gets 200 and `replayed`, with the first request's id; no second request."""
    body = {**GOOD, "idempotency_key": "deploy-42"}
    first, second = http.post("/requests", json=body), http.post("/requests", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"] and second.json()["replayed"] is True
    assert desk.created == 1


def test_wait_is_passed_to_the_backend_and_returns_when_final(http: httpx.Client, desk: Desk) -> None:
    """A long-poll answers as soon as the request is final, well before its wait runs out."""
    request_id = http.post("/requests", json=GOOD).json()["id"]
    answer: list[httpx.Response] = []
    poll = threading.Thread(
        target=lambda: answer.append(http.get(f"/requests/{request_id}?wait=30", timeout=40))
    )
    started = time.monotonic()
    poll.start()
    until(lambda: desk.waits == [30.0])  # the long-poll has reached the backend
    desk.finish(request_id, "succeeded")
    poll.join(timeout=10)
    assert answer[0].json()["status"] == "succeeded"
    assert time.monotonic() - started < 10


# -- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({}, "/actions"),
        ({"Authorization": "Bearer stw_wrong"}, "/actions"),
        ({"Authorization": "stw_deployer-but-not-bearer"}, "/requests/req1"),
    ],
)
def test_missing_or_wrong_token_is_401(base: str, headers: dict[str, str], path: str) -> None:
    """No token, or a wrong one: 401 naming the Authorization header."""
    response = httpx.get(f"{base}{API_PREFIX}{path}", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["field"] == "Authorization"


@pytest.mark.parametrize(
    ("token", "method", "path", "scope"),
    [
        ("stw_asker", "GET", "/actions", "request"),
        ("stw_asker", "POST", "/requests", "request"),
        ("stw_deployer", "POST", "/ask", "ask"),
    ],
)
def test_missing_scope_is_403_naming_it(base: str, token: str, method: str, path: str, scope: str) -> None:
    """A token without the route's scope gets 403 naming the scope, before its body is looked at."""
    response = httpx.request(
        method, f"{base}{API_PREFIX}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    error = error_of(response)
    assert error["field"] == "scope" and repr(scope) in error["message"]


def test_unknown_route_and_another_agents_request_are_404(base: str, http: httpx.Client) -> None:
    """An unknown path and a request id the agent does not own are both 404."""
    assert error_of(http.get("/nothing-here"))["code"] == "not_found"
    assert http.get("/nothing-here").status_code == 404
    with httpx.Client(base_url=base + API_PREFIX, headers={"Authorization": "Bearer stw_other"}) as other:
        theirs = other.post("/requests", json=GOOD).json()["id"]
    response = http.get(f"/requests/{theirs}")
    assert response.status_code == 404 and error_of(response)["field"] == "id"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/requests", "POST"),
        ("GET", "/ask", "POST"),
        ("PUT", "/requests/req1", "GET"),
        ("POST", "/actions", "GET"),
    ],
)
def test_wrong_method_is_405_with_allow(http: httpx.Client, method: str, path: str, allow: str) -> None:
    """A known path with the wrong method: 405 and the Allow header."""
    response = http.request(method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b'{"action": "rollback-model",', "malformed_json"),
        (b"\xff\xfe not utf-8", "malformed_json"),
        (b'{"action": NaN}', "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
    ],
)
def test_malformed_body_is_400(http: httpx.Client, content: bytes, code: str) -> None:
    """A body that is not a JSON object: 400 naming the body."""
    response = http.post("/requests", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["field"]) == (code, "body")


def test_deeply_nested_body_under_the_limit_is_400(base: str, desk: Desk) -> None:
    """JSON nested past the parser's recursion limit (but within the size limit) is 400, not 500."""
    content = b'{"parameters": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    headers = {"Authorization": "Bearer stw_deployer", "Content-Type": "application/json"}
    with api_server(AgentApi(authenticate, desk.for_agent, max_body_bytes=len(content))) as url:
        response = httpx.post(f"{url}{API_PREFIX}/requests", content=content, headers=headers)
    assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_body_that_is_not_json_is_415(http: httpx.Client, content_type: str | None) -> None:
    """A body sent without Content-Type application/json: 415 naming the header."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/requests", content=json.dumps(GOOD).encode(), headers=headers)
    assert response.status_code == 415 and error_of(response)["field"] == "Content-Type"


def test_json_with_a_charset_is_accepted(http: httpx.Client) -> None:
    """`application/json; charset=utf-8` is JSON."""
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert http.post("/requests", content=json.dumps(GOOD).encode(), headers=headers).status_code == 201


def test_body_over_the_limit_is_413(http: httpx.Client, desk: Desk) -> None:
    """A body over 64 KiB: 413 stating its size and the limit; nothing is created."""
    body = {**GOOD, "reason": "x" * (MAX_BODY_BYTES + 1)}
    response = http.post("/requests", json=body)
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in error_of(response)["message"]
    assert desk.created == 0


class Unreadable(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


def call(api: AgentApi, environ: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The app called directly as WSGI (for what no HTTP client sends): status, headers, JSON body."""
    got: list[Any] = []
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"{API_PREFIX}/requests",
        "HTTP_AUTHORIZATION": "Bearer stw_deployer",
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got.append((status, headers))

    body = b"".join(api({**base, **environ}, start_response))
    return got[0][0], dict(got[0][1]), json.loads(body)


def test_body_over_the_limit_is_not_read(desk: Desk) -> None:
    """A declared Content-Length over the limit is refused without reading a byte."""
    environ = {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(10**9), "wsgi.input": Unreadable()}
    status, _, body = call(AgentApi(authenticate, desk.for_agent), environ)
    assert status.startswith("413") and body["error"]["field"] == "body"


@pytest.mark.parametrize(
    ("length", "words"), [("", "Content-Length header"), ("-5", "not a number"), ("12abc", "not a number")]
)
def test_missing_or_invalid_content_length_is_400(desk: Desk, length: str, words: str) -> None:
    """No Content-Length, or one that is not a number of bytes: 400 naming the header."""
    environ = {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": length, "wsgi.input": Unreadable()}
    status, _, body = call(AgentApi(authenticate, desk.for_agent), environ)
    assert status.startswith("400")
    assert body["error"]["field"] == "Content-Length" and words in body["error"]["message"]


def test_body_shorter_than_its_content_length_is_400(desk: Desk) -> None:
    """A body that ends before its declared length: 400, not a half-parsed request."""
    environ = {
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "100",
        "wsgi.input": io.BytesIO(b'{"a": 1}'),
    }
    status, _, body = call(AgentApi(authenticate, desk.for_agent), environ)
    assert status.startswith("400") and "8 of 100 bytes" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"action": "rollback-model", "parameters": {"version": "1"}}, "reason", "Field required"),
        ({**GOOD, "reason": ""}, "reason", "at least 1 character"),
        ({**GOOD, "parameters": ["12"]}, "parameters", "valid dictionary"),
        ({**GOOD, "channel": "#general"}, "channel", "should match pattern"),
        ({**GOOD, "approve": True}, "approve", "Extra inputs are not permitted"),
        ({**GOOD, "parameters": {}}, "parameters.version", "Field required"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    http: httpx.Client, body: dict[str, Any], field: str, words: str
) -> None:
    """Validation errors (the API's and the gateway's) are 422 with the field's path and pydantic's words."""
    response = http.post("/requests", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == field and words in error["message"]


def test_several_invalid_fields_are_all_named(http: httpx.Client) -> None:
    """The message lists every invalid field; `field` is the first."""
    error = error_of(http.post("/requests", json={"parameters": 3}))
    assert error["field"] == "action"
    assert all(f"{name}:" in error["message"] for name in ("action", "parameters", "reason"))


@pytest.mark.parametrize("retry_after", [0.2, 1.0, 29.5])
def test_rate_limit_is_429_with_retry_after_rounded_up(
    http: httpx.Client, desk: Desk, retry_after: float
) -> None:
    """429 carries Retry-After in whole seconds, rounded up, and the exact figure in the body."""
    desk.fail = ApiError(429, "rate_limited", "60 requests a minute at most", retry_after=retry_after)
    response = http.post("/requests", json=GOOD)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(math.ceil(retry_after))
    assert error_of(response)["retry_after"] == retry_after


@pytest.mark.parametrize("wait", ["soon", "-1", "61", "nan", "inf", "1e400", ""])
def test_wait_out_of_range_is_400_naming_wait(http: httpx.Client, desk: Desk, wait: str) -> None:
    """`wait` must be a number of seconds from 0 to 60."""
    request_id = http.post("/requests", json=GOOD).json()["id"]
    response = http.get(f"/requests/{request_id}", params={"wait": wait})
    assert response.status_code == 400
    assert error_of(response)["field"] == "wait"
    assert desk.waits == []


def test_wait_given_twice_is_400(http: httpx.Client) -> None:
    """Two `wait` parameters are refused rather than one picked."""
    request_id = http.post("/requests", json=GOOD).json()["id"]
    response = http.get(f"/requests/{request_id}?wait=1&wait=2")
    assert response.status_code == 400 and "2 times" in error_of(response)["message"]


def test_cancel_of_a_final_request_is_409(http: httpx.Client) -> None:
    """The backend's 409 passes through as it was raised."""
    request_id = http.post("/requests", json=GOOD).json()["id"]
    http.post(f"/requests/{request_id}/cancel")
    response = http.post(f"/requests/{request_id}/cancel")
    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_unexpected_failure_is_500_with_a_reference_logged(
    http: httpx.Client, desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash answers 500 quoting a reference; the log has the traceback under it, the body does not."""
    desk.fail = RuntimeError("password=hunter2 in the connection string")
    with caplog.at_level(logging.ERROR, logger="steward.api"):
        response = http.get("/actions")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal" and "hunter2" not in response.text
    (record,) = [r for r in caplog.records if r.name == "steward.api"]
    reference = record.getMessage().rsplit("reference=", 1)[1]
    assert reference in error["message"]
    assert record.exc_info is not None and "GET /api/v1/actions" in record.getMessage()


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (Unavailable("the records database cannot be reached"), 503, "unavailable"),
        (ConfigurationError("STEWARD_DATABASE_URL is wrong"), 500, "internal"),
    ],
)
def test_steward_errors_keep_their_kind(
    http: httpx.Client, desk: Desk, failure: Exception, status: int, code: str
) -> None:
    """An unavailable backend is 503 with its message; a configuration error is the operators' (500)."""
    desk.fail = failure
    response = http.get("/actions")
    assert response.status_code == status and error_of(response)["code"] == code
    assert ("cannot be reached" in response.text) == (status == 503)


def test_metrics_count_routes_by_template_not_id(http: httpx.Client) -> None:
    """/metrics counts each route by its template and status; ids never become labels."""

    def count(route: str, status: str) -> float:
        return (
            REGISTRY.get_sample_value("steward_api_requests_total", {"route": route, "status": status}) or 0.0
        )

    before = (count("GET /api/v1/requests/{id}", "200"), count("unmatched", "404"))
    request_id = http.post("/requests", json=GOOD).json()["id"]
    http.get(f"/requests/{request_id}")
    http.get("/no/such/route")
    assert (count("GET /api/v1/requests/{id}", "200"), count("unmatched", "404")) == (
        before[0] + 1,
        before[1] + 1,
    )
    labels = {
        s.labels.get("route")
        for m in REGISTRY.collect()
        if m.name.startswith("steward_api")
        for s in m.samples
    }
    assert not any(request_id in (label or "") for label in labels)


# -- the client -------------------------------------------------------------------------------------


def test_client_request_wait_cancel_and_ask(steward: StewardClient, desk: Desk, base: str) -> None:
    """The client's calls give the models back; `request` takes keywords and a NewRequest alike."""
    assert [action.name for action in steward.actions()] == ["rollback-model"]
    first = steward.request("rollback-model", {"version": "12"}, "p95 latency doubled")
    second = steward.request(
        NewRequest(action="rollback-model", parameters={"version": "13"}, reason="again")
    )
    assert (first.id, second.id, first.replayed) == ("req1", "req2", False)
    assert steward.get(first.id).status == "pending"
    assert steward.cancel(second.id).status == "cancelled"
    waits = len(desk.waits)

    def approve_while_polled() -> None:
        until(lambda: len(desk.waits) > waits)  # the client's long-poll has reached the backend
        desk.finish(first.id, "succeeded")

    finisher = threading.Thread(target=approve_while_polled)
    finisher.start()
    assert steward.wait(first.id, timeout=20, poll=5).status == "succeeded"
    finisher.join()
    assert desk.waits[waits] == 5.0
    with StewardClient(base, "stw_asker") as asker:
        assert asker.ask("How do I roll back?").confidence == 0.9


def test_client_generates_an_idempotency_key(steward: StewardClient, desk: Desk) -> None:
    """A request without a key gets a fresh uuid4 each time; one with a key keeps it."""
    steward.request("rollback-model", {"version": "12"}, "one")
    steward.request("rollback-model", {"version": "12"}, "two")
    steward.request("rollback-model", {"version": "12"}, "three", idempotency_key="mine")
    keys = [key for (_, key) in desk.keys]
    assert [uuid.UUID(key).version for key in keys[:2]] == [4, 4] and keys[0] != keys[1]
    assert keys[2] == "mine"


def test_client_raises_the_servers_refusals(steward: StewardClient, desk: Desk) -> None:
    """Refusals come back as ApiError with the server's status, code and field; 429 with retry_after."""
    with pytest.raises(ApiError) as invalid:
        steward.request("rollback-model", {"version": "12"}, reason="")
    assert (invalid.value.status, invalid.value.field) == (422, "reason")
    with pytest.raises(ApiError) as missing:
        steward.get("req404")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    desk.fail = ApiError(429, "rate_limited", "slow down", retry_after=1.5)
    with pytest.raises(ApiError) as limited:
        steward.request("rollback-model", {"version": "12"}, "now")
    assert (limited.value.status, limited.value.retry_after) == (429, 2.0)


def test_client_wait_times_out(steward: StewardClient) -> None:
    """`wait` gives up after its timeout with WaitTimeoutError, both an ApiError and a TimeoutError."""
    request_id = steward.request("rollback-model", {"version": "12"}, "slow").id
    started = time.monotonic()
    with pytest.raises(TimeoutError) as timed_out:
        steward.wait(request_id, timeout=0.5, poll=0.2)
    assert isinstance(timed_out.value, WaitTimeoutError) and isinstance(timed_out.value, ApiError)
    assert "still pending" in str(timed_out.value)
    assert 0.5 <= time.monotonic() - started < 5


class LosingAnswers(httpx.HTTPTransport):
    """A real transport that loses the server's answers to the first `losses` requests (the request
    reached the server; the connection broke on the way back)."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses
        self.sent: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.sent.append(request.content)
        if self.losses > 0:
            self.losses -= 1
            raise httpx.RemoteProtocolError("connection reset on the way back", request=request)
        return response


def test_client_retries_a_lost_answer_with_the_same_key(base: str, desk: Desk) -> None:
    """When the answer to POST /requests is lost, the retry carries the same key: one request, replayed."""
    transport = LosingAnswers(losses=2)
    with StewardClient(base, "stw_deployer", backoff=0, transport=transport) as steward:
        info = steward.request("rollback-model", {"version": "12"}, "lost answers")
    assert desk.created == 1 and info.replayed and info.id == "req1"
    keys = {json.loads(body)["idempotency_key"] for body in transport.sent}
    assert len(transport.sent) == 3 and len(keys) == 1


def test_client_gives_up_after_its_retries(base: str, desk: Desk) -> None:
    """Answers lost beyond the retries: ApiError `unreachable`; still one request on the server."""
    with (
        StewardClient(
            base, "stw_deployer", retries=1, backoff=0, transport=LosingAnswers(losses=5)
        ) as steward,
        pytest.raises(ApiError) as lost,
    ):
        steward.request("rollback-model", {"version": "12"}, "lost")
    assert (lost.value.status, lost.value.code) == (503, "unreachable") and desk.created == 1


def test_client_reports_a_server_that_is_down() -> None:
    """Nothing listening: ApiError `unreachable`, naming the URL."""
    with (
        StewardClient("http://127.0.0.1:9", "stw_deployer", timeout=2) as steward,
        pytest.raises(ApiError) as down,
    ):
        steward.actions()
    assert down.value.code == "unreachable" and "127.0.0.1:9" in down.value.message


def html_page(status: str, text: str) -> WSGIApp:
    """A server that answers every request with an HTML page (a proxy's error, a captive portal)."""

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [("Content-Type", "text/html")])
        return [f"<html><body>{text}</body></html>".encode()]

    return application


@pytest.mark.parametrize(
    ("status", "text", "code"),
    [
        ("200 OK", "Sign in to the guest network", "not_json"),
        ("502 Bad Gateway", "Bad gateway", "http_error"),
    ],
)
def test_client_turns_a_page_that_is_not_steward_json_into_an_api_error(
    status: str, text: str, code: str
) -> None:
    """A captive portal's 200 or a proxy's 502 page is an ApiError 502 saying what came back, not a crash."""
    with (
        api_server(html_page(status, text)) as url,
        StewardClient(url, "stw") as steward,
        pytest.raises(ApiError) as failed,
    ):
        steward.actions()
    assert (failed.value.status, failed.value.code) == (502, code) and text in failed.value.message


# -- through `steward serve`, with the real gateway and token registry -----------------------------

OWNER = "U0000OWNER"
APPROVER = "U0000MLP01"  # in the starter policies' ml-platform group
RETRAIN = {"model": "fraud-scorer", "env": "prod"}


@pytest.fixture
def served(
    make_services: Callable[..., Services], tmp_path: Path, receiver: WebhookReceiver
) -> Iterator[RunningBot]:
    """Steward served on loopback with the agent API over the real gateway, cards going to CHANNEL."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    services = make_services(policies_dir=policies, agent_channel=CHANNEL)
    with running_bot(services, agents=True) as running:
        yield running


def agent_token(bot: RunningBot, name: str = "release-bot", **options: Any) -> str:
    """A new agent's token, from the registry `steward agents add` uses."""
    return bot.services.agent_registry.add(name, OWNER, **options)[1]


def cards(bot: RunningBot) -> list[dict[str, Any]]:
    """The approval cards Steward posted in CHANNEL."""
    return [message for message in bot.bot_posts(CHANNEL) if "Approval needed" in blocks_text(message)]


def test_client_waits_for_an_approval_in_slack_and_gets_the_result(
    served: RunningBot, receiver: WebhookReceiver
) -> None:
    """The client's request posts a card; while `wait` long-polls, an approver clicks; the run's result
    comes back to the client, and the action ran once."""
    with StewardClient(served.base, agent_token(served)) as steward:
        catalog = {action.name: action for action in steward.actions()}
        assert "model" in catalog["retrain-model"].input_schema["properties"]
        info = steward.request("retrain-model", RETRAIN, "drift on fraud-scorer")
        assert (info.status, info.agent, info.final) == ("pending", "release-bot", False)
        outcome: list[RequestInfo] = []
        poller = threading.Thread(target=lambda: outcome.append(steward.wait(info.id, timeout=30, poll=5)))
        poller.start()
        (card,) = cards(served)
        assert served.click(card, ACTION_APPROVE, user=APPROVER).status == 200
        served.settle()
        poller.join(timeout=40)
    assert outcome[0].status == "succeeded" and outcome[0].result is not None and outcome[0].result.ok
    assert len(receiver.requests) == 1


def test_a_lost_answer_retried_by_the_client_makes_one_request_and_one_card(served: RunningBot) -> None:
    """The gateway knows the client's idempotency key: the retry of a lost answer replays the request."""
    transport = LosingAnswers(losses=1)
    with StewardClient(served.base, agent_token(served), backoff=0, transport=transport) as steward:
        info = steward.request("retrain-model", RETRAIN, "drift on fraud-scorer")
    served.settle()
    assert info.replayed and len(transport.sent) == 2
    assert len(cards(served)) == 1


def test_tokens_scopes_and_ownership_are_checked_by_the_real_registry(served: RunningBot) -> None:
    """Wrong and revoked tokens are 401, a token without the scope 403, another agent's request 404."""
    token, asker = agent_token(served), agent_token(served, "asker-bot", scopes=["ask"])
    with StewardClient(served.base, token) as steward:
        mine = steward.request("retrain-model", RETRAIN, "drift").id
    refusals: dict[str, int] = {}
    calls: list[tuple[str, str, Callable[[StewardClient], object]]] = [
        ("wrong", "stw_not-a-token", lambda c: c.actions()),
        ("scope", asker, lambda c: c.request("retrain-model", RETRAIN, "drift")),
        ("theirs", agent_token(served, "other-bot"), lambda c: c.get(mine)),
    ]
    for label, key, call in calls:
        with StewardClient(served.base, key) as client, pytest.raises(ApiError) as refused:
            call(client)
        refusals[label] = refused.value.status
    served.services.agent_registry.revoke("release-bot")
    with StewardClient(served.base, token) as steward, pytest.raises(ApiError) as revoked:
        steward.get(mine)
    assert refusals == {"wrong": 401, "scope": 403, "theirs": 404} and revoked.value.status == 401


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"action": "retrain-model", "parameters": RETRAIN}, 422, "reason"),
        (
            {"action": "retrain-model", "parameters": {"model": "fraud-scorer"}, "reason": "r"},
            422,
            "parameters.env",
        ),
        ({"action": "no-such-action", "parameters": {}, "reason": "r"}, 422, "action"),
    ],
)
def test_invalid_requests_through_serve_name_the_field(
    served: RunningBot, body: dict[str, Any], status: int, field: str
) -> None:
    """The API's own validation and the gateway's parameter checks both answer 422 naming the field."""
    headers = {"Authorization": f"Bearer {agent_token(served)}"}
    response = httpx.post(f"{served.base}{API_PREFIX}/requests", json=body, headers=headers)
    assert response.status_code == status and error_of(response)["field"] == field
    assert cards(served) == []


def test_the_rate_limit_through_serve_answers_429_with_retry_after(served: RunningBot) -> None:
    """An agent over its requests per minute gets 429, Retry-After in whole seconds, and no new card."""
    headers = {"Authorization": f"Bearer {agent_token(served, per_minute=1)}"}
    body = {"action": "retrain-model", "parameters": RETRAIN, "reason": "drift"}
    with httpx.Client(base_url=served.base + API_PREFIX, headers=headers) as http:
        assert http.post("/requests", json=body).status_code == 201
        limited = http.post("/requests", json=body)
    served.settle()
    assert limited.status_code == 429 and error_of(limited)["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert len(cards(served)) == 1


def conforms(document: dict[str, Any], response: httpx.Response) -> None:
    """The response's body matches what the OpenAPI description says its route answers with that status
    (checked by openapi-schema-validator, not by the models that generated the description)."""
    request = response.request
    path = request.url.path
    template = next(
        API_PREFIX + route.template
        for route in ROUTES
        if route.method == request.method and route.pattern.fullmatch(path.removeprefix(API_PREFIX))
    )
    answer = document["paths"][template][request.method.lower()]["responses"][str(response.status_code)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    schema = answer["content"]["application/json"]["schema"]
    validate_schema(response.json(), {**schema, "components": document["components"]}, cls=OAS31Validator)


def test_steward_serve_answers_as_its_openapi_description_says(served: RunningBot) -> None:
    """The served description validates; the real gateway's answers and refusals match its schemas, and
    /metrics on the same port counts the API's routes."""
    document = httpx.get(f"{served.base}{API_PREFIX}/openapi.json").json()
    validate_openapi(document)
    headers = {"Authorization": f"Bearer {agent_token(served)}"}
    body = {"action": "retrain-model", "parameters": RETRAIN, "reason": "drift", "idempotency_key": "k1"}
    with httpx.Client(base_url=served.base, headers=headers) as http:
        answers = [http.get(f"{API_PREFIX}/actions"), http.post(f"{API_PREFIX}/requests", json=body)]
        answers.append(http.post(f"{API_PREFIX}/requests", json=body))  # replayed: 200
        answers.append(http.get(f"{API_PREFIX}/requests/{answers[1].json()['id']}", params={"wait": "0.1"}))
        answers.append(
            http.post(f"{API_PREFIX}/requests", json={**body, "reason": "other"})
        )  # key reused: 409
        answers.append(http.get(f"{API_PREFIX}/requests/nope"))
        answers.append(http.get(f"{API_PREFIX}/actions", headers={"Authorization": "Bearer stw_wrong"}))
    assert [answer.status_code for answer in answers] == [200, 201, 200, 200, 409, 404, 401]
    for answer in answers:
        conforms(document, answer)
    metrics = httpx.get(f"{served.base}/metrics").text
    assert 'steward_api_requests_total{route="GET /api/v1/actions",status="401"}' in metrics
    assert 'steward_api_requests_total{route="GET /api/v1/openapi.json",status="200"}' in metrics


def probe_while_polled(services: Services, desk: Desk, threads: int, polls: int) -> int | None:
    """Serve Steward with `threads` server threads, hold `polls` long-polls waiting in the backend, and
    probe /healthz for three seconds: its status, or None when no thread was free to answer it."""
    with FakeSlack() as slack:
        app = build_test_app(services, slack, slack_signing_secret=SecretStr("test-secret"))
        headers = {"Authorization": "Bearer stw_deployer"}
        api = AgentApi(authenticate, desk.for_agent)
        with (
            slack_serving(app, threads=threads, api=api) as base,
            httpx.Client(base_url=base + API_PREFIX, headers=headers, timeout=40) as http,
        ):
            ids = [http.post("/requests", json=GOOD).json()["id"] for _ in range(polls)]
            waiting = [
                threading.Thread(target=http.get, args=(f"/requests/{request_id}?wait=30",))
                for request_id in ids
            ]
            for poll in waiting:
                poll.start()
            until(lambda: len(desk.waits) == polls)  # every poll holds a thread in the backend
            try:
                status: int | None = httpx.get(f"{base}/healthz", timeout=3.0).status_code
            except httpx.ReadTimeout:
                status = None
            for request_id in ids:
                desk.finish(request_id, "succeeded")
            for poll in waiting:
                poll.join(timeout=10)
    return status


@pytest.mark.parametrize(("threads", "healthz"), [(3, None), (4, 200)])
def test_long_polls_hold_server_threads_so_spare_ones_keep_steward_answering(
    make_services: Callable[..., Services], desk: Desk, threads: int, healthz: int | None
) -> None:
    """Each long-poll holds a server thread while it waits: with all of them held, even /healthz waits;
    with one to spare (STEWARD_HTTP_THREADS above the agents' concurrent polls), it answers at once."""
    assert probe_while_polled(make_services(), desk, threads, polls=3) == healthz
