"""The `mcp` executor against a real downstream MCP server (tests/support/mcp_downstream.py, the official
SDK's server) over stdio and streamable HTTP: one tool call per run, never resent; the loader's checks;
`steward policy check --tools`."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp_types import CallToolResult, ImageContent, TextContent

from bot.actions.executors.dispatch import ExecutionError, ExecutionResult, run_action
from bot.actions.executors.mcp_checks import schema_problems
from bot.actions.executors.mcp_tools import tool_text
from bot.actions.models import ParamSpec
from bot.actions.policy.engine import build_request, check_report, load_policy, parse_key_values
from bot.actions.policy.rules import Policy, PolicyError
from bot.cli import main
from tests.conftest import write_tree
from tests.servers import free_port
from tests.support.mcp_downstream import recorded_calls, serving_http, stdio_command

TOKEN = "downstream-token-1"
SERVER = f"{Path(sys.executable).name} mcp_downstream.py"  # how summaries name the stdio server
RULES = "rules:\n  - {name: anyone, actions: '*', outcome: allow, reason: tests}\n"


def catalog(record: Path, stdio: tuple[str, tuple[str, ...]] | None = None) -> str:
    """Four actions on the test server over stdio, one over HTTP (its URL and token from the environment)."""
    program, args = stdio or stdio_command(record)
    server = f"      program: {program}\n      args: [{', '.join(args)}]\n"
    return (
        "actions:\n"
        "  rollback-model:\n    description: roll back\n"
        "    params:\n      model: {}\n      version: {type: integer, minimum: 1}\n"
        f"    executor:\n      kind: mcp\n{server}      tool: rollback_model\n"
        "  fail-always:\n    description: fails\n"
        f"    executor:\n      kind: mcp\n{server}      tool: fail_always\n"
        "  wait:\n    description: waits\n    params:\n      seconds: {type: number}\n"
        f"    executor:\n      kind: mcp\n{server}      tool: wait\n      timeout_seconds: 10\n"
        "  pause-pipeline:\n    description: pause\n    params:\n      pipeline: {}\n"
        "    executor:\n      kind: mcp\n      url: ${DOWNSTREAM_MCP_URL}\n"
        "      token_env: DOWNSTREAM_MCP_TOKEN\n      tool: pause_pipeline\n"
    )


@pytest.fixture
def record(tmp_path: Path) -> Path:
    """Where the downstream server records each tool call it gets."""
    return tmp_path / "calls.jsonl"


@pytest.fixture
def policy(tmp_path: Path, record: Path) -> Policy:
    """The catalog above, loaded as Steward loads it."""
    return load_policy(write_tree(tmp_path / "policies", {"10-actions.yaml": catalog(record) + RULES}))


def run(policy: Policy, name: str, words: str = "", **options: Any) -> ExecutionResult:
    """Run an action with parameters typed as the catalog parses `name=value` words."""
    request = build_request(policy, name, parse_key_values(words))
    return run_action(policy.actions[name], request.params, "req-mcp-1", **options)


def calls(record: Path) -> list[tuple[str, dict[str, Any]]]:
    """(tool, arguments) of each call the server recorded."""
    return [(call["tool"], call["arguments"]) for call in recorded_calls(record)]


# ---- running


@pytest.mark.slow
def test_a_stdio_action_calls_its_tool_once_with_typed_arguments(policy: Policy, record: Path) -> None:
    """The version reaches the tool as the integer the catalog parsed; the tool's text is the summary."""
    result = run(policy, "rollback-model", "model=fraud-scorer version=3")
    assert result.ok, result
    assert result.summary == "rolled back fraud-scorer to version 3"
    assert result.output == "rolled back fraud-scorer to version 3"
    assert result.attempts == 1
    assert result.details == {
        "tool": "rollback_model",
        "server": SERVER,
        "is_error": "false",
    }
    assert calls(record) == [("rollback_model", {"model": "fraud-scorer", "version": 3})]


