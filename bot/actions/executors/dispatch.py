"""Run a policy-approved action: `webhook`, `command`, `python`, `mlflow` or `mcp`, with typed parameters.

The caller (the approvals flow) guarantees that only approved requests arrive here; nothing in this
module parses text. A failed run is a result with `ok=False`, never an exception; `ExecutionError` is
raised only for a configuration problem found before anything ran.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.actions.executors import entry_points, mcp_tools, mlflow_registry
from bot.actions.executors.webhook import post_signed
from bot.actions.models import ActionSpec, ExecutorSpec
from bot.errors import ConfigurationError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SUMMARY_CHARS = 200  # a Slack line, not a log
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionResult:
    """What one run of an action did: a Slack line, the captured output, timing and attempts."""

    ok: bool
    summary: str
    output: str
    duration_seconds: float
    attempts: int
    # Machine-readable facts for the audit log, e.g. the mlflow alias's previous version for a rollback.
    details: Mapping[str, str] = field(default_factory=dict)


class ExecutionError(ConfigurationError):
    """The action's configuration is unusable (unknown program, missing variable); nothing ran."""


@dataclass(frozen=True)
class _Outcome:
    """An executor's answer before run_action adds timing and truncation."""

    ok: bool
    summary: str
    output: str = ""
    attempts: int = 1
    details: Mapping[str, str] = field(default_factory=dict)


def run_action(
    action: ActionSpec,
    params: Mapping[str, Any],
    request_id: str,
    *,
    env: Mapping[str, str] | None = None,
    allowed_programs: Collection[str] | None = None,
    max_output: int = 2000,
    sleep: Callable[[float], None] = time.sleep,
) -> ExecutionResult:
    """Run an approved action once (webhooks retry; an mcp action retries only connecting); `request_id`
    is the idempotency key."""
    environment = os.environ if env is None else env
    spec = action.executor
    started = time.monotonic()
    # Each _prepare_* raises ExecutionError before anything runs; the returned thunk never raises.
    run: Callable[[], _Outcome]
    if spec.kind == "webhook":
        run = _prepare_webhook(action, params, request_id, environment, sleep)
    elif spec.kind == "command":
        run = _prepare_command(action, params, request_id, allowed_programs, environment)
    elif spec.kind == "python":
        run = _prepare_python(action, params, request_id)
    elif spec.kind == "mcp":
        run = _prepare_mcp(action, params, request_id, allowed_programs, environment, sleep)
    else:
        run = _prepare_mlflow(action, params, environment)
    try:
        outcome = run()
    except Exception as error:
        # A bug or an unforeseen input (say, a URL http.client rejects) must still reach the audit log
        # as a failed run, because the approval that led here was already spent.
        _log.exception("action %r (request %s) failed unexpectedly", action.name, request_id)
        outcome = _Outcome(False, f"{action.name}: {_error_text(error)}", _error_text(error))
    return ExecutionResult(
        ok=outcome.ok,
        summary=_one_line(outcome.summary),
        output=truncate(outcome.output, max_output),
        duration_seconds=time.monotonic() - started,
        attempts=outcome.attempts,
        details=dict(outcome.details),
    )


def allow_listed(
    allowed_programs: Collection[str] | None,
) -> Callable[[ActionSpec, Mapping[str, Any], str], ExecutionResult]:
    """`run_action` with the deployment's allow-list (STEWARD_ALLOWED_PROGRAMS; None: the policy alone)."""

    def run(action: ActionSpec, params: Mapping[str, Any], request_id: str) -> ExecutionResult:
        return run_action(action, params, request_id, allowed_programs=allowed_programs)

    return run


def truncate(text: str, limit: int) -> str:
    """Text cut to `limit` characters with a visible marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated {len(text) - limit} chars]"


def substitute_env(text: str, env: Mapping[str, str], missing: Callable[[str], Exception]) -> str:
    """`text` with each `${NAME}` (NAME a valid variable name) replaced from `env`; raises `missing(NAME)`.

    The one implementation of `${NAME}`: `expand_env` here and `bot.actions.policy.engine.expand_env` use it
    and differ only in the error they raise. Text such as `${not a name}` is left as written.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise missing(name)
        return env[name]

    return _ENV_REFERENCE.sub(replace, text)


def expand_env(action: ActionSpec, field_name: str, value: str, env: Mapping[str, str]) -> str:
    """`value` with each `${NAME}` replaced from `env`; a missing variable is an ExecutionError."""

    def missing(name: str) -> ExecutionError:
        return ExecutionError(
            f"action {action.name!r}: executor.{field_name} uses ${{{name}}}, but the environment "
            f"variable {name} is not set; set it or change the policy file"
        )

    return substitute_env(value, env, missing)


