"""Training in two processes with DistributedDataParallel (gloo, on loopback), launched the way
a user would: `digits train --nproc 2`, which becomes `torchrun --nproc-per-node 2 -m digits
train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from digits.run import read_config, read_metrics, run_state

DIGITS = Path(sys.executable).with_name("digits")


def train(*options: str) -> subprocess.CompletedProcess[str]:
    # One thread per process: the two share the machine's two cores.
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(DIGITS), "train", "--quiet", *options],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )


def test_two_processes_train_one_run_as_accurate_as_one(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    options = ["--model", "cnn", "--epochs", "1", "--lr", "0.004", "--schedule", "onecycle"]
    result = train(*options, "--val-split", "0", "--nproc", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    # Rank 0 alone wrote the run and reported it.
    assert result.stdout.count("run saved to") == 1, result.stdout
    assert run_state(out) == "finished"
    assert read_config(out).world_size == 2
    assert not list(out.glob(".*.tmp"))
    # One epoch of the seed cnn: 98.7 % in one process (tests/conftest.py, trained_cnn_run).
    assert read_metrics(out)["test"]["accuracy"] >= 0.985
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 2  # a header and one epoch, written once


def test_a_two_process_run_resumes_with_two_and_only_two(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    options = ["--model", "ann", "--limit", "6000", "--schedule", "constant", "--out", str(out)]
    first = train(*options, "--epochs", "1", "--nproc", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    alone = train("--resume", "--out", str(out), "--epochs", "2")
    assert alone.returncode == 1
    assert "trained by 2 process(es); resume it with as many" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1
    longer = train("--resume", "--out", str(out), "--epochs", "2", "--nproc", "2")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert read_config(out).epochs == 2 and read_config(out).world_size == 2
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    assert run_state(out) == "finished"
