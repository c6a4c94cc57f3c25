"""Real servers for tests: a `chroma run` process on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET `url` (POST `body` when given): the status and the body, error statuses included."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def chroma_server(path: Path, timeout: float = 60.0, port: int | None = None) -> Iterator[str]:
    """Run `chroma run` from this virtual environment (on `port`, or a free one); yield its URL; stop it."""
    port = port or free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = (path.parent / f"chroma-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # A fixed http URL on loopback that this function built itself.
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chroma run did not start; see {log.name}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def private_postgres() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A PostgreSQL cluster of our own (so a test may stop and start it): its URL, `stop` (a fast shutdown:
    sessions are cut) and `start`.

    Skipped where it cannot run: no `initdb`, or running as root without a `postgres` user to run it as.
    """
    import os
    import pwd
    import shutil

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run a private cluster as")
        prefix = ["runuser", "-u", "postgres", "--"]
    import tempfile

    # Its own folder outside pytest's (which only root may enter), owned by the user that runs it.
    path = Path(tempfile.mkdtemp(prefix="steward-pg-"))
    if prefix:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    data, port = path / "data", free_port()
    options = f"-p {port} -k {path} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )

    def ctl(*args: str) -> None:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(path / "log"), "-w", *args],
            check=True,
            capture_output=True,
        )

    ctl("start")
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            lambda: ctl("stop", "-m", "fast"),
            lambda: ctl("start"),
        )
    finally:
        ctl("stop", "-m", "immediate")
        shutil.rmtree(path, ignore_errors=True)