def _required(action: ActionSpec, field_name: str) -> str:
    """A setting the executor kind cannot do without."""
    value: str | None = getattr(action.executor, field_name)
    if not value:
        raise ExecutionError(
            f"action {action.name!r}: a {action.executor.kind} executor needs executor.{field_name}"
        )
    return value


def _param(action: ActionSpec, params: Mapping[str, Any], name: str, where: str) -> Any:
    """A parameter's value, or its declared default; absent both, the spec and request disagree."""
    if name in params:
        return params[name]
    declared = next((p for p in action.params if p.name == name), None)
    if declared is not None and declared.default is not None:
        return declared.default
    raise ExecutionError(f"action {action.name!r}: {where} needs parameter {name!r}, which the request lacks")


def _one_line(text: str) -> str:
    """The first non-empty line, short enough for a Slack message."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return truncate(line, _SUMMARY_CHARS)


def _error_text(error: BaseException) -> str:
    """`Type: message`, the way a failure is shown to the requester."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# --- webhook ---------------------------------------------------------------------------------------


def _prepare_webhook(
    action: ActionSpec,
    params: Mapping[str, Any],
    request_id: str,
    env: Mapping[str, str],
    sleep: Callable[[float], None],
) -> Callable[[], _Outcome]:
    """Check the url and signing key, then return the POST with retries."""
    spec = action.executor
    url = _web_url(action, env)
    key = _variable(action, "secret_env", "the webhook's shared signing key", env)
    payload = {"action": action.name, "params": dict(params), "request_id": request_id}

    def run() -> _Outcome:
        delivery = post_signed(
            url,
            payload,
            idempotency_key=request_id,
            key=key,
            timeout=spec.timeout_seconds,
            retries=max(0, spec.retries),
            sleep=sleep,
        )
        tries = "" if delivery.attempts == 1 else f" after {delivery.attempts} attempts"
        failed = "" if delivery.ok else "failed, "
        summary = f"{action.name}: {failed}{delivery.outcome} from {delivery.host}{tries}"
        details = {"status": str(delivery.status)} if delivery.status is not None else {}
        return _Outcome(delivery.ok, summary, delivery.body, delivery.attempts, details)

    return run


def _web_url(action: ActionSpec, env: Mapping[str, str]) -> str:
    """executor.url with `${NAME}` expanded; only http and https."""
    url = expand_env(action, "url", _required(action, "url"), env)
    if not url.startswith(("http://", "https://")):
        # urllib would also open file: and ftp: URLs; an action only ever calls a web service.
        raise ExecutionError(f"action {action.name!r}: executor.url must start with http:// or https://")
    return url


def _variable(action: ActionSpec, field_name: str, holding: str, env: Mapping[str, str]) -> str | None:
    """The value of the variable an executor field names (None when the field is unset); unset or empty
    is an ExecutionError saying it should hold `holding`."""
    name: str | None = getattr(action.executor, field_name)
    if not name:
        return None
    value = env.get(name)
    if not value:
        raise ExecutionError(
            f"action {action.name!r}: executor.{field_name} names {name}, which is not set; "
            f"set it to {holding}"
        )
    return value


# --- command ---------------------------------------------------------------------------------------


def program_is_allowed(program: str, allowed: Collection[str]) -> bool:
    """True when an allow-list entry names the same file as `program` (bare names are found on PATH)."""
    target = _resolve(program)
    for entry in allowed:
        if entry == program:
            return True
        resolved = _resolve(entry)
        # Same file by full path: "echo" allows "/bin/echo" only when PATH finds that very file, so a
        # look-alike such as /tmp/x/echo is not allowed by its basename.
        if target is not None and resolved is not None and target.samefile(resolved):
            return True
    return False


def _resolve(program: str) -> Path | None:
    """The file a program name would run, or None when there is none."""
    found = shutil.which(program) if os.sep not in program else program
    return Path(found) if found is not None and Path(found).exists() else None


def build_argv(action: ActionSpec, params: Mapping[str, Any]) -> list[str]:
    """The argument vector: each template element becomes exactly one argument, `{name}` -> str(value)."""
    argv = [_required(action, "program")]
    for index, template in enumerate(action.executor.args):
        argv.append(_fill(action, params, template, f"executor.args[{index}]"))
    return argv


def _fill(action: ActionSpec, params: Mapping[str, Any], template: str, where: str) -> str:
    """One template with each `{name}` replaced by str(value); other text, spaces and `;` stay as they are."""
    return _PLACEHOLDER.sub(lambda match: str(_param(action, params, match.group(1), where)), template)


