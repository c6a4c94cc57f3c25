"""Executors against real parts: a loopback webhook, real programs and entry points, a real registry."""

from __future__ import annotations

import json
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.actions.executors.dispatch import ExecutionError, run_action
from bot.actions.executors.webhook import canonical_body
from bot.actions.models import ActionSpec, ExecutorSpec, ParamSpec
from bot.actions.policy.engine import load_policy, parse_key_values, parse_params
from bot.demo import flags as demo_flags
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver

KEY = "shared-webhook-key"
REQUEST = "req-7f3a"


def action(kind: str, **executor: Any) -> ActionSpec:
    """An action with the given executor settings."""
    return ActionSpec(
        name="demo-action",
        description="an action under test",
        executor=ExecutorSpec(kind=kind, **executor),  # type: ignore[arg-type]
    )


# --- webhook ---------------------------------------------------------------------------------------


def hook(receiver_url: str, **executor: Any) -> ActionSpec:
    """A signed webhook action whose URL comes from ${HOOK_URL}."""
    settings: dict[str, Any] = {"url": "${HOOK_URL}", "secret_env": "HOOK_KEY", "timeout_seconds": 5.0}
    return action("webhook", **(settings | executor))


def hook_env(url: str) -> dict[str, str]:
    """The environment a webhook action expands from."""
    return {"HOOK_URL": url, "HOOK_KEY": KEY}


def test_webhook_posts_signed_canonical_json() -> None:
    """One POST: sorted compact JSON, an idempotency key equal to the request id, a verifiable signature."""
    params = {"model": "fraud-scorer", "version": 12}
    with WebhookReceiver([200]) as receiver:
        result = run_action(hook(receiver.url), params, REQUEST, env=hook_env(receiver.url))
    assert result.ok and result.attempts == 1
    assert result.summary.startswith("demo-action: HTTP 200 from 127.0.0.1:")
    assert result.output == '{"status": 200}' and result.duration_seconds > 0
    [request] = receiver.requests
    assert request.path == "/hook"
    assert (
        request.body
        == b'{"action":"demo-action","params":{"model":"fraud-scorer","version":12},"request_id":"req-7f3a"}'
    )
    assert request.body == canonical_body({"action": "demo-action", "params": params, "request_id": REQUEST})
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == REQUEST
    assert abs(int(request.headers["X-Steward-Timestamp"]) - time.time()) < 60
    assert request.signature_is_valid(KEY)
    assert not request.signature_is_valid("another-key")


def test_webhook_without_secret_env_sends_no_signature() -> None:
    """An unsigned hook (no secret_env) still carries the idempotency key; the URL may be literal."""
    with WebhookReceiver([204]) as receiver:
        result = run_action(action("webhook", url=receiver.url), {}, REQUEST, env={})
    assert result.ok
    [request] = receiver.requests
    assert "X-Steward-Signature" not in request.headers
    assert request.headers["Idempotency-Key"] == REQUEST


@pytest.mark.parametrize("status", [500, 503, 429])
def test_webhook_retries_transient_statuses_with_the_same_key_and_body(status: int) -> None:
    """Two failures, then success: three attempts, one key and one body, all signed, backoff doubling."""
    sleeps: list[float] = []
    with WebhookReceiver([status, status, 200]) as receiver:
        result = run_action(
            hook(receiver.url, retries=2), {"n": 1}, REQUEST, env=hook_env(receiver.url), sleep=sleeps.append
        )
    assert result.ok and result.attempts == 3
    assert result.summary.endswith("after 3 attempts")
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [REQUEST] * 3
    assert len({r.body for r in receiver.requests}) == 1
    assert all(r.signature_is_valid(KEY) for r in receiver.requests)
    assert sleeps == [0.2, 0.4]


