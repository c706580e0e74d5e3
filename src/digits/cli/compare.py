"""`digits compare`: train models or recipes under the same conditions, print them side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digits.cli.common import app, compact_table, console, friendly_errors

if TYPE_CHECKING:
    from rich.table import Table

    from digits.compare import ComparisonRow, RunStart


def announce(start: RunStart) -> None:
    """A heading above each run's progress bars, which name neither the item nor the seed."""
    doing = "reusing the finished run in" if start.reused else "training into"
    console.print(
        f"[{start.number}/{start.total}] {start.item}, seed {start.seed}: {doing} {start.run_dir}",
        highlight=False,
    )


def throughput(images_per_s: float) -> str:
    """'1.06 M', '653 k', '980': a rate in three significant figures, short enough for a table."""
    for scale, unit in ((1e6, " M"), (1e3, " k")):
        if images_per_s >= scale:
            return f"{images_per_s / scale:.3g}{unit}"
    return f"{images_per_s:.0f}"


def comparison_table(rows: list[ComparisonRow], seeds: int) -> Table:
    """The side-by-side table, within 80 columns for names of up to 20 characters; loss, macro F1
    and the seeds' own wording of their claims are in comparison.md, .csv and .json."""
    from digits.compare import epochs_text

    table = compact_table(title=f"test set, {seeds} seed(s)" if seeds > 1 else "test set")
    table.add_column("model", no_wrap=True)  # what the user typed: never cut
    for column in ("params", "epochs", "train s", "test %", "img/s", "claim %"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        spread = f" ± {100 * row.accuracy_std:.2f}" if seeds > 1 else ""
        claim = row.claimed_accuracy
        table.add_row(
            row.model,
            f"{row.parameters:,}",
            epochs_text(row),
            f"{row.train_seconds:.1f}",
            f"{100 * row.accuracy_mean:.2f}{spread}",
            throughput(row.images_per_s),
            "—" if claim is None else f"{100 * claim:.2f}",
        )
    return table


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
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per item (mean ± std).")] = 1,
    out: Annotated[Path, typer.Option(help="Where runs and tables go.")] = Path("runs/compare"),
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N training images only.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="IDX folder or .npz with a test split instead of MNIST.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Train each item with the same seeds; write comparison.md, .csv, .json and .png."""
    from digits.compare import compare, default_items, resolve_items
    from digits.config import ConfigError

    items = default_items() if models is None else [m.strip() for m in models.split(",")]
    try:
        configs = resolve_items(
            [item for item in items if item],
            epochs=epochs,
            limit=limit,
            data_path=None if data is None else str(data),
        )
    except ConfigError as exc:  # --epochs 0, --limit 0: named as typed
        raise ValueError(exc.describe({"epochs": "--epochs", "limit": "--limit"})) from None
    rows = compare(
        configs, out, seeds=seeds, progress=not quiet, on_run=None if quiet else announce
    )
    console.print(comparison_table(rows, seeds))
    console.print("claim %: the accuracy the seed document reports for that model")
    console.print(f"tables written to {out}/comparison.md, .csv, .json and .png", highlight=False)
