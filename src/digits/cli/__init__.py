"""The `digits` command line. Each module registers the commands of one area on the shared app;
they parse arguments, call library functions and print results, nothing else."""

from __future__ import annotations

import gc

from digits.cli import (  # noqa: F401  (importing registers the commands)
    compare,
    data,
    ensemble,
    feedback,
    finetune,
    predict,
    recipes,
    report,
    serve,
    training,
    tune,
)
from digits.cli.common import app


def main() -> None:
    try:
        app()
    finally:
        # Python's last garbage collections walk every object left, and after torch and its
        # compiler are imported that is millions of them: about a second on two cores, after
        # the work is done. Frozen, they are skipped; atexit handlers, buffered files and
        # module teardown still run as usual.
        gc.freeze()


__all__ = ["app", "main"]
