"""The output file: JSON lines or CSV written from the `--json` entries and read back into
them, and what lets a killed run continue it.

The output resumes: a killed run started again with the same command reads what the file already
holds (the partial last line of a killed write is cut off), checks it against the listing, skips
that many inputs and goes on, so each image is written exactly once. A sidecar file beside the
output (`results.jsonl.inputs.json`) records the model, the inputs and the threshold, and a run
that differs in any of them is refused rather than mixed into the same file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from digits.batch.inputs import Input

FORMATS = (".jsonl", ".csv")
CSV_COLUMNS = (
    *("file", "digit", "answer", "confidence", "not_digit", "reason", "error"),
    *("box_x", "box_y", "box_width", "box_height"),
)
BOX_KEYS = ("x", "y", "width", "height")


class BatchError(ValueError):
    """An output that cannot be continued by this command, or a scheduler that cannot be used."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, float) else str(value)  # floats exactly


def _csv_cells(entry: dict[str, Any]) -> list[str]:
    box = entry["box"] or {}
    return [_cell(entry[key]) for key in CSV_COLUMNS[:7]] + [_cell(box.get(k)) for k in BOX_KEYS]


def _csv_entry(cells: list[str]) -> dict[str, Any]:
    """A CSV row back into the `--json` entry it was written from."""
    if len(cells) != len(CSV_COLUMNS):
        raise ValueError(f"{len(cells)} cells where there are {len(CSV_COLUMNS)} columns")
    row = dict(zip(CSV_COLUMNS, cells, strict=True))
    box = {key: int(row[f"box_{key}"]) for key in BOX_KEYS} if row["box_x"] else None

    def number(key: str, kind: Callable[[str], Any]) -> Any:
        return kind(row[key]) if row[key] else None

    return {
        "file": row["file"],
        "digit": number("digit", int),
        "answer": row["answer"],
        "confidence": number("confidence", float),
        "box": box,
        "not_digit": number("not_digit", float),
        "reason": row["reason"] or None,
        "error": row["error"] or None,
    }


class OutputFormat:
    """JSON lines (`.jsonl`: one `--json` entry per line) or CSV (`.csv`: a header, then one row
    per entry, the box as four columns). Bytes in and out, so that a file name that is not valid
    UTF-8 survives a CSV (JSON escapes it)."""

    def __init__(self, out: Path) -> None:
        if out.suffix.lower() not in FORMATS:
            raise BatchError(f"{out}: --out must end in .jsonl or .csv")
        self.csv = out.suffix.lower() == ".csv"

    def header(self) -> bytes:
        return self._csv_line(list(CSV_COLUMNS)) if self.csv else b""

    def line(self, entry: dict[str, Any]) -> bytes:
        if self.csv:
            return self._csv_line(_csv_cells(entry))
        return json.dumps(entry).encode("ascii") + b"\n"

    def parse(self, record: bytes) -> list[str] | dict[str, Any]:
        if not self.csv:
            entry = json.loads(record)
            if not isinstance(entry, dict) or "file" not in entry:
                raise ValueError("not an entry")
            return entry
        text = record.decode("utf-8", "surrogateescape")
        return next(csv.reader(io.StringIO(text, newline="")))

    def records(self, handle: BinaryIO) -> Iterator[tuple[bytes, int]]:
        """Each complete record and the offset just after it. The record a killed run was
        writing has no line end yet and is not one; in CSV a line end inside quotes (a file
        name with a newline) belongs to the cell."""
        offset, pending = 0, b""
        for line in handle:
            if not line.endswith(b"\n"):
                return
            pending += line
            offset += len(line)
            if self.csv and pending.count(b'"') % 2:
                continue
            yield pending, offset
            pending = b""

    @staticmethod
    def _csv_line(cells: list[str]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        return buffer.getvalue().encode("utf-8", "surrogateescape")


def read_results(out: Path) -> Iterator[dict[str, Any]]:
    """The entries of a results file (either format), as `digits predict --json` gives them."""
    output = OutputFormat(out)
    with out.open("rb") as handle:
        records = output.records(handle)
        if output.csv:
            next(records, None)  # the header
        for record, _ in records:
            parsed = output.parse(record)
            yield _csv_entry(parsed) if isinstance(parsed, list) else parsed


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".inputs.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_recorded(out: Path, recorded: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse, in one line, to continue an output written by a different command."""
    again = "give the same command to continue it, or another --out"
    if recorded.get("model_sha256") != wanted["model_sha256"]:
        raise BatchError(
            f"{out} holds the answers of another model ({recorded.get('model')}); {again}"
        )
    if recorded.get("inputs") != wanted["inputs"] or recorded.get("resolved") != wanted["resolved"]:
        given = " ".join(map(str, recorded.get("inputs") or []))
        raise BatchError(f"{out} holds the answers for other inputs ({given}); {again}")
    if recorded.get("min_confidence") != wanted["min_confidence"]:
        threshold = recorded.get("min_confidence")
        raise BatchError(f"{out} was written with --min-confidence {threshold}; {again}")


def already_written(
    out: Path, output: OutputFormat, listing: Iterator[Input]
) -> tuple[int, int, int]:
    """How many entries `out` holds, how many of them are errors, and the offset where its
    complete records end. Each entry is checked against the listing, which is advanced past
    them: a folder whose files changed since is refused, not written half twice."""
    if not out.exists() or out.stat().st_size == 0:
        return 0, 0, 0
    done = errors = end = 0
    with out.open("rb") as handle:
        records = output.records(handle)
        if output.csv:
            first = next(records, None)
            if first is None:
                return 0, 0, 0  # killed while writing the header
            if output.parse(first[0]) != list(CSV_COLUMNS):
                raise BatchError(f"{out}: not a results file of `digits predict` (its header)")
            end = first[1]
        for record, offset in records:
            try:
                parsed = output.parse(record)
                entry = _csv_entry(parsed) if isinstance(parsed, list) else parsed
            except ValueError as exc:
                raise BatchError(f"{out}: entry {done + 1} is not a result ({exc})") from None
            listed = next(listing, None)
            if listed is None or listed.name != entry["file"]:
                now = "nothing" if listed is None else listed.name
                raise BatchError(
                    f"{out}: entry {done + 1} is {entry['file']} where the inputs now list {now} "
                    "(they changed since it was written); remove it or give another --out"
                )
            done, end = done + 1, offset
            errors += entry.get("error") is not None
    return done, errors, end
