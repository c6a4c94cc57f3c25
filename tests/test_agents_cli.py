"""`steward agents add|list|revoke`: a token shown once and kept only as a hash, refused at once when
revoked; every mistake is one line naming what to fix."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.agents.models import ApiError
from bot.agents.registry import AgentRegistry
from bot.cli import main
from bot.store.action_requests import agents, audit_log
from bot.store.agents import AgentStore
from tests.conftest import ROOT
from tests.support.records import migrated_engine

TOKEN = re.compile(r"^stw_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", re.MULTILINE)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "d"
    monkeypatch.setenv("STEWARD_DATA_DIR", str(data))
    monkeypatch.setenv("STEWARD_POLICIES_DIR", str(ROOT / "policies"))
    return data


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_prints_a_token_once_and_keeps_only_its_hash(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "agents", "add", "release-bot", "--owner", "U0000MLP01", "--actions", "rollback-model"
    )
    assert code == 0, err
    (token,) = TOKEN.findall(out)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'steward.db'}")
    with engine.connect() as connection:
        row = connection.execute(sa.select(agents)).one()
        dumped = " ".join(str(value) for value in row)
        logged = " ".join(connection.execute(sa.select(audit_log.c.data)).scalars())
        kinds = list(connection.execute(sa.select(audit_log.c.kind)).scalars())
    engine.dispose()
    assert token not in dumped and token.split("_")[2] not in dumped
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert "agent_added" in kinds and token not in logged and row.token_hash not in logged
    code, listed, _ = _run(capsys, "agents", "list")
    assert code == 0 and "release-bot" in listed and "active" in listed and token not in listed
    assert "actions rollback-model" in listed


def test_revoke_refuses_the_token_at_once(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "agents", "add", "release-bot", "--owner", "U0000MLP01")
    (token,) = TOKEN.findall(out)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'steward.db'}")
    registry = AgentRegistry(AgentStore(engine))
    assert registry(f"Bearer {token}").name == "release-bot"
    assert _run(capsys, "agents", "revoke", "release-bot")[0] == 0
    with pytest.raises(ApiError) as refused:
        registry(f"Bearer {token}")
    assert refused.value.status == 401 and refused.value.code == "revoked"
    code, _, err = _run(capsys, "agents", "revoke", "release-bot")
    assert code == 1 and "already revoked" in err
    _, listed, _ = _run(capsys, "agents", "list")
    assert "revoked" in listed
    engine.dispose()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["agents", "add", "Release Bot", "--owner", "U0000MLP01"], "agent name 'Release Bot'"),
        (["agents", "add", "release-bot", "--owner", "dana"], "--owner 'dana'"),
        (["agents", "add", "release-bot", "--owner", "U0000MLP01", "--scope", "admin"], "--scope"),
        (
            ["agents", "add", "release-bot", "--owner", "U0000MLP01", "--actions", "rollbak-model"],
            "rollbak-model",
        ),
        (["agents", "add", "release-bot", "--owner", "U0000MLP01", "--per-minute", "0"], "--per-minute"),
        (["agents", "revoke", "nobody"], "no agent named 'nobody'"),
    ],
)
def test_mistakes_are_one_line_naming_the_field(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 1 and says in err and "Traceback" not in err + out
    assert TOKEN.findall(out) == []


def test_a_name_is_taken_once(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "agents", "add", "release-bot", "--owner", "U0000MLP01")[0] == 0
    code, out, err = _run(capsys, "agents", "add", "release-bot", "--owner", "U0000MLP02")
    assert code == 1 and "already exists" in err and TOKEN.findall(out) == []


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic abc", "Bearer", "Bearer stw_zz", "Bearer stw_0123456789ab_" + "a" * 43, "bearer  x y"],
)
def test_malformed_or_unknown_tokens_are_401(tmp_path: Path, header: str | None) -> None:
    engine = migrated_engine(tmp_path / "state.db")
    registry = AgentRegistry(AgentStore(engine))
    registry.add("release-bot", "U0000MLP01")
    with pytest.raises(ApiError) as refused:
        registry(header)
    assert refused.value.status == 401 and refused.value.field == "Authorization"
    engine.dispose()
