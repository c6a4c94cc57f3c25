"""The command executor's guard: runs one command and takes its whole process group down with the server.

`python -I -S run_guard.py PARENT_PID -- PROGRAM ARGS...` is started in a session of its own (so a
timeout kills the command and every process it started, with one `killpg`). It asks Linux to send it
SIGTERM when the server that started it dies, even by SIGKILL (`PR_SET_PDEATHSIG`), and answers SIGTERM
by killing its process group: a run whose server is gone does not go on by itself. It runs the command
as its child and ends the way the command ended (the same exit status, or the same signal).

It imports nothing from Steward: it starts in a few milliseconds with the interpreter's isolated flags.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGTERM when the parent dies (Linux); elsewhere the guard cannot know, and only timeouts apply."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _kill_group(_signum: int, _frame: FrameType | None) -> None:
    os.killpg(0, signal.SIGKILL)  # the command, its children and this guard


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: run_guard.py PARENT_PID -- PROGRAM [ARGS...]\n")
        return 2
    parent, argv = int(args[0]), args[2:]
    signal.signal(signal.SIGTERM, _kill_group)
    _die_with_parent()
    if os.getppid() != parent:  # the server died before the guard could ask to be told
        _kill_group(signal.SIGTERM, None)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)  # noqa: S606 (argv from the policy's template, never a shell)
        except OSError as error:
            os.write(2, f"{argv[0]}: {error.strerror}\n".encode())
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
