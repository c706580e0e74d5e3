"""Hyperparameter search with Optuna: `tune(model, trials)` → the best config as a recipe file.

Each trial trains on the training split and is scored on the validation split only: the test set
is removed from the data before any trial sees it, so it can never guide the search. Trials report
validation accuracy after every epoch and the median pruner stops the ones that fall behind.

Studies live in a database (SQLite by default, `runs/tune/<study>.db`; PostgreSQL for several
machines), so a stopped study resumes where it was and several processes may work on one study at
once: start the same command with the same `--storage` in each of them, every process adding its
own `trials` to the shared study. `workers=N` starts N such processes here, the cores split
between them, and gathers what they find.
"""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import inspect
import io
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from torch import nn

from digits.atomic import atomic_write_text
from digits.config import EpochRecord, TrainConfig
from digits.data import DigitData

# The URL rules of the feedback store too: psycopg 3 for plain postgresql://, passwords masked.
from digits.feedback.urls import database_url, shown_url, sqlite_file
from digits.finish import fit
from digits.models import REGISTRY, create_model
from digits.run import load_data, read_history

DEFAULT_ROOT = Path("runs/tune")
SQLITE_PREFIX = "sqlite:///"
# Seconds a process waits for another one's write lock on a shared SQLite file before failing.
SQLITE_LOCK_TIMEOUT = 60


@dataclass(frozen=True)
class SearchSpace:
    """Ranges searched for one model family; model arguments only where the factory takes them."""

    lr: tuple[float, float]
    batch_sizes: tuple[int, ...]
    model_args: dict[str, tuple[Any, ...]]
    """Categorical choices per model-factory argument (widths)."""
    dropout: tuple[float, float]
    schedules: tuple[str, ...] = ("constant", "onecycle")


SPACES = {
    # Dense nets learn fast at higher rates on small batches and gain from width.
    "dense": SearchSpace(
        lr=(1e-4, 1e-2),
        batch_sizes=(32, 64, 128, 256),
        model_args={"hidden": (64, 128, 256, 512), "second": (32, 64, 128)},
        dropout=(0.0, 0.5),
    ),
    # Conv nets: wider rate range (onecycle tolerates high peaks); channels and dense head width.
    "conv": SearchSpace(
        lr=(3e-4, 2e-2),
        batch_sizes=(32, 64, 128, 256),
        model_args={"width": (16, 24, 32, 48, 64), "hidden": (64, 128, 256)},
        # cnn-dropout and cnn-kaggle use twice this rate in their dense head; keep that below 1.
        dropout=(0.0, 0.45),
    ),
}


# Augmentation searched as one strength s in [0, 1.5] times these (the published MNIST settings):
# one knob keeps the search small, and s = 0 trains on the images as they are.
AUGMENT_REFERENCE = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}
AUGMENT_STRENGTHS = (0.0, 1.5, 0.25)  # low, high, step


def augmentation_available() -> bool:
    """Whether training can augment (the augmentation module and the config field both exist)."""
    has_field = "augment" in {item.name for item in fields(TrainConfig)}
    return has_field and importlib.util.find_spec("digits.augment") is not None


@cache
def model_family(model: str) -> str:
    """'conv' for models with a convolution, else 'dense' (so new models need no table entry)."""
    built = create_model(model)
    return "conv" if any(isinstance(m, nn.Conv2d) for m in built.modules()) else "dense"


def _factory_arguments(model: str) -> set[str]:
    return set(inspect.signature(REGISTRY[model].factory).parameters)


def suggest_config(
    trial: optuna.Trial | optuna.trial.FixedTrial, base: TrainConfig, max_epochs: int
) -> TrainConfig:
    """The trial's config: `base` with the family's hyperparameters drawn from its space."""
    space = SPACES[model_family(base.model)]
    accepted = _factory_arguments(base.model)
    model_args = dict(base.model_args)
    for name, choices in space.model_args.items():
        if name in accepted:
            model_args[name] = trial.suggest_categorical(name, choices)
    if "dropout" in accepted:
        model_args["dropout"] = trial.suggest_float("dropout", *space.dropout)
    values: dict[str, Any] = {
        "model_args": model_args,
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "batch_size": trial.suggest_categorical("batch_size", space.batch_sizes),
        "schedule": trial.suggest_categorical("schedule", space.schedules),
        # Fewer than half the budget rarely wins; searching them would waste trials.
        "epochs": trial.suggest_int("epochs", max(1, math.ceil(max_epochs / 2)), max_epochs),
    }
    if augmentation_available():
        low, high, step = AUGMENT_STRENGTHS
        strength = trial.suggest_float("augment", low, high, step=step)
        values["augment"] = (
            {name: value * strength for name, value in AUGMENT_REFERENCE.items()}
            if strength > 0
            else None
        )
    return replace(base, **values)


@dataclass(frozen=True)
class TrialRow:
    """One line of the summary table."""

    number: int
    state: str
    val_accuracy: float | None
    epochs_run: int
    seconds: float | None
    params: dict[str, Any]


