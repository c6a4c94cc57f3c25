"""The audit key and checkpoints as Steward is configured and run: the key file, the settings,
`steward audit verify` in another process, and the checkpoint round of `steward serve`."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from slack_sdk import WebClient

from bot.actions.checkpoints import sign_due
from bot.actions.models import ActionRequest, Actor
from bot.cli import main
from bot.config import Settings, SettingsError, load_settings
from bot.runtime.housekeeping import start_housekeeping
from bot.slack.audit import checkpoint_round
from bot.store.action_requests import action_requests, actions_transaction, append_audit
from bot.store.audit_anchor import key_from_file
from bot.wiring import Services
from tests.audit_support import KEY_TEXT
from tests.conftest import ROOT
from tests.support.clock import TUESDAY_NOON, RunningClock, SettableClock
from tests.support.slack import FakeSlack

PROD_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 12, "env": "prod"}
)


def _services(data: Path, clock: object = None, **settings: object) -> Services:
    policies = data.parent / "policies"
    if not policies.exists():
        shutil.copytree(ROOT / "policies", policies)
    return Services(
        Settings(data_dir=data, policies_dir=policies, **settings),  # type: ignore[arg-type]
        clock=clock or RunningClock(TUESDAY_NOON),  # type: ignore[arg-type]
    )


def _requests(services: Services, count: int = 2) -> list[str]:
    """Production rollbacks waiting for approval, one approval each."""
    ids = []
    for _ in range(count):
        view, _decision = services.approvals.submit(
            PROD_ROLLBACK, Actor(user_id="U0000MLP01", channel="COPS")
        )
        services.approvals.approve(view.request_id, "U0000SRE01")
        ids.append(view.request_id)
    return ids


def test_the_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    """Without STEWARD_AUDIT_KEY: a random key in <data dir>/audit.key, mode 0600, the same next start."""
    first = _services(tmp_path / "data")
    _requests(first)
    key_file = tmp_path / "data" / "audit.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    second = _services(tmp_path / "data")
    assert second.audit_anchor.key.key_id == first.audit_anchor.key.key_id
    assert not second.audit_anchor.key.created and first.audit_anchor.key.created
    with actions_transaction(second.records) as connection:
        from bot.store.audit_verify import verify_log

        assert verify_log(connection).problems == []
    first.close()
    second.close()


def test_replicas_starting_together_share_one_key_file(tmp_path: Path) -> None:
    """Sixteen threads creating the key at once all read the one key that won."""
    path = tmp_path / "data" / "audit.key"
    start = threading.Barrier(16)
    found: list[str] = []

    def load() -> None:
        start.wait()
        found.append(key_from_file(path).key_id)

    threads = [threading.Thread(target=load) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16 and len(set(found)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]  # no temporary file left behind


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A key file readable by the group or others is an error naming the file and the fix."""
    key_file = tmp_path / "data" / "audit.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("x" * 64)
    key_file.chmod(0o644)
    with pytest.raises(
        SettingsError, match=f"the audit key {key_file} can be read by other users .*chmod 600"
    ):
        _ = _services(tmp_path / "data").records


def test_a_short_key_setting_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """STEWARD_AUDIT_KEY below 32 characters: the error names the variable, never the value."""
    monkeypatch.setenv("STEWARD_AUDIT_KEY", "short-secret-value")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "STEWARD_AUDIT_KEY" in str(raised.value) and "short-secret-value" not in str(raised.value)
    assert "short-secret-value" not in repr(Settings(audit_key="short-secret-value" + "x" * 20))  # type: ignore[arg-type]


def test_with_the_key_setting_no_key_file_is_written(tmp_path: Path) -> None:
    """STEWARD_AUDIT_KEY is used as is; nothing is generated."""
    services = _services(tmp_path / "data", audit_key=KEY_TEXT)
    _requests(services, 1)
    assert services.audit_anchor.key.source == "STEWARD_AUDIT_KEY"
    assert not (tmp_path / "data" / "audit.key").exists()
    services.close()


def _verify(tmp_path: Path, key: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "STEWARD_DATA_DIR": str(tmp_path / "data"),
        "STEWARD_AUDIT_KEY": key,
    }
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_steward_audit_verify_in_another_process(tmp_path: Path) -> None:
    """`steward audit verify` with the writers' key: OK, checkpoints and requests counted; with another
    key: every entry fails, and the first line says which key it tried."""
    services = _services(tmp_path / "data", audit_key=KEY_TEXT, audit_checkpoint_every=2)
    _requests(services, 3)
    services.close()
    ok = _verify(tmp_path, KEY_TEXT)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit log OK: ") and "latest checkpoint in " in ok.stdout
    assert "entries at" in ok.stdout and "0 approved or run request(s)" in ok.stdout
    wrong = _verify(tmp_path, "another-key-" + "z" * 40)
    assert wrong.returncode == 1
    assert "key: no entry carries a MAC of the audit key from STEWARD_AUDIT_KEY" in wrong.stderr
    assert "signed with another key" in wrong.stderr  # the checkpoint lines too
    assert KEY_TEXT not in ok.stdout + ok.stderr + wrong.stdout + wrong.stderr


