"""Training in two processes with DistributedDataParallel (gloo, on loopback), launched the way
a user would: `digits train --nproc 2`, which becomes `torchrun --nproc-per-node 2 -m digits
train`, and as two machines would: two torchrun agents meeting at one rendezvous."""

from __future__ import annotations

import json
import os
import socket
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
    assert read_metrics(out)["test"]["accuracy"] >= 0.8  # one epoch of ann on 6 000: ~84 %85
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_torchrun_agents_meet_at_a_rendezvous_as_two_machines_would(tmp_path: Path) -> None:
    # The README's several-machines command, once per "machine": two torchrun agents, each
    # with one process, that find each other through the c10d rendezvous on loopback.
    out = tmp_path / "two-nodes"
    endpoint = f"127.0.0.1:{_free_port()}"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    command = [
        torchrun,
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        endpoint,
        "--rdzv-id",
        "digits-test",
        "-m",
        "digits",
        "train",
        "--quiet",
        *("--model", "ann", "--limit", "6000", "--epochs", "1", "--out", str(out)),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    agents = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )
        for _ in range(2)
    ]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    for agent, (_, stderr) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, stderr[-2000:]
    # One of the two became rank 0 and wrote the run; the other wrote nothing of it.
    assert sum(stdout.count("run saved to") for stdout, _ in outputs) == 1
    assert run_state(out) == "finished"
    assert read_config(out).world_size == 2
    assert read_metrics(out)["test"]["accuracy"] >= 0.8  # one epoch of ann on 6 000: ~84 %
