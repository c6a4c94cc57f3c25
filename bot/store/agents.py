"""AI agents and their tokens, in the records database (table `agents`, migration 0009).

Only a token's SHA-256 is stored. Adding and revoking an agent are audited in the same transaction as
the change, so the audit log says who let which agent act, and when that ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.agents.models import Agent
from bot.errors import BadRequest
from bot.store.action_requests import agents, append_audit


@dataclass(frozen=True)
class AgentRecord:
    """An agent as stored: the agent, its token's hash and its life."""

    agent: Agent
    token_hash: str
    created_at: float
    created_by: str | None
    revoked_at: float | None


class AgentExistsError(BadRequest):
    """An agent of that name already exists (revoked agents keep their name)."""


class AgentStore:
    """Every query on the `agents` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, agent: Agent, token_hash: str, *, at: float, created_by: str | None) -> None:
        """Record a new agent and audit it; `AgentExistsError` when the name or token id is taken."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.insert(agents).values(
                        name=agent.name,
                        token_id=agent.token_id,
                        token_hash=token_hash,
                        owner=agent.owner,
                        scopes=json.dumps(list(agent.scopes)),
                        actions=None if agent.actions is None else json.dumps(list(agent.actions)),
                        max_pending=agent.max_pending,
                        per_minute=agent.per_minute,
                        created_at=at,
                        created_by=created_by,
                    )
                )
                append_audit(
                    connection,
                    at=at,
                    kind="agent_added",
                    request_id=None,
                    actor=created_by,
                    data={
                        "agent": agent.name,
                        "token_id": agent.token_id,
                        "owner": agent.owner,
                        "scopes": list(agent.scopes),
                        "actions": None if agent.actions is None else list(agent.actions),
                    },
                )
        except IntegrityError as exc:
            raise AgentExistsError(agent.name) from exc

    def by_token_id(self, token_id: str) -> AgentRecord | None:
        """The agent holding this token id (revoked or not)."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(agents).where(agents.c.token_id == token_id)).first()
        return None if row is None else _record(row._mapping)

    def by_name(self, name: str) -> AgentRecord | None:
        """The agent of this name (revoked or not)."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(agents).where(agents.c.name == name)).first()
        return None if row is None else _record(row._mapping)

    def all(self) -> list[AgentRecord]:
        """Every agent, by name."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(agents).order_by(agents.c.name)).all()
        return [_record(row._mapping) for row in rows]

    def revoke(self, name: str, *, at: float, revoked_by: str | None) -> bool:
        """Revoke the agent's token (audited); False when there is no such live agent."""
        with self.engine.begin() as connection:
            done = connection.execute(
                sa.update(agents)
                .where(agents.c.name == name, agents.c.revoked_at.is_(None))
                .values(revoked_at=at)
            ).rowcount
            if done:
                append_audit(
                    connection,
                    at=at,
                    kind="agent_revoked",
                    request_id=None,
                    actor=revoked_by,
                    data={"agent": name},
                )
        return bool(done)


def _record(m: sa.RowMapping) -> AgentRecord:
    actions = m["actions"]
    agent = Agent(
        name=m["name"],
        token_id=m["token_id"],
        owner=m["owner"],
        scopes=tuple(json.loads(m["scopes"])),
        actions=None if actions is None else tuple(json.loads(actions)),
        max_pending=int(m["max_pending"]),
        per_minute=int(m["per_minute"]),
    )
    return AgentRecord(agent, m["token_hash"], float(m["created_at"]), m["created_by"], m["revoked_at"])
