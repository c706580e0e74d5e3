"""`digits export | predict | read | kaggle predict | explain`: real images in, digits out.

predict, read and kaggle run on the exported ONNX model and never import torch, so they start
fast; export and explain need the torch model of a run directory.
"""

from __future__ import annotations

import csv
import errno
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from digits.answers import NOT_SURE_THRESHOLD
from digits.cli.common import Typer, app, console, err_console, friendly_errors, print_json

if TYPE_CHECKING:
    from digits.predictor import Prediction, Predictor

kaggle_app = Typer(help="Kaggle Digit Recognizer submissions.", no_args_is_help=True)
app.add_typer(kaggle_app, name="kaggle")

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
MinConfidence = Annotated[
    float,
    typer.Option(
        "--min-confidence",
        min=0.0,
        max=1.0,
        help='Answers less sure than this are "not sure" (null); the service uses the same.',
    ),
]


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f} %"


# Files read and preprocessed per model call: large enough to batch the model, small enough that
# a folder of photos never sits in memory at once.
CHUNK = 64
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class InputError(ValueError):
    """A path that is not a readable regular file; the message names it and says what it is."""


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


def read_input(path: Path) -> bytes:
    """The bytes of one input file. Anything else (a FIFO, which would block forever, a device,
    a folder, a dangling or looping symbolic link) raises InputError saying what it is."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: symbolic link loop ({exc.strerror})") from None
        if path.is_symlink():
            raise InputError(f"{path}: dangling symbolic link (to {os.readlink(path)})") from None
        if exc.errno == errno.ENOENT:
            raise InputError(f"{path}: no such file") from None
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: {_folder_problem(path)}")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
        raise InputError(f"{path}: is {kind}, not a file")
    try:
        # Non-blocking, so that a FIFO swapped in after the check cannot hang the batch.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputError(f"{path}: not a regular file")
        try:
            return handle.read()
        except OSError as exc:
            raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _predict_one(predictor: Predictor, data: bytes, name: str, min_confidence: float) -> Prediction:
    from digits.predictor import Prediction

    try:
        return predictor.predict_image(data, name=name, min_confidence=min_confidence)
    except Exception as exc:  # not an ImageError: preprocessing failed on this image's content
        detail = f"{type(exc).__name__}: {exc}"
        return Prediction(name, None, None, error=f"{name}: could not be processed ({detail})")


def _predict_chunk(
    predictor: Predictor, files: list[Path], min_confidence: float
) -> list[Prediction]:
    from digits.predictor import Prediction

    answers: list[Prediction | None] = []
    readable: list[tuple[bytes, str]] = []
    for path in files:
        try:
            readable.append((read_input(path), str(path)))
            answers.append(None)
        except InputError as exc:
            answers.append(Prediction(str(path), None, None, error=str(exc)))
    sources, names = [data for data, _ in readable], [name for _, name in readable]
    try:
        predicted = predictor.predict_images(sources, names=names, min_confidence=min_confidence)
    except Exception:
        # Something other than an ImageError escaped (an image mode preprocessing does not
        # handle): one at a time, so that only the file at fault gets an error entry.
        predicted = [_predict_one(predictor, d, n, min_confidence) for d, n in readable]
    filled = iter(predicted)
    return [answer if answer is not None else next(filled) for answer in answers]


def predict_files(
    predictor: Predictor, files: list[Path], min_confidence: float
) -> list[Prediction]:
    """One answer or error entry per file, in order, whatever happens to the others."""
    predictions: list[Prediction] = []
    for start in range(0, len(files), CHUNK):
        predictions += _predict_chunk(predictor, files[start : start + CHUNK], min_confidence)
    return predictions


@app.command("export")
@friendly_errors
def export_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default RUN/model.onnx).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Export a run to ONNX (any batch size), checked against torch, metadata inside."""
    from digits.export import ExportError, export_run
    from digits.run_files import run_state, unfinished_message

    if run.is_dir() and run_state(run) in ("created", "training"):
        # Exporting is how a run finishes, so it is allowed; the copy is the best epoch so far.
        err_console.print(
            f"warning: {unfinished_message(run)}; exporting the best epoch so far",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    try:
        result = export_run(run, out)
    except ExportError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"{result.path} written ({result.bytes:,} bytes); probabilities match torch within "
        f"{result.max_abs_difference:.1e} on {result.checked_images} images",
        highlight=False,
    )


