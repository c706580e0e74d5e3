"""`digits serve [MODEL]`: the web page and HTTP API on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from digits.cli.common import app, console, friendly_errors


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
    import uvicorn

    from digits.serve import Settings, create_app
    from digits.serve.discovery import find_best_run

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
    # Built here even with several workers: a model that cannot be loaded stops us before uvicorn
    # starts, with one clear line, instead of once in every worker.
    web_app = create_app(settings)
    info = web_app.state.recognizer.info
    accuracy = "" if info.accuracy is None else f", {info.accuracy:.2%} test accuracy"
    console.print(
        f"serving {model_path} ({info.name}{accuracy}) on http://{settings.host}:{settings.port}/",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    if settings.workers == 1:
        uvicorn.run(web_app, host=settings.host, port=settings.port, log_level="info")
        return
    # Worker processes rebuild the app from the environment (pydantic-settings reads it).
    os.environ.update(
        {
            "DIGITS_SERVE_MODEL": str(model_path.resolve()),
            "DIGITS_SERVE_RUNS_DIR": str(settings.runs_dir),
        }
    )
    uvicorn.run(
        "digits.serve.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
    )
