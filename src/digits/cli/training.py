"""`digits models | train | evaluate`: the torch side of the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from digits.cli.common import (
    JsonOption,
    app,
    compact_table,
    console,
    err_console,
    friendly_errors,
    print_json,
)


def claim_headline(note: str) -> str:
    """The head of a seed's claim, up to its first comma or parenthesis: '98.66 % test' for
    '98.66 % test, loss 0.0572'; the whole note is in `digits models NAME`."""
    head = note.split(", ")[0].split(" (")[0].strip()
    return head or "—"


@app.command("models")
@friendly_errors
def models_command(
    name: Annotated[
        str | None, typer.Argument(help="One model to show in full (default: all, in brief).")
    ] = None,
    as_json: JsonOption = False,
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
    if name is not None:
        chosen = [row for row in rows if row["name"] == name]
        if not chosen:
            raise ValueError(f"unknown model {name!r} (choose from {', '.join(REGISTRY)})")
        row = chosen[0]
        if as_json:
            print_json(row)
            return
        seed = f"seed {row['seed']}" if row["seed"] else "ours"
        lines = [
            f"{row['name']}: {row['description']}",
            f"parameters: {row['parameters']:,}",
            f"from: {seed}; seed claims: {row['claim'] or '—'}",
            f"train it with: digits train --model {row['name']}",
        ]
        console.print("\n".join(lines), highlight=False)
        return
    if as_json:
        print_json(rows)
        return
    # Layers and the claims' fine print are long: they are in the detail view, not here.
    table = compact_table()
    table.add_column("name", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("seed", no_wrap=True)
    table.add_column("seed claims", no_wrap=True)
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['parameters']:,}",
            row["seed"] or "ours",
            claim_headline(row["claim"]) if row["seed"] else "—",  # ours: no seed to claim
        )
    console.print(table)
    console.print("layers and notes: digits models NAME")


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
    data: Annotated[
        Path | None,
        typer.Option(help="IDX folder, image folder (DIR/0..9/*.png), Kaggle train.csv or .npz."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/MODEL-seedS).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last epoch, with its stored config "
            "(only --epochs may extend it).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    device: Annotated[
        str,
        typer.Option(
            help="auto (CUDA, else Apple's MPS, else the CPU), cpu, cuda or mps; the run "
            "directory is the same on each, and a run resumes on any of them."
        ),
    ] = "auto",
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train in N processes with DistributedDataParallel (starts torchrun "
            "--nproc-per-node N; the cores are split between them).",
        ),
    ] = 1,
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

    from digits.distributed import launched_by_torchrun

    if nproc > 1 and not launched_by_torchrun():
        if ensemble is not None:
            raise ValueError("--nproc trains one run; train an ensemble's members one by one")
        _relaunch_with_torchrun(nproc)

    from digits.config import ConfigError, TrainConfig
    from digits.finish import fit

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
        fit(_resumed_config(out, typed), out, resume=True, progress=not quiet, device=device)
        _summary_once(run_dir, ensemble=False)
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
    # A value out of range is named as it was typed (--val-split), not as the config calls it.
    typed_names = {
        _FIELDS[o]: o for o, value in options.items() if o in _FIELDS and value is not None
    }
    try:
        if recipe_names:
            from digits.recipes import get_recipe

            configs = [
                TrainConfig.from_dict({**asdict(get_recipe(recipe_name)), "seed": seed, **given})
                for recipe_name in recipe_names
            ]
        else:
            configs = [TrainConfig.from_dict({"model": model or "cnn", "seed": seed, **given})]
    except ConfigError as exc:
        raise ValueError(exc.describe(typed_names)) from None
    config = configs[0]
    name = "+".join(c.recipe or c.model for c in configs)
    if ensemble is not None:
        from digits.ensemble import train_ensemble

        run_dir = out or Path("runs") / f"{name}-ensemble{ensemble}-seed{config.seed}"
        train_ensemble(configs, run_dir, ensemble, progress=not quiet, device=device)
    else:
        run_dir = out or Path("runs") / f"{name}-seed{config.seed}"
        fit(config, run_dir, progress=not quiet, device=device)
    _summary_once(run_dir, ensemble=ensemble is not None)


def _summary_once(run_dir: Path, ensemble: bool) -> None:
    """The run's summary, printed by one process (rank 0 under torchrun), then the group left."""
    from digits.distributed import current, leave
    from digits.run import read_metrics

    if current().main:
        _print_summary(run_dir, read_metrics(run_dir), ensemble=ensemble)
    leave()


def _relaunch_with_torchrun(nproc: int) -> None:
    """Become `torchrun --standalone --nproc-per-node N -m digits train ...` (this command
    without --nproc): torchrun starts the N processes on this machine and watches them."""
    arguments = sys.argv[1:]
    rest: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            rest.append(argument)
    # Each process gets its share of the cores (torchrun would otherwise give each one thread).
    threads = max(1, (os.cpu_count() or 1) // nproc)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", "-m", "digits", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


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

    from digits.config import absolute_data_path
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
        if option == "--data":  # stored absolute: the same data typed relative is no change
            value = absolute_data_path(value)
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
    as_json: JsonOption = False,
    tta: Annotated[
        bool, typer.Option("--tta", help="Average over 7 shifted/rotated views of each image.")
    ] = False,
) -> None:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix, on the run's own
    test split (its data's, else its validation split) or on --data's."""
    from digits.calibration import calibration_summary
    from digits.evaluate import compute_metrics, model_probabilities, run_data, scored_images
    from digits.run import load_model, require_finished

    # An unfinished run holds the best epoch so far and no temperature: refused, not scored.
    model = load_model(require_finished(run))
    scored = scored_images(run, run_data(run, data))
    images, labels = scored.images, scored.labels
    if tta:
        from digits.tta import tta_probabilities

        # Seven passes over the images take a while: say so where someone is watching.
        watching = err_console if err_console.is_terminal else None
        probabilities = tta_probabilities(model, images, progress=watching)
    else:
        probabilities = model_probabilities(model, images)  # one pass serves both reports
    metrics = compute_metrics(probabilities, labels)
    calibration = calibration_summary(run, probabilities, labels)
    if scored.seen_in_training:
        err_console.print(
            f"warning: {scored.seen_in_training:,} of these {scored.count:,} images are ones "
            f"{run} trained on, so its accuracy on them overstates how well it reads new digits",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        print_json({"run": str(run), "data": scored.to_dict(), **metrics.to_dict(), **calibration})
        return
    console.print(
        f"{run}: accuracy {100 * metrics.accuracy:.2f} %  loss {metrics.loss:.4f}  "
        f"macro F1 {metrics.macro_f1:.4f}  ({metrics.count:,} images)",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"scored on {scored.describe()}: {scored.count:,} images",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if metrics.refused:
        console.print(
            f"refused as not a digit: {metrics.refused:,} of the {metrics.count:,} digits "
            "(counted as wrong; left out of the confusion matrix)"
        )
    console.print(
        f"calibration: ECE {calibration['ece']:.4f} → {calibration['ece_calibrated']:.4f} "
        f"at temperature {calibration['temperature']:.3f} ({calibration['temperature_source']})",
        highlight=False,
        soft_wrap=True,
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