@app.command("predict")
@friendly_errors
def predict_command(
    model: Annotated[Path, typer.Argument(help="A run directory or an .onnx file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or directories (walked).")],
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    min_confidence: MinConfidence = NOT_SURE_THRESHOLD,
    top: Annotated[int, typer.Option(min=1, max=10, help="Show the K likeliest digits.")] = 1,
    debug_dir: Annotated[
        Path | None, typer.Option(help="Save each 28×28 the model saw here, as PNG.")
    ] = None,
) -> None:
    """Digit and confidence for each image; a bad file gets an error entry, exit status 1."""
    from digits.predictor import Predictor, find_images

    if as_json and as_csv:
        raise ValueError("choose one of --json and --csv")
    files = find_images(inputs)
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}")
    predictor = Predictor.from_path(model)
    predictions = predict_files(predictor, files, min_confidence)
    if debug_dir is not None:
        from PIL import Image

        debug_dir.mkdir(parents=True, exist_ok=True)
        for index, prediction in enumerate(predictions):
            if prediction.pixels is not None:
                name = f"{index:04d}-{Path(prediction.file).stem}.png"
                Image.fromarray(prediction.pixels, mode="L").save(debug_dir / name)
    failed = [p for p in predictions if p.error is not None]
    for prediction in failed:
        err_console.print(
            f"error: {prediction.error}", markup=False, highlight=False, soft_wrap=True
        )
    if as_json:
        print_json([p.to_dict(top if top > 1 else 0) for p in predictions])
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        extra = [f"top{k}" for k in range(2, top + 1)]
        writer.writerow(["file", "digit", "confidence", *extra, "note"])
        for p in predictions:
            others = [f"{t['digit']}:{t['probability']:.4f}" for t in p.top(top)[1:]]
            others += [""] * (len(extra) - len(others))
            confidence = "" if p.confidence is None else f"{p.confidence:.4f}"
            digit = "" if p.digit is None else p.digit
            writer.writerow([p.file, digit, confidence, *others, p.error or p.reason or ""])
    else:
        table = Table()
        table.add_column("file", overflow="fold")
        for column in ("digit", "confidence", *(["top"] if top > 1 else []), "note"):
            table.add_column(column)
        for p in predictions:
            ranked = "  ".join(f"{t['digit']} {_percent(t['probability'])}" for t in p.top(top))
            table.add_row(
                Text(p.file),  # Text, not markup: a file may be called "[bold]x].png"
                "—" if p.digit is None else str(p.digit),
                _percent(p.confidence),
                *([ranked] if top > 1 else []),
                Text(p.error or p.reason or ""),
            )
        console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command("read")
@friendly_errors
def read_command(
    model: Annotated[Path, typer.Argument(help="A run directory or an .onnx file.")],
    image: Annotated[Path, typer.Argument(help="An image with one or more digits in a row.")],
    as_json: JsonOption = False,
    min_confidence: MinConfidence = NOT_SURE_THRESHOLD,
) -> None:
    """Several digits in one image, read left to right, with per-digit confidence and boxes."""
    from digits.predictor import Predictor, box_to_dict
    from digits.preprocess import ImageError
    from digits.segment import read_number

    predictor = Predictor.from_path(model)
    data = read_input(image)  # a FIFO or a folder: refused at once, with its name
    try:
        reading = read_number(predictor, data, name=str(image), min_confidence=min_confidence)
    except ImageError:
        raise
    except Exception as exc:  # as in predict: an image preprocessing fails on, named
        raise InputError(f"{image}: could not be processed ({type(exc).__name__}: {exc})") from exc
    if as_json:
        print_json(reading.to_dict())
        return
    if reading.reason:
        console.print(f"{image}: {reading.reason}", markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"{image}: {reading.text}", markup=False, highlight=False, soft_wrap=True)
    table = Table()
    for column in ("#", "digit", "confidence", "box (x, y, width, height)"):
        table.add_column(column)
    for index, digit in enumerate(reading.digits, start=1):
        box = box_to_dict(digit.box) or {}
        table.add_row(
            str(index),
            "?" if digit.digit is None else str(digit.digit),
            _percent(digit.confidence),
            ", ".join(str(box[key]) for key in ("x", "y", "width", "height")),
        )
    console.print(table)


@kaggle_app.command("predict")
@friendly_errors
def kaggle_predict_command(
    model: Annotated[Path, typer.Argument(help="A run directory or an .onnx file.")],
    test_csv: Annotated[Path, typer.Argument(help="Kaggle test.csv (pixel0..pixel783).")],
    out: Annotated[Path, typer.Option(help="Submission file to write.")] = Path("submission.csv"),
    as_json: JsonOption = False,
) -> None:
    """Predict Kaggle's test.csv into a submission: ImageId,Label with ImageId from 1."""
    from digits.kaggle import predict_submission
    from digits.predictor import Predictor

    submission = predict_submission(Predictor.from_path(model), test_csv, out)
    if as_json:
        print_json(submission.to_dict())
        return
    summary = f"{submission.rows:,} predictions written to {submission.path}"
    if submission.accuracy is not None:
        summary += f" (the CSV has labels: {100 * submission.accuracy:.2f} % right)"
    console.print(summary, markup=False, highlight=False, soft_wrap=True)


@app.command("explain")
@friendly_errors
def explain_command(
    model: Annotated[Path, typer.Argument(help="A run directory (needs the torch weights).")],
    image: Annotated[Path, typer.Argument(help="One image with one digit.")],
    out: Annotated[
        Path | None, typer.Option(help="Overlay PNG (default IMAGE-explained.png here).")
    ] = None,
    method: Annotated[
        str, typer.Option(help="integrated-gradients or saliency.")
    ] = "integrated-gradients",
    as_json: JsonOption = False,
) -> None:
    """Which pixels drove the prediction: attribution overlay beside the 28×28 input."""
    from digits.explain import explain

    target = out or Path(f"{image.stem}-explained.png")
    explanation = explain(model, image, out=target, method=method)
    if as_json:
        print_json(explanation.to_dict())
        return
    console.print(
        f"{image}: digit {explanation.digit} ({_percent(explanation.confidence)}); "
        f"{explanation.method} overlay saved to {explanation.out}",
        highlight=False,
    )
