"""Run by tests/test_disk_full.py inside a new user and mount namespace (`unshare -rm`, no root needed):
mounts a small tmpfs, ingests into a data dir on it, fills the disk, ingests again, frees the space and
ingests once more. Prints what Steward did and said, as one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.index.vectors import VectorStoreError
from bot.wiring import Services
from tests.audit_support import KEY_TEXT

SIZE = "24m"
LEFT_FREE = 0  # every last byte taken


def fill(mount: Path, leave: int) -> Path:
    """A file that takes all the space of `mount` but `leave` bytes."""
    filler = mount / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:  # ENOSPC: the disk is full
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def run(mount: Path, kb: Path) -> dict[str, Any]:
    """The three ingests; what each did or said."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], check=True)
    services = Services(Settings(data_dir=mount / "data", audit_key=KEY_TEXT))  # type: ignore[arg-type]
    seen: dict[str, Any] = {"data": str(mount / "data")}
    seen["first"] = services.ingestor.run([kb]).added
    filler = fill(mount, LEFT_FREE)
    (kb / "gpu-drain.md").write_text(
        "# GPU drain\n\nCordon the GPU node, then drain it before the upgrade.\n"
    )
    try:
        services.ingestor.run([kb])
        seen["full"] = "no error"
    except VectorStoreError as exc:
        seen["full"] = str(exc)
    seen["vectors_while_full"] = services.vectors.count()  # the index is whole, and readable
    filler.unlink()
    again = services.ingestor.run([kb])
    seen["after"] = {"added": again.added, "unchanged": again.unchanged, "warnings": again.warnings}
    answer = services.answers.ask("how do I drain a GPU node before the upgrade?")
    seen["answer_cites"] = [citation.path for citation in answer.citations]
    services.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]))))
