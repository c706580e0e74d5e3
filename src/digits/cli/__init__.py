"""The `digits` command line. Each module registers the commands of one area on the shared app;
they parse arguments, call library functions and print results, nothing else."""

from __future__ import annotations

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
    app()


__all__ = ["app", "main"]
