"""Run an approved request exactly once: claim it in the database, execute, record the result."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from bot.actions.approvals import ApprovalService, Gate
from bot.actions.executors import ExecutionError, ExecutionResult, run_action
from bot.actions.models import ActionSpec
from bot.metrics import EXECUTIONS

log = logging.getLogger("steward.actions")

Execute = Callable[[ActionSpec, Mapping[str, Any], str], ExecutionResult]


def execute_once(
    service: ApprovalService,
    gate: Gate,
    request_id: str,
    execute: Execute | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> ExecutionResult | None:
    """Run the request if this caller wins the claim; None if another caller has it or it is not approved.

    `secrets` are the values of secret parameters, which are stored redacted: only the caller that
    submitted an allowed request has them, and runs it at once.
    """
    if not service.claim(request_id):
        return None
    view = service.get(request_id)
    assert view is not None
    spec = gate.action(view.action)
    run = execute or (lambda action, params, key: run_action(action, params, key))
    if spec is None:
        result = ExecutionResult(
            ok=False,
            summary=f"action {view.action!r} is no longer in the policy; nothing ran",
            output="",
            duration_seconds=0.0,
            attempts=0,
        )
    else:
        try:
            # The request id is the idempotency key: a receiver that sees it twice can tell.
            result = run(spec, {**view.params, **(secrets or {})}, request_id)
        except ExecutionError as exc:
            result = ExecutionResult(ok=False, summary=str(exc), output="", duration_seconds=0.0, attempts=0)
        except Exception as exc:
            log.exception("executor crashed request=%s", request_id)
            result = ExecutionResult(
                ok=False, summary=f"{type(exc).__name__}: {exc}", output="", duration_seconds=0.0, attempts=0
            )
    service.finish(request_id, result.ok, result.summary, result.output, result.duration_seconds)
    EXECUTIONS.labels("succeeded" if result.ok else "failed").inc()
    log.info("executed request=%s ok=%s seconds=%.3f", request_id, result.ok, result.duration_seconds)
    return result
