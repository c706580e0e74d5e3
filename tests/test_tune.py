"""`digits tune`: search spaces per family, pruning, resumable studies, best config as a recipe."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from digits import tune as tuning
from digits.cli import app
from digits.data import DigitData, load_dataset
from digits.finish import fit
from digits.models import REGISTRY, create_model
from digits.train import EpochRecord, TrainConfig, read_history, read_metrics
from digits.tune import (
    SPACES,
    TrialRow,
    database_url,
    model_family,
    open_storage,
    suggest_config,
    tune,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
QUICK: dict[str, Any] = {"max_epochs": 1, "limit": 300, "sampler_seed": 0}


def _fixed_choices(model: str) -> dict[str, Any]:
    """One valid value of every hyperparameter the model's family may ask for."""
    space = SPACES[model_family(model)]
    values: dict[str, Any] = {name: choices[0] for name, choices in space.model_args.items()}
    values.update(
        dropout=space.dropout[1],
        lr=space.lr[0],
        batch_size=space.batch_sizes[-1],
        schedule=space.schedules[-1],
        epochs=2,
        augment=0.5,
    )
    return values


@pytest.mark.parametrize("model", list(REGISTRY))
def test_every_model_gets_a_config_it_can_build(model: str) -> None:
    config = suggest_config(
        optuna.trial.FixedTrial(_fixed_choices(model)), TrainConfig(model=model), max_epochs=3
    )

    create_model(config.model, **config.model_args)  # only arguments the factory takes
    assert config.lr == SPACES[model_family(model)].lr[0]
    assert config.epochs == 2


def test_dense_and_conv_families_search_different_widths() -> None:
    assert model_family("ann") == "dense"
    assert model_family("mlp") == "dense"
    assert model_family("cnn") == "conv"
    assert model_family("cnn-kaggle") == "conv"
    dense = suggest_config(optuna.trial.FixedTrial(_fixed_choices("mlp")), TrainConfig("mlp"), 3)
    conv = suggest_config(optuna.trial.FixedTrial(_fixed_choices("cnn")), TrainConfig("cnn"), 3)
    assert set(dense.model_args) == {"hidden", "second"}
    assert set(conv.model_args) == {"width", "hidden"}


@pytest.mark.parametrize(("strength", "expected"), [(0.0, None), (1.0, tuning.AUGMENT_REFERENCE)])
def test_augmentation_strength_scales_the_reference(strength: float, expected: object) -> None:
    choices = {**_fixed_choices("cnn"), "augment": strength}

    config = suggest_config(optuna.trial.FixedTrial(choices), TrainConfig("cnn"), 3)

    assert config.augment == expected


def test_without_augmentation_the_strength_is_not_searched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tuning, "augmentation_available", lambda: False)
    choices = {k: v for k, v in _fixed_choices("cnn").items() if k != "augment"}

    # FixedTrial fails on any parameter it was not given, so this proves none is asked for.
    config = suggest_config(optuna.trial.FixedTrial(choices), TrainConfig("cnn"), 3)

    assert getattr(config, "augment", None) is None


def test_a_callback_exception_stops_training_and_propagates(
    tmp_path: Path, small_npz: Path
) -> None:
    def prune(record: EpochRecord) -> None:
        raise optuna.TrialPruned(f"epoch {record.epoch}")

    config = TrainConfig(model="ann", epochs=3, limit=300, data=str(small_npz))
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        fit(config, tmp_path / "run", on_epoch=prune)
    assert len(read_history(tmp_path / "run")) == 1


def test_a_trial_behind_the_pruner_is_pruned(small_npz: Path) -> None:
    data = load_dataset(small_npz)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01)
    )
    base = TrainConfig(model="ann", val_split=0.1, limit=300)

    study.optimize(tuning._objective(base, 2, data), n_trials=1)

    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert list(study.trials[0].intermediate_values) == [1]