_GUARD = Path(__file__).with_name("run_guard.py")
CHILD_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def _prepare_command(
    action: ActionSpec,
    params: Mapping[str, Any],
    request_id: str,
    allowed_programs: Collection[str] | None,
    env: Mapping[str, str],
) -> Callable[[], _Outcome]:
    """Check the program against the allow-list and build argv, then return the run."""
    argv = build_argv(action, params)
    _check_allowed(action, argv[0], allowed_programs)
    child_env = _child_env(action, request_id, env)
    timeout = action.executor.timeout_seconds

    def run() -> _Outcome:
        return _run_program(action.name, argv, child_env, timeout)

    return run


def _check_allowed(action: ActionSpec, program: str, allowed_programs: Collection[str] | None) -> None:
    """Raise ExecutionError when the deployment's allow-list does not vouch for the program."""
    # None trusts the policy file alone; a deployment passes its own allow-list (STEWARD_ALLOWED_PROGRAMS)
    # as a second key, so a policy edit alone cannot make Steward run a new program.
    if allowed_programs is not None and not program_is_allowed(program, allowed_programs):
        raise ExecutionError(
            f"action {action.name!r}: executor.program {program!r} is not in the allowed programs; "
            "add it to the allow-list or change the policy file"
        )


def _child_env(action: ActionSpec, request_id: str, env: Mapping[str, str]) -> dict[str, str]:
    """Not Steward's own environment (Slack tokens, database URL): the basics plus what the action names."""
    names = (*CHILD_ENV, *action.executor.pass_env)
    child_env = {name: env[name] for name in names if name in env}
    child_env["STEWARD_REQUEST_ID"] = request_id
    return child_env


def _run_program(name: str, argv: list[str], env: dict[str, str], timeout: float) -> _Outcome:
    """Run argv without a shell, capture its output, and kill its whole process group on timeout."""
    found = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if found is None:
        exists = os.sep in argv[0] and Path(argv[0]).is_file()
        problem = "is not executable" if exists else "was not found"
        return _Outcome(False, f"{name}: program {argv[0]!r} {problem}")
    try:
        # The guard runs the command in a session of its own, so a timeout kills grandchildren too
        # (subprocess.run kills only the child, then waits for pipes a grandchild may hold open), and
        # kills them all when this server dies, even by SIGKILL.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_GUARD), str(os.getpid()), "--", found, *argv[1:]],
            shell=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        return _Outcome(False, f"{name}: program {argv[0]!r} was not found")
    except PermissionError:
        return _Outcome(False, f"{name}: program {argv[0]!r} is not executable")
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        output = _combined(stdout, stderr)
        return _Outcome(False, f"{name}: timed out after {timeout:g} s", output, details={"timeout": "1"})
    output = _combined(stdout, stderr)
    details = {"exit_code": str(process.returncode)}
    if process.returncode != 0:
        excerpt = _one_line(stderr) or _one_line(stdout)
        status = _exit_status(process.returncode)
        return _Outcome(False, f"{name}: {status}" + (f": {excerpt}" if excerpt else ""), output, 1, details)
    return _Outcome(True, _one_line(stdout) or f"{name}: done", output, 1, details)


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the child's process group; it may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _exit_status(code: int) -> str:
    """'exited with status 3' or 'killed by signal 9'."""
    return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _combined(stdout: str, stderr: str) -> str:
    """Standard output, then standard error under a marker when there is any."""
    if not stderr:
        return stdout
    separator = "" if not stdout or stdout.endswith("\n") else "\n"
    return f"{stdout}{separator}[stderr]\n{stderr}"


# --- python ----------------------------------------------------------------------------------------