@pytest.mark.parametrize("status", [400, 401, 404, 422, 307])
def test_webhook_does_not_retry_client_errors_or_follow_redirects(status: int) -> None:
    """A 4xx (or a redirect) is final: one attempt, ok False, the status in the summary."""
    with WebhookReceiver([status, 200]) as receiver:
        result = run_action(hook(receiver.url), {}, REQUEST, env=hook_env(receiver.url), sleep=lambda _: None)
    assert not result.ok and result.attempts == 1 and len(receiver.requests) == 1
    assert f"failed, HTTP {status}" in result.summary


def test_webhook_gives_up_after_its_retries() -> None:
    """retries=2 means three attempts in all, then ok False with the last status."""
    with WebhookReceiver([500] * 5) as receiver:
        result = run_action(
            hook(receiver.url, retries=2), {}, REQUEST, env=hook_env(receiver.url), sleep=lambda _: None
        )
    assert not result.ok and result.attempts == 3 and len(receiver.requests) == 3
    assert "failed, HTTP 500" in result.summary and result.summary.endswith("after 3 attempts")


def test_webhook_timeout_counts_as_a_failed_attempt() -> None:
    """The first answer comes too late; the retry, with the same key, succeeds."""
    with WebhookReceiver([200, 200], delays=[2.0]) as receiver:
        result = run_action(
            hook(receiver.url, timeout_seconds=0.3, retries=1),
            {},
            REQUEST,
            env=hook_env(receiver.url),
            sleep=lambda _: None,
        )
    assert result.ok and result.attempts == 2
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [REQUEST, REQUEST]


def test_webhook_that_always_times_out_reports_the_timeout() -> None:
    """Every attempt too slow: ok False, 'timed out after 0.3 s'."""
    with WebhookReceiver([200, 200], delays=[2.0, 2.0]) as receiver:
        result = run_action(
            hook(receiver.url, timeout_seconds=0.3, retries=1),
            {},
            REQUEST,
            env=hook_env(receiver.url),
            sleep=lambda _: None,
        )
    assert not result.ok and result.attempts == 2
    assert "timed out after 0.3 s" in result.summary


def test_webhook_retries_connection_errors() -> None:
    """Nobody listening: each attempt is refused, all are made, then ok False."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    result = run_action(hook(url, retries=2), {}, REQUEST, env=hook_env(url), sleep=lambda _: None)
    assert not result.ok and result.attempts == 3
    assert "connection failed" in result.summary


@pytest.mark.parametrize("bad", [" ", "\n", "\x7f"])
def test_a_webhook_url_with_a_space_or_control_character_is_refused_not_encoded(bad: str) -> None:
    """Refused as urllib refused it: one attempt, nothing sent (an HTTP client would send `%20`)."""
    with WebhookReceiver([200]) as receiver:
        url = receiver.url + bad + "x"
        result = run_action(hook(url, retries=2), {}, REQUEST, env=hook_env(url), sleep=lambda _: None)
        assert receiver.requests == []
    assert not result.ok and result.attempts == 1
    assert "invalid URL: URL can't contain control characters" in result.summary


def test_webhook_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `env`, ${NAME} and secret_env come from the process environment."""
    with WebhookReceiver([200]) as receiver:
        for name, value in hook_env(receiver.url).items():
            monkeypatch.setenv(name, value)
        result = run_action(hook(receiver.url), {}, REQUEST)
    assert result.ok and receiver.requests[0].signature_is_valid(KEY)


@pytest.mark.parametrize(
    ("executor", "env", "named"),
    [
        ({"url": "${HOOK_URL}", "secret_env": "HOOK_KEY"}, {"HOOK_URL": "http://127.0.0.1:9/"}, "HOOK_KEY"),
        ({"url": "${HOOK_URL}"}, {}, "HOOK_URL"),
        ({"url": "file:///etc/passwd"}, {}, "executor.url"),
        ({}, {}, "executor.url"),
    ],
    ids=["missing-secret", "missing-url-variable", "not-http", "no-url"],
)
def test_webhook_configuration_errors_name_the_action_and_field(
    executor: dict[str, str], env: dict[str, str], named: str
) -> None:
    """A missing secret or URL variable, or a non-HTTP URL, raises before anything is sent."""
    with pytest.raises(ExecutionError, match=named) as raised:
        run_action(action("webhook", **executor), {}, REQUEST, env=env)
    assert "'demo-action'" in str(raised.value)


