"""The OpenAPI 3.1 description of the agent API, generated from its route table and pydantic models.

Request bodies are described as pydantic validates them, responses as it serializes them; every
refusal has the one error body. Served at `GET /api/v1/openapi.json` (bot/runtime/api.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bot.agents.models import API_PREFIX, MAX_WAIT_SECONDS

if TYPE_CHECKING:
    from bot.runtime.api import Route

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Malformed: the body is not a JSON object, or a query parameter is wrong (`field` names it)",
    401: "No token, or a wrong or revoked one",
    403: "The token lacks the route's scope, or may not request this action",
    404: "No such request, or not this agent's (`field` is `id`)",
    405: "The method is not served at this path (see `Allow`)",
    409: "The request's state does not allow it, or an idempotency key was reused for another request",
    413: "The body is over the size limit (it is not read)",
    415: "The body is not `application/json`",
    422: "A field is invalid or the action unknown; `field` is its path (`parameters.version`)",
    429: "Over the agent's limits (pending requests, requests per minute): retry after `Retry-After` seconds",
    500: "Steward failed; `message` quotes a reference the operators find in the log",
    503: "A backend Steward needs (the database) is unavailable",
}


class ErrorDetail(BaseModel):
    """What was refused and why."""

    code: str
    message: str
    field: str | None = None  # the field, header or query parameter at fault
    retry_after: float | None = None  # 429: seconds until a retry may succeed


class ErrorBody(BaseModel):
    """The body of every refusal (`ApiError.body()`)."""

    error: ErrorDetail


def _schemas(routes: Iterable[Route]) -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    """Each body and response model's reference, and every schema under components."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for route in routes:
        if route.body is not None:
            wanted[route.body, "validation"] = None
        if route.response is not None:
            wanted[route.response, "serialization"] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    return {(model, str(mode)): ref for (model, mode), ref in refs.items()}, top.get("$defs", {})


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses() -> dict[str, Any]:
    """One reusable response per refusal status, named by its phrase (`TooManyRequests`)."""
    error = {"$ref": REF.format(model="ErrorBody")}
    responses: dict[str, Any] = {}
    for status, description in ERRORS.items():
        response: dict[str, Any] = {"description": description, "content": _json(error)}
        if status == 429:
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait (rounded up)", "schema": {"type": "integer"}}
            }
        if status == 405:
            response["headers"] = {
                "Allow": {"description": "The methods served", "schema": {"type": "string"}}
            }
        responses[_name(status)] = response
    return responses


def _name(status: int) -> str:
    return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")


def _operation(route: Route, refs: dict[tuple[Any, str], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation, "summary": route.summary}
    if route.scope is None:
        operation["security"] = []
        operation["responses"] = {
            "200": {"description": "The OpenAPI document", "content": _json({"type": "object"})}
        }
        return operation
    operation["description"] = f"Needs a token with the scope `{route.scope}`."
    parameters = []
    if "{id}" in route.template:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The request's id",
                "schema": {"type": "string"},
            }
        )
    if route.operation == "getRequest":
        parameters.append(
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "Long-poll: answer when the request is final or after this many seconds",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(refs[route.body, "validation"])}
    success: dict[str, Any] = {}
    if route.response is not None:
        model = refs[route.response, "serialization"]
        success[str(route.status)] = {"description": HTTPStatus(route.status).phrase, "content": _json(model)}
        if route.status == 201:
            success["200"] = {
                "description": "Replayed: the idempotency key's earlier request",
                "content": _json(model),
            }
    errors = {
        str(status): {"$ref": f"#/components/responses/{_name(status)}"} for status in sorted(route.errors)
    }
    operation["responses"] = {**success, **errors}
    return operation


def describe(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes`."""
    routes = list(routes)
    refs, schemas = _schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(API_PREFIX + route.template, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Steward agent API",
            "version": "1",
            "description": "Guarded actions and the knowledge base for AI agents: docs/agents.md.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An agent's token from `steward agents add` (`Bearer stw_…`)",
                }
            },
        },
    }
