"""What the command line looks like: tables within 80 columns with names whole, whole lines when
piped, flags shown as flags, and every user error one line on stderr with exit status 1."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner, Result

from digits.answers import not_sure_reason
from digits.cli import app
from digits.cli.common import Group, os_error_text, without_repeated_name
from digits.cli.compare import comparison_table
from digits.compare import ComparisonRow
from digits.models import REGISTRY
from digits.recipes import RECIPES
from tests.helpers import tiny_model

runner = CliRunner()
NARROW = {"COLUMNS": "80"}
WIDE = {"COLUMNS": "120"}


def _lines(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def _first_words(text: str) -> list[str]:
    return [line.split()[0] for line in _lines(text) if line.strip()]


# --- tables ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [NARROW, WIDE], ids=["80", "120"])
def test_recipes_table_has_one_line_per_recipe_and_whole_names(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["recipes"], env=env)

    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    # Every name whole, each row on one line: no cell wraps onto a second line.
    assert [word for word in _first_words(result.stdout) if word in RECIPES] == list(RECIPES)
    assert len(lines) == len(RECIPES) + 3  # header, rule, rows, the line saying where details are
    assert "best-kaggle-long " in result.stdout


@pytest.mark.parametrize("env", [NARROW, WIDE], ids=["80", "120"])
def test_models_table_has_one_line_per_model_and_whole_figures(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["models"], env=env)

    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert [word for word in _first_words(result.stdout) if word in REGISTRY] == list(REGISTRY)
    assert len(lines) == len(REGISTRY) + 3
    assert "98.66 % test" in result.stdout  # the figure that used to split over two lines


def test_data_info_fits_80_columns(small_npz: Path) -> None:
    result = runner.invoke(app, ["data", "info", "--data", str(small_npz)], env=NARROW)

    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in _lines(result.stdout))


def test_detail_views_print_whole_lines() -> None:
    """The long text lives in `recipes NAME` and `models NAME`, as whole lines: a pipe gets them
    unbroken, a terminal wraps them itself."""
    recipe = runner.invoke(app, ["recipes", "best-kaggle-long"], env=NARROW)
    model = runner.invoke(app, ["models", "bn-cnn"], env=NARROW)

    assert recipe.exit_code == 0, recipe.output
    assert f"reaches: {RECIPES['best-kaggle-long'].reaches}" in _lines(recipe.stdout)
    assert "train it with: digits train --recipe best-kaggle-long" in _lines(recipe.stdout)
    assert model.exit_code == 0, model.output
    assert f"bn-cnn: {REGISTRY['bn-cnn'].description}" in _lines(model.stdout)
    unknown = runner.invoke(app, ["recipes", "fastest"])
    assert unknown.exit_code == 1
    assert _lines(unknown.stderr)[0].startswith("error: unknown recipe 'fastest'")


def _row(name: str, claim: float | None) -> ComparisonRow:
    return ComparisonRow(
        model=name, architecture="cnn-kaggle", parameters=887_530, epochs=24.0, seeds=5,
        train_seconds=1834.5, accuracy_mean=0.99663, accuracy_std=0.00051, loss=0.0123,
        macro_f1=0.9966, images_per_s=1_063_543.0, claimed_accuracy=claim, claim_note="",
        runs=[],
    )  # fmt: skip


@pytest.mark.parametrize("seeds", [1, 5])
def test_comparison_table_fits_80_columns_with_long_names(seeds: int) -> None:
    from rich.console import Console

    console = Console(width=80, file=io.StringIO(), record=True)
    names = ["best-kaggle-long", "tuned-cnn-dropout-x", "ann"]
    console.print(comparison_table([_row(name, 0.98) for name in names], seeds))
    text = console.export_text()
    lines = _lines(text)

    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert "…" not in text  # no cell cut short
    assert [line.split()[0] for line in lines if line.split()[0] in names] == names
    assert "1.06 M" in text
    if seeds > 1:
        assert "99.66 ± 0.05" in text


# --- help --------------------------------------------------------------------------------------


def _commands() -> Iterator[list[str]]:
    """Every command of `digits`, as the words that name it, in the groups built by the CLI."""
    root = typer.main.get_command(app)

    def walk(group: Group, path: list[str]) -> Iterator[list[str]]:
        for name, command in group.commands.items():
            if isinstance(command, Group):
                yield from walk(command, [*path, name])
            elif not hasattr(command, "commands"):
                yield [*path, name]

    assert isinstance(root, Group)
    yield from walk(root, [])


@pytest.mark.parametrize("command", list(_commands()), ids=" ".join)
def test_help_shows_flags_as_flags(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.stdout  # `--json <bool>` reads as if `--json true` were asked


def test_serve_help_shows_the_defaults_the_service_uses() -> None:
    from digits.cli import serve
    from digits.serve.settings import Settings

    defaults = Settings()
    assert (defaults.host, defaults.port) == (serve.DEFAULT_HOST, serve.DEFAULT_PORT)
    assert (defaults.workers, defaults.runs_dir) == (serve.DEFAULT_WORKERS, serve.DEFAULT_RUNS)
    text = runner.invoke(app, ["serve", "--help"], env=WIDE).stdout
    for shown in ("[default: 127.0.0.1]", "[default: 8000]", "[default: 1]", "[default: runs]"):
        assert shown in text


# --- errors: one line on stderr, exit status 1 -------------------------------------------------


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = _lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A check that let a bad address through must fail the test, not start a server."""
    import uvicorn

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn.run was reached")

    monkeypatch.setattr(uvicorn, "run", refuse)
    monkeypatch.setattr("os.execv", refuse)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other server listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.usefixtures("no_serving")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_busy_port_is_one_line(model: Path, busy_port: int, workers: str) -> None:
    result = runner.invoke(
        app, ["serve", str(model), "--port", str(busy_port), "--workers", workers]
    )

    line = _one_line_error(result)
    assert f"127.0.0.1:{busy_port}: the port is in use" in line
    assert "serving" not in result.output


