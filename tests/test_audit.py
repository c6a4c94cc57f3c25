"""The audit log is a MAC chain anchored outside the database: every edit, deletion, insertion,
reordering, truncation or re-chaining is found and located, without the key nobody can forge it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store.action_requests import (
    append_audit,
    audit_head,
    audit_log,
    iter_audit,
    sign_checkpoint,
    verify_chain,
)
from bot.store.audit_anchor import AuditAnchor
from bot.store.audit_checkpoints import Checkpoint
from bot.store.audit_verify import sign_due_checkpoint, verify_log
from bot.store.schema import upgrade
from tests.audit_support import (
    KEY_TEXT,
    WRONG_KEY,
    forge,
    keyed,
    plain_sha,
    rechain,
    truncate,
    wrong_key,
)
from tests.databases import StateDatabase
from tests.support.clock import SettableClock


@pytest.fixture
def engine(state_db: StateDatabase) -> Engine:
    """A fresh SQLite file or PostgreSQL schema with the action tables."""
    built = state_db.engine()
    upgrade(built)
    return built


@pytest.fixture
def clock() -> SettableClock:
    """The anchor's clock (checkpoint times)."""
    return SettableClock()


@pytest.fixture
def anchor(engine: Engine, tmp_path: Path, clock: SettableClock) -> AuditAnchor:
    """The test key and a checkpoint file of this test, registered for the engine."""
    return keyed(engine, tmp_path, clock=clock)


def _write(engine: Engine, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
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


def _checkpoint(engine: Engine, anchor: AuditAnchor, clock: SettableClock) -> Checkpoint:
    """What `steward serve` does every few minutes: sign the head."""
    clock.now += anchor.every_seconds
    checkpoint = sign_due_checkpoint(engine)
    assert checkpoint is not None
    return checkpoint


def test_an_untouched_log_verifies(engine: Engine, anchor: AuditAnchor) -> None:
    """Entries written in order form an unbroken chain."""
    _write(engine, 5)
    with engine.begin() as connection:
        count, problems = verify_chain(connection)
        exported = list(iter_audit(connection))
    assert count == 5 and problems == []
    assert [entry["seq"] for entry in exported] == [1, 2, 3, 4, 5]


def test_an_edited_entry_is_found(engine: Engine, anchor: AuditAnchor) -> None:
    """Changing what an entry says breaks its MAC, at that entry."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(data='{"n": 99}'))
    assert _problems(engine) == ["entry 3: was edited after it was written (its MAC does not match)"]


def test_a_deleted_entry_is_found(engine: Engine, anchor: AuditAnchor) -> None:
    """A missing entry is named, and so is the entry that no longer follows its predecessor."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq == 2))
    problems = _problems(engine)
    assert problems[0].startswith("entry 2: entry missing (deleted)")
    assert any(p.startswith("entry 3: does not follow") for p in problems)


def test_a_truncated_tail_is_found_by_the_head(engine: Engine, anchor: AuditAnchor) -> None:
    """Deleting the newest entries but leaving the head is caught by the head record."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq >= 4))
    assert _problems(engine) == ["entry 5: the log ends at entry 3 but the head says 5 entries were written"]


def test_an_inserted_entry_is_found(engine: Engine, anchor: AuditAnchor) -> None:
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


def test_reordered_entries_are_found(engine: Engine, anchor: AuditAnchor) -> None:
    """Swapping two entries' places breaks the chain where they were swapped."""
    _write(engine, 4)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(seq=-2))
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(seq=2))
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == -2).values(seq=3))
    problems = _problems(engine)
    assert problems and all(p.startswith(("entry 2:", "entry 3:", "entry 4:")) for p in problems)


def test_concurrent_appends_keep_one_chain(engine: Engine, tmp_path: Path) -> None:
    """Eight threads appending at once still produce a single unbroken chain, checkpoints included."""
    anchor = keyed(engine, tmp_path, every=7)

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
        report = verify_log(connection)
    assert report.entries == 120 and report.problems == []
    assert anchor.checkpoints is not None and len(report.checkpoints) >= 120 // 7 - 1


# -- what the plain hash chain let through (issue 14) ------------------------------------------------