def test_steward_audit_verify_names_a_request_approved_in_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI exits 1 and names the request whose status was set to approved directly."""
    services = _services(tmp_path / "data")
    waiting = _requests(services, 2)[1]
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["audit", "verify"]) == 0
    assert "audit log OK" in capsys.readouterr().out
    with services.records.begin() as connection:
        connection.execute(
            sa.update(action_requests)
            .where(action_requests.c.request_id == waiting)
            .values(status="approved")
        )
    services.close()
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audit log BROKEN: 1 problem(s)")
    assert (
        f"request {waiting}: is approved but the audit log does not let it run: waiting for approvals" in err
    )


def _garble_a_page_of_the_log(database: Path) -> None:
    """Overwrite one page of the audit log's rows, as a failing disk or a bad copy does."""
    with sqlite3.connect(database) as connection:
        pages = [row[0] for row in connection.execute("SELECT pageno FROM dbstat WHERE name = 'audit_log'")]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    with database.open("r+b") as file:
        file.seek((pages[len(pages) // 2] - 1) * size + 8)
        file.write(b"\x41" * (size - 8))


def _set_columns(database: Path, sql: str) -> None:
    """Change rows behind Steward's back (SQLite keeps a value of any type in any column)."""
    with sqlite3.connect(database) as connection:
        connection.execute(sql)
    connection.close()


def test_steward_audit_verify_names_a_damaged_database_file(tmp_path: Path) -> None:
    """A page of the log overwritten: exit 1, the file and SQLite's finding named, no traceback."""
    services = _services(tmp_path / "data", audit_key=KEY_TEXT)
    _requests(services, 30)
    services.close()
    database = tmp_path / "data" / "steward.db"
    assert not database.with_name("steward.db-wal").exists()  # closing checkpointed it: the file is all
    _garble_a_page_of_the_log(database)
    result = _verify(tmp_path, KEY_TEXT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the records database {database} is damaged (database disk image is malformed)" in result.stderr
    assert "restore the file from your latest backup" in result.stderr


@pytest.mark.parametrize(
    ("sql", "finding"),
    [
        (
            "UPDATE audit_log SET data = x'ff00' WHERE seq = 3",
            "entry 3: was edited after it was written (its MAC does not match)",
        ),
        (
            "UPDATE audit_head SET seq = 'zz'",
            "the head record (audit_head) is damaged: seq is 'zz'",
        ),
    ],
)
def test_steward_audit_verify_reports_values_of_the_wrong_type(
    tmp_path: Path, sql: str, finding: str
) -> None:
    """A row holding a value Steward never writes is a finding of the log (exit 1), not a crash."""
    services = _services(tmp_path / "data", audit_key=KEY_TEXT)
    _requests(services, 2)
    services.close()
    _set_columns(tmp_path / "data" / "steward.db", sql)
    result = _verify(tmp_path, KEY_TEXT)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("audit log BROKEN") and finding in result.stderr


def test_the_checkpoint_round_posts_to_the_audit_channel(tmp_path: Path) -> None:
    """With STEWARD_AUDIT_CHANNEL, the periodic checkpoint is posted there too (the fake Slack Web API),
    the same line as in the file."""
    clock = SettableClock(TUESDAY_NOON)
    services = _services(tmp_path / "data", clock, audit_channel="CAUDIT")
    _requests(services, 1)
    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        clock.now += services.settings.audit_checkpoint_seconds
        sign = functools.partial(sign_due, services.records)
        checkpoint = checkpoint_round(sign, client, services.settings.audit_channel)
        assert checkpoint is not None
        assert checkpoint_round(sign, client, "CAUDIT") is None  # not due again yet
        (post,) = slack.messages("CAUDIT")
    lines = (tmp_path / "data" / "audit-checkpoints.jsonl").read_text().splitlines()
    assert f"```{lines[-1]}```" in post["text"] and checkpoint.description in post["text"]
    services.close()


def test_serve_housekeeping_signs_checkpoints(tmp_path: Path) -> None:
    """The housekeeping loop of `steward serve` runs the checkpoint round."""
    clock = SettableClock(TUESDAY_NOON)
    services = _services(tmp_path / "data", clock, housekeeping_seconds=0.05, audit_checkpoint_seconds=1)
    _requests(services, 1)
    path = tmp_path / "data" / "audit-checkpoints.jsonl"
    before = path.read_text().count("\n")
    clock.now += 10
    actions = SimpleNamespace(
        sweep=lambda client: None,
        recover=lambda client, lease: [],
        release_held=lambda client: [],
        run_stranded=lambda client, older: [],
    )
    slack = SimpleNamespace(recovery=None, actions=actions, bolt=SimpleNamespace(client=None))
    start_housekeeping(slack, services)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while path.read_text().count("\n") == before and time.monotonic() < deadline:
        time.sleep(0.02)
    slack.actions = None  # the daemon thread idles from here on
    assert path.read_text().count("\n") == before + 1


def test_appending_with_no_registered_key_still_seals_entries(tmp_path: Path) -> None:
    """An engine nobody registered gets a random key of this process: its entries verify here."""
    from bot.store.audit_verify import verify_log
    from bot.store.engine import create_engine
    from bot.store.schema import upgrade

    engine = create_engine(f"sqlite:///{tmp_path}/loose.db")
    upgrade(engine)
    with engine.begin() as connection:
        append_audit(connection, at=1.0, kind="requested", request_id="r", actor="U", data={})
    with engine.begin() as connection:
        report = verify_log(connection)
    assert report.problems == [] and report.unkeyed == 0 and report.entries == 1
    engine.dispose()


def test_a_shared_database_without_the_key_setting_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicas on PostgreSQL each generating a key would sign one log with several keys: said at start."""
    services = _services(tmp_path / "data", database_url="postgresql+psycopg://steward@127.0.0.1:1/steward")
    assert services.audit_anchor.key.created
    assert "STEWARD_AUDIT_KEY is unset: this replica signs the shared audit log" in caplog.text
    keyed = _services(
        tmp_path / "other",
        database_url="postgresql+psycopg://steward@127.0.0.1:1/steward",
        audit_key=KEY_TEXT,
    )
    caplog.clear()
    assert (
        keyed.audit_anchor.key.source == "STEWARD_AUDIT_KEY"
        and "STEWARD_AUDIT_KEY is unset" not in caplog.text
    )