@pytest.mark.usefixtures("no_serving")
def test_serve_on_an_address_of_another_machine_is_one_line(model: Path) -> None:
    result = runner.invoke(app, ["serve", str(model), "--host", "192.0.2.1", "--port", "8123"])

    line = _one_line_error(result)
    assert "192.0.2.1 is not an address of this machine" in line
    assert "serving" not in result.output


@pytest.mark.usefixtures("no_serving")
@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--port", "99999"], "'--port'"),
        (["--port", "0"], "'--port'"),
        (["--workers", "0"], "'--workers'"),
        (["--port", "http"], "'--port'"),
    ],
)
def test_serve_options_out_of_range_are_one_line(
    model: Path, arguments: list[str], named: str
) -> None:
    result = runner.invoke(app, ["serve", str(model), *arguments])

    line = _one_line_error(result)
    assert named in line
    assert "pydantic" not in result.output
    assert "serving" not in result.output


@pytest.mark.usefixtures("no_serving")
def test_serve_with_a_bad_environment_value_names_the_variable(model: Path) -> None:
    result = runner.invoke(app, ["serve", str(model)], env={"DIGITS_SERVE_PORT": "99999"})

    line = _one_line_error(result)
    assert line.startswith("error: DIGITS_SERVE_PORT '99999': ")
    assert "pydantic" not in result.output


def test_usage_errors_are_one_line_naming_the_command() -> None:
    for arguments in (["train", "--epochs", "x"], ["train", "--colour"], ["nosuch"]):
        line = _one_line_error(runner.invoke(app, arguments))
        assert "--help`)" in line, line


