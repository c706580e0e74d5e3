"""`digits compare`: train models or recipes under the same conditions, print them side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from digits.cli.common import app, console, friendly_errors


@app.command("compare")
@friendly_errors
def compare_command(
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated recipe names, recipe .json files or model names "
            "(default: the seven seed models and best)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs for every item (default: each recipe's own).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per item (mean ± std).")] = 1,
    out: Annotated[Path, typer.Option(help="Where runs and tables go.")] = Path("runs/compare"),
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N training images only.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="IDX folder or .npz with a test split instead of MNIST.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
) -> None:
    """Train each item with the same seeds; write comparison.md, .csv, .json and .png."""
    from digits.compare import compare, default_items, epochs_text, resolve_items

    items = default_items() if models is None else [m.strip() for m in models.split(",")]
    configs = resolve_items(
        [item for item in items if item],
        epochs=epochs,
        limit=limit,
        data_path=None if data is None else str(data),
    )
    rows = compare(configs, out, seeds=seeds, progress=not quiet)
    # Compact enough for an 80-column terminal: units in the headers, one space between columns.
    table = Table(
        title=f"test set, {seeds} seed(s)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0),  # the box already puts a space between columns
        caption="claim %: the accuracy the seed document reports for that model",
    )
    columns = (
        "model",
        "parameters",
        "epochs",
        "train s",
        "accuracy %",
        "loss",
        "macro F1",
        "img/s",
        "claim %",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        spread = f" ± {100 * row.accuracy_std:.2f}" if seeds > 1 else ""
        claim = row.claimed_accuracy
        table.add_row(
            row.model,
            f"{row.parameters:,}",
            epochs_text(row),
            f"{row.train_seconds:.1f}",
            f"{100 * row.accuracy_mean:.2f}{spread}",
            f"{row.loss:.4f}",
            f"{row.macro_f1:.4f}",
            f"{row.images_per_s:,.0f}",
            "—" if claim is None else f"{100 * claim:.2f}",
        )
    console.print(table)
    console.print(f"tables written to {out}/comparison.md, .csv, .json and .png")
