"""`digits feedback stats | export`: the corrections people sent from the page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digits.cli.common import (
    JsonOption,
    Typer,
    app,
    compact_table,
    console,
    friendly_errors,
    print_json,
)

if TYPE_CHECKING:
    from rich.table import Table

    from digits.feedback import Stats

feedback_app = Typer(
    help="Corrections sent from the page (`digits serve`): statistics and export.",
    no_args_is_help=True,
)
app.add_typer(feedback_app, name="feedback")

UrlArgument = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="The store: sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DATABASE.",
        show_default=False,
    ),
]
ANSWER_NAMES = {"digit": "digit", "not_sure": "not sure", "not_digit": "not a digit"}


def _share(part: int, whole: int) -> str:
    return "—" if whole == 0 else f"{100 * part / whole:.1f}"


def stats_table(stats: Stats) -> Table:
    """Corrections per digit and how often the model had that digit right: four short columns."""
    table = compact_table(title="corrections by the digit people gave")
    table.add_column("digit", justify="right", no_wrap=True)
    table.add_column("corrections", justify="right", no_wrap=True)
    table.add_column("model right", justify="right", no_wrap=True)
    table.add_column("right %", justify="right", no_wrap=True)
    for digit, count in stats.per_digit.items():
        right = stats.model_right_per_digit[digit]
        table.add_row(digit, f"{count:,}", f"{right:,}", _share(right, count))
    return table


def summary_lines(stats: Stats) -> list[str]:
    right = "—" if stats.model_right is None else f"{100 * stats.model_right:.1f} %"
    answers = ", ".join(
        f"{ANSWER_NAMES.get(kind, kind.replace('_', ' '))} {count:,}"
        for kind, count in stats.answers.items()
    )
    models = ", ".join(f"{name} {count:,}" for name, count in stats.models.items()) or "—"
    lines = [
        f"store:   {stats.url}",
        f"{stats.count:,} corrections ({stats.trainable:,} with a 28×28 to train on), "
        f"{stats.stored_bytes:,} bytes",
        f"model right: {right}",
        f"model answered: {answers}",
        f"models: {models}",
    ]
    if stats.first is not None:
        lines.append(f"from {stats.first} to {stats.last}")
    return lines


# Help texts as single paragraphs: the help shows a docstring's line breaks as they are.
STATS_HELP = (
    "How many corrections there are, per digit, and how often the model had been right.\n\n"
    "JSON keys: url (password masked), count, per_digit (by the digit people gave), "
    "model_right_per_digit, model_right (share 0–1 of all corrections; null when there are "
    "none), answers (by the kind of answer the model gave), models, trainable (with a 28×28), "
    "stored_bytes (counted against the store cap), first and last (ISO 8601, UTC)."
)
EXPORT_HELP = (
    "Write the corrections as an ImageFolder, OUT/<digit>/<id>-<hash>.png.\n\n"
    "The files are the 28×28 images the model saw (ink bright on dark, as MNIST), not the "
    "images people sent; corrections where no ink was found have none and are left out. Names "
    "are fixed per correction, so exporting again adds only new ones. "
    "`digits finetune RUN --data OUT` trains on the folder."
)


@feedback_app.command("stats", help=STATS_HELP)
@friendly_errors
def feedback_stats(url: UrlArgument, as_json: JsonOption = False) -> None:
    """Counts per digit and the model's share right."""
    from digits.feedback import open_store

    with open_store(url, create=False) as store:
        stats = store.stats()
    if as_json:
        print_json(stats.to_dict())
        return
    for line in summary_lines(stats):
        console.print(line)
    console.print(stats_table(stats))


@feedback_app.command("export", help=EXPORT_HELP)
@friendly_errors
def feedback_export(
    url: UrlArgument,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder to write OUT/0/*.png … OUT/9/*.png in.", show_default=False
        ),
    ],
) -> None:
    """The 28×28s as PNG files, one folder per digit."""
    from digits.feedback import export_images

    result = export_images(url, out)
    total = sum(result.per_digit.values())
    counts = " ".join(f"{digit}:{count}" for digit, count in result.per_digit.items())
    console.print(
        f"{result.folder}: {total:,} images ({result.written:,} new, {result.kept:,} there "
        f"already); per digit {counts}"
    )
    if result.without_pixels:
        console.print(f"left out {result.without_pixels:,} corrections with no 28×28 (no ink)")
