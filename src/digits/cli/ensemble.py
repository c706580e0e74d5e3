"""`digits ensemble RUN RUN ... --out DIR`: average trained runs into one evaluable run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digits.cli.common import app, console, friendly_errors


@app.command("ensemble")
@friendly_errors
def ensemble_command(
    runs: Annotated[list[Path], typer.Argument(help="Trained run directories to average.")],
    out: Annotated[Path, typer.Option(help="Ensemble directory to write.")],
    data: Annotated[
        Path | None, typer.Option(help="Data set for the test metrics (default: the members').")
    ] = None,
) -> None:
    """Average the runs' softmax outputs; the result evaluates and exports like a run."""
    if len(runs) < 2:
        # An "ensemble of 1 runs" would only copy that run; refused before anything is written.
        raise ValueError(f"an ensemble needs at least two runs, got only {runs[0]}")
    from digits.data import load_dataset
    from digits.ensemble import build_ensemble
    from digits.train import read_metrics

    build_ensemble(runs, out, data=None if data is None else load_dataset(data))
    metrics = read_metrics(out)
    summary = f"ensemble of {metrics['members']} runs saved to {out}"
    if metrics["test"]:
        summary += f": test accuracy {100 * metrics['test']['accuracy']:.2f} %"
    console.print(summary)
