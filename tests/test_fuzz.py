"""Property-based tests: whatever arrives, only the documented error escapes.

Random and corrupted images of every format and mode through `preprocess`, damaged data files
through the readers, and random requests through the HTTP app. Bounded and derandomised, so that
CI runs the same few hundred cases in seconds; benchmarks/fuzz.py runs the same strategies for
minutes (docs/reliability.md).
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from digits.data.readers import DataFormatError, read_idx, read_kaggle_csv, read_npz
from digits.preprocess import ImageError, Preprocessed, preprocess
from digits.serve import Settings, create_app
from tests.helpers import idx_bytes, kaggle_csv, tiny_model

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK", "LAB", "YCbCr")
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _can_save(fmt: str, mode: str) -> bool:
    try:
        Image.new(mode, (2, 2)).save(io.BytesIO(), fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


# Every (format, mode) pair Pillow writes as it is: a mode a format cannot hold is never on disk.
PAIRS = [(fmt, mode) for fmt in FORMATS for mode in MODES if _can_save(fmt, mode)]


def _pixels(mode: str, width: int, height: int, seed: int, kind: str) -> Image.Image:
    """An image of `mode` whose content is noise, a flat field, or dark strokes on light."""
    rng = np.random.default_rng(seed)
    if kind == "flat":
        grey = np.full((height, width), rng.integers(0, 256), dtype=np.uint8)
    elif kind == "strokes":
        grey = np.full((height, width), 235, dtype=np.uint8)
        for _ in range(3):
            row, col = rng.integers(0, height), rng.integers(0, width)
            grey[row : row + max(1, height // 8), :] = 20
            grey[:, col : col + max(1, width // 8)] = 20
    else:
        grey = rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    base = Image.fromarray(grey)
    if mode in ("I;16", "I"):
        scale = 257 if mode == "I;16" else int(rng.integers(1, 40000))
        return Image.fromarray((grey.astype(np.int32) * scale).astype(np.int32)).convert(mode)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / (255.0 if seed % 2 else 1.0))
    if mode == "LAB":
        return base.convert("RGB").convert("LAB")
    return base.convert(mode)


@st.composite
def images(draw: st.DrawFn, large: bool = False) -> tuple[str, str, Image.Image]:
    fmt, mode = draw(st.sampled_from(PAIRS))
    top = 2000 if large else 160
    side = st.one_of(st.integers(1, 40), st.integers(1, top))
    width, height = draw(side), draw(side)
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "flat", "strokes"]))
    return fmt, mode, _pixels(mode, width, height, seed, kind)


def _encode(fmt: str, image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _lie_about_size(data: bytes, width: int, height: int) -> bytes:
    """The header's width and height rewritten (PNG's IHDR, JPEG's frame, BMP, GIF), the pixel
    data left as it was: a file that claims more, or fewer, pixels than it holds."""
    out = bytearray(data)
    if data.startswith(b"\x89PNG") and len(out) >= 33:
        out[16:24] = struct.pack(">II", width, height)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = data.find(marker)
            if at > 0 and at + 9 <= len(out):
                out[at + 5 : at + 9] = struct.pack(">HH", height, width)
                break
    elif data.startswith(b"BM") and len(out) >= 26:
        out[18:26] = struct.pack("<ii", width, height)
    elif data.startswith(b"GIF") and len(out) >= 10:
        out[6:10] = struct.pack("<HH", width, height)
    return bytes(out)


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """The bytes cut short, bit-flipped, given a lying header, or several of these."""
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "flip", "lie", "splice"]))
        if how == "truncate" and data:
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif how == "flip" and data:
            out = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, len(out) - 1))
                out[at] ^= 1 << draw(st.integers(0, 7))
            data = bytes(out)
        elif how == "lie":
            dims = st.one_of(st.integers(0, 16), st.integers(0, 65535))
            data = _lie_about_size(data, draw(dims), draw(dims))
        else:
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(max_size=64)) + data[at:]
    return data


@st.composite
def image_bytes(draw: st.DrawFn, large: bool = False) -> bytes:
    """A file of any format and mode, intact or damaged, or bytes that are no image at all."""
    fmt, _, image = draw(images(large))
    data = _encode(fmt, image)
    choice = draw(st.sampled_from(["intact", "damaged", "damaged", "garbage"]))
    if choice == "damaged":
        return draw(damaged(data))
    if choice == "garbage":
        return draw(st.binary(max_size=256))
    return data


def check_preprocessed(result: Preprocessed) -> None:
    if result.pixels is not None:
        assert result.pixels.dtype == np.uint8 and result.pixels.shape == (28, 28)
        assert result.reason is None
    else:
        assert result.reason is not None and result.reason.startswith("no digit"), result.reason


def preprocess_or_refuse(source: bytes | Image.Image) -> Preprocessed | None:
    """`preprocess` on one input: its result, or None when it raised ImageError (anything else
    propagates and fails the test)."""
    try:
        result = preprocess(source)
    except ImageError as exc:
        refusal = str(exc)
    else:
        event("a digit" if result.ok else "no digit")
        return result
    assert refusal.startswith("<"), f"the message names no input: {refusal}"
    event("refused")
    return None


@BOUNDED
@given(images())
def test_every_format_and_mode_decoded_gives_pixels_or_no_digit(
    sample: tuple[str, str, Image.Image],
) -> None:
    fmt, _, image = sample
    for source in (_encode(fmt, image), image):
        result = preprocess_or_refuse(source)
        if result is not None:
            check_preprocessed(result)


@BOUNDED
@given(image_bytes())
def test_damaged_image_bytes_raise_only_image_error(data: bytes) -> None:
    result = preprocess_or_refuse(data)
    if result is not None:
        check_preprocessed(result)


def test_lab_and_float_tiffs_are_read() -> None:
    strokes = _pixels("L", 96, 96, 1, "strokes")
    lab = _encode("TIFF", strokes.convert("RGB").convert("LAB"))
    unit = _encode("TIFF", Image.fromarray(np.asarray(strokes, dtype=np.float32) / 255.0))
    for data in (lab, unit):
        result = preprocess(data)
        assert result.ok, result.reason


def test_jpeg_claiming_more_pixels_than_it_holds_is_truncated() -> None:
    data = _lie_about_size(_encode("JPEG", _pixels("L", 112, 112, 3, "strokes")), 6000, 6000)
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess(data, name="lying.jpg")


# --- readers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # Module-scoped: hypothesis reruns a test body many times within one function-scoped fixture.
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def _npz_bytes(count: int) -> bytes:
    rng = np.random.default_rng(count)
    arrays = {
        "x_train": rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, count, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (count, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, count, dtype=np.uint8),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _csv_bytes(count: int) -> bytes:
    rng = np.random.default_rng(count)
    pixels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8) if count % 2 else None
    return kaggle_csv(pixels, labels).encode()


def _idx(count: int) -> bytes:
    array = np.random.default_rng(count).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    return idx_bytes(array)


def _idx_gz(count: int) -> bytes:
    return gzip.compress(_idx(count), mtime=0)


READERS: dict[str, tuple[str, Callable[[int], bytes], Callable[[Path], object]]] = {
    "csv": ("data.csv", _csv_bytes, read_kaggle_csv),
    "idx": ("images-idx3-ubyte", _idx, read_idx),
    "idx.gz": ("images-idx3-ubyte.gz", _idx_gz, read_idx),
    "npz": ("mnist.npz", _npz_bytes, read_npz),
}
KNOWN_CRASHES: set[str] = set()
"""Kinds whose damaged files still escape as another error: read intact here, damaged in
benchmarks/fuzz.py, which counts them (none left)."""


@st.composite
def data_files(draw: st.DrawFn, every_kind: bool = False) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(READERS)))
    _, build, _ = READERS[kind]
    data = build(draw(st.integers(0, 4)))
    if draw(st.booleans()) and (every_kind or kind not in KNOWN_CRASHES):
        data = draw(damaged(data))
    return kind, data


@BOUNDED
@given(data_files())
def test_damaged_data_files_raise_only_data_format_error(
    scratch: Path, sample: tuple[str, bytes]
) -> None:
    kind, data = sample
    name, _, read = READERS[kind]
    path = scratch / name
    path.write_bytes(data)
    try:
        read(path)
    except DataFormatError as exc:
        refusal = str(exc)
    else:
        event(f"{kind} read")
        return
    assert str(path) in refusal, f"the message names no file: {refusal}"
    event(f"{kind} refused")


# --- the HTTP app ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(scratch: Path) -> Iterator[TestClient]:
    app = create_app(Settings(model=tiny_model(scratch / "tiny.onnx")))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
MEDIA = [
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "application/json",
    "application/json; charset=latin-1",
    "image/png",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
    "\x7f; ;=",
]


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


@st.composite
def requests(draw: st.DrawFn, large: bool = False) -> dict[str, Any]:
    """One request: a path and method, and a body of some shape, right or wrong."""
    # Mostly the two routes that take bodies, by POST; now and then a wrong route or method.
    path = draw(st.sampled_from(["/api/predict"] * 6 + ["/api/read"] * 4 + ["/api/health", "/x"]))
    method = draw(st.sampled_from(["POST"] * 16 + ["GET", "PUT", "HEAD"]))
    shape = draw(st.sampled_from(["multipart", "json-image", "json-pixels", "json-any", "raw"]))
    request: dict[str, Any] = {"method": method, "url": path}
    if shape == "multipart":
        field = draw(st.sampled_from(["file", "file", "image", ""]))
        media = draw(st.sampled_from(["image/png", "text/plain", ""]))
        request["files"] = {field: ("x.png", draw(image_bytes(large)), media)}
        if draw(st.booleans()):
            request["data"] = {draw(st.text(max_size=8)): draw(st.text(max_size=16))}
    elif shape == "json-image":
        image = _b64(draw(image_bytes(large)))
        wrapped = draw(st.sampled_from(["{}", "data:image/png;base64,{}", "data:,{}", "{}!"]))
        request["json"] = {"image": wrapped.format(image)}
    elif shape == "json-pixels":
        # Sent as text: NaN and Infinity are not JSON, and the client would refuse to send them.
        cell = st.one_of(st.integers(-5, 300), st.floats(), st.text(max_size=2))
        size = draw(st.sampled_from([784, 783, 0, 28]))
        pixels = draw(st.lists(cell, min_size=size, max_size=size))
        request["content"] = json.dumps({"pixels": pixels}).encode()
        request["headers"] = {"content-type": "application/json"}
    elif shape == "json-any":
        request["content"] = json.dumps(draw(JSON_VALUES)).encode()
        request["headers"] = {"content-type": "application/json"}
    else:
        request["content"] = draw(st.binary(max_size=512))
        request["headers"] = {"content-type": draw(st.sampled_from(MEDIA))}
    return request


def check_answer(response: Any, method: str) -> None:
    status = response.status_code
    event(str(status))
    if status < 300:
        return
    assert 400 <= status < 500 or status == 503, f"{status}: {response.text[:200]}"
    if method == "HEAD":
        return  # no body by definition
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert isinstance(body.get("detail"), str), body


@BOUNDED
@given(requests())
def test_every_answer_is_2xx_or_json_4xx(client: TestClient, call: dict[str, Any]) -> None:
    response = client.request(**call)
    check_answer(response, call["method"])


def test_lab_and_float_tiffs_are_read_by_the_service(client: TestClient) -> None:
    strokes = _pixels("L", 96, 96, 1, "strokes")
    for image in (
        strokes.convert("RGB").convert("LAB"),
        Image.fromarray(np.asarray(strokes, dtype=np.float32) / 255.0),
    ):
        for route in ("/api/predict", "/api/read"):
            files = {"file": ("scan.tif", _encode("TIFF", image), "image/tiff")}
            response = client.post(route, files=files)
            assert response.status_code == 200, response.text
            assert "no digit" not in response.text, f"{image.mode} on {route}: {response.text}"


def test_the_service_refuses_a_jpeg_claiming_more_pixels_than_it_holds(
    client: TestClient,
) -> None:
    data = _lie_about_size(_encode("JPEG", _pixels("L", 112, 112, 3, "strokes")), 6000, 6000)
    response = client.post("/api/predict", files={"file": ("lying.jpg", data, "image/jpeg")})
    assert response.status_code == 400, response.text
    assert "truncated or corrupt" in response.json()["detail"]


@pytest.mark.parametrize("size", [(1000, 20), (472, 11), (20, 1000)])
def test_long_thin_strokes_are_prepared_without_error(size: tuple[int, int]) -> None:
    # A whole-number shrink factor larger than the short side once trimmed the crop to nothing.
    image = Image.new("L", size, 255)
    width, height = size
    ImageDraw.Draw(image).line([(2, 2), (width - 3, height - 3)], fill=0, width=3)
    result = preprocess(image, name="thin.png")
    assert result.ok or (result.reason or "").startswith("no digit")


def test_shrinking_a_crop_thinner_than_the_shrink_factor_keeps_it() -> None:
    from digits.preprocess import _resize_longest

    resized = _resize_longest(np.ones((5, 1000), dtype=np.float32), 80)
    assert resized.shape == (1, 80) or resized.shape[1] == 80
    assert resized.max() == pytest.approx(1.0)