@pytest.mark.slow
def test_an_http_action_sends_the_bearer_token_and_calls_once(policy: Policy, record: Path) -> None:
    """Over streamable HTTP with Authorization: Bearer from token_env; one call recorded."""
    env = {"DOWNSTREAM_MCP_TOKEN": TOKEN}
    with serving_http(record, token_env="DOWNSTREAM_MCP_TOKEN", env=env) as url:
        result = run(policy, "pause-pipeline", "pipeline=nightly", env={**env, "DOWNSTREAM_MCP_URL": url})
    assert result.ok, result
    assert result.summary == "paused pipeline nightly"
    assert calls(record) == [("pause_pipeline", {"pipeline": "nightly"})]


@pytest.mark.slow
def test_a_refused_token_fails_at_once_and_calls_nothing(policy: Policy, record: Path) -> None:
    """HTTP 401 is a refusal, not a transient failure: no retry, no call."""
    slept: list[float] = []
    with serving_http(record, token_env="DOWNSTREAM_MCP_TOKEN", env={"DOWNSTREAM_MCP_TOKEN": TOKEN}) as url:
        env = {"DOWNSTREAM_MCP_TOKEN": "wrong", "DOWNSTREAM_MCP_URL": url}
        result = run(policy, "pause-pipeline", "pipeline=nightly", env=env, sleep=slept.append)
    assert not result.ok
    assert result.summary.startswith("pause-pipeline: could not reach the MCP server 127.0.0.1:")
    assert "HTTP 401" in result.summary
    assert (result.attempts, slept, calls(record)) == (1, [], [])


@pytest.mark.slow
def test_a_tool_error_is_a_failed_run(policy: Policy, record: Path) -> None:
    """isError from the tool: ok False, the tool's text in the summary and output, called once."""
    result = run(policy, "fail-always")
    assert not result.ok
    assert result.summary.startswith("fail-always: fail_always reported an error: ")
    assert "the downstream refused: fail_always always fails" in result.summary
    assert "fail_always always fails" in result.output
    assert result.details["is_error"] == "true" and result.attempts == 1
    assert calls(record) == [("fail_always", {})]


def test_an_unreachable_server_is_retried_then_reported(policy: Policy) -> None:
    """Connecting failed before any call was sent: retried with backoff, then a clear summary."""
    port = free_port()
    slept: list[float] = []
    env = {"DOWNSTREAM_MCP_URL": f"http://127.0.0.1:{port}/mcp", "DOWNSTREAM_MCP_TOKEN": TOKEN}
    result = run(policy, "pause-pipeline", "pipeline=nightly", env=env, sleep=slept.append)
    assert not result.ok
    assert result.summary.startswith(
        f"pause-pipeline: could not reach the MCP server 127.0.0.1:{port} after 3 attempts: connection failed"
    )
    assert (result.attempts, slept) == (3, [0.2, 0.4])


def test_a_missing_program_is_reported_without_retrying(tmp_path: Path, record: Path) -> None:
    """A server program that is not there will not appear on a retry."""
    missing = str(tmp_path / "no-such-server")
    folder = write_tree(tmp_path / "p", {"a.yaml": catalog(record, (missing, ())) + RULES})
    slept: list[float] = []
    result = run(load_policy(folder), "fail-always", sleep=slept.append)
    assert not result.ok
    assert result.summary == (
        f"fail-always: could not reach the MCP server no-such-server: program {missing!r} was not found"
    )
    assert (result.attempts, slept) == (1, [])


@pytest.mark.slow
def test_a_call_that_times_out_is_not_sent_again(policy: Policy, record: Path) -> None:
    """The tool got the call and outlived the timeout: failed, 'it may have run', and never resent."""
    started = time.monotonic()
    result = run(policy, "wait", "seconds=60", sleep=lambda _: None)
    assert not result.ok
    assert result.summary.startswith(f"wait: the call to wait on {SERVER} did not answer within 10 s")
    assert "it may have run, so check before requesting it again" in result.summary
    assert result.attempts == 1 and result.details["timeout"] == "1"
    assert calls(record) == [("wait", {"seconds": 60.0})]
    assert time.monotonic() - started < 30  # the server was stopped, not waited for