# --- command ---------------------------------------------------------------------------------------


@pytest.fixture
def argv_printer(tmp_path: Path) -> Path:
    """An executable script that prints its arguments and STEWARD_REQUEST_ID as JSON."""
    script = tmp_path / "print-argv"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'request_id': os.environ.get('STEWARD_REQUEST_ID')}))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def python_command(*args: str, timeout: float = 10.0) -> ActionSpec:
    """A command action running this interpreter with fixed arguments."""
    return action("command", program=sys.executable, args=args, timeout_seconds=timeout)


def test_command_template_elements_stay_single_arguments_and_no_shell_runs(
    argv_printer: Path, tmp_path: Path
) -> None:
    """Spaces and `;` stay inside one argument and nothing is interpreted by a shell."""
    pwned = tmp_path / "pwned"
    spec = action("command", program=str(argv_printer), args=("--model", "{model}", "note={note}", "{n}"))
    params = {"model": "fraud scorer", "note": f"x; touch {pwned}", "n": 3}
    result = run_action(spec, params, REQUEST, allowed_programs=[str(argv_printer)])
    assert result.ok, result.output
    printed = json.loads(result.output)
    assert printed["argv"] == ["--model", "fraud scorer", f"note=x; touch {pwned}", "3"]
    assert printed["request_id"] == REQUEST
    assert not pwned.exists()
    assert result.summary == result.output.strip() and result.attempts == 1


def test_command_gets_only_the_basic_environment_and_what_it_names() -> None:
    """Steward's token never reaches the program; a variable named in pass_env does."""
    printer = "import json, os; print(json.dumps(dict(os.environ)))"
    env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": "xoxb-secret", "KUBECONFIG": "/etc/kube"}
    plain = run_action(python_command("-c", printer), {}, REQUEST, env=env)
    assert json.loads(plain.output).keys() - {"LC_CTYPE"} == {"PATH", "STEWARD_REQUEST_ID"}
    spec = action("command", program=sys.executable, args=("-c", printer), pass_env=("KUBECONFIG",))
    named = json.loads(run_action(spec, {}, REQUEST, env=env).output)
    assert named["KUBECONFIG"] == "/etc/kube" and "SLACK_BOT_TOKEN" not in named


def test_command_uses_a_declared_default_for_an_absent_parameter(argv_printer: Path) -> None:
    """A template placeholder falls back to the parameter's default."""
    spec = ActionSpec(
        name="demo-action",
        description="defaults",
        params=(ParamSpec(name="env", required=False, default="prod"),),
        executor=ExecutorSpec(kind="command", program=str(argv_printer), args=("--env={env}",)),
    )
    result = run_action(spec, {}, REQUEST)
    assert json.loads(result.output)["argv"] == ["--env=prod"]


@pytest.mark.parametrize("allowed", [["echo"], ["/bin/echo", "/usr/bin/echo"]])
def test_command_allow_list_matches_by_name_or_full_path(allowed: list[str]) -> None:
    """`echo` and `/usr/bin/echo` allow each other when PATH finds that very file."""
    for program in ("echo", "/bin/echo"):
        result = run_action(
            action("command", program=program, args=("{word}",)),
            {"word": "hi there"},
            REQUEST,
            allowed_programs=allowed,
        )
        assert result.ok and result.output == "hi there\n"


def test_command_allow_list_refuses_a_look_alike_and_unlisted_programs(argv_printer: Path) -> None:
    """A different file that merely shares a basename is not allowed, nor is an unlisted program."""
    look_alike = argv_printer.with_name("echo")
    argv_printer.rename(look_alike)
    for program, allowed in [(str(look_alike), ["echo"]), ("echo", [sys.executable]), ("echo", [])]:
        with pytest.raises(ExecutionError, match=r"'demo-action': executor.program .* not in the allowed"):
            run_action(action("command", program=program), {}, REQUEST, allowed_programs=allowed)


