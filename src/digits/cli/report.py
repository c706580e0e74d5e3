"""`digits report RUN`: figures and a self-contained HTML page for a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digits.cli.common import app, console, friendly_errors


@app.command("report")
@friendly_errors
def report_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="Where the PNGs and report.html go (default RUN/report).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Data set instead of the run's own (IDX, .csv, .npz).")
    ] = None,
) -> None:
    """Data overview, learning curves, confusion matrix, classification report, mistakes."""
    from digits.data import load_dataset
    from digits.report import build_report

    report = build_report(run, out, data=None if data is None else load_dataset(data))
    metrics = report.metrics
    console.print(
        f"{'accuracy' if report.split == 'all' else report.split + ' accuracy'} "
        f"{100 * metrics.accuracy:.2f} % on {metrics.count:,} images; "
        f"{len(report.images)} figures"
    )
    console.print(f"report written to {report.html}")
