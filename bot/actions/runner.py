"""Run an approved request exactly once: claim it in the database, execute, record the result.

While the action runs, a heartbeat renews the run's lease (`heartbeat_at`), so a long run of a live
process is never taken for an interrupted one; only a run whose process died stops renewing it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bot.actions.approvals import ApprovalService, Gate
from bot.actions.executors.dispatch import ExecutionError, ExecutionResult, run_action
from bot.actions.models import ActionSpec
from bot.metrics import EXECUTIONS

log = logging.getLogger("steward.actions")

Execute = Callable[[ActionSpec, Mapping[str, Any], str], ExecutionResult]
Blocked = Callable[[str, str], None]

# A run whose lease is this old was interrupted: its process stopped renewing it (it died).
LEASE_SECONDS = 60.0
HEARTBEAT_SECONDS = LEASE_SECONDS / 4


def execute_once(
    service: ApprovalService,
    gate: Gate,
    request_id: str,
    execute: Execute | None = None,
    secrets: Mapping[str, Any] | None = None,
    blocked: Blocked | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> ExecutionResult | None:
    """Run the request if this caller wins the claim; None if another caller has it, it is not
    approved, or the policy or its approvers stop it at this moment (then `blocked(request_id, why)`).

    `secrets` are the values of secret parameters, which are stored redacted: only the caller that
    submitted an allowed request has them, and runs it at once.
    """
    claim = service.claim(request_id)
    if not claim.claimed:
        if claim.blocked:
            log.info("run blocked request=%s: %s", request_id, claim.blocked)
            if blocked is not None:
                blocked(request_id, claim.blocked)
        return None
    view = service.get(request_id)
    if view is None:  # only a hand-deleted row: the claim just read it
        raise LookupError(f"action request {request_id} was claimed but is no longer in the database")
    spec = gate.action(view.action)
    run = execute or (lambda action, params, key: run_action(action, params, key))
    with _heartbeat(service, request_id, heartbeat_seconds):
        if spec is None:
            result = ExecutionResult(
                ok=False,
                summary=f"action {view.action!r} is no longer in the policy; nothing ran",
                output="",
                duration_seconds=0.0,
                attempts=0,
            )
        else:
            result = _run(run, spec, {**view.params, **(secrets or {})}, request_id)
    service.finish(request_id, result.ok, result.summary, result.output, result.duration_seconds)
    EXECUTIONS.labels("succeeded" if result.ok else "failed").inc()
    log.info("executed request=%s ok=%s seconds=%.3f", request_id, result.ok, result.duration_seconds)
    return result


def _run(run: Execute, spec: ActionSpec, params: Mapping[str, Any], request_id: str) -> ExecutionResult:
    try:
        # The request id is the idempotency key: a receiver that sees it twice can tell.
        return run(spec, params, request_id)
    except ExecutionError as exc:
        return ExecutionResult(ok=False, summary=str(exc), output="", duration_seconds=0.0, attempts=0)
    except Exception as exc:
        log.exception("executor crashed request=%s", request_id)
        return ExecutionResult(
            ok=False, summary=f"{type(exc).__name__}: {exc}", output="", duration_seconds=0.0, attempts=0
        )


@contextmanager
def _heartbeat(service: ApprovalService, request_id: str, every: float) -> Iterator[None]:
    """Renew the run's lease every `every` seconds until the block ends."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                if not service.renew(request_id):
                    return  # no longer running (finished, or taken over): nothing to renew
            except Exception:  # the database is briefly unreachable: try again at the next beat
                log.warning("lease not renewed request=%s", request_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"lease-{request_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
