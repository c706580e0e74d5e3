"""The service as a real process: torch never loaded, and `digits serve` starting and stopping
cleanly on loopback."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx2
import pytest
from PIL import Image, ImageDraw

DIGITS = Path(sys.executable).with_name("digits")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_png() -> bytes:
    """A hand-drawn-looking 1: a thick dark bar on white."""
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([(100, 30), (100, 170)], fill=0, width=16)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_serving_path_never_imports_torch(trained_cnn_run: Path) -> None:
    # A fresh interpreter: this test process has torch loaded by the training fixture.
    script = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from digits.serve import Settings, create_app
        from digits.serve.app import app_from_environment
        import digits.cli.serve

        app = create_app(Settings(model={str(trained_cnn_run)!r}))
        with TestClient(app) as client:
            files = {{"file": ("one.png", {one_png()!r}, "image/png")}}
            assert client.post("/api/predict", files=files).status_code == 200
            assert client.post("/api/read", files=files).status_code == 200
            assert client.get("/api/model").status_code == 200
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torch")
        print("torch modules:", loaded)
        assert not loaded
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "torch modules: []" in result.stdout


def wait_for_health(url: str, process: subprocess.Popen[str], seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited early with status {process.returncode}")
        try:
            response = httpx2.get(url, timeout=1)
            if response.status_code == 200:
                body: dict = response.json()
                return body
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"no answer from {url} within {seconds} s")


def stop(process: subprocess.Popen[str]) -> str:
    """Ask the server to stop as Ctrl+C would; it must exit by itself, promptly and cleanly."""
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the server did not stop within 20 s of SIGINT")
    return output


@pytest.mark.parametrize("workers", [1, 2])
def test_digits_serve_starts_answers_and_stops(trained_cnn_run: Path, workers: int) -> None:
    port = free_port()
    command = [str(DIGITS), "serve", str(trained_cnn_run), "--workers", str(workers)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if workers == 1:
        command += ["--port", str(port)]
    else:  # an option left out comes from the environment
        environment["DIGITS_SERVE_PORT"] = str(port)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_for_health(f"{base}/api/health", process)
        assert health["status"] == "ok"
        assert health["model"] == "cnn"
        answer = httpx2.post(
            f"{base}/api/predict", files={"file": ("one.png", one_png(), "image/png")}, timeout=10
        )
        assert answer.status_code == 200
        assert answer.json()["digit"] == 1
        page = httpx2.get(f"{base}/", timeout=10)
        assert 'data-testid="canvas"' in page.text
        if workers == 1:
            # The server process itself has not mapped torch's library either.
            maps = Path(f"/proc/{process.pid}/maps").read_text()
            assert "libtorch" not in maps
    finally:
        output = stop(process) if process.poll() is None else ""
    assert process.returncode == 0, output
    assert f"on http://127.0.0.1:{port}/" in output
    assert "Shutting down" in output or "Finished server process" in output
