"""What AI agents exchange with Steward: the JSON shapes of the agent API, its errors, and the backend
protocol every agent-facing surface speaks.

The HTTP API (`bot/runtime/api.py`), the MCP server (`bot/agents/mcp_server.py`), the Python client
(`bot/agents/client.py`) and the LangChain tools (`bot/agents/langchain.py`) all use these models, so a
request looks the same wherever an agent meets it. No Slack and no database inside.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.errors import StewardError

API_PREFIX = "/api/v1"
MCP_PATH = "/mcp"
MAX_WAIT_SECONDS = 60.0  # the longest long-poll of GET /api/v1/requests/{id}?wait=
SCOPES = ("ask", "request")  # what an agent's token may do

# A request's states (bot/store/action_requests.py); `final` ones never change again.
Status = Literal[
    "denied",
    "pending",
    "approved",
    "running",
    "succeeded",
    "failed",
    "rejected",
    "cancelled",
    "expired",
    "needs_attention",
]
FINAL_STATES = frozenset(
    {"denied", "succeeded", "failed", "rejected", "cancelled", "expired", "needs_attention"}
)


AGENT_PREFIX = "agent:"  # an agent's requester id in the policy and the audit: agent:NAME
AGENT_NAME = r"[a-z][a-z0-9-]{0,39}"


class Agent(BaseModel):
    """An AI agent with a token (`steward agents add`): who it is, who owns it, what it may do."""

    model_config = ConfigDict(frozen=True)

    name: str
    token_id: str  # the token's public part, in the audit log; the secret is only hashed
    owner: str  # the Slack user id of the person answerable for it
    scopes: tuple[str, ...] = SCOPES
    actions: tuple[str, ...] | None = None  # None: every catalog action
    max_pending: int = 20  # requests waiting for approval at once
    per_minute: int = 60  # requests created per minute

    @property
    def requester(self) -> str:
        """The agent as a requester: `agent:NAME`."""
        return AGENT_PREFIX + self.name

    def may(self, action: str) -> bool:
        """Whether the agent may request this action at all (its token's action list)."""
        return self.actions is None or action in self.actions


class ApiError(StewardError):
    """A refusal of the agent API: an HTTP status, a stable code, a message for the agent and the field
    at fault (`parameters.version`, `action`, the header name …). Never a traceback."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after  # 429: seconds until a retry may succeed

    def body(self) -> dict[str, Any]:
        """The JSON error body: `{"error": {"code", "message", "field"}}`."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return {"error": error}


class ActionInfo(BaseModel):
    """A catalog action an agent may request, with the JSON Schema of its parameters."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    risk: str
    idempotent: bool
    runbook: str | None = None
    input_schema: dict[str, Any]


class ActionList(BaseModel):
    """`GET /api/v1/actions`."""

    actions: list[ActionInfo]


class NewRequest(BaseModel):
    """`POST /api/v1/requests`: what the agent asks for and why."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=1, max_length=2000)
    channel: str | None = Field(default=None, pattern=r"[CG][A-Z0-9]{2,30}")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    callback_url: str | None = Field(default=None, max_length=2000)


class DecisionInfo(BaseModel):
    """What the policy decided when the request came in."""

    outcome: Literal["deny", "allow", "require_approval"]
    rule: str | None
    reason: str


class Approvals(BaseModel):
    """How many approvals the request needs, from which groups, and who has approved so far."""

    required: int
    groups: list[str]
    approvers: list[str]


class RunResult(BaseModel):
    """What the run did (credentials masked)."""

    ok: bool
    summary: str
    output: str


class RequestInfo(BaseModel):
    """A request as the agent sees it (`POST /api/v1/requests`, `GET /api/v1/requests/{id}`)."""

    id: str
    action: str
    parameters: dict[str, Any]  # as stored: secret parameters redacted
    reason: str  # the agent's reason
    status: Status
    final: bool
    decision: DecisionInfo
    approvals: Approvals
    rejection_reason: str | None = None  # the reviewer's reason when rejected
    result: RunResult | None = None
    channel: str | None = None
    card_url: str | None = None  # the approval card in Slack, when one was posted
    created_at: float
    deadline: float | None = None  # pending requests expire then (seconds since the epoch)
    agent: str
    replayed: bool = False  # True when an idempotency key matched an earlier request


class Question(BaseModel):
    """`POST /api/v1/ask`."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)


class Citation(BaseModel):
    """A document an answer rests on, numbered as the answer cites it ([1] is the first)."""

    title: str
    path: str  # the document's path in the knowledge base
    section: str = ""
    url: str | None = None
    owner: str | None = None
    status: str | None = None


class AnswerInfo(BaseModel):
    """Steward's answer as JSON (the shape of `steward ask --json`): the text, whether it abstained,
    its confidence (0-1) and its citations; `owners` are who might know when it abstained."""

    answer: str
    abstained: bool
    confidence: float
    citations: list[Citation]
    owners: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class Authenticator(Protocol):
    """Who holds a bearer token: the agent, or `ApiError` 401 (missing, wrong, revoked)."""

    def __call__(self, authorization: str | None) -> Agent:
        """`authorization` is the raw `Authorization` header (`Bearer stw_…`), None when absent."""
        ...


class StewardBackend(Protocol):
    """What an agent can do, wherever it reaches Steward: in process (the API's gateway) or over HTTP
    (the client). Refusals are `ApiError`."""

    def actions(self) -> list[ActionInfo]:
        """The catalog actions this agent may request."""
        ...

    def request(self, new: NewRequest) -> RequestInfo:
        """Ask for an action: the policy decides at once (deny, run, or wait for approvals)."""
        ...

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        """The request; with `wait`, return as soon as it is final or after `wait` seconds."""
        ...

    def cancel(self, request_id: str) -> RequestInfo:
        """Withdraw a request that has not run."""
        ...

    def ask(self, question: str) -> AnswerInfo:
        """Steward's answer from the knowledge base."""
        ...
