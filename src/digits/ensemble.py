"""Ensembles: several trained runs whose softmax outputs are averaged, stored as a run directory.

An ensemble directory holds copies of its members' weights, so it stands alone:
  ensemble.json          the members: weight file, source run, model, recipe, test accuracy
  members/*.safetensors  each member's weights (with the metadata that rebuilds its model)
  metrics.json           test metrics of the averaged prediction, like a run's
  model.onnx             the averaged model exported for ONNX Runtime, like a run's
  finished.json          written last, like a run's

`digits.run.load_model(DIR)` returns a `SoftmaxAverage` for it: a module whose output is the log
of the averaged probabilities, so softmax of its output is exactly that average, and evaluation,
ONNX export, calibration and serving treat an ensemble like any other run.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from digits.config import TrainConfig
from digits.data import DigitData, load_dataset, load_mnist
from digits.finish import train_or_reuse
from digits.models import count_parameters
from digits.run import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FINISHED_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunError,
    SoftmaxAverage,
    is_ensemble,
    load_ensemble,
    mark_finished,
    read_json,
    read_metrics,
    run_state,
    unfinished_message,
    write_json,
)
from digits.run_files import MEMBERS_DIR

__all__ = [
    "ENSEMBLE_FILE",
    "MEMBERS_DIR",
    "SoftmaxAverage",
    "build_ensemble",
    "is_ensemble",
    "load_ensemble",
    "member_configs",
    "member_dir_name",
    "train_ensemble",
]


def _member_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    return read_json(path) if path.exists() else {}


def _class_count(run_dir: Path) -> int:
    """10, or 11 for a run trained with the "not a digit" class (config `negatives` > 0)."""
    negatives = _member_config(run_dir).get("negatives") or 0
    return 11 if negatives > 0 else 10


def _test_data(runs: Sequence[Path]) -> DigitData:
    """The data set the members were trained on (all must agree), for the test metrics."""
    sources = {_member_config(run).get("data") for run in runs}
    if len(sources) > 1:
        names = ", ".join(sorted(map(str, sources)))
        raise ValueError(f"ensemble members were trained on different data: {names}")
    source = sources.pop()
    return load_mnist() if source is None else load_dataset(source)


def _describe_recipes(count: int, recipes: Counter[str]) -> str:
    """'ensemble of 3 × best', or 'ensemble of 3: 2 × best, 1 × best-kaggle' for a mix."""
    if len(recipes) == 1:
        return f"ensemble of {count} × {next(iter(recipes))}"
    mix = ", ".join(f"{n} × {name}" for name, n in sorted(recipes.items()))
    return f"ensemble of {count}: {mix}"


def build_ensemble(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    data: DigitData | None = None,
    overwrite: bool = False,
) -> Path:
    """Average the trained runs `runs` into the ensemble directory `out_dir`; return it.

    The test metrics in metrics.json use `data` (default: the data the members were trained on).
    """
    from digits.evaluate import evaluate_model

    out_dir = Path(out_dir)
    run_dirs = [Path(run) for run in runs]
    if not run_dirs:
        raise ValueError("an ensemble needs at least one run directory")
    classes = {_class_count(run) for run in run_dirs}
    if len(classes) > 1:
        raise RunError(
            "ensemble members must all have the 'not a digit' class or all lack it; "
            f"got {', '.join(f'{run}: {_class_count(run)} classes' for run in run_dirs)}"
        )
    for run in run_dirs:
        if is_ensemble(run):
            raise RunError(f"{run}: is an ensemble itself; give the runs it was built from")
        if not (run / WEIGHTS_FILE).exists():
            raise RunError(f"{run}: no {WEIGHTS_FILE} (not a trained run directory)")
        if (run / CONFIG_FILE).exists() and run_state(run) != "finished":
            # Its weights may be those of the best epoch so far, its temperature not yet fitted.
            raise RunError(unfinished_message(run))
    if (out_dir / CONFIG_FILE).exists():
        raise RunError(f"{out_dir} holds a training run; choose another --out for the ensemble")
    if is_ensemble(out_dir) and not overwrite:
        raise RunError(f"{out_dir} already holds an ensemble; choose another --out")

    # Rebuilt over an old ensemble: unfinished until its new files are all written.
    (out_dir / FINISHED_FILE).unlink(missing_ok=True)
    (out_dir / MEMBERS_DIR).mkdir(parents=True, exist_ok=True)
    members = []
    for index, run in enumerate(run_dirs):
        file = f"{MEMBERS_DIR}/{index}-{run.name}.safetensors"
        shutil.copyfile(run / WEIGHTS_FILE, out_dir / file)
        run_metrics = read_metrics(run) if (run / METRICS_FILE).exists() else {}
        test = run_metrics.get("test") or {}
        members.append(
            {
                "file": file,
                "run": str(run.resolve()),
                "model": run_metrics.get("model") or _member_config(run).get("model"),
                "recipe": run_metrics.get("recipe"),
                "train_seconds": run_metrics.get("train_seconds"),
                "test_accuracy": test.get("accuracy"),
            }
        )
    # The members' data set, so that the ensemble stands alone: evaluate and report score it
    # on that data by default even once the members' run directories are gone or elsewhere.
    # (Members trained on different data record none: evaluate then says they disagree.)
    trained = {_member_config(run).get("data") for run in run_dirs}
    description: dict[str, object] = {"members": members}
    if len(trained) == 1:
        description["data"] = trained.pop()
    write_json(out_dir / ENSEMBLE_FILE, description)

    model = load_ensemble(out_dir)
    data = _test_data(run_dirs) if data is None else data
    recipes = Counter(str(member["recipe"]) for member in members if member["recipe"])
    seconds = [m["train_seconds"] for m in members if m["train_seconds"] is not None]
    metrics: dict[str, Any] = {
        "model": "ensemble",
        "recipe": _describe_recipes(len(members), recipes) if recipes else None,
        "members": len(members),
        "parameters": count_parameters(model),
        "train_seconds": sum(seconds) if len(seconds) == len(members) else None,
        "val_accuracy": None,
        "val_loss": None,
        "test": None,
    }
    if data.x_test is not None and data.y_test is not None:
        metrics["test"] = evaluate_model(model, data.x_test, data.y_test).to_dict()
    write_json(out_dir / METRICS_FILE, metrics)
    # Like a finished training run: calibrated, then model.onnx for the torch-free predictor and
    # the server. Members trained on different validation splits (one per seed) or on none, so
    # no image is held out from all of them: the temperature is fitted on held-out views.
    from digits.calibration import calibrate_held_out_views
    from digits.export import export_run

    calibrate_held_out_views(out_dir, data.x_train, data.y_train)
    export_run(out_dir)
    mark_finished(out_dir)
    return out_dir


def member_dir_name(config: TrainConfig, *, mixed: bool) -> str:
    """seed<S> for members of one recipe; <recipe>-seed<S> when the ensemble mixes recipes."""
    if not mixed:
        return f"seed{config.seed}"
    return f"{config.recipe or config.model}-seed{config.seed}"


def member_configs(configs: Sequence[TrainConfig], count: int) -> list[TrainConfig]:
    """`count` member configs taking `configs` in turn, each round with the next seed: for
    configs A, B (seed S) and count 5: A·S, B·S, A·S+1, B·S+1, A·S+2."""
    if not configs:
        raise ValueError("an ensemble needs at least one recipe")
    if count < 2 and len(configs) == 1:
        # One member would be that run again under another name, reported as "an ensemble";
        # several recipes with too few members are refused below, naming the recipes.
        raise ValueError(
            f"--ensemble {count}: an ensemble needs at least two members "
            "(leave --ensemble out to train one run)"
        )
    if count < len(configs):
        names = ", ".join(c.recipe or c.model for c in configs)
        raise ValueError(
            f"--ensemble {count}: {len(configs)} recipes ({names}) need at least one member "
            f"each; give --ensemble {len(configs)} or more"
        )
    members = []
    for index in range(count):
        base = configs[index % len(configs)]
        members.append(replace(base, seed=base.seed + index // len(configs)))
    return members


def _check_recipes(configs: Sequence[TrainConfig]) -> None:
    """Refuse, before any training, recipes that could not make one ensemble."""
    names = [c.recipe or c.model for c in configs]
    if len(set(names)) != len(names):
        # Two recipes of one name would train the same seeds into the same member directories.
        raise ValueError(
            f"an ensemble's recipes must have different names, got {', '.join(names)} "
            "(a recipe file is named by its 'recipe' key, else by its file name)"
        )
    sources = {c.data for c in configs}
    if len(sources) > 1:
        described = ", ".join(
            f"{name}: {c.data or 'MNIST'}" for name, c in zip(names, configs, strict=True)
        )
        raise ValueError(f"an ensemble's recipes must train on the same data, got {described}")


def train_ensemble(
    config: TrainConfig | Sequence[TrainConfig],
    out_dir: str | Path,
    count: int,
    *,
    progress: bool = False,
    device: str = "auto",
    data: DigitData | None = None,
) -> Path:
    """Train `count` member runs under out_dir, then average them into out_dir.

    One config: seeds seed, seed+1, ... in out_dir/seed<S>. Several configs (an ensemble that
    mixes recipes, whose members err more independently): taken in turn, see `member_configs`,
    in out_dir/<recipe>-seed<S>. Finished members are reused and unfinished ones resumed, so an
    interrupted command can simply be run again; a member directory holding another config is
    an error, never silently reused."""
    configs = [config] if isinstance(config, TrainConfig) else list(config)
    _check_recipes(configs)
    mixed = len(configs) > 1
    out_dir = Path(out_dir)
    runs = [
        train_or_reuse(
            member,
            out_dir / member_dir_name(member, mixed=mixed),
            data=data,
            progress=progress,
            device=device,
        )
        for member in member_configs(configs, count)
    ]
    return build_ensemble(runs, out_dir, data=data, overwrite=True)
