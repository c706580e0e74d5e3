"""`digits serve [MODEL]`: the web page and HTTP API on uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from digits.cli.common import app, console, friendly_errors


@app.command("serve")
@friendly_errors
def serve_command(
    model: Annotated[
        Path | None,
        typer.Argument(help="Run directory or .onnx file (default: the best run under --runs)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes, each with the model.")] = 1,
    runs: Annotated[Path, typer.Option(help="Where to look for runs when MODEL is not given.")] = (
        Path("runs")
    ),
) -> None:
    """Serve the drawing page at / and the HTTP API at /api (reference at /docs)."""
    import uvicorn

    from digits.serve import Settings, create_app
    from digits.serve.discovery import find_best_run

    model_path = model if model is not None else find_best_run(runs)
    settings = Settings(model=model_path, runs_dir=runs, host=host, port=port, workers=workers)
    # Built here even with several workers: a model that cannot be loaded stops us before uvicorn
    # starts, with one clear line, instead of once in every worker.
    web_app = create_app(settings)
    info = web_app.state.recognizer.info
    accuracy = "" if info.accuracy is None else f", {info.accuracy:.2%} test accuracy"
    console.print(
        f"serving {model_path} ({info.name}{accuracy}) on http://{host}:{port}/",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    if workers == 1:
        uvicorn.run(web_app, host=host, port=port, log_level="info")
        return
    # Worker processes rebuild the app from the environment (pydantic-settings reads it).
    os.environ.update(
        {
            "DIGITS_SERVE_MODEL": str(model_path.resolve()),
            "DIGITS_SERVE_RUNS_DIR": str(runs),
            "DIGITS_SERVE_HOST": host,
            "DIGITS_SERVE_PORT": str(port),
            "DIGITS_SERVE_WORKERS": str(workers),
        }
    )
    uvicorn.run(
        "digits.serve.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