@pytest.mark.parametrize(
    ("keep", "end"),
    [(4, "the log ends at entry 4"), (0, "the log is empty")],
    ids=["last-entries", "every-entry"],
)
def test_deleting_signed_entries_and_moving_the_head_is_found(
    engine: Engine, anchor: AuditAnchor, clock: SettableClock, keep: int, end: str
) -> None:
    """A log cut back below a signed checkpoint (or emptied), head moved to match, no longer verifies."""
    _write(engine, 6)
    signed = _checkpoint(engine, anchor, clock)
    truncate(engine, keep=keep)
    assert _problems(engine) == [
        f"entry 6: {end}, but the checkpoint of {signed.describe()} recorded 6: entries were deleted"
    ]


def test_deleting_the_head_record_is_found(engine: Engine, anchor: AuditAnchor) -> None:
    """Without its head record the log cannot say how long it was: that is a problem, not a pass."""
    _write(engine, 3)
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_head))
    assert _problems(engine) == ["entry 3: the head record (audit_head) is missing: it was deleted"]


def test_an_edit_rechained_with_plain_sha256_is_found(engine: Engine, anchor: AuditAnchor) -> None:
    """Editing an entry and recomputing the plain hashes after it leaves entries without their MAC."""
    _write(engine, 5)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(data='{"n": 99}'))
    rechain(engine, 3, plain_sha)
    problems = _problems(engine)
    assert problems == [
        f"entry {seq}: carries a plain SHA-256 hash, not its MAC: it was rewritten without the audit key"
        for seq in (3, 4, 5)
    ]


def test_a_log_rechained_from_the_start_is_found_by_the_checkpoint(
    engine: Engine, anchor: AuditAnchor, clock: SettableClock
) -> None:
    """Re-chaining every entry with plain SHA-256 looks like an old unkeyed log, but the checkpoint's
    head is not there any more."""
    _write(engine, 5)
    _checkpoint(engine, anchor, clock)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(data='{"n": 99}'))
    rechain(engine, 1, plain_sha)
    problems = _problems(engine)
    assert problems and all("is not the entry the checkpoint of" in p and "re-chained" in p for p in problems)
    assert problems[-1].startswith("entry 5:")


def test_an_edit_rechained_with_another_key_is_found(engine: Engine, anchor: AuditAnchor) -> None:
    """A MAC made with any key but the audit key does not verify."""
    _write(engine, 4)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(actor="UEVIL"))
    rechain(engine, 2, wrong_key)
    assert _problems(engine) == [
        f"entry {seq}: was edited after it was written (its MAC does not match)" for seq in (2, 3, 4)
    ]


def test_a_log_with_checkpoints_verifies(engine: Engine, anchor: AuditAnchor, clock: SettableClock) -> None:
    """Checkpoints along the way and at the end agree with an untouched log."""
    _write(engine, 3)
    first = _checkpoint(engine, anchor, clock)
    _write(engine, 4, start=3)
    last = _checkpoint(engine, anchor, clock)
    with engine.begin() as connection:
        report = verify_log(connection)
    assert report.problems == [] and report.entries == 7
    # the first append of a process signs what it found (1 entry), then `steward serve` every few minutes
    assert [(c.count, c.replica) for c in report.checkpoints] == [
        (1, "test-replica"),
        (3, "test-replica"),
        (7, "test-replica"),
    ]
    assert (first.count, last.count) == (3, 7)


def test_a_checkpoint_is_signed_at_least_every_n_entries(engine: Engine, tmp_path: Path) -> None:
    """With STEWARD_AUDIT_CHECKPOINT_EVERY=3, the file never lags the log by more than three entries
    plus the transaction under way."""
    anchor = keyed(engine, tmp_path, every=3)
    _write(engine, 10)
    assert anchor.checkpoints is not None
    counts = [json.loads(line)["count"] for line in anchor.checkpoints.path.read_text().splitlines()]
    assert counts == [1, 4, 7]
    with engine.begin() as connection:
        assert verify_log(connection).problems == []


def _recount(line: str) -> str:
    fields = json.loads(line)
    return json.dumps({**fields, "count": fields["count"] + 40})


