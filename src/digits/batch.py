"""Streamed batch prediction: `digits predict MODEL SRC... --out results.jsonl|.csv`.

    summary = predict_to_file("runs/best", ["scans/", "more.zip"], Path("results.jsonl"), jobs=4)

Inputs are listed lazily (folders walked in sorted order, archives read member by member without
unpacking), cut into chunks, decoded, preprocessed and predicted in worker processes that each load
the model once, or on a Dask cluster, and written in input order as the chunks come back. Only a
few chunks are ever in flight, so memory stays flat however many images there are.

The output resumes: a killed run started again with the same command reads what the file already
holds (the partial last line of a killed write is cut off), checks it against the listing, skips
that many inputs and goes on, so each image is written exactly once. A sidecar file beside the
output (`results.jsonl.inputs.json`) records the model, the inputs and the threshold, and a run
that differs in any of them is refused rather than mixed into the same file.

Never imports torch: this is the ONNX Runtime path of `digits.predictor`.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import itertools
import json
import lzma
import os
import stat
import tarfile
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from digits.answers import NOT_SURE_THRESHOLD
from digits.atomic import atomic_write_text
from digits.predictor import IMAGE_SUFFIXES, Prediction, Predictor, iter_images, resolve_model_path

# Files read and preprocessed per model call: large enough to batch the model, small enough that
# a folder of photos never sits in memory at once.
CHUNK = 64
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
FORMATS = (".jsonl", ".csv")
CSV_COLUMNS = (
    *("file", "digit", "answer", "confidence", "not_digit", "reason", "error"),
    *("box_x", "box_y", "box_width", "box_height"),
)
BOX_KEYS = ("x", "y", "width", "height")

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class InputError(ValueError):
    """A path that is not a readable regular file; the message names it and says what it is."""


class BatchError(ValueError):
    """An output that cannot be continued by this command, or a scheduler that cannot be used."""


# --- reading one input -------------------------------------------------------------------------


def _folder_problem(path: Path) -> str:
    if path.is_symlink() and Path(os.path.realpath(path.parent)).is_relative_to(
        os.path.realpath(path)
    ):
        return f"symbolic link to a folder that contains it ({os.readlink(path)}): a loop"
    try:
        os.scandir(path).close()
    except OSError as exc:
        return f"folder cannot be read ({exc.strerror or exc})"
    return "is a folder, not an image"


def read_input(path: Path, name: str | None = None) -> bytes:
    """The bytes of one input file. Anything else (a FIFO, which would block forever, a device,
    a folder, a dangling or looping symbolic link) raises InputError saying what it is; messages
    call the file `name` (default: the path), the name it has in the results."""
    shown = str(path) if name is None else name
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{shown}: symbolic link loop ({exc.strerror})") from None
        if path.is_symlink():
            raise InputError(f"{shown}: dangling symbolic link (to {os.readlink(path)})") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"{shown}: no such file") from None
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{shown}: {_folder_problem(path)}")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        raise InputError(f"{shown}: is {kind}, not a file")
    try:
        # Non-blocking, so that a FIFO swapped in after the check cannot hang the batch.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputError(f"{shown}: not a regular file")
        try:
            return handle.read()
        except OSError as exc:
            raise InputError(f"{shown}: cannot be read ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class Input:
    """One entry of the listing. A file is read by whoever predicts it (a worker, possibly on
    another machine), so only its name travels; an archive member travels as its bytes, since
    only the listing's single pass can read a compressed tar; `error` is known when listed."""

    name: str
    data: bytes | None = None
    error: str | None = None

    def read(self, base: str | None = None) -> bytes:
        """The bytes; a relative file name is taken from `base` when given (the folder the
        command ran in, for a worker that runs elsewhere)."""
        if self.error is not None:
            raise InputError(self.error)
        if self.data is not None:
            return self.data
        path = Path(self.name)
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return read_input(path, name=self.name)


def archive_kind(path: Path) -> str | None:
    """ "zip" or "tar" for a regular file named as an archive; None for anything else (a FIFO
    named x.zip stays a file input, refused as one)."""
    name = path.name.lower()
    if not name.endswith(ARCHIVE_SUFFIXES) or not path.is_file():
        return None
    return "zip" if name.endswith(".zip") else "tar"


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _zip_members(path: Path) -> Iterator[Input]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not _is_image_name(info.filename):
                continue
            name = f"{path}/{info.filename}"
            try:
                yield Input(name, data=archive.read(info))
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
                # A damaged, encrypted or oddly compressed member costs only itself.
                yield Input(name, error=f"{name}: cannot be read from the archive ({exc})")


