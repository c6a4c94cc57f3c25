"""Agent tokens: made once, shown once, checked on every call.

A token is `stw_<token id>_<secret>`. The token id is public (the audit log and `steward agents list`
show it); the database keeps only the SHA-256 of the whole token, compared in constant time. Every
call reads the agent's row, so a revoked token is refused at once on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Collection, Sequence

from bot.agents.models import AGENT_NAME, SCOPES, Agent, ApiError
from bot.errors import BadRequest
from bot.store.agents import AgentExistsError, AgentRecord, AgentStore

TOKEN_PREFIX = "stw_"  # noqa: S105 - the public prefix of every token, not a secret
_TOKEN = re.compile(r"stw_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})")
_OWNER = re.compile(r"[UW][A-Z0-9]{2,30}")
_BEARER = re.compile(r"Bearer[ \t]+(\S+)[ \t]*", re.IGNORECASE)


def token_hash(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class AgentRegistry:
    """Add, list and revoke agents; authenticate a bearer token (an `Authenticator`)."""

    def __init__(self, store: AgentStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def add(
        self,
        name: str,
        owner: str,
        *,
        scopes: Sequence[str] = SCOPES,
        actions: Sequence[str] | None = None,
        known_actions: Collection[str] | None = None,
        max_pending: int = 20,
        per_minute: int = 60,
        created_by: str | None = None,
    ) -> tuple[Agent, str]:
        """A new agent and its token (returned once; only its hash is kept). `BadRequest` names the
        field at fault: the name, the owner, a scope or an action the catalog does not have."""
        if not re.fullmatch(AGENT_NAME, name):
            raise BadRequest(
                f"agent name {name!r}: use 1-40 lowercase letters, digits and dashes, starting with a letter"
            )
        if not _OWNER.fullmatch(owner):
            raise BadRequest(
                f"--owner {owner!r}: give the Slack user id of the person answerable for the agent (U…; "
                "in Slack: Profile -> ⋮ -> Copy member ID)"
            )
        unknown_scopes = sorted(set(scopes) - set(SCOPES))
        if unknown_scopes or not scopes:
            raise BadRequest(f"--scope {','.join(scopes)!r}: scopes are {', '.join(SCOPES)} (one or both)")
        if actions is not None and known_actions is not None:
            unknown = sorted(set(actions) - set(known_actions))
            if unknown:
                raise BadRequest(
                    f"--actions: {', '.join(unknown)} not in the policy's catalog "
                    f"(it has {', '.join(sorted(known_actions)) or 'no actions'})"
                )
        if max_pending < 1 or per_minute < 1:
            raise BadRequest("--max-pending and --per-minute must be at least 1")
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        agent = Agent(
            name=name,
            token_id=token_id,
            owner=owner,
            scopes=tuple(dict.fromkeys(scopes)),
            actions=None if actions is None else tuple(dict.fromkeys(actions)),
            max_pending=max_pending,
            per_minute=per_minute,
        )
        try:
            self.store.add(agent, token_hash(token), at=self.clock(), created_by=created_by)
        except AgentExistsError:
            raise BadRequest(
                f"an agent named {name!r} already exists (revoked agents keep their name); choose another "
                "name, or see `steward agents list`"
            ) from None
        return agent, token

    def list(self) -> list[AgentRecord]:
        """Every agent, revoked ones included."""
        return self.store.all()

    def revoke(self, name: str, revoked_by: str | None = None) -> None:
        """Revoke an agent's token now; `BadRequest` when there is no such live agent."""
        if not self.store.revoke(name, at=self.clock(), revoked_by=revoked_by):
            record = self.store.by_name(name)
            if record is None:
                raise BadRequest(f"no agent named {name!r}; `steward agents list` shows them")
            raise BadRequest(f"the agent {name!r} is already revoked")

    def __call__(self, authorization: str | None) -> Agent:
        """The agent holding the bearer token, or `ApiError` 401."""
        if not authorization:
            raise ApiError(
                401, "unauthenticated", "send the agent's token: Authorization: Bearer stw_…", "Authorization"
            )
        bearer = _BEARER.fullmatch(authorization)
        token = bearer.group(1) if bearer else ""
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ApiError(
                401,
                "unauthenticated",
                "the Authorization header is not `Bearer stw_…` with a Steward agent token",
                "Authorization",
            )
        record = self.store.by_token_id(match.group(1))
        if record is None or not hmac.compare_digest(record.token_hash, token_hash(token)):
            raise ApiError(401, "unauthenticated", "the token is not valid", "Authorization")
        if record.revoked_at is not None:
            raise ApiError(
                401, "revoked", f"the token of agent {record.agent.name!r} was revoked", "Authorization"
            )
        return record.agent