def _other_key(line: str) -> str:
    return Checkpoint.signed(WRONG_KEY, 40, json.loads(line)["head"], 1.0, "evil").line()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_recount, "its MAC does not match: the line was forged or edited"),
        (lambda line: "{not json", "not a checkpoint: not JSON"),
        (_other_key, "signed with another key"),
    ],
    ids=["edited", "garbage", "other-key"],
)
def test_a_tampered_checkpoint_line_is_reported(
    engine: Engine, anchor: AuditAnchor, clock: SettableClock, edit: Callable[[str], str], expected: str
) -> None:
    """A checkpoint line that is not signed by the audit key is named with its file and line."""
    _write(engine, 4)
    _checkpoint(engine, anchor, clock)
    assert anchor.checkpoints is not None
    path = anchor.checkpoints.path
    lines = path.read_text().splitlines()
    with path.open("a") as file:
        file.write(edit(lines[-1]) + "\n")
    problems = _problems(engine)
    assert len(problems) == 1 and problems[0].startswith(f"{path} line {len(lines) + 1}: {expected}")


def test_a_tampered_log_is_never_signed(
    engine: Engine, anchor: AuditAnchor, clock: SettableClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The periodic checkpoint checks the log since the last one first: a truncation is not laundered."""
    _write(engine, 6)
    _checkpoint(engine, anchor, clock)
    assert anchor.checkpoints is not None
    signed = anchor.checkpoints.path.read_text()
    truncate(engine, keep=3)
    _write(engine, 5, start=10)  # longer again than the checkpoint, but entry 6 is not the signed one
    clock.now += anchor.every_seconds
    assert sign_due_checkpoint(engine) is None
    assert "no audit checkpoint signed: entry 6: is not the entry the checkpoint of 6 entries" in caplog.text
    assert anchor.checkpoints.path.read_text() == signed


def test_the_periodic_checkpoint_waits_for_its_time_and_for_new_entries(
    engine: Engine, anchor: AuditAnchor, clock: SettableClock
) -> None:
    """Signed once per STEWARD_AUDIT_CHECKPOINT_SECONDS, and only when the log has grown."""
    _write(engine, 2)
    clock.now += anchor.every_seconds  # since the first append signed what it found
    assert sign_due_checkpoint(engine) is not None
    _write(engine, 1, start=2)
    clock.now += anchor.every_seconds - 1
    assert sign_due_checkpoint(engine) is None  # too soon
    clock.now += 1
    assert sign_due_checkpoint(engine) is not None
    clock.now += anchor.every_seconds
    assert sign_due_checkpoint(engine) is None  # nothing new


# -- a log written before the key ------------------------------------------------------------------


def _unkeyed(engine: Engine, count: int) -> None:
    """Entries as the old code wrote them: plain SHA-256."""
    forge(engine, [("requested", f"old{seq}", "U1", "{}") for seq in range(1, count + 1)], plain_sha)


def test_an_unkeyed_log_is_anchored_by_the_next_entry(engine: Engine, anchor: AuditAnchor) -> None:
    """The first keyed append chains an `audit_anchored` entry from the old head; the prefix is
    reported as not anchored, and the log verifies."""
    _unkeyed(engine, 3)
    with engine.begin() as connection:
        before = verify_log(connection)
    assert before.problems == [] and before.unkeyed == 3 and before.anchored_at is None
    _write(engine, 2)
    with engine.begin() as connection:
        report = verify_log(connection)
        kinds = [entry["kind"] for entry in iter_audit(connection)]
    assert report.problems == [] and report.unkeyed == 3 and report.anchored_at == 4
    assert kinds == ["requested"] * 3 + ["audit_anchored"] + ["requested"] * 2


def test_the_unkeyed_prefix_is_fixed_once_anchored(engine: Engine, anchor: AuditAnchor) -> None:
    """After anchoring, re-chaining the old entries with plain SHA-256 breaks the anchoring entry."""
    _unkeyed(engine, 3)
    _write(engine, 1)
    with engine.begin() as connection:
        connection.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(actor="UEVIL"))
        rows = connection.execute(
            sa.select(audit_log).where(audit_log.c.seq <= 3).order_by(audit_log.c.seq)
        ).all()
        prev = rows[0].hash
        for row in rows[1:]:
            digest = plain_sha(prev, row.seq, row.at, row.kind, row.request_id, row.actor, row.data)
            connection.execute(
                sa.update(audit_log).where(audit_log.c.seq == row.seq).values(prev_hash=prev, hash=digest)
            )
            prev = digest
    # the anchoring entry no longer follows, and the checkpoint the first keyed append signed disagrees
    assert _problems(engine) == [
        "entry 3: is not the entry the checkpoint of 3 entries at 2027-01-15 08:00:00Z by test-replica "
        "recorded: the log was rewritten up to here (re-chained)",
        "entry 4: does not follow the entry before it (inserted, deleted or reordered)",
    ]


def test_plain_entries_after_keyed_ones_are_not_an_unkeyed_prefix(
    engine: Engine, anchor: AuditAnchor
) -> None:
    """A forged entry appended with a plain hash after keyed ones is not taken for an old one."""
    _write(engine, 2)
    forge(engine, [("approved", "r1", None, '{"approvers":["UEVIL"]}')], plain_sha)
    assert _problems(engine) == [
        "entry 3: carries a plain SHA-256 hash, not its MAC: it was rewritten without the audit key"
    ]


# -- the key ---------------------------------------------------------------------------------------


def test_the_key_is_never_in_the_database(engine: Engine, anchor: AuditAnchor, clock: SettableClock) -> None:
    """No table holds the key, in clear or hex, after entries, an anchoring and checkpoints."""
    _unkeyed(engine, 2)
    _write(engine, 5)
    _checkpoint(engine, anchor, clock)
    secret = KEY_TEXT
    with engine.connect() as connection:
        tables = sa.MetaData()
        tables.reflect(connection)
        dump = [
            repr(tuple(row)) for table in tables.sorted_tables for row in connection.execute(table.select())
        ]
    text = "\n".join(dump)
    assert len(dump) > 7
    assert secret not in text and secret.encode().hex() not in text


def test_a_checkpoint_another_replica_signed_meanwhile_is_no_error(
    engine: Engine, anchor: AuditAnchor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two replicas sharing the checkpoint file: a state older than the other's latest is not signed,
    and that is no error."""
    _write(engine, 4)
    with engine.begin() as connection:
        older = connection.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == 3)).scalar_one()
    _write(engine, 2, start=4)
    with engine.connect() as connection:
        assert sign_checkpoint(connection, anchor, 6, _head(engine)) is not None
        other = keyed(engine, tmp_path)  # another replica: same key and file, nothing in memory
        assert sign_checkpoint(connection, other, 3, older) is None
    assert "no audit checkpoint signed" not in caplog.text