@pytest.mark.slow
def test_a_call_that_breaks_off_is_not_sent_again(tmp_path: Path, record: Path) -> None:
    """The server died with the call: the call may have run, so it is reported, never resent."""
    yaml = catalog(record).replace("tool: fail_always", "tool: exit_now") + RULES
    policy = load_policy(write_tree(tmp_path / "p", {"a.yaml": yaml}))
    slept: list[float] = []
    result = run(policy, "fail-always", sleep=slept.append)
    assert not result.ok
    assert result.summary.startswith(f"fail-always: the call to exit_now on {SERVER} failed: ")
    assert result.summary.endswith("it may have run, so check before requesting it again")
    assert (result.attempts, slept, calls(record)) == (1, [], [("exit_now", {})])


@pytest.mark.slow
def test_a_server_that_never_initializes_is_retried(tmp_path: Path, record: Path) -> None:
    """A program that never answers initialize times out before any call: that is retried."""
    silent = (sys.executable, ("-c", "'import time; time.sleep(60)'"))
    folder = write_tree(tmp_path / "p", {"a.yaml": catalog(record, silent) + RULES})
    wait = load_policy(folder).actions["wait"]
    spec = wait.model_copy(
        update={"executor": wait.executor.model_copy(update={"timeout_seconds": 1, "retries": 1})}
    )
    slept: list[float] = []
    result = run_action(spec, {"seconds": 1.0}, "req-mcp-2", sleep=slept.append)
    assert not result.ok
    assert result.summary.endswith("after 2 attempts: did not start and initialize within 1 s")
    assert (result.attempts, slept) == (2, [0.2])


@pytest.mark.slow
def test_run_action_works_when_called_inside_an_event_loop(policy: Policy, record: Path) -> None:
    """A caller on an event loop's thread (an async agent surface) still gets its one call."""

    async def caller() -> ExecutionResult:
        return run(policy, "rollback-model", "model=m version=2")

    result = asyncio.run(caller())
    assert result.ok, result
    assert calls(record) == [("rollback_model", {"model": "m", "version": 2})]


def test_the_program_allow_list_applies_to_mcp_servers(policy: Policy, record: Path) -> None:
    """STEWARD_ALLOWED_PROGRAMS is a second key for an mcp server's program, as for a command's."""
    with pytest.raises(ExecutionError, match=r"executor.program .* is not in the allowed programs"):
        run(policy, "fail-always", allowed_programs=["kubectl"])
    assert calls(record) == []


def test_an_unset_token_variable_is_a_configuration_error(policy: Policy) -> None:
    """token_env names a variable the server lacks: nothing is attempted, the error names it."""
    with pytest.raises(
        ExecutionError, match=r"executor\.token_env names DOWNSTREAM_MCP_TOKEN, which is not set"
    ):
        run(policy, "pause-pipeline", "pipeline=p", env={"DOWNSTREAM_MCP_URL": "http://127.0.0.1:1/mcp"})


def test_policy_check_warns_about_an_mcp_program_off_the_allow_list_and_an_unset_token(
    tmp_path: Path, record: Path
) -> None:
    """Without --tools nothing starts, but the allow-list and the token variable are checked as warnings."""
    folder = write_tree(tmp_path / "policies", {"10-actions.yaml": catalog(record) + RULES})
    code, text = check_report(folder, allowed_programs=["kubectl"], environ={"DOWNSTREAM_MCP_URL": "x"})
    assert code == 0
    assert (
        f"warning: policies/10-actions.yaml, line 2: actions.rollback-model.executor.program: "
        f"{sys.executable!r} is not in STEWARD_ALLOWED_PROGRAMS, so the action fails when it runs" in text
    )
    assert (
        "warning: policies/10-actions.yaml, line 36: actions.pause-pipeline.executor.token_env: "
        "DOWNSTREAM_MCP_TOKEN is not set here" in text
    )
    assert calls(record) == []


# ---- the tool's result as text


