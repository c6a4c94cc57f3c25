"""Signed checkpoints of the audit log (its entry count and head MAC), one JSON line each, appended to a
file outside the database: `{"count", "head", "at", "replica", "key", "mac"}`.

A checkpoint says "the log had `count` entries and the last one's MAC was `head`". The database writer
cannot forge one (it is signed with the audit key) and, where the file lives somewhere it cannot rewrite
(an append-only file, another host's volume), cannot remove one either. So a log cut shorter than a
checkpoint, emptied, or re-chained up to it no longer matches.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bot.errors import ConfigurationError

HEX64 = re.compile(r"[0-9a-f]{64}")
_TAIL_BYTES = 65536


class Signer(Protocol):
    """What signs and checks checkpoints: the audit key."""

    @property
    def key_id(self) -> str:
        """The key's public name."""
        ...

    def sign(self, purpose: str, fields: dict[str, Any]) -> str:
        """The MAC of `fields`."""
        ...

    def verifies(self, purpose: str, fields: dict[str, Any], mac: str) -> bool:
        """Whether `mac` signs `fields`."""
        ...


class CheckpointError(ConfigurationError):
    """The checkpoint file cannot be written or read; the message names it and the setting."""


@dataclass(frozen=True)
class Checkpoint:
    """The log had `count` entries, the last with MAC `head`, at `at`, as `replica` saw it."""

    count: int
    head: str
    at: float
    replica: str
    key: str  # the signing key's public id
    mac: str

    @classmethod
    def signed(cls, signer: Signer, count: int, head: str, at: float, replica: str) -> Checkpoint:
        """A checkpoint signed by `signer`."""
        at = float(at)  # the line holds a float: an int would sign differently than it reads back
        fields = {"count": count, "head": head, "at": at, "replica": replica, "key": signer.key_id}
        return cls(count, head, at, replica, signer.key_id, signer.sign("checkpoint", fields))

    def fields(self) -> dict[str, Any]:
        """What the MAC covers."""
        return {
            "count": self.count,
            "head": self.head,
            "at": self.at,
            "replica": self.replica,
            "key": self.key,
        }

    def line(self) -> str:
        """The checkpoint as a line of the file."""
        return json.dumps({**self.fields(), "mac": self.mac}, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        """For people: how long the log was, when, and who said so."""
        moment = dt.datetime.fromtimestamp(self.at, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"{self.count} entries at {moment} by {self.replica}"


@dataclass(frozen=True)
class CheckpointFile:
    """The append-only file of checkpoints (STEWARD_AUDIT_CHECKPOINT_PATH)."""

    path: Path

    def append(self, checkpoint: Checkpoint) -> None:
        """Add one line with a single O_APPEND write, flushed to disk before returning."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, (checkpoint.line() + "\n").encode())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise CheckpointError(
                f"cannot append to the audit checkpoints {self.path} ({exc.strerror or exc}); "
                "check STEWARD_AUDIT_CHECKPOINT_PATH"
            ) from None

    def read(self, signer: Signer) -> tuple[list[Checkpoint], list[tuple[str, str]]]:
        """Every valid checkpoint in file order, and (where, problem) for each line that is not one."""
        valid: list[Checkpoint] = []
        problems: list[tuple[str, str]] = []
        for number, line in enumerate(self._text().splitlines(), start=1):
            checkpoint, problem = parse_line(line, signer)
            if checkpoint is not None:
                valid.append(checkpoint)
            elif problem:
                problems.append((f"{self.path} line {number}", problem))
        return valid, problems

    def latest(self, signer: Signer) -> Checkpoint | None:
        """The last valid checkpoint, reading only the end of the file when it has one there."""
        try:
            with self.path.open("rb") as file:
                start = max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES)
                file.seek(start)
                lines = file.read().decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._unreadable(exc) from None
        for line in reversed(lines[1:] if start else lines):  # the first line of a tail may be cut
            checkpoint, _problem = parse_line(line, signer)
            if checkpoint is not None:
                return checkpoint
        if not start:
            return None
        valid, _problems = self.read(signer)  # lines appended to hide the last good one: read it all
        return valid[-1] if valid else None

    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: OSError) -> CheckpointError:
        return CheckpointError(
            f"cannot read the audit checkpoints {self.path} ({exc.strerror or exc}); "
            "check STEWARD_AUDIT_CHECKPOINT_PATH"
        )


def parse_line(line: str, signer: Signer) -> tuple[Checkpoint | None, str]:
    """A line's checkpoint when it is one signed by `signer`; else why not ('' for a blank line)."""
    if not line.strip():
        return None, ""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not a checkpoint: not JSON ({exc.msg} at column {exc.colno})"
    shape: dict[str, type | tuple[type, ...]] = {
        "count": int,
        "head": str,
        "at": (int, float),
        "replica": str,
        "key": str,
        "mac": str,
    }
    if not isinstance(raw, dict) or set(raw) != set(shape):
        return None, f"not a checkpoint: it needs exactly the fields {', '.join(sorted(shape))}"
    for name, kind in shape.items():
        if isinstance(raw[name], bool) or not isinstance(raw[name], kind):
            return None, f"not a checkpoint: `{name}` has the wrong type"
    if raw["count"] < 0 or not HEX64.fullmatch(raw["head"]):
        return None, "not a checkpoint: `count` must be 0 or more and `head` a MAC (64 hex digits)"
    checkpoint = Checkpoint(
        raw["count"], raw["head"], float(raw["at"]), raw["replica"], raw["key"], raw["mac"]
    )
    if signer.verifies("checkpoint", checkpoint.fields(), checkpoint.mac):
        return checkpoint, ""
    if checkpoint.key != signer.key_id:
        return None, (
            f"signed with another key (id {checkpoint.key}; this key is {signer.key_id}): every replica and "
            "the verifier need the same STEWARD_AUDIT_KEY, or the line was forged"
        )
    return None, "its MAC does not match: the line was forged or edited"