def _head(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(sa.select(audit_head.c.hash)).scalar_one())


def test_verify_reads_one_snapshot_while_replicas_append(
    engine: Engine, anchor: AuditAnchor, state_db: StateDatabase, tmp_path: Path
) -> None:
    """An append committed while `steward audit verify` reads is not taken for a broken head
    (PostgreSQL, REPEATABLE READ); SQLite's reader holds the write lock, so nothing lands there."""
    if state_db.schema is None:
        pytest.skip("SQLite's transaction is a snapshot already")
    _write(engine, 3)
    other = state_db.engine()
    keyed(other, tmp_path)
    landed: list[int] = []

    def append_meanwhile(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not landed and "FROM audit_log ORDER BY" in statement:
            with other.begin() as connection:
                landed.append(
                    append_audit(connection, at=9.0, kind="requested", request_id="x", actor="U", data={})
                )

    sa.event.listen(engine, "after_cursor_execute", append_meanwhile)
    try:
        with engine.connect() as connection:
            connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                report = verify_log(connection)
    finally:
        sa.event.remove(engine, "after_cursor_execute", append_meanwhile)
    assert landed and report.problems == [] and report.entries == 3


def test_a_tampered_log_is_reported_once_per_checkpoint_interval(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal to sign is logged when a checkpoint is due, not at every append."""
    anchor = keyed(engine, tmp_path, every=4)
    _write(engine, 6)
    truncate(engine, keep=2)  # below the checkpoint the appends signed at 5
    _write(engine, 12, start=20)
    refusals = [r for r in caplog.records if r.getMessage().startswith("no audit checkpoint signed")]
    assert anchor.checkpoints is not None and 1 <= len(refusals) <= 12 // anchor.every + 1