def test_the_output_is_the_text_then_structured_content_not_said_in_text() -> None:
    """Text blocks one a line, a non-text block named, structured content as JSON unless already text."""
    blocks: list[Any] = [
        TextContent(type="text", text="paused"),
        ImageContent(type="image", data="", mime_type="image/png"),
    ]
    result = CallToolResult(content=blocks, structured_content={"paused": ["a"], "count": 1})
    assert tool_text(result) == 'paused\n[image content]\n{"count": 1, "paused": ["a"]}'
    wrapped = CallToolResult(
        content=[TextContent(type="text", text="done")], structured_content={"result": "done"}
    )
    assert tool_text(wrapped) == "done"
    repeated = CallToolResult(
        content=[TextContent(type="text", text='{"a": 1}')], structured_content={"a": 1}
    )
    assert tool_text(repeated) == '{"a": 1}'


# ---- the loader


MCP_HEAD = "actions:\n  pause:\n    description: pause\n    params:\n      pipeline: {}\n    executor:\n"


@pytest.mark.parametrize(
    ("executor", "problem"),
    [
        ("      kind: mcp\n      tool: pause_pipeline",
         "line 6: actions.pause.executor: an mcp executor needs program: (a server run over stdio) or url:"),
        ("      kind: mcp\n      program: srv\n      url: https://mcp.example.com/mcp",
         "line 9: actions.pause.executor.url: give program: or url:, not both"),
        ("      kind: mcp\n      url: mcp.example.com",
         "line 8: actions.pause.executor.url: write https://… or ${ENV_NAME}"),
        ("      kind: mcp\n      program: srv\n      tool: pause pipeline",
         "line 9: actions.pause.executor.tool: 'pause pipeline' is not an MCP tool name"),
        ("      kind: mcp\n      program: srv\n      token_env: MCP_TOKEN",
         "line 9: actions.pause.executor.token_env: is for url: servers; a program gets its variables "
         "through pass_env:"),
        ("      kind: mcp\n      url: https://mcp.example.com/mcp\n      token_env: mcp-token",
         "line 9: actions.pause.executor.token_env: is an environment variable name"),
        ("      kind: mcp\n      program: srv\n      args: ['{pipeline}']",
         "line 9: actions.pause.executor.args[0]: an mcp server's args are passed as written"),
        ("      kind: mcp\n      program: srv\n      secret_env: KEY",
         "line 9: actions.pause.executor.secret_env: is for webhook executors, not mcp; remove it"),
        ("      kind: command\n      program: srv\n      tool: pause_pipeline",
         "line 9: actions.pause.executor.tool: is for mcp executors, not command; remove it"),
    ],
)  # fmt: skip
def test_the_loader_names_what_is_wrong_with_an_mcp_executor(
    tmp_path: Path, executor: str, problem: str
) -> None:
    """Each mistake is reported with the file, line and field, and what to do."""
    folder = write_tree(tmp_path / "policies", {"10-actions.yaml": MCP_HEAD + executor + "\n" + RULES})
    with pytest.raises(PolicyError) as caught:
        load_policy(folder)
    assert [text for text in caught.value.problems if problem in text], caught.value.problems


def test_an_mcp_action_with_a_url_loads_and_its_tool_defaults_to_its_name(tmp_path: Path) -> None:
    """No tool: the action's own name is called; pass_env is taken as for a command."""
    executor = "      kind: mcp\n      url: ${PLATFORM_MCP_URL}\n      pass_env: [X]"
    policy = load_policy(write_tree(tmp_path / "policies", {"a.yaml": MCP_HEAD + executor + "\n" + RULES}))
    assert policy.actions["pause"].executor.tool is None
    assert policy.actions["pause"].executor.url == "${PLATFORM_MCP_URL}"


# ---- comparing the catalog with a tool's input schema

SCHEMA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "version": {"type": "integer"},
        "ratio": {"type": "number"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["model", "version"],
}


MODEL, VERSION = ParamSpec(name="model"), ParamSpec(name="version", type="integer")


