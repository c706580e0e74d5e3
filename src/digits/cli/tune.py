"""`digits tune`: an Optuna search over one model's hyperparameters, scored on validation only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from digits.cli.common import app, console, friendly_errors


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@app.command("tune")
@friendly_errors
def tune_command(
    model: Annotated[str, typer.Option(help="Registered model name (digits models).")],
    trials: Annotated[int, typer.Option(help="Trials this process adds to the study.")] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default sqlite:///runs/tune/STUDY.db); give several "
            "processes the same one to tune in parallel."
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: the model name); resumed if it exists.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs a trial may train.")] = 3,
    limit: Annotated[
        int | None, typer.Option(help="Tune on the first N training images only (faster).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="IDX folder, Kaggle train.csv or .npz.")] = None,
    recipe_out: Annotated[
        Path | None,
        typer.Option(help="Best config as a recipe file (default runs/tune/STUDY.json)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler (reproducible search).")
    ] = None,
) -> None:
    """Search lr, batch size, dropout, widths, schedule, epochs and augmentation on validation."""
    from digits.tune import tune

    result = tune(
        model,
        trials,
        study_name=study,
        storage=storage,
        timeout=timeout,
        max_epochs=epochs,
        limit=limit,
        data_path=None if data is None else str(data),
        recipe_out=recipe_out,
        sampler_seed=seed,
    )
    # Hyperparameters share one wrapping column: a column each would not fit a terminal.
    table = Table(
        title=f"study {result.study} ({result.storage})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),  # the box already puts a space between columns
    )
    for column in ("trial", "state", "val acc %", "epochs", "seconds", "hyperparameters"):
        table.add_column(
            column, justify="left" if column in ("state", "hyperparameters") else "right"
        )
    ranked = sorted(
        result.trials, key=lambda row: -1.0 if row.val_accuracy is None else -row.val_accuracy
    )
    for row in ranked:
        table.add_row(
            str(row.number),
            row.state,
            "—" if row.val_accuracy is None else f"{100 * row.val_accuracy:.2f}",
            str(row.epochs_run),
            "—" if row.seconds is None else f"{row.seconds:.1f}",
            ", ".join(f"{name} {_value(value)}" for name, value in sorted(row.params.items())),
        )
    console.print(table)
    console.print(f"trials written to {result.summary_path}")
    if result.best is None or result.recipe_path is None:
        console.print("no trial has completed yet, so there is no best config to write")
        return
    console.print(
        f"best: trial {result.best.number}, validation accuracy "
        f"{_percent(result.best.val_accuracy)}; recipe written to {result.recipe_path}"
    )
    console.print(f"train it with: digits train --recipe {result.recipe_path}")
