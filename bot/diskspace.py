"""A full disk, recognised in its disguises, and said plainly.

Python says ENOSPC (errno 28), SQLite says "database or disk is full", and embedded Chroma, whose
Rust compactor drops the errno, says "Error in compaction: Failed to apply logs to the hnsw segment
writer". So an error counts as a full disk when its chain names one, or when the disk it wrote to has
almost no space left when the error is seen.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# ENOSPC: no space left; EDQUOT: the user's quota is used up; EFBIG: a file size limit (ulimit -f).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_SIGNS = (
    "no space left on device",
    "database or disk is full",
    "disk quota exceeded",
    "file too large",
    "os error 28",
)
# Below this, a write that failed is taken to have failed for want of space (Chroma gives no errno).
NEARLY_FULL_BYTES = 8 * 1024 * 1024


def says_disk_full(exc: BaseException) -> bool:
    """Whether the exception, or one it was raised from, reports a full disk."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "errno", None) in DISK_FULL_ERRNOS:
            return True
        if any(sign in str(current).lower() for sign in _SIGNS):
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper of the driver's error
        todo += [current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None]
    return False


def free_bytes(path: Path) -> int | None:
    """Free space on the file system holding `path` (or its nearest existing folder); None if unknown."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def nearly_full(path: Path) -> bool:
    """Whether the disk holding `path` has less than NEARLY_FULL_BYTES free."""
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL_BYTES


def size_text(count: int) -> str:
    """A byte count for people: 512 bytes, 40 KB, 3.1 MB."""
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    if count < 1024**3:
        return f"{count / 1024 / 1024:.1f} MB"
    return f"{count / 1024**3:.1f} GB"


def disk_full_message(
    path: Path, doing: str, needed: int | None = None, setting: str = "STEWARD_DATA_DIR"
) -> str:
    """What to tell a person whose disk filled up (or would, by `needed` bytes) while `doing` something in
    `path`."""
    free = free_bytes(path)
    left = f"{size_text(free)} free" if free is not None else "free space unknown"
    what = (
        f"{doing} in {path} was not started: it needs about {size_text(needed)}, {left}"
        if needed is not None
        else f"{doing} in {path} failed for want of space ({left})"
    )
    return (
        f"the disk is full: {what}. Free some space on that disk (or point {setting} to a larger one), "
        "then run the same command again: it goes on from where this run stopped, without --rebuild."
    )
