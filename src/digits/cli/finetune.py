"""`digits finetune`: a finished run adapted to new labelled digits (digits.finetune)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digits.cli.common import JsonOption, app, console, friendly_errors, print_json


@app.command("finetune")
@friendly_errors
def finetune_command(
    run: Annotated[Path, typer.Argument(help="The finished run to start from.")],
    data: Annotated[
        str,
        typer.Option(
            help="Labelled digits: a folder of digit subfolders DIR/0/*.png … DIR/9/*.png "
            "(or DIR/train/… with DIR/test/…), prepared as predictions are; a Kaggle "
            "train.csv, an IDX folder or an .npz, taken as MNIST images; or feedback:URL, "
            "the corrections the web service kept."
        ),
    ],
    out: Annotated[Path, typer.Option(help="The new run directory.")],
    epochs: Annotated[
        int | None,
        typer.Option(min=1, help="Passes over the data (default: about 400 steps' worth)."),
    ] = None,
    lr: Annotated[
        float, typer.Option(min=0.0, help="Peak learning rate of the cosine schedule.")
    ] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1, help="New images per step.")] = 64,
    freeze: Annotated[
        str,
        typer.Option(help="features: train only the classifier layer; none: train every layer."),
    ] = "none",
    replay: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="MNIST images added to each batch per new image, so that the model keeps "
            "reading MNIST (0 for another task, such as Fashion-MNIST).",
        ),
    ] = 1.0,
    val_split: Annotated[
        float, typer.Option(help="Share of the new images held out for validation (0).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for the batches and distortions.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Fine-tune a run on new labelled digits into an ordinary run directory (calibrated, with
    model.onnx) that evaluate, predict, serve and ensemble take like any other. It resumes with
    `digits train --resume --out DIR`."""
    from digits.finetune import finetune
    from digits.run import read_metrics

    run_dir = finetune(
        run,
        data,
        out,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        freeze=freeze,
        replay=replay,
        seed=seed,
        val_split=val_split,
        progress=not quiet and not as_json,
        device=device,
    )
    metrics = read_metrics(run_dir)
    summary = {
        "run": str(run_dir),
        "parent": metrics.get("parent"),
        "epochs": metrics["epochs_run"],
        "test_accuracy": (metrics["test"] or {}).get("accuracy"),
        "mnist_test_accuracy": (metrics.get("mnist_test") or {}).get("accuracy"),
        "train_seconds": metrics["train_seconds"],
    }
    if as_json:
        print_json(summary)
        return
    line = f"run saved to {run_dir}: {summary['epochs']} epochs from {run}"
    if summary["test_accuracy"] is not None:
        line += f", test accuracy {100 * summary['test_accuracy']:.2f} %"
    if summary["mnist_test_accuracy"] is not None:
        line += f", MNIST test {100 * summary['mnist_test_accuracy']:.2f} %"
    console.print(line, highlight=False, soft_wrap=True)
