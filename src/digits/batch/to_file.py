"""`predict_to_file`: every input of SRC... cut into chunks, predicted where the runner puts
them, and written in input order as the chunks come back, continuing what the output already
holds from an earlier run of the same command.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from digits.answers import NOT_SURE_THRESHOLD
from digits.atomic import atomic_write_text
from digits.batch.inputs import iter_inputs
from digits.batch.output import (
    BatchError,
    OutputFormat,
    already_written,
    check_recorded,
    file_sha256,
    sidecar_path,
)
from digits.batch.predict import CHUNK, chunks
from digits.batch.runners import in_order, in_processes, in_this_process, on_dask
from digits.predictor import Predictor, resolve_model_path


@dataclass(frozen=True)
class BatchSummary:
    out: Path
    total: int
    """Entries in the output now: one per input."""
    written: int
    """Entries this run wrote; the others were there already."""
    errors: int
    """Error entries in the whole output."""


def predict_to_file(
    model: str | Path,
    sources: Sequence[str | Path],
    out: Path,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    min_confidence: float = NOT_SURE_THRESHOLD,
    chunk_size: int = CHUNK,
    on_error: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Predict every input of `sources` into `out` (.jsonl or .csv), continuing what `out`
    already holds from an earlier run of the same command.

    `jobs` 1 predicts in this process, more in that many worker processes; `scheduler` "local"
    runs on a Dask LocalCluster of `jobs` workers, an address (tcp://host:8786) on the cluster of
    that scheduler, whose workers must read the model and the inputs at the same paths.
    `on_error` receives the message of each error entry as it is written.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    output = OutputFormat(out)
    model_path = resolve_model_path(model).resolve()
    predictor = Predictor.from_path(model_path)  # a bad model refused before any file is made
    wanted = {
        "model": str(model_path),
        "model_sha256": file_sha256(model_path),
        "inputs": [str(source) for source in sources],
        "resolved": [os.path.abspath(source) for source in sources],
        "min_confidence": min_confidence,
    }
    sidecar = sidecar_path(out)
    holds_entries = out.exists() and out.stat().st_size > 0
    if holds_entries and not sidecar.exists():
        raise BatchError(
            f"{out} exists but no run of `digits predict --out` wrote it (no {sidecar.name}); "
            "remove it or give another --out"
        )
    if holds_entries:
        # An output with nothing in it yet (a run that stopped before its first chunk) is
        # simply started again, whatever command began it.
        try:
            recorded = json.loads(sidecar.read_text())
        except ValueError as exc:
            raise BatchError(f"{sidecar}: not readable ({exc}); remove it and {out}") from None
        check_recorded(out, recorded, wanted)
    listing = iter_inputs(sources)
    done, errors, end = already_written(out, output, listing)
    following = next(listing, None)
    if following is None and done == 0:
        raise ValueError(f"no image files in {', '.join(map(str, sources))}")
    if following is None:  # all done already: no workers to start, nothing to write
        with out.open("ab") as handle:
            handle.truncate(end)
        return BatchSummary(out, done, 0, errors)
    rest = itertools.chain([following], listing)
    written = 0
    with ExitStack() as stack:
        # The workers first: a scheduler that does not answer leaves no file behind.
        if scheduler is not None:
            backend = on_dask(model_path, min_confidence, scheduler, jobs)
        elif jobs > 1:
            backend = in_processes(model_path, min_confidence, jobs)
        else:
            backend = in_this_process(predictor, min_confidence)
        submit, window = stack.enter_context(backend)
        del predictor  # the workers hold their own; in this process, the backend holds it
        if not holds_entries:
            atomic_write_text(sidecar, json.dumps(wanted, indent=2) + "\n")
        handle = stack.enter_context(out.open("ab"))
        handle.truncate(end)  # what a killed run left of its last line
        if end == 0:
            handle.write(output.header())
        for entries in in_order(submit, chunks(rest, chunk_size), window):
            handle.write(b"".join(output.line(entry) for entry in entries))
            handle.flush()  # a chunk written is a chunk a killed run need not redo
            written += len(entries)
            for entry in entries:
                if entry["error"] is not None:
                    errors += 1
                    if on_error is not None:
                        on_error(entry["error"])
    return BatchSummary(out, done + written, written, errors)
