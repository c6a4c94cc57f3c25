"""AI agents' requests, in process: the backend the HTTP API and the MCP endpoint of `steward serve` use.

An agent's request goes through exactly what a person's does: the policy decides (`requester:
agent:NAME` rules, agent groups), a pending request's approval card is posted in the channel (the
request's, else the action's, else `STEWARD_AGENT_CHANNEL`), reviewers approve in the thread, the run is
claimed once and everything is audited, with the agent's name and token id. What is added here is only
what an agent needs: its token's scope and action list, idempotency keys, limits, long-polls and a
signed callback. The agent's reason and parameters are untrusted text; the Slack outlet escapes them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from bot.actions.approvals import FINISHED, RequestView
from bot.actions.guarded import GuardedActions, RunOutcome, Submission
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyGate
from bot.agents.models import (
    MAX_WAIT_SECONDS,
    ActionInfo,
    Agent,
    AnswerInfo,
    ApiError,
    Citation,
    NewRequest,
    RequestInfo,
    StewardBackend,
)
from bot.agents.shapes import check_callback, checked_params, input_schema, request_info, same_params
from bot.answers.questions import Asked, QuestionService
from bot.answers.retrieval import IndexMissingError
from bot.errors import StewardError

log = logging.getLogger("steward.agents")

API_PLACE = "api"  # the answer log's channel for questions agents ask through the API or MCP


class AgentOutlet(Protocol):
    """Where an agent's request shows up for people (the Slack layer implements it)."""

    def announce(self, submission: Submission) -> tuple[str, str | None] | None:
        """Post the request in its channel: the approval card (pending) or the note that it runs now
        (allowed); (the message's ts, its link), or None when nothing was posted."""
        ...

    def ran(self, run: RunOutcome) -> None:
        """Post the result of a run in the request's thread and redraw its card."""
        ...

    def withdrawn(self, view: RequestView) -> None:
        """Redraw the card of a request the agent cancelled."""
        ...


class CallbackNudge(Protocol):
    """Deliver the callbacks that are due now (`bot/agents/callbacks.py`)."""

    def __call__(self) -> None: ...


@dataclass(frozen=True)
class AgentSettings:
    """The deployment's rules for agents: the fallback channel for cards, the hosts callbacks may go to."""

    channel: str | None = None
    callback_hosts: tuple[str, ...] = ()
    poll_seconds: float = 0.1  # how often a long-poll looks at the request
    # long-polls one agent may hold at once in this process: each holds a server thread, and one agent
    # must not take the threads Slack's requests need
    waits_per_agent: int = 4


