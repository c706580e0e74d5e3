"""Shared pieces of the `digits` command: the Typer app, consoles, error handling, JSON output.

Every failure the user can cause ends as one line on stderr naming the input and the problem, with
a non-zero exit status; `--json` output is always a single JSON document on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console

app = typer.Typer(
    help="Handwritten digit recognition: train, compare, evaluate, export and serve MNIST models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

# Errors a user can cause, by dotted name, so that this module imports nothing heavy (no torch).
USER_ERRORS = {
    "digits.data.readers.DataFormatError",
    "digits.data.sources.FetchError",
    "digits.train.RunError",
}


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, ValueError | KeyError | FileNotFoundError | PermissionError):
        return True
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    return bool(names & USER_ERRORS)


def friendly_errors(command: F) -> F:
    """Turn the errors a user can cause into one line on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
