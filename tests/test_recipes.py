"""Recipes: every named recipe builds a valid config, faithful to its seed; recipe files; CLI."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digits.cli import app
from digits.models import REGISTRY
from digits.recipes import RECIPES, get_recipe, recipe_names
from digits.train import TrainConfig, read_metrics

SEED_RECIPES = ["ann", "fnn", "mlp", "cnn", "cnn-small", "cnn-dropout", "cnn-kaggle"]


def test_every_seed_architecture_has_a_recipe_and_speed_and_best_exist() -> None:
    assert set(SEED_RECIPES) | {"speed", "best"} <= set(recipe_names())
    for name in SEED_RECIPES:
        assert get_recipe(name).model == name


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_is_a_valid_named_config_with_documentation(name: str) -> None:
    config = get_recipe(name)
    assert isinstance(config, TrainConfig)
    assert config.recipe == name
    assert config.model in REGISTRY
    assert config.limit is None
    assert RECIPES[name].description
    assert RECIPES[name].reaches


def test_seed_recipes_follow_their_seeds() -> None:
    for name in ("fnn", "cnn-small"):  # seed 002: Adam, 10 epochs
        config = get_recipe(name)
        assert (config.optimizer, config.epochs) == ("adam", 10)
    dropout = get_recipe("cnn-dropout")  # seed 003: early stopping, best checkpoint
    assert dropout.patience > 0
    assert dropout.val_split > 0
    kaggle = get_recipe("cnn-kaggle")  # seed 004: augmentation, 30 epochs, batch 86
    assert (kaggle.epochs, kaggle.batch_size) == (30, 86)
    assert kaggle.augment == {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}


def test_best_uses_the_strong_pieces() -> None:
    best = get_recipe("best")
    assert best.model == "bn-cnn"
    assert best.augment
    assert best.ema_decay
    assert best.label_smoothing > 0
    assert best.schedule == "onecycle"


def test_best_kaggle_is_best_with_the_kaggle_network() -> None:
    # Only the network differs, so an ensemble of the two mixes architectures, nothing else.
    best, kaggle = asdict(get_recipe("best")), asdict(get_recipe("best-kaggle"))
    differing = {key for key in best if best[key] != kaggle[key]}
    assert differing == {"model", "recipe"}
    assert kaggle["model"] == "cnn-kaggle"


@pytest.mark.parametrize("short", ["best", "best-kaggle"])
def test_long_recipes_train_twice_as_long_on_every_image(short: str) -> None:
    base, long = asdict(get_recipe(short)), asdict(get_recipe(f"{short}-long"))
    differing = {key for key in base if base[key] != long[key]}
    assert differing == {"epochs", "val_split", "recipe"}
    assert (long["epochs"], long["val_split"]) == (2 * base["epochs"], 0.0)


def test_recipes_are_fresh_copies() -> None:
    first = get_recipe("best")
    assert first.augment is not None
    first.augment["rotation"] = 90.0
    assert get_recipe("best").augment != first.augment
    assert RECIPES["best"].values["augment"]["rotation"] == 10.0


def test_recipe_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    values = {**asdict(get_recipe("best")), "epochs": 3, "recipe": None}
    values.pop("recipe")
    path.write_text(json.dumps(values))
    config = get_recipe(path)
    assert config.epochs == 3
    assert config.recipe == "mine"  # named after the file unless it says otherwise
    assert config.augment == get_recipe("best").augment


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"epochs": 3}', "names no model"),
        ('{"model": "cnn", "epoch": 3}', "unknown training config keys: epoch"),
        ('{"model": "cnn", "augment": {"flip": 1}}', "unknown augmentation keys: flip"),
        ('{"model": "cnn", "ema_decay": 1.5}', "ema_decay must be in"),
    ],
)
def test_bad_recipe_files_are_errors_naming_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        get_recipe(path)
    assert str(path) in str(info.value)


def test_unknown_recipe_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown recipe 'fastest'.*speed"):
        get_recipe("fastest")


def test_recipes_command_json_lists_every_recipe() -> None:
    result = CliRunner().invoke(app, ["recipes", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == recipe_names()
    assert all(row["config"]["model"] in REGISTRY for row in rows)


def test_train_with_a_recipe_and_overrides(tmp_path: Path, small_npz: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--recipe", "speed", "--epochs", "1", "--limit", "600", "--lr", "0.01"]
    args += ["--data", str(small_npz), "--out", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    speed = get_recipe("speed")
    assert saved["recipe"] == "speed"
    assert (saved["epochs"], saved["limit"], saved["lr"]) == (1, 600, 0.01)  # overridden
    assert (saved["model"], saved["model_args"], saved["batch_size"]) == (
        speed.model,
        speed.model_args,
        speed.batch_size,
    )  # from the recipe
    assert read_metrics(out)["recipe"] == "speed"


def test_train_rejects_model_and_recipe_together(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "--model", "cnn", "--recipe", "best", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1
    assert "exclude each other" in result.output


def test_train_with_a_missing_recipe_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    result = CliRunner().invoke(app, ["train", "--recipe", str(missing), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "unknown recipe" in result.output
    assert str(missing) in result.output
