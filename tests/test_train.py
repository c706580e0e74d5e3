"""Training: run directory contents, reproducibility, resume after a kill, early stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.ensemble import build_ensemble
from digits.finish import fit, train_or_reuse
from digits.run import open_for_training, read_config, remove_stale_temporaries, run_state
from digits.train import RunError, TrainConfig, load_model, read_history, read_metrics

runner = CliRunner()


def _config(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "model": "cnn",
        "epochs": 2,
        "limit": 1200,
        "batch_size": 64,
        "lr": 0.003,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    left, right = _weights(a), _weights(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_run_directory_holds_everything(tmp_path: Path, small_mnist: DigitData) -> None:
    run = fit(_config(), tmp_path / "run", data=small_mnist)
    names = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "history.csv",
        "metrics.json",
        "model.safetensors",
        "checkpoint.pt",
    } <= names
    assert json.loads((run / "config.json").read_text())["model"] == "cnn"
    history = read_history(run)
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    assert all(row["val_accuracy"] is not None for row in history)
    metrics = read_metrics(run)
    assert metrics["parameters"] == 93_322
    assert metrics["test"]["count"] == 1000
    assert metrics["test"]["accuracy"] > 0.5  # 1 080 images, 2 epochs: well above chance
    model = load_model(run)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path, small_mnist: DigitData
) -> None:
    first = fit(_config(model="cnn-dropout"), tmp_path / "a", data=small_mnist)
    second = fit(_config(model="cnn-dropout"), tmp_path / "b", data=small_mnist)
    other = fit(_config(model="cnn-dropout", seed=1), tmp_path / "c", data=small_mnist)
    assert _same_weights(first, second)
    assert read_history(first) == read_history(second) or all(
        a["val_accuracy"] == b["val_accuracy"]
        for a, b in zip(read_history(first), read_history(second), strict=True)
    )
    assert not _same_weights(first, other)


def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, small_mnist: DigitData
) -> None:
    config = _config(model="cnn-dropout", epochs=3)
    straight = fit(config, tmp_path / "straight", data=small_mnist)
    stopped = fit(config, tmp_path / "stopped", data=small_mnist, stop_after_epoch=1)
    assert not (stopped / "metrics.json").exists()
    assert len(read_history(stopped)) == 1
    resumed = fit(config, stopped, data=small_mnist, resume=True)
    assert _same_weights(straight, resumed)
    assert [r["val_accuracy"] for r in read_history(straight)] == [
        r["val_accuracy"] for r in read_history(resumed)
    ]


def test_killed_process_resumes_from_its_last_epoch(tmp_path: Path, small_npz: Path) -> None:
    run = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "digits",
        "train",
        "--model",
        "mlp",
        "--epochs",
        "40",
        "--data",
        str(small_npz),
        "--out",
        str(run),
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run / "history.csv").exists() or len(read_history(run)) < 2:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(read_history(run))
    assert done_before < 40
    resumed = subprocess.run(
        [*command[:6], "--epochs", str(max(done_before, 4)), *command[8:], "--resume"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    history = read_history(run)
    assert [row["epoch"] for row in history] == [
        float(e) for e in range(1, max(done_before, 4) + 1)
    ]
    assert read_metrics(run)["epochs_run"] == len(history)


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path, small_mnist: DigitData) -> None:
    # A learning rate this high makes validation accuracy stall or fall at once.
    run = fit(
        _config(model="ann", epochs=8, lr=0.5, optimizer="sgd", patience=2),
        tmp_path / "r",
        data=small_mnist,
    )
    history = read_history(run)
    metrics = read_metrics(run)
    assert len(history) < 8
    best = max(history, key=lambda row: row["val_accuracy"] or 0.0)
    assert metrics["best_epoch"] == best["epoch"]
    assert metrics["val_accuracy"] == best["val_accuracy"]


def test_existing_run_and_missing_run_are_clear_errors(
    tmp_path: Path, small_mnist: DigitData
) -> None:
    run = fit(_config(model="ann", epochs=1), tmp_path / "r", data=small_mnist)
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        fit(_config(model="ann", epochs=1), run, data=small_mnist)
    with pytest.raises(RunError, match="nothing to resume"):
        fit(_config(), tmp_path / "nothing", data=small_mnist, resume=True)
    with pytest.raises(RunError, match="not a trained run directory"):
        load_model(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "nope", "unknown model 'nope'"),
        ("epochs", 0, "epochs must be >= 1"),
        ("optimizer", "lbfgs", "optimizer 'lbfgs'"),
        ("val_split", 1.5, r"val_split must be in \[0, 1\)"),
        ("precision", "fp8", "precision 'fp8'"),
    ],
)
def test_invalid_configs(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**{field: value})


def test_unknown_config_key() -> None:
    with pytest.raises(ValueError, match="unknown training config keys: colour"):
        TrainConfig.from_dict({"model": "cnn", "colour": "red"})


def test_cli_resume_continues_the_stored_config_bit_for_bit(tmp_path: Path) -> None:
    """Resumed with only --model and --out, a onecycle run ends as if never stopped."""
    options = ["--epochs", "3", "--schedule", "onecycle", "--lr", "0.004", "--limit", "3000"]
    config = TrainConfig(
        model="cnn", epochs=3, schedule="onecycle", lr=0.004, limit=3000, val_split=0.0
    )
    straight = fit(config, tmp_path / "straight")
    stopped = fit(config, tmp_path / "stopped", stop_after_epoch=1)
    assert run_state(stopped) == "training"
    refused = runner.invoke(app, ["train", "--out", str(stopped), "--resume", "--lr", "0.01"])
    assert refused.exit_code == 1
    assert "--lr 0.01 contradicts the stored config (lr 0.004)" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    longer = runner.invoke(app, ["train", "--out", str(stopped), "--resume", "--epochs", "5"])
    assert longer.exit_code == 1 and "onecycle schedule" in longer.output
    resumed = runner.invoke(
        app, ["train", "--model", "cnn", "--out", str(stopped), "--resume", "--quiet"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert read_config(stopped) == config
    assert _same_weights(straight, stopped)
    assert run_state(stopped) == "finished"
    # Without --resume, a finished run is never trained over.
    again = runner.invoke(app, ["train", "--model", "cnn", *options, "--out", str(stopped)])
    assert again.exit_code == 1 and "already holds a run" in again.output


def test_failed_train_leaves_no_directory_in_the_way(
    tmp_path: Path, small_mnist: DigitData
) -> None:
    out = tmp_path / "run"
    failed = runner.invoke(
        app, ["train", "--model", "ann", "--data", str(tmp_path / "missing.npz"), "--out", str(out)]
    )
    assert failed.exit_code == 1
    assert not out.exists()
    # A directory created but never trained (a run killed while loading its data) is reused.
    open_for_training(out, _config(model="cnn"), resume=False)
    assert run_state(out) == "created"
    run = fit(_config(model="ann", epochs=1), out, data=small_mnist)
    assert read_config(run).model == "ann" and run_state(run) == "finished"


def test_unfinished_runs_are_refused_or_finished(tmp_path: Path, small_mnist: DigitData) -> None:
    stopped = fit(_config(model="ann"), tmp_path / "stopped", data=small_mnist, stop_after_epoch=1)
    image = tmp_path / "seven.png"
    Image.fromarray(small_mnist.x_test[0]).save(image)
    # Every consumer of a run refuses it, in one line that says how to finish it.
    for command in (
        ["evaluate", str(stopped)],
        ["report", str(stopped), "--out", str(tmp_path / "report")],
        ["explain", str(stopped), str(image)],
        ["predict", str(stopped), str(image)],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        assert "training has not finished" in result.output, command
        assert f"--resume --out {stopped}" in result.output.replace("\n", ""), command
    # Export writes the best epoch so far (that is how a run finishes) and says it is unfinished.
    exported = runner.invoke(app, ["export", str(stopped), "--out", str(tmp_path / "x.onnx")])
    assert exported.exit_code == 0, exported.output
    assert "training has not finished" in exported.output
    # A run killed between metrics.json and model.onnx: not finished, for ensemble and compare.
    config = _config(model="ann", epochs=1)
    run = fit(config, tmp_path / "killed", data=small_mnist)
    (run / "model.onnx").unlink()
    (run / "finished.json").unlink()
    assert (run / "metrics.json").exists() and run_state(run) == "training"
    with pytest.raises(RunError, match="training has not finished"):
        build_ensemble([run], tmp_path / "ensemble", data=small_mnist)
    assert train_or_reuse(config, run, data=small_mnist) == run
    assert (run / "model.onnx").exists() and run_state(run) == "finished"


def test_damaged_files_are_named(tmp_path: Path, small_mnist: DigitData) -> None:
    run = fit(_config(model="ann", epochs=1), tmp_path / "run", data=small_mnist)
    weights = run / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o644
    assert not list(run.glob(".*.tmp"))
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(RunError, match="model.safetensors: not a readable safetensors file"):
        load_model(run)
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 1
    assert "model.safetensors" in result.output and "Traceback" not in result.output
    (run / "metrics.json").write_text('{"model": "ann",\n')
    with pytest.raises(RunError, match="metrics.json: not valid JSON"):
        read_metrics(run)
    (run / "config.json").write_text("{")
    with pytest.raises(RunError, match="config.json: not valid JSON"):
        read_config(run)


def test_stale_temporary_files_are_removed_on_reopening(
    tmp_path: Path, small_mnist: DigitData
) -> None:
    config = _config(model="ann")
    run = fit(config, tmp_path / "run", data=small_mnist, stop_after_epoch=1)
    stale = run / ".model.safetensors.abc123.tmp"
    stale.write_bytes(b"half a file")
    fit(config, run, data=small_mnist, resume=True)
    assert not stale.exists()
    assert remove_stale_temporaries(run) == []


def test_the_training_loop_imports_nothing_above_it() -> None:
    code = (
        "import sys, digits.train; "
        "print(sorted(m for m in sys.modules if m in {'digits.export', 'digits.evaluate', "
        "'digits.ensemble', 'digits.calibration', 'digits.finish', 'digits.compare'}))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


# --- devices --------------------------------------------------------------------------------


def test_devices_are_resolved_and_missing_ones_named() -> None:
    from digits.devices import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu") or (
        resolve_device("auto").type == "mps"
    )
    with pytest.raises(ValueError, match="--device 'tpu' is not one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: no CUDA device is available here"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_a_missing_gpu_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu-run"
    options = ["--model", "ann", "--epochs", "1", "--limit", "600", "--out", str(out)]
    result = runner.invoke(app, ["train", *options, "--device", "cuda"])
    assert result.exit_code == 1
    assert "--device cuda: no CUDA device" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_the_device_is_recorded_in_the_metrics(tmp_path: Path, small_mnist: DigitData) -> None:
    run = fit(_config(model="ann", epochs=1), tmp_path / "cpu", data=small_mnist, device="cpu")
    assert read_metrics(run)["device"] == "cpu"
    assert read_metrics(run)["precision"] in ("fp32", "bf16")


@pytest.mark.parametrize("images", [64, 128, 256, 320])
def test_one_cycle_over_a_handful_of_steps_trains(
    tmp_path: Path, small_mnist: DigitData, images: int
) -> None:
    # 1 to 5 steps in all: torch's one-cycle phases would be empty (a division by zero).
    config = _config(model="ann", epochs=1, limit=images, schedule="onecycle", val_split=0.0)
    run = fit(config, tmp_path / "run", data=small_mnist)
    assert run_state(run) == "finished"
    lrs = [float(row.split(",")[5]) for row in (run / "history.csv").read_text().splitlines()[1:]]
    assert lrs and all(0 <= lr <= config.lr for lr in lrs)