def test_config_errors_name_the_options_as_typed(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--model", "ann", "--val-split", "1.5", "--out", str(tmp_path / "r")]
    )

    line = _one_line_error(result)
    assert "--val-split must be in [0, 1), got 1.5" in line
    assert "val_split" not in line
    assert not (tmp_path / "r").exists()
    # A recipe file says val_split, and is named so.
    recipe = tmp_path / "odd.json"
    recipe.write_text('{"model": "ann", "val_split": 3}')
    from_file = _one_line_error(runner.invoke(app, ["train", "--recipe", str(recipe)]))
    assert f"{recipe}: invalid training config: val_split must be in [0, 1), got 3" in from_file


def test_a_path_the_system_refuses_is_named_without_errno(tmp_path: Path, small_npz: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    result = runner.invoke(
        app,
        ["train", "--model", "ann", "--epochs", "1", "--limit", "100", "--data", str(small_npz),
         "--out", str(out), "--quiet"],
    )  # fmt: skip

    line = _one_line_error(result)
    assert "[Errno" not in line
    assert line == f"error: {out}: not a directory"


def test_os_error_text_names_the_paths() -> None:
    assert os_error_text(FileNotFoundError(2, "No such file or directory", "x.npz")) == (
        "x.npz: no such file or directory"
    )
    assert os_error_text(OSError(18, "Invalid cross-device link", "a", None, "b")) == (
        "a → b: invalid cross-device link"
    )


def test_a_bad_data_file_is_named_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 28, 28), np.uint8))

    line = _one_line_error(runner.invoke(app, ["data", "info", "--data", str(bad)]))

    assert line.count(str(bad)) == 1
    assert line.startswith(f"error: {bad}: missing arrays")


def test_a_name_repeated_by_a_caller_is_printed_once() -> None:
    assert without_repeated_name("bad.npz: bad.npz: missing arrays") == "bad.npz: missing arrays"
    assert without_repeated_name("a: a: a: gone") == "a: gone"
    assert without_repeated_name("run: model.onnx: gone") == "run: model.onnx: gone"
    assert without_repeated_name("no colon here") == "no colon here"


# --- confidence in percent, never rounded up to the threshold -----------------------------------


@pytest.mark.parametrize(
    ("confidence", "threshold", "expected"),
    [
        (0.929, 0.93, "at 92 %, below the 93 % threshold"),
        (0.92999999999, 0.93, "at 92 %, below the 93 % threshold"),
        (0.9299999999999999, 0.93, "at 92 %, below the 93 % threshold"),
        (0.29, 0.5, "at 29 %, below the 50 % threshold"),
        (0.9249, 0.925, "at 92.4 %, below the 92.5 % threshold"),
        (0.0, 0.5, "at 0 %, below the 50 % threshold"),
    ],
)
def test_not_sure_never_reads_as_reaching_its_threshold(
    confidence: float, threshold: float, expected: str
) -> None:
    assert not_sure_reason(2, confidence, threshold) == f"not sure: best guess 2 {expected}"


def test_a_write_that_fails_names_the_file_asked_for(tmp_path: Path) -> None:
    from digits.atomic import atomic_write_text

    target = tmp_path / "missing" / "file.json"
    (tmp_path / "missing").write_text("a file where a folder should be")
    with pytest.raises(OSError, match="Not a directory|File exists") as caught:
        atomic_write_text(target, "{}")
    assert caught.value.filename == str(target)
    assert os_error_text(caught.value).startswith(f"{target}: ")
    assert ".tmp" not in os_error_text(caught.value)


def test_a_binary_recipe_file_is_named(tmp_path: Path) -> None:
    from digits.recipes import read_recipe_file

    binary = tmp_path / "recipe.json"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(ValueError, match=f"{binary}: not a recipe file"):
        read_recipe_file(binary)


def test_each_training_bar_names_its_run(tmp_path: Path) -> None:
    options = ["--epochs", "1", "--limit", "600", "--seed", "3", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, ["train", "--model", "ann", *options])
    assert result.exit_code == 0, result.output
    assert "ann s3 epoch 1" in result.output
