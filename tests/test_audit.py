"""The audit log is a hash chain: every edit, deletion, insertion or reordering is found and located."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store.actions import append_audit, audit_log, iter_audit, verify_chain
from bot.store.schema import upgrade
from tests.databases import StateDatabase


@pytest.fixture
def engine(state_db: StateDatabase) -> Engine:
    """A fresh SQLite file or PostgreSQL schema with the action tables."""
    built = state_db.engine()
    upgrade(built)
    return built


def _write(engine: Engine, count: int) -> None:
    for number in range(count):
        with engine.begin() as connection:
            append_audit(
                connection,
                at=1000.0 + number,
                kind="requested",
                request_id=f"r{number}",
                actor="U1",
                data={"n": number},
            )


def _problems(engine: Engine) -> list[str]:
    with engine.begin() as connection:
        _count, problems = verify_chain(connection)
    return [str(problem) for problem in problems]


def test_an_untouched_log_verifies(engine: Engine) -> None:
    """Entries written in order form an unbroken chain."""
    _write(engine, 5)
    with engine.begin() as connection:
        count, problems = verify_chain(connection)
        exported = list(iter_audit(connection))
    assert count == 5 and problems == []
    assert [entry["seq"] for entry in exported] == [1, 2, 3, 4, 5]


def test_an_edited_entry_is_found(engine: Engine) -> None:
    """Changing what an entry says breaks its hash, at that entry."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(data='{"n": 99}'))
    assert _problems(engine) == ["entry 3: was edited after it was written (its hash does not match)"]


def test_a_deleted_entry_is_found(engine: Engine) -> None:
    """A missing entry is named, and so is the entry that no longer follows its predecessor."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq == 2))
    problems = _problems(engine)
    assert problems[0].startswith("entry 2: entry missing (deleted)")
    assert any(p.startswith("entry 3: does not follow") for p in problems)


def test_a_truncated_tail_is_found(engine: Engine) -> None:
    """Deleting the newest entries is caught by the head record."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq >= 4))
    assert _problems(engine) == ["entry 5: the log ends at entry 3 but 5 entries were written"]


def test_an_inserted_entry_is_found(engine: Engine) -> None:
    """A forged entry slipped between two others does not chain."""
    _write(engine, 3)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(seq=4))
        connection.execute(
            sa.insert(audit_log).values(
                seq=3,
                at=1.0,
                kind="approved",
                request_id="r1",
                actor="UEVIL",
                data="{}",
                prev_hash="0" * 64,
                hash="f" * 64,
            )
        )
    problems = _problems(engine)
    assert any(p.startswith("entry 3:") for p in problems)


def test_reordered_entries_are_found(engine: Engine) -> None:
    """Swapping two entries' places breaks the chain where they were swapped."""
    _write(engine, 4)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(seq=-2))
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(seq=2))
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == -2).values(seq=3))
    problems = _problems(engine)
    assert problems and all(p.startswith(("entry 2:", "entry 3:", "entry 4:")) for p in problems)


def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    """Eight threads appending at once still produce a single unbroken chain."""

    def writer(thread: int) -> None:
        for number in range(15):
            with engine.begin() as connection:
                append_audit(
                    connection, at=float(number), kind="approval", request_id=f"t{thread}", actor="U", data={}
                )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.begin() as connection:
        count, problems = verify_chain(connection)
    assert count == 120 and problems == []
