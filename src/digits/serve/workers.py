"""Several worker processes behind one port, each listening on a socket of its own.

uvicorn's supervisor binds one socket and shares it between its workers. When clients open
their connections together (a proxy's pool of keep-alive connections, a load test), the first
worker to wake accepts every connection queued and the others idle for as long as those
connections live: two workers then serve at the speed of one (measured in docs/benchmarks.md,
"Web service"). On Linux every worker here gets its own socket, bound with SO_REUSEPORT, and the
kernel spreads new connections over them. Supervision (starting the workers, replacing one that
dies, signals) stays uvicorn's own; elsewhere, or with one worker, this is plain `uvicorn.run`.

This module runs in the supervising process: it imports uvicorn and nothing of the app.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

APP = "digits.serve.app:app_from_environment"


def reuse_port_available() -> bool:
    """SO_REUSEPORT that balances connections between sockets: Linux's (BSDs and macOS have
    the option but hand every connection to one of the sockets)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def worker_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port beside the other workers' (not listening yet: the worker's
    server listens on it). The address family is chosen as uvicorn chooses it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class SocketPerWorker(Multiprocess):
    """uvicorn's supervisor, handing each worker it starts or restarts a socket of its own.

    uvicorn's Multiprocess reads `self.sockets` each time it creates a worker (at start, on a
    restart, when one died), so a property that binds a new socket on every read is all it
    takes; the shared socket its constructor is given is never made."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        return [worker_socket(self.config.host, self.config.port)]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        pass  # the constructor's empty list: each worker gets its own socket instead


def run(options: dict[str, Any]) -> None:
    """Serve the app of `app_from_environment` with uvicorn `options` (workers included)."""
    workers = int(options.get("workers") or 1)
    if workers < 2 or not reuse_port_available():
        uvicorn.run(APP, **options)
        return
    config = uvicorn.Config(APP, **options)
    SocketPerWorker(config).run()