def test_command_missing_template_parameter_is_a_configuration_error() -> None:
    """`{model}` with no such parameter or default names the template element."""
    with pytest.raises(ExecutionError, match=r"executor.args\[0\] needs parameter 'model'"):
        run_action(action("command", program="echo", args=("{model}",)), {}, REQUEST)


def test_command_non_zero_exit_reports_the_status_and_stderr() -> None:
    """Exit 3 with a message on stderr: ok False, both in the summary and output."""
    script = (
        "import sys; print('checked 4 shards'); sys.stderr.write('model not found' + chr(10)); sys.exit(3)"
    )
    result = run_action(python_command("-c", script), {}, REQUEST)
    assert not result.ok
    assert result.summary == "demo-action: exited with status 3: model not found"
    assert result.output == "checked 4 shards\n[stderr]\nmodel not found\n"


def test_command_timeout_kills_the_program_and_its_children() -> None:
    """A program (and a grandchild holding its pipes) past the timeout: ok False, back promptly."""
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print('started', flush=True); time.sleep(30)"
    )
    started = time.monotonic()
    result = run_action(python_command("-c", script, timeout=0.5), {}, REQUEST)
    assert time.monotonic() - started < 5
    assert not result.ok
    assert result.summary == "demo-action: timed out after 0.5 s"
    assert result.output == "started\n"


def test_command_output_is_truncated_with_a_marker() -> None:
    """5001 characters of output and max_output=100: 100 kept and the rest counted."""
    result = run_action(python_command("-c", "print('x' * 5000)"), {}, REQUEST, max_output=100)
    assert result.ok
    assert result.output == "x" * 100 + "… [truncated 4901 chars]"
    assert len(result.summary) < 250


def test_command_missing_program_is_a_failed_run() -> None:
    """A program that does not exist: ok False with a clear message, not an exception."""
    result = run_action(action("command", program="/nonexistent/steward-tool"), {}, REQUEST)
    assert not result.ok
    assert result.summary == "demo-action: program '/nonexistent/steward-tool' was not found"


# --- python ----------------------------------------------------------------------------------------


TOGGLE = action("python", entry_point="bot.demo.flags:toggle")


