"""`digits compare`: items resolved, runs trained or reused, every table and the plot written."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digits.cli import app
from digits.compare import (
    TABLE_FILES,
    ComparisonRow,
    RunStart,
    compare,
    default_items,
    resolve_items,
)
from digits.data import DigitData, load_dataset
from digits.models import REGISTRY
from digits.train import RunError, TrainConfig, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(
    small_npz: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[ComparisonRow]]:
    """Two seed models, one epoch on 300 images, two seeds each (dense ones: seconds on a CPU)."""
    out = tmp_path_factory.mktemp("compare")
    configs = resolve_items(["ann", "fnn"], epochs=1, limit=300, data_path=str(small_npz))
    return out, compare(configs, out, seeds=2)


def test_compare_writes_every_file(compared: tuple[Path, list[ComparisonRow]]) -> None:
    out, rows = compared

    for name in TABLE_FILES:
        assert (out / name).is_file(), name
    assert (out / "comparison.png").read_bytes().startswith(PNG_MAGIC)
    markdown = (out / "comparison.md").read_text()
    for column in ("parameters", "epochs", "train s", "test accuracy", "macro F1", "images/s"):
        assert column in markdown
    assert "`ann`" in markdown
    assert "`fnn`" in markdown
    with (out / "comparison.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["model"] for row in table] == ["ann", "fnn"]
    assert set(table[0]) == {f.name for f in fields(ComparisonRow)} - {"runs"}
    assert json.loads((out / "comparison.json").read_text()) == [asdict(row) for row in rows]


def test_rows_summarise_the_seed_runs(compared: tuple[Path, list[ComparisonRow]]) -> None:
    out, rows = compared

    for row in rows:
        assert row.runs == [str(out / f"{row.model}-seed{seed}") for seed in (0, 1)]
        tests = [read_metrics(run)["test"] for run in row.runs]
        accuracies = [test["accuracy"] for test in tests]
        assert row.accuracy_mean == pytest.approx(np.mean(accuracies))
        assert row.accuracy_std == pytest.approx(np.std(accuracies, ddof=1))
        assert row.macro_f1 == pytest.approx(np.mean([test["macro_f1"] for test in tests]))
        assert row.parameters == REGISTRY[row.model].parameters
        assert row.claimed_accuracy == REGISTRY[row.model].claimed_accuracy
        assert row.epochs == 1
        assert row.images_per_s > 0
    # Two seeds are two different runs, not one run counted twice.
    weights = [Path(run, "model.safetensors").read_bytes() for run in rows[0].runs]
    assert weights[0] != weights[1]


def test_finished_runs_are_reused_and_changed_configs_refused(
    compared: tuple[Path, list[ComparisonRow]], small_npz: Path
) -> None:
    out, rows = compared
    weights = Path(rows[0].runs[0], "model.safetensors")
    before = weights.stat().st_mtime_ns

    configs = resolve_items(["ann"], epochs=1, limit=300, data_path=str(small_npz))
    again = compare(configs, out, seeds=1)

    assert weights.stat().st_mtime_ns == before
    assert again[0].accuracy_mean == pytest.approx(
        read_metrics(rows[0].runs[0])["test"]["accuracy"]
    )
    longer = [replace(configs[0], epochs=2)]
    with pytest.raises(RunError, match=r"ann-seed0 holds a run with a different config \(epochs\)"):
        compare(longer, out, seeds=1)


def test_a_recipe_file_is_an_item(tmp_path: Path, small_npz: Path) -> None:
    recipe = tmp_path / "tuned.json"
    config = TrainConfig(model="fnn", epochs=1, lr=0.003, recipe="tuned-fnn", limit=300)
    recipe.write_text(json.dumps(asdict(config)))

    rows = compare(resolve_items([str(recipe)], data_path=str(small_npz)), tmp_path / "out")

    assert rows[0].model == "tuned-fnn"
    assert rows[0].architecture == "fnn"
    saved = json.loads(Path(rows[0].runs[0], "config.json").read_text())
    assert saved["lr"] == 0.003


def test_default_items_are_the_seed_models() -> None:
    items = default_items()

    assert [name for name in items if name != "best"] == [
        spec.name for spec in REGISTRY.values() if spec.seed
    ]
    assert len([name for name in items if name != "best"]) == 7


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["ann", "lenet"], "'lenet' is neither a recipe"),
        (["ann", "ann"], "ann given more than once"),
        ([], "no models or recipes given"),
    ],
)
def test_bad_items_are_clear_errors(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_items(items)


def test_data_without_a_test_split_is_refused(tmp_path: Path, small_npz: Path) -> None:
    full = load_dataset(small_npz)
    no_test = DigitData(full.x_train, full.y_train, None, None, "npz", small_npz)

    with pytest.raises(ValueError, match="has no test split"):
        compare([TrainConfig(model="ann", epochs=1, limit=100)], tmp_path, data=no_test)


def test_compare_command_prints_the_side_by_side_table(tmp_path: Path, small_npz: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        ["compare", "--models", "ann,mlp", "--epochs", "1", "--limit", "300", "--data",
         str(small_npz), "--out", str(out), "--quiet"],
        env={"COLUMNS": "80"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    for column in ("model", "params", "epochs", "train s", "test %", "img/s", "claim %"):
        assert column in result.output
    assert "97.77" in result.output  # the ann seed's claim, beside ours
    for name in TABLE_FILES:
        assert (out / name).is_file()


def test_each_run_is_announced_with_its_item_and_seed(
    compared: tuple[Path, list[ComparisonRow]], small_npz: Path
) -> None:
    out, _ = compared
    configs = resolve_items(["ann", "fnn"], epochs=1, limit=300, data_path=str(small_npz))
    starts: list[RunStart] = []

    compare(configs, out, seeds=2, on_run=starts.append)

    assert [(s.item, s.seed, s.number, s.total) for s in starts] == [
        ("ann", 0, 1, 4), ("ann", 1, 2, 4), ("fnn", 0, 3, 4), ("fnn", 1, 4, 4),
    ]  # fmt: skip
    assert all(s.reused for s in starts)  # the fixture trained them already
    assert starts[0].run_dir == out / "ann-seed0"


def test_compare_command_labels_every_progress_bar_and_fits_80_columns(
    compared: tuple[Path, list[ComparisonRow]], small_npz: Path
) -> None:
    out, _ = compared
    result = CliRunner().invoke(
        app,
        ["compare", "--models", "ann,fnn", "--epochs", "1", "--limit", "300", "--seeds", "2",
         "--data", str(small_npz), "--out", str(out)],
        env={"COLUMNS": "80"},
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for number, (item, seed) in enumerate([("ann", 0), ("ann", 1), ("fnn", 0), ("fnn", 1)], 1):
        assert f"[{number}/4] {item}, seed {seed}: reusing the finished run in" in result.stdout
    header = next(index for index, line in enumerate(lines) if line.startswith("model "))
    table = lines[header : header + 4]  # header, rule, a row per item
    assert [line.split()[0] for line in table] == ["model", "─" * len(table[1]), "ann", "fnn"]
    assert all(len(line) <= 80 for line in table)
    assert "± " in result.stdout  # two seeds: mean ± std


def test_compare_command_names_the_option_out_of_range(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["compare", "--models", "ann", "--epochs", "0", "--out", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert result.stderr == "error: invalid training config: --epochs must be >= 1, got 0\n"


def test_compare_command_rejects_unknown_items(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["compare", "--models", "ann,nope", "--out", str(tmp_path)])

    assert result.exit_code == 1
    assert "'nope' is neither a recipe" in result.output
