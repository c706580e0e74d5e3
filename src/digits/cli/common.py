"""Shared pieces of the `digits` command: the Typer app, consoles, error handling, JSON output.

Every failure the user can cause ends as one line on stderr naming the input and the problem, with
exit status 1: a mistyped option as much as a bad file. `--json` output is always a single JSON
document on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup, TyperOption

# `--json` on every command that has it: one flag, one help text.
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]

F = TypeVar("F", bound=Callable[..., Any])

# Whole lines, as typed: the terminal (or the pager a pipe ends in) wraps long lines itself, where
# rich would cut them at 80 columns inside a path or a parenthesis. Tables still fit the width.
# No markup either: file names such as "[x].png" print as they are.
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def print_error(message: object) -> None:
    """One line on stderr: "error: " and the message."""
    err_console.print(f"error: {message}")


# Click's types come vendored inside Typer (typer._click), which is private: the signatures below
# take Any where they would name them.


def _hide_flag_types(command: TyperCommand | TyperGroup, ctx: Any) -> None:
    """Show flags as flags in help: Typer prints `--json <bool>`, as if `--json true` were asked
    for (it is refused)."""
    for param in command.get_params(ctx):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


@contextmanager
def _usage_errors_on_one_line() -> Iterator[None]:
    """A mistyped command line as one line too (Click draws a box under a usage line), exit 1."""
    try:
        yield
    except typer.TyperException as error:  # Click's UsageError and the rest
        if type(error).__name__ == "NoArgsIsHelpError":
            raise  # `digits` alone: the help, as asked
        message = error.format_message().rstrip(".")
        message = message[:1].lower() + message[1:]
        context = getattr(error, "ctx", None)
        where = context.command_path if context is not None else "digits"
        print_error(f"{message} (see `{where} --help`)")
        raise typer.Exit(1) from None


class Command(TyperCommand):
    """A `digits` command: flags shown as flags in its help."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)


class Group(TyperGroup):
    """`digits` and its command groups: flags shown as flags, usage errors on one line."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _usage_errors_on_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        # A subcommand parses its options in here.
        with _usage_errors_on_one_line():
            return super().invoke(ctx)


class Typer(typer.Typer):
    """A Typer app whose groups and commands are the classes above."""

    def __init__(self, **options: Any) -> None:
        super().__init__(cls=Group, **options)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **options: Any
    ) -> Callable[[F], F]:
        return super().command(name, cls=cls or Command, **options)


app = Typer(
    help="Handwritten digit recognition: train, compare, evaluate, export and serve MNIST models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Errors a user can cause, by dotted name, so that this module imports nothing heavy (no torch).
USER_ERRORS = {
    "digits.data.readers.DataFormatError",
    "digits.data.sources.FetchError",
    "digits.train.RunError",
}


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, ValueError | KeyError | FileNotFoundError | PermissionError):
        return True
    if isinstance(exc, OSError) and exc.filename is not None:
        return True  # a path the user gave (or a folder to write) that is missing or refused
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    return bool(names & USER_ERRORS)


def os_error_text(exc: OSError) -> str:
    """'runs/x: no such file or directory' for what Python words "[Errno 2] No such file or
    directory: 'runs/x'"."""
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    if exc.filename is None:
        return reason
    if exc.filename2 is not None:
        return f"{exc.filename} → {exc.filename2}: {reason}"
    return f"{exc.filename}: {reason}"


def without_repeated_name(message: str) -> str:
    """'bad.npz: missing arrays' for 'bad.npz: bad.npz: missing arrays', where a caller named the
    input in front of an error that already starts with its name."""
    name, separator, rest = message.partition(": ")
    while separator and rest.startswith(name + separator):
        rest = rest[len(name) + len(separator) :]
    return f"{name}{separator}{rest}"


def error_text(exc: BaseException) -> str:
    """The one line that tells the user what went wrong."""
    if isinstance(exc, OSError):
        return os_error_text(exc)
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return without_repeated_name(str(message))


def friendly_errors(command: F) -> F:
    """Turn the errors a user can cause into one line on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            print_error(error_text(exc))
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def compact_table(**options: Any) -> Table:
    """A table as the commands print them: a rule under the header, two spaces between columns
    and none at the edges, so that eight short columns fit an 80-column terminal."""
    return Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),  # with the box's own space: two between columns
        **options,
    )


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