def load_entry_point(action: ActionSpec) -> Callable[..., str | None]:
    """Import "package.module:function"; a missing module or attribute is an ExecutionError."""
    entry_point = _required(action, "entry_point")
    module_name, colon, attribute = entry_point.partition(":")
    if not colon or not module_name or not attribute:
        raise ExecutionError(
            f"action {action.name!r}: executor.entry_point {entry_point!r} must look like "
            "'package.module:function'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ExecutionError(
            f"action {action.name!r}: executor.entry_point {entry_point!r} cannot be imported: {error}"
        ) from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ExecutionError(
                f"action {action.name!r}: executor.entry_point {entry_point!r}: "
                f"{module_name} has no attribute {attribute!r}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ExecutionError(f"action {action.name!r}: executor.entry_point {entry_point!r} is not callable")
    function: Callable[..., str | None] = target
    return function


def _prepare_python(action: ActionSpec, params: Mapping[str, Any], request_id: str) -> Callable[[], _Outcome]:
    """Import the entry point, then return the call."""
    function = load_entry_point(action)

    timeout = action.executor.timeout_seconds

    def call() -> _Outcome:
        try:
            returned = entry_points.call(function, params, request_id)
        except Exception as error:  # the entry point is someone else's code; its failure is a result
            return _Outcome(False, f"{action.name}: {_error_text(error)}", _error_text(error))
        text = "" if returned is None else str(returned)
        return _Outcome(True, _one_line(text) or f"{action.name}: done", text)

    def run() -> _Outcome:
        # A thread cannot be killed: past the timeout the call is reported as failed, and it may still
        # finish in the background (the request id is its idempotency key).
        outcomes: list[_Outcome] = []
        worker = threading.Thread(
            target=lambda: outcomes.append(call()), name="steward-python-action", daemon=True
        )
        worker.start()
        worker.join(timeout)
        if outcomes:
            return outcomes[0]
        return _Outcome(
            False,
            f"{action.name}: did not finish within {timeout:g} s; it may still be running, so check "
            "before requesting it again",
        )

    return run


# --- mlflow ----------------------------------------------------------------------------------------


def _prepare_mlflow(
    action: ActionSpec, params: Mapping[str, Any], env: Mapping[str, str]
) -> Callable[[], _Outcome]:
    """Resolve registry, model, version and alias, then return the alias move."""
    spec: ExecutorSpec = action.executor
    if not spec.tracking_uri and not spec.registry_uri:
        # Refuse rather than fall back to MLflow's default (a local file store in the working directory).
        raise ExecutionError(
            f"action {action.name!r}: an mlflow executor needs executor.registry_uri or executor.tracking_uri"
        )
    tracking = expand_env(action, "tracking_uri", spec.tracking_uri, env) if spec.tracking_uri else None
    registry = expand_env(action, "registry_uri", spec.registry_uri, env) if spec.registry_uri else None
    model = str(_param(action, params, spec.model_param, "executor.model_param"))
    version = str(_param(action, params, spec.version_param, "executor.version_param"))
    alias = spec.alias or str(_param(action, params, "alias", "an mlflow executor without executor.alias"))
    registry_uri = registry or tracking or ""
    tracking_uri = tracking or registry_uri

    def run() -> _Outcome:
        try:
            move = mlflow_registry.move_alias(
                tracking_uri=tracking_uri,
                registry_uri=registry_uri,
                model=model,
                alias=alias,
                version=version,
            )
        except mlflow_registry.RegistryRefusedError as refusal:
            return _Outcome(False, f"{action.name}: {refusal}", str(refusal))
        except Exception as error:  # the registry's own failures (network, database) are results too
            return _Outcome(False, f"{action.name}: {_error_text(error)}", _error_text(error))
        return _Outcome(True, move.summary(), move.describe(), details=move.details())

    return run


# --- mcp -------------------------------------------------------------------------------------------


def mcp_downstream(action: ActionSpec, env: Mapping[str, str], request_id: str = "") -> mcp_tools.Downstream:
    """The downstream MCP server an mcp action names: its program (run over stdio, with the environment a
    command gets) or its URL (`${NAME}` expanded, with the bearer token `token_env` names)."""
    spec = action.executor
    if spec.program:
        child_env = _child_env(action, request_id, env)
        if not request_id:
            del child_env["STEWARD_REQUEST_ID"]  # listing tools is not a request
        return mcp_tools.Downstream(program=spec.program, args=spec.args, env=child_env)
    url = _web_url(action, env)
    token = _variable(action, "token_env", "the MCP server's bearer token", env)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return mcp_tools.Downstream(url=url, headers=headers)


def mcp_arguments(action: ActionSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's arguments: each declared parameter the request carries, else its default, typed."""
    arguments: dict[str, Any] = {}
    for declared in action.params:
        if declared.name in params:
            arguments[declared.name] = params[declared.name]
        elif declared.default is not None:
            arguments[declared.name] = declared.default
    return arguments


def _prepare_mcp(
    action: ActionSpec,
    params: Mapping[str, Any],
    request_id: str,
    allowed_programs: Collection[str] | None,
    env: Mapping[str, str],
    sleep: Callable[[float], None],
) -> Callable[[], _Outcome]:
    """Resolve the server (allow-listed program, or URL and token), then return the one tool call."""
    spec = action.executor
    downstream = mcp_downstream(action, env, request_id)
    if downstream.program is not None:
        _check_allowed(action, downstream.program, allowed_programs)
    arguments = mcp_arguments(action, params)

    def run() -> _Outcome:
        called = mcp_tools.call_tool(
            downstream,
            spec.tool or action.name,
            arguments,
            name=action.name,
            timeout=spec.timeout_seconds,
            retries=max(0, spec.retries),
            sleep=sleep,
        )
        return _Outcome(called.ok, called.summary, called.output, called.attempts, called.details)

    return run