def test_demo_flag_toggle_end_to_end_and_idempotent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Toggle writes the store; the same request id again changes nothing and answers the same."""
    store = tmp_path / "flags" / "flags.json"
    monkeypatch.setenv("STEWARD_DEMO_FLAGS", str(store))
    first = run_action(TOGGLE, {"flag": "new-checkout", "traffic_percent": 25}, "req-1")
    assert first.ok and first.summary == "flag new-checkout: traffic 0% -> 25% in prod"
    written = store.read_bytes()

    again = run_action(TOGGLE, {"flag": "new-checkout", "traffic_percent": 25}, "req-1")
    assert again.ok and again.summary == first.summary
    assert store.read_bytes() == written

    second = run_action(TOGGLE, {"flag": "new-checkout", "traffic_percent": 50, "env": "staging"}, "req-2")
    third = run_action(TOGGLE, {"flag": "new-checkout", "traffic_percent": 50}, "req-3")
    assert second.summary == "flag new-checkout: traffic 0% -> 50% in staging"
    assert third.summary == "flag new-checkout: traffic 25% -> 50% in prod"
    assert demo_flags.read_flags(store) == {"prod": {"new-checkout": 50}, "staging": {"new-checkout": 50}}
    assert [p.name for p in store.parent.iterdir() if p.suffix == ".tmp"] == []


def test_starter_toggle_feature_flag_runs_with_the_parameters_its_policy_declares(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """policies/10-actions.yaml's toggle-feature-flag, parsed from key=value as /steward run does and run by
    its executor, sets the flag in the store; enabled=no turns it off; defaults fill what is left out."""
    store = tmp_path / "flags.json"
    monkeypatch.setenv("STEWARD_DEMO_FLAGS", str(store))
    starter = load_policy(ROOT / "policies").actions["toggle-feature-flag"]

    def run(words: str, request_id: str) -> str:
        params = parse_params(starter, parse_key_values(words))
        result = run_action(starter, params, request_id)
        assert result.ok, result.summary
        return result.summary

    assert run("flag=support_canary traffic_percent=25 env=staging", "req-1") == (
        "flag support_canary: traffic 0% -> 25% in staging"
    )
    assert run("flag=support_canary env=prod", "req-2") == "flag support_canary: traffic 0% -> 100% in prod"
    assert run("flag=support_canary enabled=no env=staging", "req-3") == (
        "flag support_canary: traffic 25% -> 0% in staging"
    )
    assert demo_flags.read_flags(store) == {"staging": {"support_canary": 0}, "prod": {"support_canary": 100}}


def test_dict_style_entry_points_get_the_parameters_and_the_request_id() -> None:
    """An entry point written `(params, request_id)` is still called with one dict and the id."""
    quick = action("python", entry_point="tests.actions_worker:slow_action")
    result = run_action(quick, {"seconds": 0}, REQUEST)
    assert result.ok and result.summary == f"done {REQUEST}"


def test_demo_flags_default_to_the_data_dir_then_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without STEWARD_DEMO_FLAGS the store is in STEWARD_DATA_DIR (the image's one writable folder under
    a read-only root), else ./.steward/flags.json."""
    monkeypatch.delenv("STEWARD_DEMO_FLAGS", raising=False)
    monkeypatch.delenv("STEWARD_DATA_DIR", raising=False)
    run_action(TOGGLE, {"flag": "banner", "traffic_percent": 100}, "req-1")
    assert demo_flags.read_flags(tmp_path / ".steward" / "flags.json") == {"prod": {"banner": 100}}
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    run_action(TOGGLE, {"flag": "banner", "traffic_percent": 10}, "req-2")
    assert demo_flags.read_flags(tmp_path / "data" / "flags.json") == {"prod": {"banner": 10}}


def test_python_entry_point_exception_is_a_failed_run() -> None:
    """The entry point raises: ok False with `Type: message`; nothing is stored."""
    result = run_action(TOGGLE, {"flag": "banner", "traffic_percent": 150}, REQUEST)
    assert not result.ok
    assert result.summary == (
        "demo-action: ValueError: parameter 'traffic_percent' must be between 0 and 100, got 150"
    )
    assert not Path(".steward/flags.json").exists()


def test_python_entry_point_past_its_timeout_is_a_failed_run() -> None:
    """A call that does not return in time is reported as failed, and as possibly still running."""
    slow = action("python", entry_point="tests.actions_worker:slow_action", timeout_seconds=0.2)
    result = run_action(slow, {"seconds": 3}, REQUEST)
    assert not result.ok and result.duration_seconds < 2
    assert "did not finish within 0.2 s; it may still be running" in result.summary
    quick = run_action(slow, {"seconds": 0}, REQUEST)
    assert quick.ok and quick.summary == f"done {REQUEST}"


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("bot.actions.no_such_module:run", "cannot be imported"),
        ("bot.demo.flags:no_such_function", "has no attribute"),
        ("bot.demo.flags:DEFAULT_PATH", "is not callable"),
        ("bot.demo.flags", "must look like"),
    ],
)
def test_python_bad_entry_point_is_a_configuration_error(entry_point: str, message: str) -> None:
    """Unimportable, absent, non-callable or malformed entry points raise ExecutionError."""
    with pytest.raises(ExecutionError, match=f"'demo-action': executor.entry_point .*{message}"):
        run_action(action("python", entry_point=entry_point), {}, REQUEST)


# --- mlflow ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SQLite-backed MLflow registry with fraud-scorer versions 1, 2 and 3; created once."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'registry.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("fraud-scorer")
    for number in (1, 2, 3):
        client.create_model_version("fraud-scorer", source=str(root / "artifacts" / str(number)))
    yield uri


