"""The vocabulary of guarded actions, shared by the policy engine, approvals, executors and the audit log.

No Slack inside. Everything here is plain pydantic, so it validates, serialises and hashes the same
way everywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RiskTier = Literal["low", "medium", "high", "critical"]
Outcome = Literal["deny", "allow", "require_approval"]
Waiting = Literal["hold", "deny"]
MAX_TIMEOUT_SECONDS = 900.0  # an executor attempt's longest timeout (15 minutes)
ParamType = Literal["string", "integer", "number", "boolean"]


class ParamSpec(BaseModel):
    """One typed parameter of an action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: ParamType = "string"
    description: str = ""
    required: bool = True
    default: str | int | float | bool | None = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None  # a full-match regular expression for strings
    secret: bool = False  # redacted before it is stored or audited


class ExecutorSpec(BaseModel):
    """How an action runs: `webhook`, `command`, `python`, `mlflow` or `mcp`, with that kind's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["webhook", "command", "python", "mlflow", "mcp"]
    # webhook; mcp (a streamable-HTTP server)
    url: str | None = None
    secret_env: str | None = None  # environment variable holding the HMAC key
    # command; mcp (a server run over stdio: its args are passed as written, not templates)
    program: str | None = None
    args: tuple[str, ...] = ()  # templates: "{model}" is replaced by the parameter's value
    pass_env: tuple[str, ...] = ()  # variables the program gets besides PATH, HOME and the locale
    # mcp: the downstream tool (default: the action's name), called with the parameters as its arguments
    tool: str | None = None
    token_env: str | None = None  # variable holding a bearer token for a url: server
    # python
    entry_point: str | None = None  # "package.module:function"
    # mlflow
    tracking_uri: str | None = None
    registry_uri: str | None = None
    model_param: str = "model"
    version_param: str = "version"
    alias: str | None = None  # a fixed alias, or taken from the `alias` parameter when unset
    # all: a run always ends. A run's lease is renewed while it runs, and capping each attempt means no
    # executor keeps a request `running` (and its lease renewed) for longer than an operator would wait.
    timeout_seconds: float = Field(default=30.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    retries: int = Field(default=2, ge=0, le=10)


class ActionSpec(BaseModel):
    """An action of the catalog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    params: tuple[ParamSpec, ...] = ()
    executor: ExecutorSpec
    risk: RiskTier = "medium"
    idempotent: bool = False
    runbook: str | None = None  # path of the governing runbook in the knowledge base
    # where an AI agent's request for this action posts its card when the agent names no channel
    channel: str | None = Field(default=None, pattern=r"[CG][A-Z0-9]{2,30}")


class ApprovalRequirement(BaseModel):
    """N approvals from the named groups within a time limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    groups: tuple[str, ...]
    within_minutes: int = Field(default=60, ge=1)
    # False: the owner of the agent that asked does not count as an approver of its request
    owner_may_approve: bool = True


class Actor(BaseModel):
    """Who asks or clicks, and where."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    channel: str | None = None


class ActionRequest(BaseModel):
    """A request to run one action with typed parameters."""

    model_config = ConfigDict(frozen=True)

    action: str
    params: dict[str, Any]

    def fingerprint(self, policy_version: str) -> str:
        """The hash an approval binds to: action, parameters and policy version."""
        canonical = json.dumps(
            {"action": self.action, "params": self.params, "policy": policy_version},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class Decision(BaseModel):
    """What the policy says about a request, and why."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    rule: str | None  # the rule that fired; None for the default deny
    reason: str
    policy_version: str
    approval: ApprovalRequirement | None = None
    evaluated_at: dt.datetime


Verb = Literal["approve", "reject"]
_VERB_FORMS: dict[Verb, tuple[str, str]] = {  # the verb's past and its doer
    "approve": ("approved", "approver"),
    "reject": ("rejected", "rejecter"),
}


class Refusal(BaseModel):
    """Why a person's decision on a request does not count, told in the words of the button they clicked.

    `reason`: `agent` (an AI agent never decides on a request, whatever groups name it), `requester`
    (one never decides on one's own request), `owner` (the owner of the agent that asked, when the
    requirement says `owner_may_approve: false`), `already` (each approver counts once) or `outside` (not
    in `groups`, the groups the requirement names, e.g. "ml or sre").
    """

    model_config = ConfigDict(frozen=True)

    reason: Literal["agent", "requester", "owner", "already", "outside"]
    groups: str

    def render(self, verb: Verb = "approve") -> str:
        """The refusal for someone who clicked `verb`."""
        past, doer = _VERB_FORMS[verb]
        if self.reason == "agent":
            return f"an AI agent cannot {verb} a request; a person in {self.groups} must {verb}"
        if self.reason == "requester":
            return f"you are the requester; someone else in {self.groups} must {verb}"
        if self.reason == "owner":
            return f"you own the agent that asked; someone else in {self.groups} must {verb}"
        if self.reason == "already":
            return f"you have already {past}; each {doer} counts once"
        return f"{doer}s must be in {self.groups}"