@dataclass(frozen=True)
class TuneResult:
    study: str
    storage: str
    trials: list[TrialRow]
    best: TrialRow | None
    best_config: TrainConfig | None
    recipe_path: Path | None
    """The best config as a recipe file; None while no trial has completed."""
    summary_path: Path
    """Every trial of the study so far as CSV (number, state, score, hyperparameters)."""


def default_storage(study: str, root: Path = DEFAULT_ROOT) -> str:
    return f"{SQLITE_PREFIX}{root / f'{study}.db'}"


@contextmanager
def _setup_lock(url: str) -> Iterator[None]:
    """Serialise study setup between processes sharing one SQLite file.

    Optuna creates the tables and the study with check-then-create steps; two processes starting
    together on a fresh file both see "missing" and one fails with "table already exists". An
    exclusive lock on a sibling file makes the first create and the rest load.
    """
    path = sqlite_file(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`; SQLite files get their folder created and a patient lock."""
    if sqlite_file(url) is not None:
        return optuna.storages.RDBStorage(
            url, engine_kwargs={"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}
        )
    try:
        return optuna.storages.RDBStorage(database_url(url))
    except Exception as exc:  # SQLAlchemy and the drivers raise many kinds; all mean "cannot use"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot open the study storage {shown_url(url)}: {reason}") from None


def _study_settings(base: TrainConfig, max_epochs: int) -> dict[str, Any]:
    """What must stay the same for trials of one study to be comparable."""
    return {
        "model": base.model,
        "max_epochs": max_epochs,
        "limit": base.limit,
        "val_split": base.val_split,
        "data": base.data,
    }


def open_study(
    name: str, storage: str, settings: dict[str, Any], sampler_seed: int | None = None
) -> optuna.Study:
    """Create the study or load it; a study made for other settings is an error, not a mix."""
    with _setup_lock(storage):
        study = optuna.create_study(
            storage=open_storage(storage),
            study_name=name,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=sampler_seed),
            # Two finished trials before pruning, and never on the first epoch (steps are
            # epochs, from 1): a high learning rate's first epoch often looks bad and then wins.
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        )
        saved = study.user_attrs.get("settings")
        if saved is None:
            study.set_user_attr("settings", settings)
    if saved is not None and saved != settings:
        differences = ", ".join(
            f"{key} {saved.get(key)!r} (asked: {settings.get(key)!r})"
            for key in sorted(set(saved) | set(settings))
            if saved.get(key) != settings.get(key)
        )
        raise ValueError(
            f"study {name!r} in {storage} was created with {differences}; "
            "use the same settings to resume it or another --study name"
        )
    return study


def _objective(
    base: TrainConfig, max_epochs: int, data: DigitData
) -> Callable[[optuna.Trial], float]:
    """Train one suggested config on `data` (no test split) and return its best validation score."""

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, base, max_epochs)
        trial.set_user_attr("config", asdict(config))

        def report(record: EpochRecord) -> None:
            assert record.val_accuracy is not None  # tune() insists on a validation split
            trial.report(record.val_accuracy, record.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation accuracy {record.val_accuracy:.4f} after epoch {record.epoch}"
                )

        with tempfile.TemporaryDirectory(prefix="digits-tune-") as folder:
            # Stopping after the last epoch skips what only a kept run needs (scoring, calibration,
            # ONNX export): the trial directory is thrown away and its history is all we read.
            run_dir = fit(
                config,
                Path(folder) / "run",
                data=data,
                on_epoch=report,
                stop_after_epoch=config.epochs,
            )
            history = read_history(run_dir)
        scores = [row["val_accuracy"] for row in history if row["val_accuracy"] is not None]
        return max(scores)

    return objective


def _row(trial: optuna.trial.FrozenTrial) -> TrialRow:
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None
    )
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        # A pruned trial has no final value; its last reported epoch is what it reached.
        val_accuracy=trial.value
        if trial.value is not None or not trial.intermediate_values
        else trial.intermediate_values[max(trial.intermediate_values)],
        epochs_run=len(trial.intermediate_values),
        seconds=seconds,
        params=dict(trial.params),
    )


def recipe_from_trial(trial: optuna.trial.FrozenTrial, study: str) -> TrainConfig:
    """The trial's training config as a recipe for full training: no subset limit, named."""
    config = TrainConfig.from_dict(trial.user_attrs["config"])
    return replace(config, limit=None, recipe=f"tuned-{study}")


def write_summary(rows: list[TrialRow], path: Path) -> None:
    """The trials as CSV, one hyperparameter per column (empty where a trial did not draw it)."""
    names = sorted({name for row in rows for name in row.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", "val_accuracy", "epochs_run", "seconds", *names])
    for row in rows:
        writer.writerow(
            [row.number, row.state, row.val_accuracy, row.epochs_run, row.seconds]
            + [row.params.get(name, "") for name in names]
        )
    atomic_write_text(path, buffer.getvalue())


def write_recipe(config: TrainConfig, path: Path) -> None:
    """A recipe file: the TrainConfig fields as one JSON object (`TrainConfig.from_dict`)."""
    atomic_write_text(path, json.dumps(asdict(config), indent=2) + "\n")


def tune(
    model: str,
    trials: int,
    *,
    study_name: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
    max_epochs: int = 3,
    limit: int | None = None,
    data_path: str | None = None,
    data: DigitData | None = None,
    val_split: float = 0.1,
    recipe_out: str | Path | None = None,
    sampler_seed: int | None = None,
    on_trial: Callable[[TrialRow], None] | None = None,
    workers: int = 1,
) -> TuneResult:
    """Run `trials` more trials of the study (creating or resuming it); write the best recipe.

    `data_path` names the data set (None: MNIST) and is recorded in configs; `data` may pass it
    already loaded. `recipe_out` defaults to runs/tune/<study>.json; the trials table goes beside
    it as <name>-trials.csv. `on_trial` hears of each trial of this process as it ends (complete,
    pruned or failed). `workers` > 1 runs the trials in that many local processes on the study,
    the cores split between them (see `_optimize_in_workers`).
    """
    if model not in REGISTRY:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(REGISTRY)}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if max_epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {max_epochs}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if not 0.0 < val_split < 1.0:
        raise ValueError(f"tuning needs a validation split in (0, 1), got {val_split}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    name = study_name or model
    storage = storage or default_storage(name)
    base = TrainConfig(
        model=model, epochs=max_epochs, val_split=val_split, limit=limit, data=data_path
    )
    loaded = load_data(base) if data is None else data
    # The test split is dropped here, before any training, so no trial can be scored on it.
    train_only = DigitData(loaded.x_train, loaded.y_train, None, None, loaded.source, loaded.path)

    settings = _study_settings(base, max_epochs)
    study = open_study(name, storage, settings, sampler_seed)
    if workers > 1:
        _optimize_in_workers(
            _Work(name, storage, settings, base, max_epochs, train_only, timeout, sampler_seed),
            trials,
            workers,
            on_trial,
        )
    else:
        callbacks = []
        if on_trial is not None:
            callbacks.append(lambda _study, trial: on_trial(_row(trial)))
        study.optimize(
            _objective(base, max_epochs, train_only),
            n_trials=trials,
            timeout=timeout,
            callbacks=callbacks,
        )

    rows = [_row(trial) for trial in study.get_trials(deepcopy=False)]
    path = Path(recipe_out) if recipe_out is not None else DEFAULT_ROOT / f"{name}.json"
    summary = path.with_name(f"{path.stem}-trials.csv")
    write_summary(rows, summary)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        return TuneResult(name, storage, rows, None, None, None, summary)
    best_trial = study.best_trial
    config = recipe_from_trial(best_trial, name)
    write_recipe(config, path)
    return TuneResult(name, storage, rows, _row(best_trial), config, path, summary)


@dataclass(frozen=True)
class _Work:
    """What a worker process needs to add trials to the study (sent to it pickled)."""

    study: str
    storage: str
    settings: dict[str, Any]
    base: TrainConfig
    max_epochs: int
    data: DigitData
    timeout: float | None
    sampler_seed: int | None


def _worker(work: _Work, trials: int, index: int, threads: int) -> int:
    """One worker process: its share of the trials, on its share of the cores."""
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Each worker samples with its own seed: with one seed, all would suggest the same configs.
    seed = None if work.sampler_seed is None else work.sampler_seed + index
    study = open_study(work.study, work.storage, work.settings, seed)
    study.optimize(
        _objective(work.base, work.max_epochs, work.data), n_trials=trials, timeout=work.timeout
    )
    return trials


def _optimize_in_workers(
    work: _Work, trials: int, workers: int, on_trial: Callable[[TrialRow], None] | None
) -> None:
    """Run `trials` trials in `workers` processes on one study (the storage is what they share,
    as separate machines would), each with cores / workers threads; report each trial that ends
    to `on_trial` as the study records it. A worker's error is raised here once all have ended."""
    shares = [trials // workers + (index < trials % workers) for index in range(workers)]
    shares = [share for share in shares if share > 0]
    threads = max(1, (os.cpu_count() or 1) // len(shares))
    storage = open_storage(work.storage)
    study_id = storage.get_study_id_from_name(work.study)
    known = {t.number for t in storage.get_all_trials(study_id, deepcopy=False)}
    ended: set[int] = set()
    # Spawned, not forked: torch's thread pools and the storage's connections do not survive
    # a fork, and a fresh interpreter per worker is what a second machine would be.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=context) as pool:
        futures: list[Future[int]] = [
            pool.submit(_worker, work, share, index, threads) for index, share in enumerate(shares)
        ]
        while True:
            finished = all(future.done() for future in futures)
            for trial in storage.get_all_trials(study_id, deepcopy=False):
                if trial.number in known or trial.number in ended or not trial.state.is_finished():
                    continue
                ended.add(trial.number)
                if on_trial is not None:
                    on_trial(_row(trial))
            if finished:
                break
            time.sleep(0.5)
        for future in futures:
            future.result()  # a worker's exception, raised in this process