def alias_of(uri: str, alias: str) -> str:
    """The version an alias points at, read back from the registry."""
    from mlflow import MlflowClient

    return str(
        MlflowClient(tracking_uri=uri, registry_uri=uri)
        .get_model_version_by_alias("fraud-scorer", alias)
        .version
    )


def promote(alias: str | None = "production") -> ActionSpec:
    """The rollback/promote action: registry from ${MLFLOW_DB}, alias fixed or from the request."""
    return action("mlflow", registry_uri="${MLFLOW_DB}", alias=alias)


@pytest.mark.slow
def test_mlflow_sets_the_alias_then_rolls_back(registry: str) -> None:
    """production -> 2 (was unset), then -> 1 (was 2): the registry and the summaries agree."""
    env = {"MLFLOW_DB": registry}
    first = run_action(promote(), {"model": "fraud-scorer", "version": 2}, "req-1", env=env)
    assert first.ok and first.summary == "fraud-scorer alias production -> version 2 (was unset)"
    assert alias_of(registry, "production") == "2"

    back = run_action(promote(), {"model": "fraud-scorer", "version": "1"}, "req-2", env=env)
    assert back.ok and back.summary == "fraud-scorer alias production -> version 1 (was 2)"
    assert "to roll back, set alias production of fraud-scorer to version 2" in back.output
    assert back.details["previous_version"] == "2" and back.attempts == 1
    assert alias_of(registry, "production") == "1"


@pytest.mark.slow
def test_mlflow_same_version_twice_is_a_no_op_success(registry: str) -> None:
    """The alias from the request; setting it to where it already points succeeds with 'already'."""
    env = {"MLFLOW_DB": registry}
    params = {"model": "fraud-scorer", "version": 3, "alias": "champion"}
    assert run_action(promote(None), params, "req-1", env=env).ok
    again = run_action(promote(None), params, "req-2", env=env)
    assert again.ok and again.summary == "fraud-scorer alias champion already at version 3"
    assert again.details["changed"] == "false"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "summary"),
    [
        ({"model": "fraud-scorer", "version": 99}, "fraud-scorer has no version 99; versions: 1, 2, 3"),
        (
            {"model": "fraud-scorer", "version": "latest"},
            "fraud-scorer has no version latest; versions: 1, 2, 3",
        ),
        ({"model": "churn-predictor", "version": 1}, "no registered model 'churn-predictor' in the registry"),
    ],
)
def test_mlflow_unknown_version_or_model_is_a_failed_run(
    registry: str, params: dict[str, Any], summary: str
) -> None:
    """Nothing changes and the summary says what exists."""
    result = run_action(promote("canary"), params, REQUEST, env={"MLFLOW_DB": registry})
    assert not result.ok and result.summary == f"demo-action: {summary}"


@pytest.mark.parametrize(
    ("executor", "params", "named"),
    [
        ({"alias": "production"}, {"model": "m", "version": 1}, "registry_uri or executor.tracking_uri"),
        ({"registry_uri": "${MLFLOW_DB}", "alias": "production"}, {"model": "m", "version": 1}, "MLFLOW_DB"),
        ({"registry_uri": "sqlite:///x.db"}, {"model": "m", "version": 1}, "parameter 'alias'"),
        ({"registry_uri": "sqlite:///x.db", "alias": "production"}, {"model": "m"}, "parameter 'version'"),
    ],
    ids=["no-registry", "missing-variable", "no-alias", "no-version"],
)
def test_mlflow_configuration_errors_raise_before_the_registry_is_touched(
    executor: dict[str, str], params: dict[str, Any], named: str
) -> None:
    """No registry, an unset variable, no alias or no version: ExecutionError naming it."""
    with pytest.raises(ExecutionError, match=named):
        run_action(action("mlflow", **executor), params, REQUEST, env={})
    assert not Path("x.db").exists()
