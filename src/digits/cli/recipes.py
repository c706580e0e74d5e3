"""`digits recipes [NAME]`: the named training recipes and what each reaches here."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from digits.cli.common import (
    JsonOption,
    app,
    compact_table,
    console,
    friendly_errors,
    print_json,
)

# The figure a recipe's `reaches` text opens with: "99.66 % test, mean of 3 seeds ..." → 99.66 %.
_LEADING_PERCENT = re.compile(r"~?\d+(?:\.\d+)? %")


def headline(reaches: str) -> str:
    """The test accuracy a `reaches` text opens with, or "—" when it opens with something else."""
    match = _LEADING_PERCENT.match(reaches)
    return match.group() if match else "—"


def _rows() -> list[dict[str, Any]]:
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
    return rows


def _overview(rows: list[dict[str, Any]]) -> Table:
    """One short line per recipe, within 80 columns; the prose and the other settings (schedule,
    augmentation, ...) are in the detail view."""
    table = compact_table()
    # The name is what the user types: never cut or wrapped.
    table.add_column("name", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("epochs", justify="right")
    table.add_column("batch", justify="right")
    table.add_column("optimizer", no_wrap=True)
    table.add_column("test accuracy", justify="right", no_wrap=True)
    for row in rows:
        config = row["config"]
        table.add_row(
            row["name"],
            config["model"],
            str(config["epochs"]),
            str(config["batch_size"]),
            f"{config['optimizer']} {config['lr']:g}",
            headline(row["reaches"]),
        )
    return table


def _setting(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_setting(item)}" for key, item in value.items()) or "—"
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _detail(row: dict[str, Any]) -> list[str]:
    """Everything about one recipe, as whole lines (a terminal or a pager wraps them)."""
    width = max(map(len, row["config"]))
    lines = [f"{row['name']}: {row['description']}", f"reaches: {row['reaches']}", ""]
    lines += [f"  {field:<{width}}  {_setting(value)}" for field, value in row["config"].items()]
    return [*lines, "", f"train it with: digits train --recipe {row['name']}"]


@app.command("recipes")
@friendly_errors
def recipes_command(
    name: Annotated[
        str | None, typer.Argument(help="One recipe to show in full (default: all, in brief).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Named recipes for `digits train --recipe NAME`: settings, and what they reach here."""
    rows = _rows()
    if name is not None:
        chosen = [row for row in rows if row["name"] == name]
        if not chosen:
            names = ", ".join(row["name"] for row in rows)
            raise ValueError(f"unknown recipe {name!r} (choose from {names})")
        if as_json:
            print_json(chosen[0])
            return
        console.print("\n".join(_detail(chosen[0])), highlight=False)
        return
    if as_json:
        print_json(rows)
        return
    console.print(_overview(rows))
    console.print("details: digits recipes NAME; every setting: digits recipes --json")
