"""Warnings about `command` executors that `steward policy check` prints: shapes that are legal but risky.

Two shapes, each named by its argv position:
- a shell or an interpreter given code inline (`sh -c`, `python -c`, `perl -e`, `node --eval`,
  `pwsh -Command` …), also behind `env`, `sudo`, `timeout` and the like, or by a full path: the code
  argument is a program of its own, and a parameter inside it is code;
- a free-text parameter (no enum, no pattern, or a pattern that admits a leading `-`) that starts an
  argument where an option could go: a value such as `--output=/etc/passwd` would be read as an option.

Neither stops the policy from loading; an action may have good reasons for either. The fixes are a
script file the command runs, a pattern or enum on the parameter, `--` before it, or `--flag={param}`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PureWindowsPath

from bot.actions.models import ActionSpec, ParamSpec

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SHELLS = frozenset(
    ["sh", "bash", "zsh", "dash", "ksh", "mksh", "pdksh", "ash", "yash", "csh", "tcsh", "fish", "busybox-sh"]
)
# Interpreter -> the flags after which an argument is code (single letters also in clusters: `-lc`, `-ne`).
_INLINE_FLAGS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_SHELLS, ("-c", "--command")),
    "python": ("-c",),
    "pypy": ("-c",),
    "perl": ("-e", "-E"),
    "ruby": ("-e",),
    "node": ("-e", "--eval", "-p", "--print"),
    "nodejs": ("-e", "--eval", "-p", "--print"),
    "bun": ("-e", "--eval", "-p", "--print"),
    "php": ("-r",),
    "lua": ("-e",),
    "luajit": ("-e",),
    "rscript": ("-e",),
    "julia": ("-e", "-E", "--eval", "--print"),
    "osascript": ("-e",),
}
_POWERSHELL = frozenset({"pwsh", "powershell"})
_CMD = frozenset({"cmd"})
# Programs that run another program: their options, and which of those take a value of their own.
_WRAPPERS: dict[str, frozenset[str]] = {
    "env": frozenset({"-u", "--unset", "-C", "--chdir"}),
    "sudo": frozenset({"-u", "--user", "-g", "--group", "-C", "--close-from", "-D", "--chdir", "-h", "-p"}),
    "doas": frozenset({"-u", "-C"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "nohup": frozenset(),
    "setsid": frozenset(),
    "time": frozenset({"-f", "--format", "-o", "--output"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "busybox": frozenset(),
}
# Options whose value is attached (`python -Wdefault`, `perl -Mstrict`): letters after them are no flags.
_VALUE_OPTIONS = {"python": "WX", "pypy": "WX", "perl": "IMmxdD"}
_OPTION_PROBES = ("-x", "--x", "-rf", "--help", "--output=/tmp/x", "-1")


@dataclass(frozen=True)
class CommandWarning:
    """A risky shape in a command executor: the field it is written in (`args`, 3) and what to do."""

    field: tuple[str | int, ...]
    message: str


def command_warnings(action: ActionSpec) -> list[CommandWarning]:
    """Every warning for one action's command executor (none for other kinds)."""
    executor = action.executor
    if executor.kind != "command" or not executor.program:
        return []
    argv = [executor.program, *executor.args]
    params = {param.name: param for param in action.params}
    return [*_inline_code(argv, params), *_option_slots(argv, params)]


def _field(position: int) -> tuple[str | int, ...]:
    """Where argv[position] is written: the program, or an entry of `args`."""
    return ("program",) if position == 0 else ("args", position - 1)


def _name(program: str) -> str:
    """`/usr/bin/python3.12` -> `python`, `C:\\Tools\\pwsh.exe` -> `pwsh`: no path, version or .exe."""
    base = PureWindowsPath(program).name.lower()  # splits on / and \ alike
    base = base.removesuffix(".exe")
    return re.sub(r"(?<=[a-z])[\d.]+$", "", base) or base


# ---- inline code


def _inline_code(
    argv: Sequence[str], params: dict[str, ParamSpec], label: Callable[[int], str] = "argv[{}]".format
) -> Iterator[CommandWarning]:
    """Warn at the flag that makes a shell or interpreter run an argument as code."""
    start = _program_start(argv)
    if start is None:
        return
    if isinstance(start, _ChosenProgram):
        wrapper = _name(argv[start.wrapper])
        yield CommandWarning(
            _field(start.index),
            f"{label(start.index)} {argv[start.index]!r} is the program {wrapper} runs: a parameter chooses "
            "which program runs. Name the program in the policy and pass the parameter as an argument",
        )
        return
    if isinstance(start, _SplitString):  # `env -S "sh -c …"`: the string is a command line of its own
        try:
            inner = shlex.split(start.text)
        except ValueError:
            return
        for found in _inline_code(inner, params, "word {}".format):
            yield CommandWarning(
                _field(start.index), f"argv[{start.index}] (split by env -S): {found.message}"
            )
        return
    name = _name(argv[start])
    for index in range(start + 1, len(argv)):
        if argv[index] == "--":
            return
        code_at = _code_position(name, argv[index], index)
        if code_at is not None:
            yield CommandWarning(_field(index), _inline_message(argv, index, code_at, name, params, label))
            return


