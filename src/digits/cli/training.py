"""`digits models | train | evaluate`: the torch side of the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from digits.cli.common import app, console, friendly_errors, print_json


@app.command("models")
@friendly_errors
def models_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """The registered models: parameters, layers and what their seed claims."""
    from digits.models import REGISTRY

    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "parameters": spec.parameters,
            "description": spec.description,
            "seed": spec.seed,
            "claimed_accuracy": spec.claimed_accuracy,
            "claim": spec.claim_note,
        }
        for spec in REGISTRY.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("name", "parameters", "layers", "seed", "seed claims"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"], f"{row['parameters']:,}", row["description"], row["seed"], row["claim"]
        )
    console.print(table)


def _recipe_list(recipe: str) -> list[str]:
    """--recipe's names: one recipe file (whatever its name holds), or names split at commas."""
    if Path(recipe).is_file():
        return [recipe]
    names = [part.strip() for part in recipe.split(",")]
    if not all(names):
        raise ValueError(f"--recipe {recipe!r}: an empty recipe name between commas")
    return names


@app.command("train")
@friendly_errors
def train_command(
    model: Annotated[
        str | None, typer.Option(help="Registered model name (digits models).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam, adamw, sgd or rmsprop.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="constant, onecycle, cosine, exponential.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for split, weights, batch order, dropout (0).")
    ] = None,
    val_split: Annotated[
        float | None, typer.Option(help="Validation fraction (0 disables).")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (0 = off).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32 or bf16.")] = None,
    data: Annotated[Path | None, typer.Option(help="IDX folder, Kaggle train.csv or .npz.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/MODEL-seedS).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --out from its last epoch, with its stored config "
            "(only --epochs may extend it)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    recipe: Annotated[
        str | None,
        typer.Option(
            help="Recipe name or JSON file (digits recipes); options given override it. "
            "With --ensemble, several comma-separated recipes are taken in turn."
        ),
    ] = None,
    ensemble: Annotated[
        int | None,
        typer.Option(
            help="Train K members (seeds S, S+1, ...; with several recipes, the recipes in turn) "
            "and average them into --out."
        ),
    ] = None,
) -> None:
    """Train a model; the run directory gets config, history, weights and metrics."""
    from dataclasses import asdict

    from digits.config import TrainConfig
    from digits.finish import fit
    from digits.run import read_metrics

    options = {
        "--model": model,
        "--recipe": recipe,
        "--seed": seed,
        "--epochs": epochs,
        "--batch-size": batch_size,
        "--lr": lr,
        "--optimizer": optimizer,
        "--schedule": schedule,
        "--val-split": val_split,
        "--patience": patience,
        "--precision": precision,
        "--data": None if data is None else str(data),
        "--limit": limit,
        "--ensemble": ensemble,
    }
    if resume:
        if out is None:
            raise ValueError("--resume continues the run in --out DIR; say which with --out")
        typed = {option: value for option, value in options.items() if value is not None}
        run_dir = out
        fit(_resumed_config(out, typed), out, resume=True, progress=not quiet)
        _print_summary(run_dir, read_metrics(run_dir), ensemble=False)
        return
    if model is not None and recipe is not None:
        raise ValueError("--model and --recipe exclude each other: a recipe names its own model")
    if model is None and recipe is None:
        raise ValueError(
            "say what to train: --model NAME or --recipe NAME|FILE "
            "(see `digits models`, `digits recipes`)"
        )
    given = {
        _FIELDS[option]: value
        for option, value in options.items()
        if option in _FIELDS
        and value is not None
        and option not in ("--model", "--seed", "--recipe")
    }
    seed = 0 if seed is None else seed
    recipe_names = _recipe_list(recipe) if recipe is not None else []
    if len(recipe_names) > 1 and ensemble is None:
        raise ValueError(
            f"--recipe {recipe}: several recipes make an ensemble; add --ensemble K "
            "(K members, taking the recipes in turn)"
        )
    if recipe_names:
        from digits.recipes import get_recipe

        configs = [
            TrainConfig.from_dict({**asdict(get_recipe(recipe_name)), "seed": seed, **given})
            for recipe_name in recipe_names
        ]
    else:
        configs = [TrainConfig.from_dict({"model": model or "cnn", "seed": seed, **given})]
    config = configs[0]
    name = "+".join(c.recipe or c.model for c in configs)
    if ensemble is not None:
        from digits.ensemble import train_ensemble

        run_dir = out or Path("runs") / f"{name}-ensemble{ensemble}-seed{config.seed}"
        train_ensemble(configs, run_dir, ensemble, progress=not quiet)
    else:
        run_dir = out or Path("runs") / f"{name}-seed{config.seed}"
        fit(config, run_dir, progress=not quiet)
    _print_summary(run_dir, read_metrics(run_dir), ensemble=ensemble is not None)


# The TrainConfig field each option of `digits train` sets (--recipe names the recipe field).
_FIELDS = {
    "--model": "model",
    "--recipe": "recipe",
    "--seed": "seed",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--lr": "lr",
    "--optimizer": "optimizer",
    "--schedule": "schedule",
    "--val-split": "val_split",
    "--patience": "patience",
    "--precision": "precision",
    "--data": "data",
    "--limit": "limit",
}


def _resumed_config(run_dir: Path, typed: dict[str, Any]) -> Any:
    """The stored config of run_dir, to be continued exactly: an option typed with --resume must
    agree with it (one that contradicts it is refused, named as typed); only --epochs may extend
    the run. Options not typed leave the stored config as it is."""
    from dataclasses import replace

    from digits.run import CONFIG_FILE, RunError, check_epochs, read_config

    if "--ensemble" in typed:
        raise RunError(
            f"{run_dir}: --resume continues one run; run the same --ensemble command again "
            "instead (it resumes unfinished members)"
        )
    if not (run_dir / CONFIG_FILE).exists():
        raise RunError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
    saved = read_config(run_dir)
    for option, value in typed.items():
        stored = getattr(saved, _FIELDS[option])
        if option == "--recipe":
            value = Path(value).stem if Path(value).is_file() else value
        if option == "--epochs" or stored == value:
            continue
        raise RunError(
            f"{run_dir}: {option} {value} contradicts the stored config "
            f"({_FIELDS[option]} {stored}); leave it out to continue the run as it was made"
        )
    epochs = typed.get("--epochs", saved.epochs)
    if epochs != saved.epochs:
        check_epochs(run_dir, saved, epochs, option="--epochs")
    return replace(saved, epochs=epochs)


def _print_summary(run_dir: Path, metrics: dict[str, Any], *, ensemble: bool) -> None:
    if ensemble:
        summary = f"ensemble of {metrics['members']} runs saved to {run_dir}"
    else:
        summary = f"run saved to {run_dir}: best epoch {metrics['best_epoch']}"
    if metrics["test"]:
        summary += f", test accuracy {100 * metrics['test']['accuracy']:.2f} %"
    elif metrics["val_accuracy"] is not None:
        summary += f", validation accuracy {100 * metrics['val_accuracy']:.2f} %"
    console.print(summary)


@app.command("evaluate")
@friendly_errors
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    data: Annotated[Path | None, typer.Option(help="Labelled data to score on instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    tta: Annotated[
        bool, typer.Option("--tta", help="Average over 7 shifted/rotated views of each image.")
    ] = False,
) -> None:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix on the test set."""
    from digits.data import load_dataset, load_mnist
    from digits.run import load_model, require_finished

    # An unfinished run holds the best epoch so far and no temperature: refused, not scored.
    model = load_model(require_finished(run))
    dataset = load_mnist() if data is None else load_dataset(data)
    if dataset.x_test is not None and dataset.y_test is not None:
        images, labels = dataset.x_test, dataset.y_test
    else:  # a Kaggle train.csv has no test split: score on all of it
        images, labels = dataset.x_train, dataset.y_train
    from digits.calibration import calibration_summary
    from digits.evaluate import compute_metrics, model_probabilities

    if tta:
        from digits.tta import tta_probabilities

        probabilities = tta_probabilities(model, images)
    else:
        probabilities = model_probabilities(model, images)  # one pass serves both reports
    metrics = compute_metrics(probabilities, labels)
    calibration = calibration_summary(run, probabilities, labels)
    if as_json:
        print_json({"run": str(run), **metrics.to_dict(), **calibration})
        return
    console.print(
        f"{run}: accuracy {100 * metrics.accuracy:.2f} %  loss {metrics.loss:.4f}  "
        f"macro F1 {metrics.macro_f1:.4f}  ({metrics.count:,} images)"
    )
    if metrics.refused:
        console.print(
            f"refused as not a digit: {metrics.refused:,} of the {metrics.count:,} digits "
            "(counted as wrong; left out of the confusion matrix)"
        )
    console.print(
        f"calibration: ECE {calibration['ece']:.4f} → {calibration['ece_calibrated']:.4f} "
        f"at temperature {calibration['temperature']:.3f} ({calibration['temperature_source']})"
    )
    table = Table()
    for column in ("digit", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    for digit in range(10):
        table.add_row(
            str(digit),
            f"{metrics.precision[digit]:.4f}",
            f"{metrics.recall[digit]:.4f}",
            f"{metrics.f1[digit]:.4f}",
            str(metrics.support[digit]),
        )
    console.print(table)
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
    matrix.add_column("")
    for digit in range(10):
        matrix.add_column(str(digit), justify="right")
    for digit, row in enumerate(metrics.confusion_matrix):
        matrix.add_row(str(digit), *map(str, row))
    console.print(matrix)
