"""How an agent's request is translated between the catalog, the request records and the API's JSON
shapes: the JSON Schema of an action's parameters, typed parameters checked against the catalog,
a stored request as `RequestInfo`, and where a callback may go. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bot.actions.approvals import FINISHED, PENDING, RequestView
from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy.rules import value_problem
from bot.agents.models import ApiError, Approvals, DecisionInfo, RequestInfo, RunResult

_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def input_schema(spec: ActionSpec) -> dict[str, Any]:
    """The JSON Schema of an action's parameters, from the catalog (patterns anchored: they must match
    the whole value, as the policy checks them)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in spec.params:
        properties[param.name] = _property(param)
        if param.required and param.default is None:
            required.append(param.name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _property(param: ParamSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _TYPES[param.type]}
    description = param.description
    if param.secret:
        description = (description + " " if description else "") + "(secret: redacted before it is stored)"
        schema["writeOnly"] = True
    if description:
        schema["description"] = description
    if param.enum is not None:
        schema["enum"] = list(param.enum)
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.pattern is not None:
        schema["pattern"] = f"^(?:{param.pattern})$"
    if param.default is not None:
        schema["default"] = param.default
    return schema


def request_info(view: RequestView, agent: str = "") -> RequestInfo:
    """A request as its agent sees it (the API, MCP and callbacks)."""
    ran = view.result_summary is not None
    return RequestInfo(
        id=view.request_id,
        action=view.action,
        parameters=view.params,
        reason=view.justification or "",
        status=view.status,  # type: ignore[arg-type]  # the store's states are Status's
        final=view.status in FINISHED,
        decision=DecisionInfo(outcome=_outcome(view), rule=view.rule, reason=view.reason),
        approvals=Approvals(
            required=view.required_count,
            groups=list(view.required_groups),
            approvers=list(view.approvers),
        ),
        rejection_reason=view.rejection_reason,
        result=RunResult(
            ok=view.status == "succeeded",
            summary=view.result_summary or "",
            output=view.result_output or "",
        )
        if ran
        else None,
        channel=view.channel,
        card_url=view.card_url,
        created_at=view.created_at,
        deadline=view.deadline if view.status == PENDING else None,
        agent=view.agent or agent,
    )


def _outcome(view: RequestView) -> Any:
    if view.status == "denied":
        return "deny"
    return "require_approval" if view.required_count > 0 else "allow"


def same_params(spec: ActionSpec | None, stored: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether `given` are the parameters stored (secret ones are stored redacted: not compared)."""
    if spec is None:
        return dict(stored) == dict(given)
    secret = {param.name for param in spec.params if param.secret}
    try:
        checked = checked_params(spec, given)
    except ApiError:
        return False
    return {k: v for k, v in stored.items() if k not in secret} == {
        k: v for k, v in checked.items() if k not in secret
    }


def checked_params(spec: ActionSpec, given: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters, typed as the catalog says, defaults filled in; 422 naming the first bad field."""
    specs = {param.name: param for param in spec.params}
    problems: list[tuple[str, str]] = [
        (name, f"unknown parameter {name!r}; {spec.name} takes {', '.join(specs) or 'none'}")
        for name in given
        if name not in specs
    ]
    values: dict[str, Any] = {}
    for name, param in specs.items():
        value = given.get(name, param.default)
        if value is None:
            if param.required:
                problems.append((name, f"{name} is required"))
        elif problem := value_problem(param, value):
            problems.append((name, f"{name}: {problem}"))
        else:
            values[name] = value
    if problems:
        raise ApiError(
            422, "invalid_parameters", "; ".join(text for _, text in problems), f"parameters.{problems[0][0]}"
        )
    return values


def check_callback(url: str, hosts: tuple[str, ...]) -> None:
    """A callback goes only to a host the operator allowed (`STEWARD_AGENT_CALLBACK_HOSTS`): an agent
    must not make Steward post to arbitrary addresses inside the network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(422, "bad_callback_url", "callback_url must be an http(s) URL", "callback_url")
    if parts.username or parts.password:
        raise ApiError(422, "bad_callback_url", "callback_url must not carry credentials", "callback_url")
    if parts.hostname.lower() not in {host.lower() for host in hosts}:
        allowed = ", ".join(hosts) if hosts else "none"
        raise ApiError(
            422,
            "callback_host_not_allowed",
            f"callbacks may go only to the hosts in STEWARD_AGENT_CALLBACK_HOSTS (now: {allowed}); "
            f"ask the operator to add {parts.hostname}, or poll GET /api/v1/requests/{{id}}?wait=",
            "callback_url",
        )