class AgentGateway:
    """Builds each agent's backend over the deployment's guarded actions and answers."""

    def __init__(
        self,
        actions: GuardedActions,
        policy: Callable[[], PolicyGate],
        questions: QuestionService,
        outlet: AgentOutlet | None = None,
        settings: AgentSettings = AgentSettings(),
        callbacks: CallbackNudge | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.actions = actions
        self.policy = policy
        self.questions = questions
        self.outlet = outlet
        self.settings = settings
        self.callbacks = callbacks
        self.clock = clock
        self.sleep = sleep
        self._waiting: Counter[str] = Counter()
        self._waiting_lock = threading.Lock()

    @contextmanager
    def waiting(self, agent: Agent) -> Iterator[None]:
        """Hold one of the agent's long-poll places for the block; 429 when it holds them all."""
        with self._waiting_lock:
            if self._waiting[agent.name] >= self.settings.waits_per_agent:
                raise ApiError(
                    429,
                    "too_many_waits",
                    f"agent {agent.name!r} already has {self.settings.waits_per_agent} long-polls waiting "
                    "on this server; wait for one to answer",
                    "wait",
                    retry_after=1.0,
                )
            self._waiting[agent.name] += 1
        try:
            yield
        finally:
            with self._waiting_lock:
                self._waiting[agent.name] -= 1

    def waits(self, agent: str) -> int:
        """The long-polls the agent holds on this server now."""
        with self._waiting_lock:
            return self._waiting[agent]

    def for_agent(self, agent: Agent) -> StewardBackend:
        """What this agent may do, as a backend."""
        return AgentSession(self, agent)


class AgentSession:
    """One agent's view of Steward (a `StewardBackend`): only its actions, only its requests."""

    def __init__(self, gateway: AgentGateway, agent: Agent) -> None:
        self.gateway = gateway
        self.agent = agent
        self._unposted = ""  # why the last card could not be posted
        self.store = gateway.actions.approvals.store

    # -- the catalog ---------------------------------------------------------------------------

    def actions(self) -> list[ActionInfo]:
        """The catalog actions this agent's token may request, with their parameters' JSON Schema."""
        self._scope("request")
        catalog = self.gateway.policy().policy.actions
        names = sorted(self.agent.actions if self.agent.actions is not None else catalog)
        infos = []
        for name in names:
            spec = catalog.get(name)
            if spec is None:
                continue  # on the token's list, no longer in the catalog
            infos.append(
                ActionInfo(
                    name=spec.name,
                    description=spec.description,
                    risk=spec.risk,
                    idempotent=spec.idempotent,
                    runbook=spec.runbook,
                    input_schema=input_schema(spec),
                )
            )
        return infos

    # -- requests ------------------------------------------------------------------------------

    def request(self, new: NewRequest) -> RequestInfo:
        """Ask for an action; the policy decides at once. The same idempotency key returns the same
        request (`replayed`), on every replica; a different request under a used key is refused (409)."""
        self._scope("request")
        agent = self.agent
        if not agent.may(new.action):
            raise ApiError(
                403,
                "action_not_allowed",
                f"agent {agent.name!r} may not request {new.action!r}; its token allows "
                f"{', '.join(agent.actions or ()) or 'no actions'}",
                "action",
            )
        if new.idempotency_key is not None:
            earlier = self.store.by_idempotency_key(agent.name, new.idempotency_key)
            if earlier is not None:
                return self._replayed(earlier, new)
        spec = self.gateway.policy().action(new.action)
        if spec is None:
            raise ApiError(
                422,
                "unknown_action",
                f"no action {new.action!r} in the catalog; GET /api/v1/actions lists them",
                "action",
            )
        params = checked_params(spec, new.parameters)
        channel = new.channel or spec.channel or self.gateway.settings.channel
        if channel is None:
            raise ApiError(
                422,
                "no_channel",
                f"give `channel`: the action {new.action!r} has no default channel and "
                "STEWARD_AGENT_CHANNEL is not set",
                "channel",
            )
        if new.callback_url is not None:
            check_callback(new.callback_url, self.gateway.settings.callback_hosts)
        self._within_limits()
        on_behalf = {
            "agent": agent.name,
            "agent_token": agent.token_id,
            "agent_owner": agent.owner,
            "justification": new.reason,
            "idempotency_key": new.idempotency_key,
            "callback_url": new.callback_url,
            "callback_state": "due" if new.callback_url else None,
            "callback_attempts": 0 if new.callback_url else None,
        }
        outlet = self.gateway.outlet
        placed: list[tuple[str, str | None]] = []

        def before_run(submission: Submission) -> None:  # an allowed request: say so before it runs
            if outlet is not None:
                self._place(submission, placed)

        try:
            submission = self.gateway.actions.submit(
                ActionRequest(action=new.action, params=params),
                Actor(user_id=agent.requester, channel=channel),
                None,
                before_run=before_run,
                on_behalf=on_behalf,
            )
        except IntegrityError:
            # the same key, at the same moment, on another replica: that request is the one
            earlier = self.store.by_idempotency_key(agent.name, str(new.idempotency_key))
            if earlier is None:
                raise
            return self._replayed(earlier, new)
        view = submission.request
        log.info(
            "agent request agent=%s token=%s request=%s action=%s outcome=%s",
            agent.name,
            agent.token_id,
            view.request_id,
            view.action,
            submission.decision.outcome,
        )
        if outlet is not None:
            if submission.decision.outcome == "require_approval" and not self._place(submission, placed):
                self._withdraw_unseen(view)
            if submission.run is not None:
                outlet.ran(submission.run)
        self._nudge()
        return self.info(self._read(view.request_id))

    def _place(self, submission: Submission, placed: list[tuple[str, str | None]]) -> bool:
        """Post the request in Slack and record its thread; False when it could not be posted (logged)."""
        outlet = self.gateway.outlet
        if outlet is None or placed:
            return True
        request_id = submission.request.request_id
        try:
            where = outlet.announce(submission)
        except StewardError as exc:
            log.warning("agent request not posted request=%s: %s", request_id, exc)
            self._unposted = exc.user_message
            return False
        except Exception:
            log.exception("agent request not posted request=%s", request_id)
            self._unposted = "Slack could not be reached"
            return False
        if where is not None:
            placed.append(where)
            self.store.place_card(request_id, where[0], where[1])
        return True

    def _withdraw_unseen(self, view: RequestView) -> None:
        """A request waiting for approvers that no approver can see is withdrawn (audited as cancelled by
        the agent) and refused: the agent learns why instead of waiting until it expires."""
        self.gateway.actions.approvals.cancel(view.request_id, self.agent.requester)
        raise ApiError(
            502,
            "card_not_posted",
            f"the approval card could not be posted in {view.channel}: {self._unposted}; the request "
            f"{view.request_id} was withdrawn. Invite Steward to the channel or name another `channel`",
            "channel",
        )

    def _replayed(self, earlier: RequestView, new: NewRequest) -> RequestInfo:
        """The earlier request of this idempotency key, when the new one is the same request."""
        if (
            earlier.action != new.action
            or (earlier.justification or "") != new.reason
            or not same_params(self.gateway.policy().action(new.action), earlier.params, new.parameters)
        ):
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"idempotency_key {new.idempotency_key!r} was used for another request "
                f"({earlier.request_id}, {earlier.action}); use a new key for a new request",
                "idempotency_key",
            )
        return self.info(earlier).model_copy(update={"replayed": True})

    def _within_limits(self) -> None:
        """429 when the agent has too many requests waiting, or made too many in the last minute."""
        agent, now = self.agent, self.gateway.actions.approvals.clock()  # the clock requests are dated by
        pending, recent = self.store.agent_load(agent.name, now - 60.0)
        if pending >= agent.max_pending:
            raise ApiError(
                429,
                "too_many_pending",
                f"agent {agent.name!r} has {pending} requests waiting for approval (its limit is "
                f"{agent.max_pending}); wait for them to be decided, or cancel some",
                retry_after=30.0,
            )
        if len(recent) >= agent.per_minute:
            oldest = recent[len(recent) - agent.per_minute]
            raise ApiError(
                429,
                "rate_limited",
                f"agent {agent.name!r} made {len(recent)} requests in the last minute (its limit is "
                f"{agent.per_minute})",
                retry_after=max(1.0, math.ceil(oldest + 60.0 - now)),
            )

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        """The request; with `wait`, as soon as it is final or after `wait` seconds."""
        self._scope("request")
        if not 0.0 <= wait <= MAX_WAIT_SECONDS or math.isnan(wait):
            raise ApiError(400, "bad_wait", f"wait must be 0 to {MAX_WAIT_SECONDS:g} seconds", "wait")
        view = self._mine(request_id)
        if view.status in FINISHED or wait <= 0:
            return self.info(view)
        with self.gateway.waiting(self.agent):
            deadline = time.monotonic() + wait
            while view.status not in FINISHED and time.monotonic() < deadline:
                left = max(0.0, deadline - time.monotonic())
                self.gateway.sleep(min(self.gateway.settings.poll_seconds, left))
                view = self._read(request_id)
        return self.info(view)

    def cancel(self, request_id: str) -> RequestInfo:
        """Withdraw a request that has not started running (409 when it is too late)."""
        self._scope("request")
        self._mine(request_id)
        outcome = self.gateway.actions.approvals.cancel(request_id, self.agent.requester)
        if not outcome.changed:
            raise ApiError(409, "not_cancellable", outcome.message, "id")
        view = self._read(request_id)
        if self.gateway.outlet is not None:
            try:
                self.gateway.outlet.withdrawn(view)
            except Exception:
                log.exception("card of a cancelled agent request not redrawn request=%s", request_id)
        self._nudge()
        return self.info(view)

    # -- answers -------------------------------------------------------------------------------

    def ask(self, question: str) -> AnswerInfo:
        """Steward's answer, recorded in the answer log (a gap opens when it abstains, as for people)."""
        self._scope("ask")
        try:
            recorded = self.gateway.questions.ask(
                Asked(question, place=API_PLACE, asker=self.agent.requester)
            )
        except IndexMissingError:
            raise ApiError(
                503,
                "knowledge_base_empty",
                "Steward's knowledge base is empty: its operators have not ingested any documents yet",
            ) from None
        answer = recorded.answer
        return AnswerInfo(
            answer=answer.answer,
            abstained=answer.abstained,
            confidence=round(answer.confidence, 3),
            citations=[
                Citation(
                    title=c.title, path=c.path, section=c.section, url=c.url, owner=c.owner, status=c.status
                )
                for c in answer.citations
            ],
            owners=list(answer.owners),
            warnings=list(answer.warnings),
        )

    # -- helpers -------------------------------------------------------------------------------

    def info(self, view: RequestView) -> RequestInfo:
        """The request as the agent sees it."""
        return request_info(view, self.agent.name)

    def _scope(self, scope: str) -> None:
        if scope not in self.agent.scopes:
            raise ApiError(
                403,
                "missing_scope",
                f"agent {self.agent.name!r}'s token lacks the {scope!r} scope (it has "
                f"{', '.join(self.agent.scopes)}); `steward agents add … --scope` sets it",
                "Authorization",
            )

    def _mine(self, request_id: str) -> RequestView:
        """The agent's own request; another agent's or a person's is as unknown as a missing one."""
        view = self.store.read(request_id) if len(request_id) <= 64 else None
        if view is None or view.agent != self.agent.name:
            raise ApiError(
                404, "no_such_request", f"no request {request_id!r} of agent {self.agent.name!r}", "id"
            )
        return view

    def _read(self, request_id: str) -> RequestView:
        view = self.store.read(request_id)
        if view is None:  # requests are never deleted
            raise ApiError(404, "no_such_request", f"no request {request_id!r}", "id")
        return view

    def _nudge(self) -> None:
        callbacks = self.gateway.callbacks
        if callbacks is not None:
            try:
                callbacks()
            except Exception:
                log.exception("callback delivery failed; housekeeping tries again")
