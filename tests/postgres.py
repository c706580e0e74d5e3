"""A real PostgreSQL server for the tests, started on loopback in a temporary directory.

Debian's `postgresql` package (installed by `make test` through tools/system-deps when missing)
puts its programs under /usr/lib/postgresql/VERSION/bin and starts no server by itself. Here
`initdb` makes a cluster in a fresh directory, owned by the `postgres` user when the tests run as
root (PostgreSQL refuses to run as root), and `pg_ctl` starts it on a free port, listening on
127.0.0.1 only, with its socket in that directory; it is stopped and removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INSTALL_ROOT = Path("/usr/lib/postgresql")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's program folder, or None."""
    found = sorted(INSTALL_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def postgres_server(database: str = "digits") -> Iterator[str]:
    """Start a throwaway server; yield the URL of an empty database on it."""
    programs = postgres_bin()
    if programs is None:
        raise RuntimeError(
            f"PostgreSQL is not installed (no {INSTALL_ROOT}/*/bin/initdb): "
            "`make test` installs it (tools/system-deps), or apt-get install postgresql"
        )
    # Under /tmp itself: pytest's own temporary folders are private to root, and the server,
    # run as `postgres`, must reach its directory.
    root = Path(tempfile.mkdtemp(prefix="digits-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def run(program: str, *arguments: str) -> None:
        command = [*as_owner, str(programs / program), *arguments]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    started = False
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start")
        started = True
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(exc.cmd)} failed: {exc.stderr.strip()}") from None
    finally:
        if started:
            run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
