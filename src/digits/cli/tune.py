"""`digits tune`: an Optuna search over one model's hyperparameters, scored on validation only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digits.cli.common import app, compact_table, console, friendly_errors

if TYPE_CHECKING:
    from rich.table import Table

    from digits.tune import TrialRow, TuneResult


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def _value(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def hyperparameters(params: dict[str, object]) -> str:
    """'batch_size 64, lr 0.00137, ...': a trial's draws, in three significant figures."""
    return ", ".join(f"{name} {_value(value)}" for name, value in sorted(params.items()))


def trial_line(row: TrialRow) -> str:
    """One line per trial as it ends, in place of Optuna's log (16-digit floats, dict reprs)."""
    epochs = f"{row.epochs_run} epoch" + ("" if row.epochs_run == 1 else "s")
    seconds = "" if row.seconds is None else f", {row.seconds:.1f} s"
    return (
        f"trial {row.number} {row.state}: {_percent(row.val_accuracy)} validation after "
        f"{epochs}{seconds}; {hyperparameters(row.params)}"
    )


def trials_table(result: TuneResult) -> Table:
    """Every trial of the study, best first, in short cells; the draws are in the trial lines
    above it, the CSV, and below it for the best trial."""
    table = compact_table(title=f"study {result.study}: {len(result.trials)} trial(s), best first")
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("val acc %", justify="right", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
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
        )
    return table


@app.command("tune")
@friendly_errors
def tune_command(
    model: Annotated[str, typer.Option(help="Registered model name (digits models).")],
    trials: Annotated[int, typer.Option(min=1, help="Trials this process adds to the study.")] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL (default sqlite:///runs/tune/STUDY.db; "
            "postgresql://USER:PASSWORD@HOST/DB for several machines); give several "
            "processes the same one to tune in parallel."
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default: the model name); resumed if it exists.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting trials after this many seconds.")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Most epochs a trial may train.")] = 3,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Tune on the first N training images only (faster)."),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="IDX folder, Kaggle train.csv or .npz.")] = None,
    recipe_out: Annotated[
        Path | None,
        typer.Option(help="Best config as a recipe file (default runs/tune/STUDY.json)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the sampler (reproducible search).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Local worker processes on the study; the cores are split between them."
        ),
    ] = 1,
) -> None:
    """Search lr, batch size, dropout, widths, schedule, epochs and augmentation on validation."""
    import optuna

    from digits.tune import shown_url, tune

    # Optuna logs every trial at INFO with full-precision floats; trial_line says it tidily.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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
        on_trial=lambda row: console.print(trial_line(row), highlight=False),
        workers=workers,
    )
    console.print(trials_table(result))
    storage_shown = shown_url(result.storage)
    console.print(f"storage: {storage_shown}; every trial: {result.summary_path}", highlight=False)
    if result.best is None or result.recipe_path is None:
        console.print("no trial has completed yet, so there is no best config to write")
        return
    console.print(
        f"best: trial {result.best.number}, validation accuracy "
        f"{_percent(result.best.val_accuracy)}: {hyperparameters(result.best.params)}",
        highlight=False,
    )
    console.print(f"recipe written to {result.recipe_path}", highlight=False)
    console.print(f"train it with: digits train --recipe {result.recipe_path}", highlight=False)
