"""Ensembles: averaging softmax outputs, stored and loaded like a run, built from the CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.ensemble import (
    SoftmaxAverage,
    build_ensemble,
    load_ensemble,
    member_configs,
    train_ensemble,
)
from digits.evaluate import model_probabilities
from digits.finish import fit
from digits.train import RunError, TrainConfig, load_model, read_metrics


@pytest.fixture(scope="module")
def tiny(mnist: DigitData) -> DigitData:
    """1 200 training and 500 test images: enough for runs that differ, quick to train."""
    return DigitData(
        mnist.x_train[:1200],
        mnist.y_train[:1200],
        mnist.x_test[:500],
        mnist.y_test[:500],
        "mnist subset",
        mnist.path,
    )


@pytest.fixture(scope="module")
def two_runs(tiny: DigitData, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    runs = []
    for seed, model in ((0, "cnn"), (1, "ann")):
        config = TrainConfig(model=model, epochs=1, batch_size=64, lr=0.003, seed=seed)
        runs.append(fit(config, root / f"{model}-{seed}", data=tiny))
    return runs


def test_ensemble_of_identical_runs_equals_the_run(
    two_runs: list[Path], tiny: DigitData, tmp_path: Path
) -> None:
    run = two_runs[0]
    out = build_ensemble([run, run, run], tmp_path / "same", data=tiny)
    single = model_probabilities(load_model(run), tiny.x_test)
    averaged = model_probabilities(load_model(out), tiny.x_test)
    np.testing.assert_allclose(averaged, single, atol=1e-5)
    assert read_metrics(out)["test"]["accuracy"] == read_metrics(run)["test"]["accuracy"]


def test_output_is_the_log_of_the_averaged_probabilities(
    two_runs: list[Path], tiny: DigitData, tmp_path: Path
) -> None:
    out = build_ensemble(two_runs, tmp_path / "pair", data=tiny)
    model = load_model(out)
    assert isinstance(model, SoftmaxAverage)
    members = [model_probabilities(load_model(run), tiny.x_test) for run in two_runs]
    expected = (members[0] + members[1]) / 2
    np.testing.assert_allclose(model_probabilities(model, tiny.x_test), expected, atol=1e-5)
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(images).exp().sum(1), torch.ones(4), atol=1e-5)


def test_directory_is_self_contained_and_metrics_read_like_a_run(
    two_runs: list[Path], tiny: DigitData, tmp_path: Path
) -> None:
    out = build_ensemble(two_runs, tmp_path / "pair", data=tiny)
    description = json.loads((out / "ensemble.json").read_text())
    assert [m["run"] for m in description["members"]] == [str(run.resolve()) for run in two_runs]
    metrics = read_metrics(out)
    assert metrics["members"] == 2
    assert metrics["test"]["count"] == 500
    assert metrics["parameters"] == sum(read_metrics(r)["parameters"] for r in two_runs)
    # Exported like a run, to a graph that outputs the same log-probabilities.
    assert (out / "model.onnx").exists()
    # The member weights were copied: the ensemble still loads once the runs are gone.
    moved = tmp_path / "moved"
    out.rename(moved)
    assert isinstance(load_ensemble(moved), SoftmaxAverage)


def test_bad_inputs_are_clear_errors(two_runs: list[Path], tiny: DigitData, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one run"):
        build_ensemble([], tmp_path / "none", data=tiny)
    with pytest.raises(RunError, match="not a trained run directory"):
        build_ensemble([tmp_path], tmp_path / "x", data=tiny)
    with pytest.raises(RunError, match="holds a training run"):
        build_ensemble(two_runs, two_runs[0], data=tiny)
    out = build_ensemble(two_runs, tmp_path / "e", data=tiny)
    with pytest.raises(RunError, match="already holds an ensemble"):
        build_ensemble(two_runs, out, data=tiny)
    with pytest.raises(RunError, match="is an ensemble itself"):
        build_ensemble([out], tmp_path / "nested", data=tiny)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(two_runs[0], unfinished)
    (unfinished / "metrics.json").unlink()
    with pytest.raises(RunError, match="unfinished: training has not finished"):
        build_ensemble([two_runs[1], unfinished], tmp_path / "early", data=tiny)
    (out / "members" / f"1-{two_runs[1].name}.safetensors").unlink()
    with pytest.raises(RunError, match="member weights missing"):
        load_model(out)


def test_train_ensemble_trains_each_seed_once(tiny: DigitData, tmp_path: Path) -> None:
    config = TrainConfig(model="ann", epochs=1, batch_size=64, seed=5, recipe="mine")
    out = train_ensemble(config, tmp_path / "ens", 2, data=tiny)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("seed")) == ["seed5", "seed6"]
    first = (out / "seed5" / "model.safetensors").stat().st_mtime_ns
    again = train_ensemble(config, out, 2, data=tiny)  # finished members are reused
    assert (again / "seed5" / "model.safetensors").stat().st_mtime_ns == first
    assert read_metrics(out)["recipe"] == "ensemble of 2 × mine"


def test_ensemble_command(two_runs: list[Path], small_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["ensemble", *map(str, two_runs), "--out", str(out), "--data", str(small_npz)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 runs" in result.output
    evaluated = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(small_npz), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == read_metrics(out)["test"]["accuracy"]


def test_ensemble_command_with_a_missing_run_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ensemble", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "nope" in result.output


def test_train_command_with_ensemble(small_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "ens"
    args = ["train", "--recipe", "ann", "--ensemble", "2", "--epochs", "1", "--limit", "600"]
    args += ["--data", str(small_npz), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_metrics(out)["members"] == 2
    assert (out / "seed0" / "metrics.json").exists()
    assert (out / "seed1" / "metrics.json").exists()
    # The ensemble records its members' data: moved away from them, it still evaluates on it.
    assert json.loads((out / "ensemble.json").read_text())["data"] == str(small_npz.resolve())
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("ensemble.json", "metrics.json", "model.onnx", "finished.json", "members"):
        (out / name).rename(alone / name)
    evaluated = CliRunner().invoke(app, ["evaluate", str(alone), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["data"]["path"] == str(small_npz.resolve())


def test_ensemble_command_refuses_a_single_run(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "one"
    result = CliRunner().invoke(app, ["ensemble", str(two_runs[0]), "--out", str(out)])

    assert result.exit_code == 1
    assert result.stderr == f"error: an ensemble needs at least two runs, got only {two_runs[0]}\n"
    assert not out.exists()  # refused before anything is written


def test_train_command_refuses_an_ensemble_of_one(small_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "one"
    args = ["train", "--recipe", "ann", "--ensemble", "1", "--epochs", "1", "--limit", "100"]
    result = CliRunner().invoke(app, [*args, "--data", str(small_npz), "--out", str(out)])

    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "--ensemble 1: an ensemble needs at least two members" in result.stderr
    assert not out.exists()  # refused before any training


def test_member_configs_take_the_recipes_in_turn() -> None:
    a = TrainConfig(model="ann", seed=3, recipe="a")
    b = TrainConfig(model="cnn", seed=3, recipe="b")
    members = member_configs([a, b], 5)
    assert [(m.recipe, m.seed) for m in members] == [
        ("a", 3),
        ("b", 3),
        ("a", 4),
        ("b", 4),
        ("a", 5),
    ]
    for count in (0, 1):  # one member is that run again, not an ensemble
        with pytest.raises(ValueError, match=f"--ensemble {count}: .* at least two members"):
            member_configs([a], count)
    each = r"--ensemble 1: 2 recipes \(a, b\) need at least one member each"
    with pytest.raises(ValueError, match=each):
        member_configs([a, b], 1)  # would silently leave b out


def test_ensemble_of_two_recipes_keeps_each_member_apart(tiny: DigitData, tmp_path: Path) -> None:
    configs = [
        TrainConfig(model="ann", epochs=1, batch_size=64, recipe="dense"),
        TrainConfig(model="cnn-small", epochs=1, batch_size=64, recipe="conv"),
    ]
    out = train_ensemble(configs, tmp_path / "mixed", 3, data=tiny)
    members = json.loads((out / "ensemble.json").read_text())["members"]
    assert [Path(m["run"]).name for m in members] == ["dense-seed0", "conv-seed0", "dense-seed1"]
    assert [m["model"] for m in members] == ["ann", "cnn-small", "ann"]
    assert read_metrics(out)["recipe"] == "ensemble of 3: 1 × conv, 2 × dense"
    # Run again: every finished member is reused, none retrained.
    stamps = {m["run"]: (Path(m["run"]) / "model.safetensors").stat().st_mtime_ns for m in members}
    train_ensemble(configs, out, 3, data=tiny)
    again = {run: (Path(run) / "model.safetensors").stat().st_mtime_ns for run in stamps}
    assert again == stamps
    # A member directory that holds another config is refused, never reused as it is.
    refused = r"dense-seed0 holds a run with a different config \(epochs\)"
    with pytest.raises(RunError, match=refused):
        train_ensemble([replace(configs[0], epochs=2), configs[1]], out, 2, data=tiny)


def test_ensemble_recipes_that_cannot_mix_are_refused_before_training(tmp_path: Path) -> None:
    dense = TrainConfig(model="ann", recipe="dense")
    with pytest.raises(ValueError, match="must have different names, got dense, dense"):
        train_ensemble([dense, dense], tmp_path / "twice", 2)
    other = replace(dense, recipe="other", data=str(tmp_path / "mine.npz"))
    with pytest.raises(ValueError, match="same data, got dense: MNIST, other: .*mine.npz"):
        train_ensemble([dense, other], tmp_path / "data", 2)
    assert not (tmp_path / "twice").exists() and not (tmp_path / "data").exists()


def test_train_command_with_two_recipes(small_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    args = ["train", "--recipe", "ann,mlp", "--ensemble", "2", "--epochs", "1", "--limit", "600"]
    args += ["--data", str(small_npz), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_metrics(out)["members"] == 2
    for member in ("ann-seed0", "mlp-seed0"):  # the options given reach every recipe
        config = json.loads((out / member / "config.json").read_text())
        assert (config["epochs"], config["limit"]) == (1, 600)
    alone = CliRunner().invoke(app, ["train", "--recipe", "ann,mlp", "--quiet"])
    assert alone.exit_code == 1
    assert "add --ensemble K" in alone.output
    empty = CliRunner().invoke(app, ["train", "--recipe", "ann,", "--ensemble", "2", "--quiet"])
    assert empty.exit_code == 1
    assert "--recipe 'ann,': an empty recipe name" in empty.output


def test_a_recipe_file_with_a_comma_in_its_name_is_one_recipe(
    small_npz: Path, tmp_path: Path
) -> None:
    recipe = tmp_path / "dense,small.json"
    recipe.write_text(json.dumps({"model": "ann", "epochs": 1, "limit": 300}))
    out = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(small_npz), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_metrics(out)["recipe"] == "dense,small"
