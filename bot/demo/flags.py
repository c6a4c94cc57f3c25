"""A tiny real feature-flag store for the demo: each flag's traffic share per environment, in one JSON file.

The `python` executor calls `toggle` with the parameters of `toggle-feature-flag` in policies/10-actions.yaml
by name (its keyword-only parameters are that action's parameters, which `steward policy check` compares);
the file lives at `$STEWARD_DEMO_FLAGS`, else in the data dir
(`$STEWARD_DATA_DIR/flags.json`, which the container image sets to its one writable folder), else at
`./.steward/flags.json`. Writes are atomic and locked, and a request id is applied at most once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(".steward") / "flags.json"
DEFAULT_ENVIRONMENT = "prod"
_REMEMBERED_REQUESTS = 1000  # enough to absorb any retry storm, small enough to keep the file readable


def store_path() -> Path:
    """Where the flags live: `$STEWARD_DEMO_FLAGS`, else `$STEWARD_DATA_DIR/flags.json`, else
    `./.steward/flags.json`."""
    if explicit := os.environ.get("STEWARD_DEMO_FLAGS"):
        return Path(explicit)
    data_dir = os.environ.get("STEWARD_DATA_DIR")
    return Path(data_dir) / DEFAULT_PATH.name if data_dir else DEFAULT_PATH


def toggle(
    *,
    flag: str,
    enabled: bool = True,
    traffic_percent: int = 100,
    env: str = DEFAULT_ENVIRONMENT,
    request_id: str,
) -> str:
    """Turn `flag` on for `traffic_percent` of traffic in `env`, or off (0%) when not `enabled`; a seen
    request id changes nothing."""
    flag = str(flag).strip()
    if not flag:
        raise ValueError("parameter 'flag' is required")
    if not isinstance(enabled, bool):
        raise ValueError(f"parameter 'enabled' must be true or false, got {enabled!r}")
    traffic = _percent(traffic_percent) if enabled else 0
    environment = str(env or DEFAULT_ENVIRONMENT)
    path = store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        state = _load(path)
        applied: dict[str, str] = state["applied"]
        if request_id in applied:
            return applied[request_id]
        flags: dict[str, int] = state["flags"].setdefault(environment, {})
        before = flags.get(flag, 0)
        flags[flag] = traffic
        message = f"flag {flag}: traffic {before}% -> {traffic}% in {environment}"
        applied[request_id] = message
        for old in list(applied)[:-_REMEMBERED_REQUESTS]:
            del applied[old]
        _write_atomically(path, state)
    return message


def read_flags(path: Path | None = None) -> dict[str, dict[str, int]]:
    """Every environment's flags and their traffic percent."""
    flags: dict[str, dict[str, int]] = _load(path or store_path())["flags"]
    return flags


def _percent(value: Any) -> int:
    """A whole percentage from 0 to 100."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"parameter 'traffic_percent' must be a whole percentage, got {value!r}")
    try:
        percent = int(value)
    except ValueError:
        raise ValueError(f"parameter 'traffic_percent' must be a whole percentage, got {value!r}") from None
    if not 0 <= percent <= 100:
        raise ValueError(f"parameter 'traffic_percent' must be between 0 and 100, got {percent}")
    return percent


def _load(path: Path) -> dict[str, Any]:
    """The store's content; an absent file is an empty store."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"flags": {}, "applied": {}}
    try:
        state: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a flag store ({error}); fix or delete the file") from error
    state.setdefault("flags", {})
    state.setdefault("applied", {})
    return state


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a sidecar file, so two toggles cannot lose each other's update."""
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old or the new file, whole."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False
    ) as handle:
        json.dump(state, handle, indent=2)  # unsorted: `applied` is oldest first for trimming
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    Path(handle.name).replace(path)
