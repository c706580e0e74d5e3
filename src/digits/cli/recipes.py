"""`digits recipes`: the named training recipes and what each reaches here."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from digits.cli.common import app, console, friendly_errors, print_json


@app.command("recipes")
@friendly_errors
def recipes_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Named recipes for `digits train --recipe NAME`: settings, and what they reach here."""
    from digits.recipes import RECIPES

    rows: list[dict[str, Any]] = []
    for recipe in RECIPES.values():
        config = asdict(recipe.config())
        rows.append(
            {
                "name": recipe.name,
                "description": recipe.description,
                "reaches": recipe.reaches,
                "config": {k: v for k, v in config.items() if k not in ("seed", "recipe")},
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table()
    # The descriptions are long; they are in --json. The table keeps to what fits a terminal.
    for column in ("name", "model", "epochs", "batch", "optimizer", "reaches here"):
        table.add_column(column)
    for row in rows:
        config = row["config"]
        table.add_row(
            row["name"],
            config["model"],
            str(config["epochs"]),
            str(config["batch_size"]),
            f"{config['optimizer']} {config['lr']:g}, {config['schedule']}",
            row["reaches"],
        )
    console.print(table)
