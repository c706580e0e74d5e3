"""`digits export | predict | read | kaggle predict | explain`: real images in, digits out.

predict, read and kaggle run on the exported ONNX model and never import torch, so they start
fast; export, and explain's gradient methods, need the torch model of a run directory.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from digits.answers import NOT_SURE_THRESHOLD
from digits.cli.common import (
    JsonOption,
    Typer,
    app,
    console,
    err_console,
    friendly_errors,
    print_json,
)

kaggle_app = Typer(help="Kaggle Digit Recognizer submissions.", no_args_is_help=True)
app.add_typer(kaggle_app, name="kaggle")

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
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Image files, directories (walked) or archives (.zip, .tar, .tar.gz)."),
    ],
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout.")] = False,
    min_confidence: MinConfidence = NOT_SURE_THRESHOLD,
    top: Annotated[int, typer.Option(min=1, max=10, help="Show the K likeliest digits.")] = 1,
    debug_dir: Annotated[
        Path | None, typer.Option(help="Save each 28×28 the model saw here, as PNG.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Stream the answers into this .jsonl or .csv as they come, in input order; "
            "run the same command again to continue a run that was stopped."
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes for --out (default: one per CPU)."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Run --out on Dask: 'local' (a cluster of --jobs workers here) or the address "
            "of a scheduler (tcp://host:8786)."
        ),
    ] = None,
) -> None:
    """Digit and confidence for each image; a bad file gets an error entry, exit status 1."""
    from digits.batch import chunks, iter_inputs, predict_inputs
    from digits.predictor import Predictor

    if out is not None:
        given = {
            "--json": as_json,
            "--csv": as_csv,
            "--top": top > 1,
            "--debug-dir": debug_dir is not None,
        }
        clashing = [flag for flag, present in given.items() if present]
        if clashing:
            raise ValueError(f"--out writes its own file: leave out {', '.join(clashing)}")
        _predict_to_file(model, inputs, out, jobs, scheduler, min_confidence)
        return
    if jobs is not None or scheduler is not None:
        raise ValueError("--jobs and --scheduler go with --out (results.jsonl or results.csv)")
    if as_json and as_csv:
        raise ValueError("choose one of --json and --csv")
    listed = list(iter_inputs(inputs))
    if not listed:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}")
    predictor = Predictor.from_path(model)
    predictions = [
        prediction
        for chunk in chunks(listed)
        for prediction in predict_inputs(predictor, chunk, min_confidence)
    ]
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


def _print_entry_error(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def _predict_to_file(
    model: Path,
    inputs: list[Path],
    out: Path,
    jobs: int | None,
    scheduler: str | None,
    min_confidence: float,
) -> None:
    from digits.batch import default_jobs, predict_to_file

    if scheduler is not None and scheduler != "local" and "://" not in scheduler:
        raise ValueError(f"--scheduler {scheduler}: give 'local' or an address (tcp://host:8786)")
    summary = predict_to_file(
        model,
        inputs,
        out,
        jobs=jobs or default_jobs(),
        scheduler=scheduler,
        min_confidence=min_confidence,
        on_error=_print_entry_error,
    )
    before = summary.total - summary.written
    if not before:
        done = f"{summary.total:,} entries written to {out}"
    elif not summary.written:
        done = f"{summary.total:,} entries in {out}, all there from before"
    else:
        done = f"{summary.total:,} entries in {out}: {summary.written:,} written now, "
        done += f"{before:,} there from before"
    errors = f"{summary.errors:,} error{'' if summary.errors == 1 else 's'}"
    console.print(f"{done}; {errors}", markup=False, highlight=False, soft_wrap=True)
    if summary.errors:
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
    from digits.batch import InputError, read_input
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
    model: Annotated[
        Path,
        typer.Argument(
            help="A run directory, or an .onnx file for shap, lime and occlusion (no torch)."
        ),
    ],
    image: Annotated[Path, typer.Argument(help="One image with one digit.")],
    out: Annotated[
        Path | None, typer.Option(help="Overlay PNG (default IMAGE-explained.png here).")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="shap, lime (superpixels) or occlusion: model-agnostic, on ONNX, no torch; "
            "ig (integrated gradients, also integrated-gradients) or saliency: the run's "
            "torch weights."
        ),
    ] = "ig",
    seed: Annotated[int, typer.Option(help="Seed of shap's and lime's random samples.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Which pixels drove the prediction: attribution overlay beside the 28×28 input."""
    from digits.explain import explain

    target = out or Path(f"{image.stem}-explained.png")
    explanation = explain(model, image, out=target, method=method, seed=seed)
    if as_json:
        print_json(explanation.to_dict())
        return
    console.print(
        f"{image}: digit {explanation.digit} ({_percent(explanation.confidence)}); "
        f"{explanation.method} overlay saved to {explanation.out}",
        highlight=False,
    )
