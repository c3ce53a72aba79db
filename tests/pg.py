"""A real PostgreSQL server for the tests, on loopback, started and stopped
by the test session (Debian's ``postgresql`` package, which ``.ci/run``
installs; skipped with the reason where it is missing).

The server runs from a fresh cluster in a temporary directory, with trust
authentication on 127.0.0.1 only. PostgreSQL refuses to run as root: when
the tests are root, the cluster belongs to the ``postgres`` user the Debian
package creates, and its programs run as that user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgresql_server() -> Iterator[str]:
    """A running server; yields the connection string of its ``postgres`` database."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (extra 'postgresql')")
    bindir = _binaries()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("the tests run as root and runuser is missing: PostgreSQL refuses to run as root")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="tfsm-pg-"))
    data = root / "data"
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = subprocess.Popen(
        [
            *as_user,
            str(bindir / "postgres"),
            *("-D", str(data), "-p", str(port), "-k", str(root), "-h", "127.0.0.1"),
            *("-c", "fsync=off", "-c", "max_connections=40"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115 (closed with the process)
    )
    conninfo = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(conninfo, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start: {(root / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield conninfo
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(conninfo: str, name: str) -> str:
    """A new empty database on the server; its connection string."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return conninfo.rsplit("/", 1)[0] + f"/{name}"
