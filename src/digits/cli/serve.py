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


@app.command("serve")
@friendly_errors
def serve_command(
    model: Annotated[
        Path | None,
        typer.Argument(help="Run directory or .onnx file (default: the best run under --runs)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8000].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes, each with the model [default: 1].")
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(help="Where to look for runs when MODEL is not given [default: runs]."),
    ] = None,
) -> None:
    """Serve the drawing page at / and the HTTP API at /api (reference at /docs).

    Options left out come from DIGITS_SERVE_* environment variables, then the defaults."""
    from digits.serve.discovery import find_best_run
    from digits.serve.settings import Settings

    given: dict[str, Any] = {
        "model": model,
        "host": host,
        "port": port,
        "workers": workers,
        "runs_dir": runs,
    }
    settings = Settings(**{key: value for key, value in given.items() if value is not None})
    model_path = settings.model or find_best_run(settings.runs_dir)
    settings = settings.model_copy(update={"model": model_path})
    url = f"http://{settings.host}:{settings.port}/"
    if settings.workers == 1:
        import uvicorn

        from digits.serve.app import create_app

        web_app = create_app(settings)
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
    _announce(model_path, name, accuracy, url)
    os.environ.update(
        {
            "DIGITS_SERVE_MODEL": str(model_path.resolve()),
            "DIGITS_SERVE_RUNS_DIR": str(settings.runs_dir),
        }
    )
    sys.stdout.flush()
    sys.stderr.flush()
    options = {**uvicorn_options(settings), "workers": settings.workers, "factory": True}
    # uvicorn's command line takes no protocol class, so the supervisor is started from Python.
    os.execv(sys.executable, [sys.executable, "-c", SUPERVISOR, json.dumps(options)])


SUPERVISOR = """
import json, sys, uvicorn
uvicorn.run("digits.serve.app:app_from_environment", **json.loads(sys.argv[1]))
"""


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn listens: the guarded protocol, keep-alive and connection bounds."""
    from digits.serve.limits import MAX_HEAD_BYTES, PROTOCOL

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
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
    score = "" if accuracy is None else f", {accuracy:.2%} test accuracy"
    console.print(
        f"serving {path} ({name}{score}) on {url}", soft_wrap=True, markup=False, highlight=False
    )
