"""`digits serve [MODEL]`: the web page and HTTP API on uvicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digits.cli.common import app, console, friendly_errors

if TYPE_CHECKING:
    from digits.serve.settings import Settings


# The defaults of digits.serve.settings.Settings, repeated so that `--help` shows them without
# importing pydantic; tests/test_cli_output.py checks that the two agree.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_WORKERS = 1
DEFAULT_RUNS = Path("runs")
MAX_WORKERS = 64


@app.command("serve")
@friendly_errors
def serve_command(
    ctx: typer.Context,
    model: Annotated[
        Path | None,
        typer.Argument(help="Run directory or .onnx file (default: the best run under --runs)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = DEFAULT_PORT,
    workers: Annotated[
        int,
        typer.Option(min=1, max=MAX_WORKERS, help="Worker processes, each with the model."),
    ] = DEFAULT_WORKERS,
    runs: Annotated[
        Path, typer.Option(help="Where to look for runs when MODEL is not given.")
    ] = DEFAULT_RUNS,
    feedback: Annotated[
        str | None,
        typer.Option(
            help="Where the page's corrections are kept: sqlite:///FILE or postgresql://...; "
            '"" turns them off (default: a SQLite file in the user data folder).'
        ),
    ] = None,
) -> None:
    """Serve the drawing page at / and the HTTP API at /api (reference at /docs).

    Options left out come from DIGITS_SERVE_* environment variables, then the defaults."""
    from digits.serve.discovery import find_best_run

    typed = {
        field: value
        for field, option, value in (
            ("model", "model", model),
            ("host", "host", host),
            ("port", "port", port),
            ("workers", "workers", workers),
            ("runs_dir", "runs", runs),
            ("feedback_url", "feedback", feedback),
        )
        if value is not None and _typed(ctx, option)
    }
    settings = _settings(typed)
    model_path = settings.model or find_best_run(settings.runs_dir)
    settings = settings.model_copy(update={"model": model_path})
    url = f"http://{settings.host}:{settings.port}/"
    if settings.workers == 1:
        import uvicorn

        from digits.serve.app import create_app

        web_app = create_app(settings)
        # After the model (its errors come first) and before the announcement: a busy port or
        # an unknown host is one line here, not "serving ..." and then uvicorn's traceback.
        check_listen(settings.host, settings.port)
        _announce(
            model_path,
            web_app.state.recognizer.info.name,
            web_app.state.recognizer.info.accuracy,
            url,
        )
        uvicorn.run(web_app, **uvicorn_options(settings))
        return
    # Several workers, each loading its own model. The supervising process needs none of it, so
    # the model is checked in a throwaway process (a bad one still stops us here, once, with one
    # clear line) and this process then becomes plain uvicorn: neither the supervisor nor the
    # workers it spawns carry the command line's imports.
    name, accuracy = _check_model(model_path)
    check_listen(settings.host, settings.port)
    _announce(model_path, name, accuracy, url)
    os.environ.update(
        {
            "DIGITS_SERVE_MODEL": str(model_path.resolve()),
            "DIGITS_SERVE_RUNS_DIR": str(settings.runs_dir),
            "DIGITS_SERVE_FEEDBACK_URL": settings.feedback_url,
        }
    )
    sys.stdout.flush()
    sys.stderr.flush()
    options = {**uvicorn_options(settings), "workers": settings.workers, "factory": True}
    # uvicorn's command line takes no protocol class, so the supervisor is started from Python.
    os.execv(sys.executable, [sys.executable, "-c", SUPERVISOR, json.dumps(options)])


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether the option was on the command line; one left out comes from the environment."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


_OPTION_OF = {"model": "MODEL", "runs_dir": "--runs", "feedback_url": "--feedback"}


def _settings(typed: dict[str, Any]) -> Settings:
    """The service settings, a bad value (typed or from the environment) as one line."""
    from pydantic import ValidationError

    from digits.serve.settings import Settings

    try:
        return Settings(**typed)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "settings"
            named = (
                _OPTION_OF.get(field, f"--{field.replace('_', '-')}")
                if field in typed
                else f"DIGITS_SERVE_{field.upper()}"
            )
            message = str(error["msg"])
            problems.append(f"{named} {error.get('input')!r}: {message[:1].lower()}{message[1:]}")
        raise ValueError("; ".join(problems)) from None


def check_listen(host: str, port: int) -> None:
    """Raise ValueError (one line) unless this process could listen on host:port now.

    Binds, as uvicorn will, every address the host resolves to, and lets go at once: uvicorn
    binds again a moment later, so a server that takes the port in between still fails there.
    """
    import errno
    import socket

    where = f"cannot listen on {host}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ValueError(
            f"{where}: no such host or address ({exc.strerror}); check --host"
        ) from None
    for family, kind, protocol, _, address in dict.fromkeys(addresses):
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                reasons = {
                    errno.EADDRINUSE: "the port is in use (is another server running there?); "
                    "choose another with --port",
                    errno.EADDRNOTAVAIL: f"{host} is not an address of this machine; "
                    "check --host (127.0.0.1: this machine only, 0.0.0.0: every interface)",
                    errno.EACCES: "permission denied (ports below 1024 need privileges); "
                    "choose another with --port",
                }
                reason = reasons.get(exc.errno or 0, (exc.strerror or str(exc)).lower())
                raise ValueError(f"{where}: {reason}") from None


SUPERVISOR = """
import json, sys
from digits.serve.workers import run
run(json.loads(sys.argv[1]))
"""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn listens: the guarded protocol, keep-alive and connection bounds."""
    from digits.serve.limits import MAX_HEAD_BYTES, PROTOCOL

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
        "http": PROTOCOL,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


CHECK_MODEL = """
import json, sys
from digits.predictor import Predictor
try:
    info = Predictor.from_path(sys.argv[1]).info
except Exception as exc:
    sys.exit(str(exc))
print(json.dumps({"name": info.model, "accuracy": info.test_accuracy}))
"""


def _check_model(path: Path) -> tuple[str, float | None]:
    """Load MODEL in a separate Python process; its name and accuracy, or a ValueError."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK_MODEL, str(path)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise ValueError(lines[-1] if lines else f"{path}: the model could not be loaded")
    info = json.loads(result.stdout)
    return info["name"], info["accuracy"]


def _announce(path: Path, name: str, accuracy: float | None, url: str) -> None:
    score = "" if accuracy is None else f", {100 * accuracy:.2f} % test accuracy"
    console.print(f"serving {path} ({name}{score}) on {url}", highlight=False)