def _tar_members(path: Path) -> Iterator[Input]:
    # Stream mode ("r|*"): one pass, any compression, no index of the whole archive in memory.
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            inner = member.name.removeprefix("./")
            if member.isdir() or not _is_image_name(inner):
                continue
            name = f"{path}/{inner}"
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                yield Input(name, error=f"{name}: a link or special file in the archive")
            else:
                yield Input(name, data=handle.read())


def _archive_members(path: Path, kind: str) -> Iterator[Input]:
    """The image members of an archive, in the order it stores them; an archive that cannot be
    read (damaged, truncated) adds one error entry under its own name where reading stopped."""
    try:
        yield from _zip_members(path) if kind == "zip" else _tar_members(path)
    except (
        OSError,
        EOFError,
        tarfile.TarError,
        zipfile.BadZipFile,
        zlib.error,
        lzma.LZMAError,
    ) as exc:
        yield Input(str(path), error=f"{path}: not a readable archive ({exc})")


def iter_inputs(sources: Iterable[str | Path]) -> Iterator[Input]:
    """Every input of SRC... in order: files as given, folders walked as `find_images` walks
    them, archives (.zip, .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz) member by member, each member
    named `ARCHIVE/inner/path.png`."""
    for source in map(Path, sources):
        kind = archive_kind(source)
        if kind is not None:
            yield from _archive_members(source, kind)
        else:
            yield from (Input(str(path)) for path in iter_images([source]))


# --- predicting a chunk ------------------------------------------------------------------------


def _predict_one(predictor: Predictor, data: bytes, name: str, min_confidence: float) -> Prediction:
    try:
        return predictor.predict_image(data, name=name, min_confidence=min_confidence)
    except Exception as exc:  # not an ImageError: preprocessing failed on this image's content
        detail = f"{type(exc).__name__}: {exc}"
        return Prediction(name, None, None, error=f"{name}: could not be processed ({detail})")


def predict_inputs(
    predictor: Predictor,
    inputs: Sequence[Input],
    min_confidence: float = NOT_SURE_THRESHOLD,
    base: str | None = None,
) -> list[Prediction]:
    """One answer or error entry per input, in order, whatever happens to the others; one model
    call for the lot."""
    answers: list[Prediction | None] = []
    readable: list[tuple[bytes, str]] = []
    for item in inputs:
        try:
            readable.append((item.read(base), item.name))
            answers.append(None)
        except InputError as exc:
            answers.append(Prediction(item.name, None, None, error=str(exc)))
    sources, names = [data for data, _ in readable], [name for _, name in readable]
    try:
        predicted = predictor.predict_images(sources, names=names, min_confidence=min_confidence)
    except Exception:
        # Something other than an ImageError escaped (an image mode preprocessing does not
        # handle): one at a time, so that only the file at fault gets an error entry.
        predicted = [_predict_one(predictor, d, n, min_confidence) for d, n in readable]
    filled = iter(predicted)
    return [answer if answer is not None else next(filled) for answer in answers]


def chunks(inputs: Iterable[Input], size: int = CHUNK) -> Iterator[list[Input]]:
    iterator = iter(inputs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity, under a container's or taskset's limit)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _entries(predictions: list[Prediction]) -> list[dict[str, Any]]:
    return [prediction.to_dict() for prediction in predictions]


# --- where chunks run: this process, worker processes, or Dask ---------------------------------


class _Result(Protocol):
    """What comes back for a submitted chunk: a concurrent.futures or a Dask future."""

    def result(self) -> list[dict[str, Any]]: ...


Submit = Callable[[list[Input]], _Result]

_worker_predictor: Predictor | None = None
_worker_failure: Exception | None = None


def _start_worker(model_path: str) -> None:
    global _worker_predictor, _worker_failure
    try:
        # One thread each: the processes are the parallelism.
        _worker_predictor = Predictor.from_path(model_path, threads=1)
    except Exception as exc:
        # Raised with the first chunk, where the command sees it: an initializer that raises
        # only breaks the pool, without a word about why.
        _worker_failure = exc


def _predict_in_worker(chunk: list[Input], min_confidence: float) -> list[dict[str, Any]]:
    if _worker_predictor is None:
        raise _worker_failure or RuntimeError("the worker has no model")
    return _entries(predict_inputs(_worker_predictor, chunk, min_confidence))


_dask_predictors: dict[tuple[str, int, int], Predictor] = {}
_dask_lock = threading.Lock()