def test_study_resumes_and_best_config_trains(tmp_path: Path, small_npz: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    recipe = tmp_path / "best.json"
    common: dict[str, Any] = {
        "storage": storage,
        "data_path": str(small_npz),
        "recipe_out": recipe,
        **QUICK,
    }

    first = tune("ann", 2, **common)
    second = tune("ann", 2, **common)

    assert [row.number for row in first.trials] == [0, 1]
    assert [row.number for row in second.trials] == [0, 1, 2, 3]
    assert len(optuna.load_study(study_name="ann", storage=storage).trials) == 4
    with second.summary_path.open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert second.summary_path == tmp_path / "best-trials.csv"
    assert [row["trial"] for row in table] == ["0", "1", "2", "3"]
    assert {"state", "val_accuracy", "lr", "batch_size"} <= set(table[0])
    space = SPACES["dense"]
    for row in second.trials:  # real draws stay inside the dense family's space
        assert space.lr[0] <= row.params["lr"] <= space.lr[1]
        assert row.params["batch_size"] in space.batch_sizes
        assert row.params["hidden"] in space.model_args["hidden"]
        assert row.epochs_run == 1
    assert second.best is not None
    finished = [row.val_accuracy for row in second.trials if row.state == "complete"]
    assert second.best.val_accuracy == max(v for v in finished if v is not None)
    # The recipe is the best trial's config for full training: no subset limit.
    config = TrainConfig.from_dict(json.loads(recipe.read_text()))
    assert config == second.best_config
    assert config.limit is None
    assert config.recipe == "tuned-ann"
    assert config.lr == pytest.approx(second.best.params["lr"])
    run = fit(replace(config, limit=300), tmp_path / "trained")
    assert read_metrics(run)["test"]["count"] == 1000


def test_a_written_recipe_trains_from_the_command_line(tmp_path: Path, small_npz: Path) -> None:
    pytest.importorskip("digits.recipes")
    from digits.recipes import get_recipe

    recipe = tmp_path / "tuned.json"
    config = TrainConfig(model="fnn", epochs=1, lr=0.002, recipe="tuned-fnn", data=str(small_npz))
    tuning.write_recipe(config, recipe)
    assert get_recipe(recipe) == config

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--recipe", str(recipe), "--limit", "200", "--out", str(out), "--quiet"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["lr"] == 0.002
    assert read_metrics(out)["test"] is not None


def test_the_test_split_never_reaches_a_trial(
    tmp_path: Path, small_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[DigitData] = []
    real_fit = tuning.fit

    def spy(config: TrainConfig, out_dir: Path, **kwargs: Any) -> Path:
        seen.append(kwargs["data"])
        return real_fit(config, out_dir, **kwargs)

    monkeypatch.setattr(tuning, "fit", spy)
    tune(
        "ann",
        1,
        storage=f"sqlite:///{tmp_path / 's.db'}",
        data=load_dataset(small_npz),
        recipe_out=tmp_path / "r.json",
        **QUICK,
    )

    assert len(seen) == 1
    assert seen[0].x_test is None
    assert seen[0].y_test is None


def test_a_study_cannot_be_resumed_with_other_settings(tmp_path: Path, small_npz: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    settings: dict[str, Any] = {"storage": storage, "data_path": str(small_npz), "limit": 300}
    tune("ann", 1, max_epochs=1, recipe_out=tmp_path / "r.json", **settings)

    with pytest.raises(ValueError, match=r"study 'ann' .* max_epochs 1 \(asked: 2\)"):
        tune("ann", 1, max_epochs=2, **settings)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"model": "resnet", "trials": 1}, "unknown model 'resnet'"),
        ({"model": "ann", "trials": 0}, "trials must be >= 1"),
        ({"model": "ann", "trials": 1, "val_split": 0.0}, "needs a validation split"),
        ({"model": "ann", "trials": 1, "max_epochs": 0}, "epochs must be >= 1"),
        ({"model": "ann", "trials": 1, "timeout": -1.0}, "timeout must be > 0"),
    ],
)
def test_bad_arguments_are_clear_errors(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tune(**arguments)


def test_two_processes_share_one_sqlite_study(tmp_path: Path, small_npz: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    script = (
        "import optuna, sys; from pathlib import Path; from digits.tune import tune; "
        "optuna.logging.set_verbosity(optuna.logging.WARNING); "
        f"tune('ann', 1, storage={storage!r}, max_epochs=1, limit=200, "
        f"data_path={str(small_npz)!r}, recipe_out=Path(sys.argv[1]))"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / f"best{i}.json")],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors

    trials = optuna.load_study(study_name="ann", storage=storage).trials
    assert sorted(trial.number for trial in trials) == [0, 1]
    assert all(trial.state.is_finished() for trial in trials)
    assert all(trial.state != optuna.trial.TrialState.FAIL for trial in trials)


def test_tune_command_prints_the_table_and_writes_the_recipe(
    tmp_path: Path, small_npz: Path
) -> None:
    recipe = tmp_path / "best.json"
    result = CliRunner().invoke(
        app,
        [
            "tune", "--model", "ann", "--trials", "1", "--epochs", "1", "--limit", "200",
            "--data", str(small_npz), "--storage", f"sqlite:///{tmp_path / 'cli.db'}",
            "--study", "cli", "--recipe-out", str(recipe), "--seed", "0",
        ],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "study cli" in result.output
    assert f"digits train --recipe {recipe}" in result.output.replace("\n", "")
    assert TrainConfig.from_dict(json.loads(recipe.read_text())).recipe == "tuned-cli"


def test_tune_command_prints_one_tidy_line_per_trial_and_no_optuna_log(
    tmp_path: Path, small_npz: Path
) -> None:
    """In its own process: Optuna's handler writes to the stderr it found at import."""
    command = [
        sys.executable, "-m", "digits", "tune", "--model", "ann", "--trials", "2", "--epochs", "1",
        "--limit", "200", "--data", str(small_npz), "--storage", f"sqlite:///{tmp_path / 't.db'}",
        "--recipe-out", str(tmp_path / "best.json"), "--seed", "0",
    ]  # fmt: skip
    environment = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=environment, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "Trial 0 finished" not in result.stderr  # Optuna's INFO log
    assert not re.search(r"\d\.\d{9,}", result.stdout + result.stderr)  # full-precision floats
    lines = result.stdout.splitlines()
    for number in (0, 1):
        (line,) = [line for line in lines if line.startswith(f"trial {number} ")]
        assert re.match(rf"trial {number} complete: \d+\.\d\d % validation after 1 epoch", line)
        assert "lr " in line and "batch_size " in line
    header = lines.index(next(line for line in lines if line.startswith("trial  state")))
    table = lines[header : header + 4]  # header, rule, a row per trial
    assert sorted(line.split()[0] for line in table[2:]) == ["0", "1"]
    assert all(len(line) <= 80 for line in table)
    assert any(line.startswith("best: trial ") for line in lines)


def test_workers_run_one_study_with_the_cores_split(tmp_path: Path, small_npz: Path) -> None:
    rows: list[TrialRow] = []
    result = tune(
        "ann",
        4,
        storage=f"sqlite:///{tmp_path / 'local.db'}",
        workers=2,
        max_epochs=1,
        limit=200,
        data_path=str(small_npz),
        recipe_out=tmp_path / "best.json",
        sampler_seed=3,
        on_trial=rows.append,
    )
    # Every trial of both workers was heard of once, as it ended, and none failed.
    assert sorted(row.number for row in rows) == [0, 1, 2, 3]
    assert {row.state for row in rows} <= {"complete", "pruned"}
    assert len(result.trials) == 4
    assert result.recipe_path is not None and result.recipe_path.exists()
    # Different seeds per worker: the two first trials are not the same config twice.
    first_two = sorted(rows, key=lambda row: row.number)[:2]
    assert first_two[0].params != first_two[1].params


def test_workers_and_another_machine_share_a_postgresql_study(
    postgres_url: str, tmp_path: Path, small_npz: Path
) -> None:
    common = {"max_epochs": 1, "limit": 200, "data_path": str(small_npz)}
    result = tune(
        "ann", 2, storage=postgres_url, workers=2, recipe_out=tmp_path / "a.json", **common
    )
    assert len(result.trials) == 2
    # Another machine, here another process, joins the same study through its URL.
    command = [str(Path(sys.executable).with_name("digits")), "tune", "--model", "ann"]
    command += ["--trials", "1", "--storage", postgres_url, "--epochs", "1", "--limit", "200"]
    command += ["--data", str(small_npz), "--recipe-out", str(tmp_path / "b.json")]
    joined = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert joined.returncode == 0, joined.stderr
    assert "storage: postgresql://postgres@127.0.0.1" in joined.stdout
    trials = optuna.load_study(study_name="ann", storage=database_url(postgres_url)).trials
    assert sorted(trial.number for trial in trials) == [0, 1, 2]
    assert all(trial.state.is_finished() for trial in trials)
    assert all(trial.state != optuna.trial.TrialState.FAIL for trial in trials)
    # The best trial's recipe trains directly.
    assert TrainConfig.from_dict(json.loads((tmp_path / "b.json").read_text())).model == "ann"


def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password() -> None:
    with pytest.raises(ValueError, match="cannot open the study storage") as caught:
        open_storage("postgresql://someone:hunter2@127.0.0.1:1/nothing")
    assert "hunter2" not in str(caught.value)
    assert "someone:***@127.0.0.1:1/nothing" in str(caught.value)
    assert database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"
