"""The service as a real process: torch never loaded, and `digits serve` starting and stopping
cleanly on loopback."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
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
def test_digits_serve_starts_answers_and_stops(
    trained_cnn_run: Path, workers: int, tmp_path: Path
) -> None:
    port = free_port()
    store = f"sqlite:///{tmp_path / 'corrections.sqlite'}"
    command = [str(DIGITS), "serve", str(trained_cnn_run), "--workers", str(workers)]
    command += ["--feedback", store]  # reaches every worker
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
        kept = httpx2.post(
            f"{base}/api/feedback",
            files={"file": ("one.png", one_png(), "image/png")},
            data={"label": "7"},
            timeout=10,
        )
        assert kept.status_code == 201, kept.text
        if workers == 1:
            # The server process itself has not mapped torch's library either.
            maps = Path(f"/proc/{process.pid}/maps").read_text()
            assert "libtorch" not in maps
    finally:
        output = stop(process) if process.poll() is None else ""
    assert process.returncode == 0, output
    assert f"on http://127.0.0.1:{port}/" in output
    from digits.feedback import open_store

    with open_store(store, create=False) as corrections:
        assert corrections.count() == 1
    assert "Shutting down" in output or "Finished server process" in output


# --- connections, on a real server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_server(trained_cnn_run: Path) -> Iterator[int]:
    """`digits serve` on loopback with short deadlines, so that the tests wait seconds."""
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DIGITS_SERVE_HEADER_TIMEOUT_S": "1",
        "DIGITS_SERVE_BODY_TIMEOUT_S": "2",
        "DIGITS_SERVE_KEEP_ALIVE_S": "1",
        "DIGITS_SERVE_MAX_CONNECTIONS": "3",
    }
    command = [str(DIGITS), "serve", str(trained_cnn_run), "--port", str(port)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/api/health", process)
        yield port
    finally:
        if process.poll() is None:
            stop(process)


def raw_socket(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    return connection


def read_until_closed(connection: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def json_of(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    parsed: dict = json.loads(body)
    return parsed


def test_a_20_mb_upload_from_http_client_gets_the_json_413(guarded_server: int) -> None:
    # http.client sends the whole body before it reads: the server must swallow it, not reset.
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\0" * (20 * 1024 * 1024)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    connection = http.client.HTTPConnection("127.0.0.1", guarded_server, timeout=30)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    connection.request("POST", "/api/predict", body=body, headers=headers)
    response = connection.getresponse()
    assert response.status == 413
    answer = json.loads(response.read())
    assert answer["error"] == "too_large"
    assert f"{len(body)} bytes" in answer["detail"]


def test_head_answers_200_without_a_body(guarded_server: int) -> None:
    for path in ("/", "/api/health"):
        connection = http.client.HTTPConnection("127.0.0.1", guarded_server, timeout=10)
        connection.request("HEAD", path)
        response = connection.getresponse()
        assert response.status == 200, path
        assert response.read() == b""


def test_a_malformed_request_gets_a_json_400(guarded_server: int) -> None:
    with raw_socket(guarded_server) as connection:
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer, _ = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json_of(answer)["error"] == "bad_request"


@pytest.mark.parametrize("sent", [b"", b"POST /api/predict HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_requests_are_closed(guarded_server: int, sent: bytes) -> None:
    with raw_socket(guarded_server) as connection:
        connection.sendall(sent)
        answer, seconds = read_until_closed(connection)
    assert answer == b""
    assert 0.5 < seconds < 5  # the 1 s header deadline, not forever


def test_an_idle_keep_alive_connection_is_closed(guarded_server: int) -> None:
    with raw_socket(guarded_server) as connection:
        connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer, seconds = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 200")
    assert seconds < 5


def test_a_body_at_one_byte_a_second_gets_408(guarded_server: int) -> None:
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    with raw_socket(guarded_server) as connection:
        connection.sendall(head)
        started = time.monotonic()
        connection.settimeout(0.5)
        answer = b""
        while time.monotonic() - started < 10 and not answer:
            try:
                connection.sendall(b" ")
                answer = connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        seconds = time.monotonic() - started
        # The head and the body can come in separate packets: the rest, up to the close.
        connection.settimeout(2)
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json_of(answer)["error"] == "timeout"
    assert seconds < 5  # the 2 s body deadline


def test_connections_over_the_limit_get_a_json_503(guarded_server: int) -> None:
    with raw_socket(guarded_server) as first, raw_socket(guarded_server) as second:
        time.sleep(0.1)  # both accepted: with this one, the limit of 3 is reached
        with raw_socket(guarded_server) as third:
            third.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer, _ = read_until_closed(third)
        assert first.fileno() >= 0 and second.fileno() >= 0
    assert answer.startswith(b"HTTP/1.1 503")
    assert json_of(answer)["error"] == "busy"


def test_a_request_head_over_16_kb_gets_a_json_400(guarded_server: int) -> None:
    with raw_socket(guarded_server) as connection:
        connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"a" * 20_000)
        answer, _ = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 400")
    assert "16384 bytes" in json_of(answer)["detail"]


def test_a_body_shorter_than_its_content_length_gets_408(guarded_server: int) -> None:
    # The client claims 5 000 bytes, sends 100 and waits: the body deadline answers it.
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    with raw_socket(guarded_server) as connection:
        connection.sendall(head + b"{" + b" " * 99)
        answer, seconds = read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json_of(answer)["error"] == "timeout"
    assert seconds < 5


def test_a_body_longer_than_its_content_length_gets_json_4xx(guarded_server: int) -> None:
    # The client claims 10 bytes and sends a whole JSON body: the service reads 10 bytes (not
    # valid JSON: 4xx), and what follows is no request (a JSON 400), never a 5xx.
    body = json.dumps({"pixels": [[0] * 28] * 28}).encode()
    head = (
        b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10\r\n\r\n"
    )
    with raw_socket(guarded_server) as connection:
        connection.sendall(head + body)
        answer, _ = read_until_closed(connection)
    responses = [b"HTTP/1.1 " + part for part in answer.split(b"HTTP/1.1 ") if part]
    assert responses, answer
    for response in responses:
        assert 400 <= int(response.split()[1]) < 500, response
        assert json_of(response)["error"]


# --- several workers -----------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """User and system time a process has used so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def worker_pids(supervisor: int) -> list[int]:
    """The worker processes of a uvicorn supervisor (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT balances only on Linux")
def test_connections_opened_together_reach_every_worker(trained_cnn_run: Path) -> None:
    # A client pool opening its connections at once: with one socket shared by the workers, the
    # first to wake accepted them all and the other idled (half the throughput). Each worker
    # has its own socket now, and the kernel spreads the connections over them.
    port = free_port()
    command = [str(DIGITS), "serve", str(trained_cnn_run), "--workers", "2", "--port", str(port)]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum("Application startup complete" in line for line in lines) < 2:
            assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
            time.sleep(0.1)
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        before = [cpu_ticks(pid) for pid in workers]
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(16)]
        for connection in connections:
            connection.connect()
        body = one_png()
        for _ in range(10):
            for connection in connections:
                connection.request("POST", "/api/predict", body, {"Content-Type": "image/png"})
            for connection in connections:
                assert connection.getresponse().read()
        used = [cpu_ticks(pid) - start for pid, start in zip(workers, before, strict=True)]
        # 160 drawings take ~2 ticks of 10 ms each per 10 drawings: both workers took a share.
        assert min(used) >= 0.2 * max(used), used
        for connection in connections:
            connection.close()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)