def _dask_predictor(model_path: str) -> Predictor:
    """The model, loaded once per worker process and kept for later batches; keyed by the file's
    size and time too, so that a model exported again at the same path is loaded again."""
    info = os.stat(model_path)
    key = (model_path, info.st_size, info.st_mtime_ns)
    with _dask_lock:  # the threads of one worker share the loaded model
        if key not in _dask_predictors:
            _dask_predictors[key] = Predictor.from_path(model_path, threads=1)
        return _dask_predictors[key]


def _predict_on_dask_worker(
    model_path: str, chunk: list[Input], min_confidence: float, base: str
) -> list[dict[str, Any]]:
    predictor = _dask_predictor(model_path)
    return _entries(predict_inputs(predictor, chunk, min_confidence, base=base))


def _process_context() -> Any:
    """forkserver where there is one: workers forked from a clean server process that has this
    module imported already (quick to start, none of the caller's threads or sessions inherited);
    spawn elsewhere."""
    import multiprocessing  # here: a plain `digits predict` starts without it

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["digits.batch"])
    return context


@contextmanager
def _in_this_process(predictor: Predictor, min_confidence: float) -> Iterator[tuple[Submit, int]]:
    def submit(chunk: list[Input]) -> _Result:
        future: Future[list[dict[str, Any]]] = Future()
        future.set_result(_entries(predict_inputs(predictor, chunk, min_confidence)))
        return future

    yield submit, 1


@contextmanager
def _in_processes(
    model_path: Path, min_confidence: float, jobs: int
) -> Iterator[tuple[Submit, int]]:
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        jobs,
        mp_context=_process_context(),
        initializer=_start_worker,
        initargs=(str(model_path),),
    )
    try:
        # Two chunks a worker: one being predicted, one waiting, so that no worker idles while
        # the writer catches up.
        yield (lambda chunk: pool.submit(_predict_in_worker, chunk, min_confidence)), 2 * jobs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _on_dask(
    model_path: Path, min_confidence: float, scheduler: str, jobs: int
) -> Iterator[tuple[Submit, int]]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise BatchError("--scheduler needs Dask: pip install 'digits[batch]'") from None
    with ExitStack() as stack:
        if scheduler == "local":
            cluster = LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = stack.enter_context(Client(stack.enter_context(cluster)))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="10s"))
            except OSError as exc:
                raise BatchError(f"no Dask scheduler answers at {scheduler} ({exc})") from None
        threads = sum(client.nthreads().values())
        # Relative file names are read from this folder: a worker may run in another one.
        base = os.getcwd()

        def submit(chunk: list[Input]) -> _Result:
            return client.submit(
                _predict_on_dask_worker, str(model_path), chunk, min_confidence, base, pure=False
            )

        yield submit, 2 * max(threads, 1) + 2


def _in_order(submit: Submit, work: Iterator[list[Input]], window: int) -> Iterator[list[dict]]:
    """Each chunk's entries in input order, with at most `window` chunks submitted and not yet
    written: what bounds memory, however long the listing."""
    pending: deque[_Result] = deque()
    for chunk in work:
        pending.append(submit(chunk))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# --- the output file ---------------------------------------------------------------------------


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_recorded(out: Path, recorded: dict[str, Any], wanted: dict[str, Any]) -> None:
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


def _already_written(
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
        "model_sha256": _sha256(model_path),
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
        _check_recorded(out, recorded, wanted)
    listing = iter_inputs(sources)
    done, errors, end = _already_written(out, output, listing)
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
            backend = _on_dask(model_path, min_confidence, scheduler, jobs)
        elif jobs > 1:
            backend = _in_processes(model_path, min_confidence, jobs)
        else:
            backend = _in_this_process(predictor, min_confidence)
        submit, window = stack.enter_context(backend)
        del predictor  # the workers hold their own; in this process, the backend holds it
        if not holds_entries:
            atomic_write_text(sidecar, json.dumps(wanted, indent=2) + "\n")
        handle = stack.enter_context(out.open("ab"))
        handle.truncate(end)  # what a killed run left of its last line
        if end == 0:
            handle.write(output.header())
        for entries in _in_order(submit, chunks(rest, chunk_size), window):
            handle.write(b"".join(output.line(entry) for entry in entries))
            handle.flush()  # a chunk written is a chunk a killed run need not redo
            written += len(entries)
            for entry in entries:
                if entry["error"] is not None:
                    errors += 1
                    if on_error is not None:
                        on_error(entry["error"])
    return BatchSummary(out, done + written, written, errors)