@pytest.mark.parametrize(
    ("params", "closed", "problems"),
    [
        ([MODEL, VERSION], False, []),
        ([MODEL, VERSION, ParamSpec(name="ratio", type="integer")], False, []),
        ([MODEL], False,
         ["the tool requires 'version', which is not a parameter of the action; add it"]),
        ([MODEL, ParamSpec(name="version", required=False)], False,
         ["the tool requires 'version'; make the parameter required or give it a default",
          "'version' is a string parameter, but the tool takes integer"]),
        ([MODEL, ParamSpec(name="version", type="number"), ParamSpec(name="note", type="boolean")], False,
         ["'version' is a number parameter, but the tool takes integer",
          "'note' is a boolean parameter, but the tool takes string"]),
        ([MODEL, VERSION, ParamSpec(name="env")], True,
         ["'env' is not an argument of the tool, which takes only model, note, ratio, version"]),
        ([MODEL, VERSION, ParamSpec(name="env")], False, []),
    ],
)  # fmt: skip
def test_schema_problems(params: list[ParamSpec], closed: bool, problems: list[str]) -> None:
    """Required properties, types (an integer fits a number; null is optional) and, when the schema
    takes no others, parameters it lacks."""
    schema = {**SCHEMA, "additionalProperties": False} if closed else SCHEMA
    assert schema_problems(params, schema) == problems


# ---- steward policy check --tools


def check_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], yaml: str
) -> tuple[int, str, str]:
    """`steward policy check --tools` on one policy file, in process."""
    monkeypatch.setenv(
        "STEWARD_POLICIES_DIR", str(write_tree(tmp_path / "policies", {"10-actions.yaml": yaml}))
    )
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    code = main(["policy", "check", "--tools"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_policy_check_tools_finds_a_missing_tool_a_mismatched_parameter_and_an_unreachable_server(
    tmp_path: Path, record: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each problem names the policy file and the line of its action; exit 1; no traceback."""
    yaml = (
        catalog(record)
        .replace("tool: fail_always", "tool: fail_alway")
        .replace("version: {type: integer, minimum: 1}", "version: {}")
        + RULES
    )
    monkeypatch.setenv("DOWNSTREAM_MCP_URL", f"http://127.0.0.1:{free_port()}/mcp")
    monkeypatch.setenv("DOWNSTREAM_MCP_TOKEN", TOKEN)
    code, out, err = check_tools(tmp_path, monkeypatch, capsys, yaml)
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("policies OK: 4 actions")
    # then the warnings (STEWARD_ALLOWED_PROGRAMS is unset), then the tools' problems
    problems = lines[lines.index("3 problems with the tools of mcp actions:") + 1 :]
    assert problems[0] == (
        "  policies/10-actions.yaml, line 2: actions.rollback-model.executor.tool: rollback_model: "
        "'version' is a string parameter, but the tool takes integer"
    )
    assert problems[1] == (
        "  policies/10-actions.yaml, line 12: actions.fail-always.executor.tool: the server "
        f"{SERVER} has no tool 'fail_alway' (did you mean 'fail_always'?); it has exit_now, fail_always, "
        "pause_pipeline, rollback_model, wait"
    )
    assert problems[2].startswith(
        "  policies/10-actions.yaml, line 29: actions.pause-pipeline.executor: could not list the tools of "
        "the MCP server 127.0.0.1:"
    )
    assert "connection failed" in problems[2] and "Traceback" not in err
    assert calls(record) == []  # listing tools calls none


@pytest.mark.slow
def test_policy_check_tools_passes_a_catalog_that_matches(
    tmp_path: Path, record: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both servers reached (stdio once for three actions, HTTP with its token): exit 0 and a summary."""
    with serving_http(record, token_env="DOWNSTREAM_MCP_TOKEN", env={"DOWNSTREAM_MCP_TOKEN": TOKEN}) as url:
        monkeypatch.setenv("DOWNSTREAM_MCP_URL", url)
        monkeypatch.setenv("DOWNSTREAM_MCP_TOKEN", TOKEN)
        code, out, err = check_tools(tmp_path, monkeypatch, capsys, catalog(record) + RULES)
    assert code == 0, err
    assert out.splitlines()[-1] == "mcp tools OK: 4 actions on 2 servers match their tools"