def _inline_message(
    argv: Sequence[str],
    index: int,
    code_at: int,
    name: str,
    params: dict[str, ParamSpec],
    label: Callable[[int], str],
) -> str:
    code = argv[code_at] if code_at < len(argv) else ""
    inside = [param for param in _PLACEHOLDER.findall(code) if param in params]
    where = label(code_at) if code_at < len(argv) else "the argument after it"
    if inside:
        danger = f"{', '.join(inside)} in that code can run any command"
    else:
        danger = "a parameter added to that code later would be code too"
    return (
        f"{label(index)} {argv[index]!r} makes {name} run {where} as code; {danger}. Put the code in a "
        "script file and run that, or call the program it runs directly, one argument per parameter"
    )


@dataclass(frozen=True)
class _SplitString:
    """`env -S TEXT`: TEXT (at argv[index]) is split into a command line of its own."""

    index: int
    text: str


@dataclass(frozen=True)
class _ChosenProgram:
    """`env {tool}`: the program a wrapper (at argv[wrapper]) runs is a parameter (at argv[index])."""

    wrapper: int
    index: int


def _program_start(argv: Sequence[str]) -> int | _SplitString | _ChosenProgram | None:
    """The position of the program that really runs (past env, sudo, timeout …), an `env -S` string, or
    a parameter in the program's place; None when nothing runs."""
    position = 0
    while position < len(argv):
        name = _name(argv[position])
        takes_value = _WRAPPERS.get(name)
        if takes_value is None:
            return position
        index = position + 1
        while index < len(argv) and argv[index] != "--":
            arg = argv[index]
            if name == "env" and arg in ("-S", "--split-string") and index + 1 < len(argv):
                return _SplitString(index + 1, argv[index + 1])
            if name == "env" and arg.startswith(("-S", "--split-string=")):
                return _SplitString(index, arg.removeprefix("--split-string=").removeprefix("-S"))
            if arg.startswith("-") and len(arg) > 1:
                index += 2 if arg in takes_value else 1
            elif name == "env" and "=" in arg:
                index += 1  # NAME=value
            else:
                break
        if index < len(argv) and argv[index] == "--":
            index += 1
        if name == "timeout":
            index += 1  # the duration
        if index >= len(argv):
            return None
        if _PLACEHOLDER.search(argv[index]):
            return _ChosenProgram(position, index)
        position = index
    return None


def _code_position(name: str, arg: str, index: int) -> int | None:
    """Where the code is when `arg` is an inline-code flag of `name`: this argument or the next; else None."""
    if name in _POWERSHELL:
        word = arg.lower().lstrip("-/")
        command = word == "c" or (len(word) >= 3 and "command".startswith(word))
        encoded = word in ("e", "ec") or (len(word) >= 2 and "encodedcommand".startswith(word))
        return index + 1 if arg[:1] in "-/" and (command or encoded) else None
    if name in _CMD:
        return index + 1 if arg.lower() in ("/c", "/k", "/r") else None
    for flag in _INLINE_FLAGS.get(name, ()):
        if flag.startswith("--"):
            if arg == flag:
                return index + 1
            if arg.startswith(flag + "="):
                return index
            continue
        letter = flag[1]
        if name in _SHELLS:  # `-c`, `-lc`, `-ec`: the command string is the next argument
            if re.fullmatch(rf"-[A-Za-z]*{letter}[A-Za-z]*", arg):
                return index + 1
            continue
        # `-c CODE`, `-Ic CODE`, `-cCODE`, `perl -ne CODE`, `perl -e'CODE'`: code attached or next
        cluster = re.fullmatch(rf"-([A-Za-z]*?){letter}(.*)", arg, re.DOTALL)
        if cluster and not set(cluster.group(1)) & set(_VALUE_OPTIONS.get(name, "")):
            return index if cluster.group(2) else index + 1
    return None


# ---- parameters where an option could go


def _option_slots(argv: Sequence[str], params: dict[str, ParamSpec]) -> Iterator[CommandWarning]:
    """Warn for each argument that starts with a free-text parameter before any `--`."""
    for index in range(1, len(argv)):
        template = argv[index]
        if template == "--":
            return
        first = re.match(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
        if first is None or first.group(1) not in params:
            continue
        param = params[first.group(1)]
        why = _free_text(param)
        if why is None:
            continue
        yield CommandWarning(
            _field(index),
            f"argv[{index}] {template!r} starts with {param.name}, {why}: a value starting with '-' would be "
            f"read as an option. Give {param.name} an enum or a pattern that cannot start with '-', put '--' "
            f"before it, or write --flag={{{param.name}}}",
        )


def _free_text(param: ParamSpec) -> str | None:
    """Why a value of this parameter may start with `-`, or None when it cannot."""
    if param.type != "string" or param.enum:
        return None
    if param.pattern is None:
        return "a free-text parameter (no enum, no pattern)"
    try:
        compiled = re.compile(param.pattern)
    except re.error:
        return None  # reported as an error by the loader
    probe = next((probe for probe in _OPTION_PROBES if compiled.fullmatch(probe)), None)
    return None if probe is None else f"whose pattern admits {probe!r}"
