"""The HTTP API through FastAPI's TestClient: every route, every kind of bad input, every limit.

The model is the session's trained seed cnn run (exported to model.onnx); the images are real MNIST
test digits, printed dark on light paper at photo size, as a person would upload them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from digits import __version__
from digits.data import DigitData
from digits.predictor import Predictor
from digits.serve import Settings, create_app


def paper(pixels: np.ndarray, scale: int = 6, margin: int = 40) -> Image.Image:
    """An MNIST image (ink bright on dark) as dark ink on white paper, enlarged like a photo."""
    ink = np.kron(255 - pixels, np.ones((scale, scale), dtype=np.uint8))
    return Image.fromarray(np.pad(ink, margin, constant_values=255))


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def upload(data: bytes, name: str = "digit.png", media: str = "image/png") -> dict[str, object]:
    return {"files": {"file": (name, data, media)}}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height but carries almost no data: a decompression bomb's
    header. Only a service that checks the size before decoding refuses it cheaply."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def app(trained_cnn_run: Path) -> FastAPI:
    return create_app(Settings(model=trained_cnn_run))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def predictor(trained_cnn_run: Path) -> Predictor:
    return Predictor.from_path(trained_cnn_run)


@pytest.fixture(scope="module")
def sure_digits(mnist: DigitData, predictor: Predictor) -> tuple[np.ndarray, np.ndarray]:
    """Ten test images, one of each class, that the model itself classifies correctly."""
    images, labels = mnist.x_test[:500], mnist.y_test[:500]
    correct = predictor.predict_arrays(images).argmax(1) == labels
    chosen = [int(np.flatnonzero(correct & (labels == digit))[0]) for digit in range(10)]
    return images[chosen], labels[chosen]


def decode_preview(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))))


# --- service metadata, page and documentation ---------------------------------------------------


def test_health(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["model"] == "cnn"
    assert body["version"] == __version__
    assert body["uptime_s"] >= 0


def test_model_info_matches_the_run(client: TestClient, trained_cnn_run: Path) -> None:
    metrics = json.loads((trained_cnn_run / "metrics.json").read_text())
    body = client.get("/api/model").json()
    assert body["name"] == metrics["model"] == "cnn"
    assert body["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert body["calibration"]["temperature"] > 0
    assert body["calibration"]["source"]
    assert body["parameters"] == metrics["parameters"]
    assert body["source"] == "model.onnx"
    assert body["threshold"] == Settings().threshold
    assert body["version"] == __version__


def test_page_and_its_assets_come_from_this_server(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for testid in ("canvas", "clear", "undo", "upload", "prediction", "probabilities", "preview"):
        assert f'data-testid="{testid}"' in html
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in html
        response = client.get(asset)
        assert response.status_code == 200
        # Nothing is fetched from another host: the page must work offline.
        assert "https://" not in response.text
        assert "http://" not in response.text
    assert "https://" not in html
    assert "http://" not in html


def test_docs_page_is_offline_and_lists_every_route(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "<script" not in docs.text
    for path in ("/api/predict", "/api/read", "/api/health", "/api/model"):
        assert path in docs.text
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "image/*", "application/json"}
    assert "PredictResponse" in schema["components"]["schemas"]


def test_unknown_route_and_wrong_method_answer_json(client: TestClient) -> None:
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = client.get("/api/predict")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


# --- /api/predict ---------------------------------------------------------------------------------


def test_predict_uploaded_photos(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sure_digits
    answers = []
    for pixels in images:
        response = client.post("/api/predict", **upload(encode(paper(pixels))))
        assert response.status_code == 200
        body = response.json()
        assert len(body["probabilities"]) == 10
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert body["confidence"] == pytest.approx(max(body["probabilities"]))
        assert body["model"] == "cnn"
        preview = decode_preview(body["preview"])
        assert preview.shape == (28, 28)
        assert preview.max() > 200  # ink bright on dark, as the model saw it
        answers.append(body["digit"])
    # Preparation is not the identity (the digit is re-cropped and re-centred), so allow one miss.
    assert sum(a == int(label) for a, label in zip(answers, labels, strict=True)) >= 9


def test_predict_json_image_matches_multipart(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    data = encode(paper(sure_digits[0][3]), "JPEG", quality=90)
    multipart = client.post("/api/predict", **upload(data, "photo.jpg", "image/jpeg")).json()
    plain = client.post("/api/predict", json={"image": base64.b64encode(data).decode()}).json()
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    as_url = client.post("/api/predict", json={"image": data_url}).json()
    assert multipart == plain == as_url
    assert multipart["digit"] == int(sure_digits[1][3])


def test_predict_pixels_go_to_the_model_unchanged(
    client: TestClient, mnist: DigitData, predictor: Predictor
) -> None:
    for index in range(5):
        pixels = mnist.x_test[index]
        body = client.post("/api/predict", json={"pixels": pixels.ravel().tolist()}).json()
        expected = predictor.predict_arrays(pixels[None])[0]
        assert body["probabilities"] == pytest.approx(expected.tolist(), abs=1e-6)
        assert np.array_equal(decode_preview(body["preview"]), pixels)


def test_blank_image_is_no_digit(client: TestClient) -> None:
    blank = encode(Image.new("L", (300, 300), 255))
    body = client.post("/api/predict", **upload(blank)).json()
    assert body["digit"] is None
    assert body["answer"] == "no_digit"
    assert body["reason"].startswith("no digit")
    assert body["preview"] is None
    # Nothing reached the model: no confidence and no probabilities, rather than zeros.
    assert body["confidence"] is None
    assert body["probabilities"] is None
    pixels = client.post("/api/predict", json={"pixels": [0] * 784}).json()
    assert pixels["digit"] is None
    assert pixels["reason"].startswith("no digit")
    assert pixels["confidence"] is None
    assert pixels["probabilities"] is None


def test_low_confidence_is_not_sure(
    trained_cnn_run: Path, mnist: DigitData, predictor: Predictor
) -> None:
    probabilities = predictor.predict_arrays(mnist.x_test[:2000])
    confidence = probabilities.max(1)
    doubtful, certain = int(confidence.argmin()), int(confidence.argmax())
    threshold = float(confidence[doubtful] + confidence[certain]) / 2
    with TestClient(create_app(Settings(model=trained_cnn_run, threshold=threshold))) as client:
        unsure = client.post(
            "/api/predict", json={"pixels": mnist.x_test[doubtful].ravel().tolist()}
        ).json()
        sure = client.post(
            "/api/predict", json={"pixels": mnist.x_test[certain].ravel().tolist()}
        ).json()
        assert client.get("/api/model").json()["threshold"] == pytest.approx(threshold)
    assert unsure["digit"] is None
    assert unsure["reason"].startswith("not sure")
    assert unsure["confidence"] == pytest.approx(float(confidence[doubtful]), abs=1e-6)
    assert sure["digit"] == int(probabilities[certain].argmax())
    assert sure["reason"] is None


def test_transparent_and_animated_images(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, label = sure_digits[0][8], int(sure_digits[1][8])
    ink = np.kron(pixels, np.ones((6, 6), dtype=np.uint8))
    # Black ink on a fully transparent background, as a canvas export gives.
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = ink
    transparent = client.post("/api/predict", **upload(encode(Image.fromarray(rgba)))).json()
    assert transparent["digit"] == label
    frames = [paper(pixels), Image.new("L", paper(pixels).size, 255)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    animated = client.post("/api/predict", **upload(gif.getvalue(), "a.gif", "image/gif")).json()
    assert animated["digit"] == label  # the first frame is the one read


def test_content_decides_not_the_file_name(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    jpeg = encode(paper(sure_digits[0][5]), "JPEG")
    named_wrong = client.post("/api/predict", **upload(jpeg, "digit.txt", "text/plain"))
    assert named_wrong.status_code == 200
    assert named_wrong.json()["digit"] == int(sure_digits[1][5])
    text = client.post("/api/predict", **upload(b"just some text\n" * 20, "digit.png"))
    assert text.status_code == 415
    assert text.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"GIF89a" + b"\x00" * 40, 415, "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", 415, "not an image"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 415, "not an image"),
    ],
)
def test_bad_files_are_4xx_with_a_reason(
    client: TestClient, data: bytes, status: int, words: str
) -> None:
    response = client.post("/api/predict", **upload(data))
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_truncated_image_is_bad_input(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    whole = encode(paper(sure_digits[0][0]))
    response = client.post("/api/predict", **upload(whole[: len(whole) // 2]))
    assert response.status_code == 400
    assert response.json()["error"] == "bad_input"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "exactly one"),
        ({"image": "aGVsbG8=", "pixels": [0] * 784}, "exactly one"),
        ({"pixels": [0] * 783}, "784"),
        ({"pixels": [0] * 783 + [256]}, "0 to 255"),
        ({"pixels": [0] * 783 + [-1]}, "0 to 255"),
        ({"pixels": ["x"] * 784}, "pixels"),
        ({"pixels": "0" * 784}, "pixels"),
        ({"image": 42}, "image"),
    ],
)
def test_malformed_json_is_422(client: TestClient, body: dict[str, object], words: str) -> None:
    response = client.post("/api/predict", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert words in response.json()["detail"]


def test_bad_json_and_base64(client: TestClient) -> None:
    broken = client.post(
        "/api/predict", content=b'{"image": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    not_base64 = client.post("/api/predict", json={"image": "not base64 at all!"})
    assert not_base64.status_code == 400
    assert "base64" in not_base64.json()["detail"]
    not_image = client.post("/api/predict", json={"image": base64.b64encode(b"hello").decode()})
    assert not_image.status_code == 415


def test_wrong_body_types(client: TestClient) -> None:
    plain = client.post("/api/predict", content=b"1234", headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    assert "multipart/form-data" in plain.json()["detail"]
    nothing = client.post("/api/predict")
    assert nothing.status_code == 415
    other_field = client.post("/api/predict", files={"image": ("a.png", b"x", "image/png")})
    assert other_field.status_code == 422
    assert '"file"' in other_field.json()["detail"]
    form = client.post("/api/predict", data={"file": "not a file"})
    assert form.status_code == 415  # url-encoded forms carry no file
    text_field = client.post(
        "/api/predict", data={"file": "not a file"}, files={"other": ("a.png", b"x", "image/png")}
    )
    assert text_field.status_code == 422
    two_files = client.post(
        "/api/predict",
        files=[("file", ("a.png", b"x", "image/png")), ("file", ("b.png", b"y", "image/png"))],
    )
    assert two_files.status_code == 400


# --- limits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_client(trained_cnn_run: Path) -> Iterator[TestClient]:
    settings = Settings(model=trained_cnn_run, max_upload_bytes=20_000, max_pixels=250_000)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: random grey noise."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)))


def test_upload_over_the_size_limit_is_413(strict_client: TestClient) -> None:
    big = noise_png(200)
    assert len(big) > 20_000
    response = strict_client.post("/api/predict", **upload(big))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    as_json = strict_client.post("/api/predict", json={"image": base64.b64encode(big).decode()})
    assert as_json.status_code == 413


def test_body_over_the_limit_is_refused_before_parsing(strict_client: TestClient) -> None:
    huge = b"x" * 200_000
    declared = strict_client.post(
        "/api/predict", content=huge, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    # Streamed in chunks without a Content-Length: cut off at the same limit.
    streamed = strict_client.post(
        "/api/predict",
        content=iter([huge[:50_000]] * 4),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "too_large"


def test_too_many_pixels_is_413(strict_client: TestClient) -> None:
    wide = encode(Image.new("L", (1000, 400), 255))  # small file, 400 000 pixels
    response = strict_client.post("/api/predict", **upload(wide))
    assert response.status_code == 413
    assert "pixels" in response.json()["detail"]


def test_decompression_bomb_refused_from_its_header(client: TestClient) -> None:
    bomb = png_header_only(60_000, 60_000)  # 3.6 gigapixels declared in ~1 kB
    for route in ("/api/predict", "/api/read"):
        response = client.post(route, **upload(bomb))
        assert response.status_code == 413
        assert "pixels" in response.json()["detail"]


def test_corrupted_inputs_never_fail_the_service(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    rng = np.random.default_rng(5)
    originals = [
        encode(paper(sure_digits[0][1]), fmt, **options)
        for fmt, options in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("BMP", {}))
    ]
    statuses = set()
    for trial in range(48):
        data = bytearray(originals[trial % len(originals)])
        if trial % 3 == 0:
            data = data[: rng.integers(1, len(data))]
        else:
            for position in rng.integers(0, len(data), size=1 + trial % 7):
                data[position] = rng.integers(0, 256)
        route = "/api/read" if trial % 4 == 3 else "/api/predict"
        response = client.post(route, **upload(bytes(data)))
        statuses.add(response.status_code)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.json()["detail"]
    assert statuses & {400, 415}  # some of the damage was detected, not all silently passed
    assert client.get("/api/health").json()["status"] == "ok"


# --- /api/read --------------------------------------------------------------------------------


def number_image(images: np.ndarray) -> Image.Image:
    """Digits side by side with a gap, dark on light, like a written number."""
    gap = np.zeros((28, 8), dtype=np.uint8)
    row = np.hstack([part for image in images for part in (image, gap)][:-1])
    return paper(row, scale=5)


def test_read_several_digits_left_to_right(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sure_digits
    chosen = [4, 0, 9, 7]
    picture = number_image(images[chosen])
    response = client.post("/api/read", **upload(encode(picture)))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "cnn"
    assert body["text"] == "".join(str(int(labels[i])) for i in chosen)
    lefts = [digit["box"]["x"] for digit in body["digits"]]
    assert lefts == sorted(lefts)
    for digit in body["digits"]:
        box = digit["box"]
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= picture.width
        assert box["y"] >= 0
        assert box["y"] + box["height"] <= picture.height
        assert decode_preview(digit["preview"]).shape == (28, 28)
        assert len(digit["probabilities"]) == 10
    as_json = client.post(
        "/api/read", json={"image": base64.b64encode(encode(picture)).decode()}
    ).json()
    assert as_json == body


def test_read_boxes_are_in_the_pixels_sent(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    # A large JPEG is decoded at reduced scale; the boxes must still be in the original's pixels.
    picture = number_image(sure_digits[0][[1, 2]])
    picture = picture.resize((picture.width * 6, picture.height * 6))
    body = client.post("/api/read", **upload(encode(picture, "JPEG", quality=90))).json()
    assert len(body["digits"]) == 2
    right_edge = max(d["box"]["x"] + d["box"]["width"] for d in body["digits"])
    assert 1800 < right_edge <= 2400


def test_read_blank_and_limit(
    client: TestClient, trained_cnn_run: Path, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    blank = client.post("/api/read", **upload(encode(Image.new("L", (400, 200), 255)))).json()
    assert blank["digits"] == []
    assert blank["text"] == ""
    assert blank["reason"].startswith("no digit")
    with TestClient(create_app(Settings(model=trained_cnn_run, max_digits=2))) as capped:
        picture = number_image(sure_digits[0][[1, 2, 3, 4]])
        body = capped.post("/api/read", **upload(encode(picture))).json()
    assert len(body["digits"]) == 2
    assert "first 2 of 4" in body["reason"]
    assert client.post("/api/read", json={"pixels": [0] * 784}).status_code == 422


# --- CORS and settings --------------------------------------------------------------------------


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/api/health", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/api/predict",
        headers={"Origin": "http://elsewhere.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_when_configured(trained_cnn_run: Path) -> None:
    settings = Settings(model=trained_cnn_run, cors_origins=["http://allowed.test"])
    with TestClient(create_app(settings)) as client:
        allowed = client.get("/api/health", headers={"Origin": "http://allowed.test"})
        other = client.get("/api/health", headers={"Origin": "http://other.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://allowed.test"
    assert "access-control-allow-origin" not in other.headers


def test_settings_from_the_environment(
    trained_cnn_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITS_SERVE_MODEL", str(trained_cnn_run))
    monkeypatch.setenv("DIGITS_SERVE_THRESHOLD", "0.75")
    monkeypatch.setenv("DIGITS_SERVE_CORS_ORIGINS", '["http://allowed.test"]')
    from digits.serve.app import app_from_environment

    with TestClient(app_from_environment()) as client:
        info = client.get("/api/model").json()
        cors = client.get("/api/health", headers={"Origin": "http://allowed.test"})
    assert info["threshold"] == 0.75
    assert cors.headers["access-control-allow-origin"] == "http://allowed.test"
    monkeypatch.setenv("DIGITS_SERVE_THRESHOLD", "2")
    with pytest.raises(ValueError, match="threshold"):
        Settings()


def test_tiff_scans_are_read(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    # A 16-bit greyscale scan, as flatbed scanners write them.
    scan = (np.asarray(paper(sure_digits[0][6]), dtype=np.uint16) * 257).astype(np.uint16)
    body = client.post("/api/predict", **upload(encode(Image.fromarray(scan), "TIFF"))).json()
    assert body["digit"] == int(sure_digits[1][6])


def test_a_failure_inside_preparation_is_still_a_4xx(
    client: TestClient,
    sure_digits: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever input reaches a bug in the image preparation, the client gets a JSON 4xx and
    the service goes on; the traceback goes to the log."""

    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr("digits.serve.recognizer.preprocess", broken)
    monkeypatch.setattr("digits.serve.recognizer.read_number", broken)
    data = encode(paper(sure_digits[0][2]))
    for route in ("/api/predict", "/api/read"):
        response = client.post(route, **upload(data))
        assert response.status_code == 422
        assert response.json()["error"] == "unprocessable_image"
        assert "index 7 is out of bounds" in response.json()["detail"]
    assert "preparing an image failed" in caplog.text
    monkeypatch.undo()
    assert client.post("/api/predict", **upload(data)).json()["digit"] == int(sure_digits[1][2])


# --- memory and connection bounds -----------------------------------------------------------------


def test_head_on_the_page_and_health(client: TestClient) -> None:
    for path in ("/", "/api/health"):
        response = client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""


def test_png_of_zero_width_is_bad_input_not_unsupported(client: TestClient) -> None:
    for width, height in ((0, 10), (10, 0)):
        response = client.post("/api/predict", **upload(png_header_only(width, height)))
        assert response.status_code == 400, (width, height)
        assert response.json()["error"] == "bad_input"
        assert f"no pixels ({width}×{height})" in response.json()["detail"]


def test_oversized_body_reports_its_size(strict_client: TestClient) -> None:
    declared = strict_client.post(
        "/api/predict", content=b"x" * 123_456, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert "123456 bytes" in declared.json()["detail"]
    # A multipart file is read one byte past the limit only, so its size beyond is unknown.
    big = noise_png(200)
    detail = strict_client.post("/api/predict", **upload(big)).json()["detail"]
    assert "over 20000 bytes" in detail
    assert "20001" not in detail


def test_the_pixel_limit_is_checked_at_the_size_decoded(client: TestClient) -> None:
    # A 48-megapixel JPEG decodes at a quarter scale, 3 megapixels: within the default limit.
    photo = Image.new("L", (8000, 6000), 255)
    seven = [(3000, 1800), (5000, 1800), (3600, 4200)]
    ImageDraw.Draw(photo).line(seven, fill=0, width=240)
    jpeg = client.post("/api/predict", **upload(encode(photo, "JPEG"), "photo.jpg", "image/jpeg"))
    assert jpeg.status_code == 200, jpeg.text
    assert jpeg.json()["digit"] == 7
    # The same page as a PNG decodes whole: 48 megapixels, over the limit, refused from its header.
    png = client.post("/api/predict", **upload(png_header_only(8000, 6000)))
    assert png.status_code == 413
    assert "12600000" in png.json()["detail"]


def test_large_images_are_reduced_right_after_decoding() -> None:
    from digits.serve.imaging import REDUCE_SIDE, decode_image

    page = Image.new("L", (5000, 3000), 255)
    page.paste(0, (2400, 1000, 2600, 2000))
    image, scale = decode_image(encode(page), 8 * 2**20, 20_000_000)
    assert REDUCE_SIDE <= max(image.size) < 2 * REDUCE_SIDE
    assert scale == pytest.approx(5000 / image.width)
    small, unscaled = decode_image(encode(Image.new("L", (900, 600), 255)), 8 * 2**20, 20_000_000)
    assert small.size == (900, 600) and unscaled == 1


def run_asgi(app: Any, scope: dict[str, Any], chunks: list[bytes], pause_s: float = 0) -> Any:
    """Call an ASGI app with a body in `chunks` (a pause after each); the answer's start
    message, its body and how many chunks were consumed."""
    answer: dict[str, Any] = {"consumed": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        index = answer["consumed"]
        if index >= len(chunks):
            await asyncio.sleep(3600)  # a client that sends nothing more
        answer["consumed"] += 1
        await asyncio.sleep(pause_s)
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = dict(message["headers"])
        else:
            answer["body"] += message.get("body", b"")

    async def call() -> None:
        await app(scope, receive, send)

    asyncio.run(call())
    return answer


def post_scope(length: int | None = None) -> dict[str, Any]:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return {"type": "http", "method": "POST", "path": "/api/predict", "headers": headers}


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


def test_an_oversized_body_is_read_before_the_413() -> None:
    from digits.serve.limits import BodyLimitMiddleware

    middleware = BodyLimitMiddleware(echo_app, max_bytes=1000)
    chunks = [b"x" * 600] * 5
    declared = run_asgi(middleware, post_scope(3000), chunks)
    # Every chunk was swallowed first: a client that sends its whole body before reading any
    # answer (Python's http.client) then reads the 413 instead of a reset connection.
    assert declared["consumed"] == 5
    assert declared["status"] == 413
    assert (
        json.loads(declared["body"])["detail"]
        == "the request body is 3000 bytes; the limit is 1000"
    )
    streamed = run_asgi(middleware, post_scope(), chunks)
    assert streamed["consumed"] == 5 and streamed["status"] == 413
    assert "over 1000 bytes" in json.loads(streamed["body"])["detail"]


def test_a_trickling_body_is_answered_408() -> None:
    from digits.serve.limits import BodyLimitMiddleware

    middleware = BodyLimitMiddleware(echo_app, max_bytes=1000, body_timeout_s=0.3)
    answer = run_asgi(middleware, post_scope(100), [b"x"] * 100, pause_s=0.05)
    assert answer["status"] == 408
    assert json.loads(answer["body"])["error"] == "timeout"
    assert answer["consumed"] < 100


def test_images_beyond_the_slots_wait_then_get_503() -> None:
    from digits.serve.limits import BodyLimitMiddleware

    running = 0
    most = 0

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.4)
        running -= 1
        await echo_app(scope, receive, send)

    middleware = BodyLimitMiddleware(slow_app, max_bytes=1000, slots=2, wait_s=0.6)
    statuses: list[int] = []
    bodies: list[dict[str, Any]] = []

    async def one() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                if message["status"] == 503:
                    assert dict(message["headers"])[b"retry-after"] == b"2"
            elif message.get("body") and statuses[-1] == 503:
                bodies.append(json.loads(message["body"]))

        await middleware(post_scope(2), receive, send)

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(many())
    assert most == 2
    # Two at a time for 0.4 s each: within the 0.6 s wait four get through, the rest are told.
    assert statuses.count(200) == 4 and statuses.count(503) == 4
    assert all(body["error"] == "busy" for body in bodies)


def test_bodies_held_at_once_stay_within_the_budget() -> None:
    from digits.serve.limits import BodyLimitMiddleware

    middleware = BodyLimitMiddleware(echo_app, max_bytes=1000, body_budget=1000)
    most = 0
    statuses: list[int] = []

    async def one() -> None:
        chunks = [b"x" * 400, b"y" * 400]

        async def receive() -> dict[str, Any]:
            nonlocal most
            await asyncio.sleep(0.05)
            most = max(most, middleware.buffered)
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await middleware(post_scope(800), receive, send)

    async def many() -> None:
        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(many())
    # Each 800-byte body waited its turn for room: all answered, never more than 1000 held.
    assert statuses == [200] * 4
    assert 0 < most <= 1000
    assert middleware.buffered == 0


def test_chunked_bodies_arriving_together_do_not_wait_on_one_another() -> None:
    from digits.serve.limits import BodyLimitMiddleware

    # Room for three bodies at the limit; six chunked uploads (no Content-Length) interleave
    # their chunks. Were room taken chunk by chunk, each would hold a share of it and wait
    # for more that only the others could free, until every body deadline ran out (408).
    middleware = BodyLimitMiddleware(echo_app, max_bytes=1000, body_budget=3000, body_timeout_s=2.0)
    most = 0
    answers: list[tuple[int, bytes]] = []

    async def one(index: int) -> None:
        chunks = [bytes([65 + index]) * 300 for _ in range(3)]
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal most
            await asyncio.sleep(0.02)
            most = max(most, middleware.buffered)
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            else:
                answers.append((status[0], message.get("body", b"")))

        await middleware(post_scope(), receive, send)

    async def many() -> None:
        await asyncio.wait_for(asyncio.gather(*(one(index) for index in range(6))), 10)

    asyncio.run(many())
    assert sorted(status for status, _ in answers) == [200] * 6
    assert sorted(body for _, body in answers) == [bytes([65 + i]) * 900 for i in range(6)]
    assert 0 < most <= 3000
    assert middleware.buffered == 0


# --- the API reference ----------------------------------------------------------------------------


def test_every_schema_reference_in_the_openapi_document_resolves(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    defined = set(document["components"]["schemas"])

    def references(value: Any) -> list[str]:
        if isinstance(value, dict):
            found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
            return found + [ref for item in value.values() for ref in references(item)]
        if isinstance(value, list):
            return [ref for item in value for ref in references(item)]
        return []

    refs = references(document)
    prefix = "#/components/schemas/"
    assert f"{prefix}PredictRequest" in refs  # the JSON bodies, documented by hand
    assert f"{prefix}ReadRequest" in refs
    assert {ref.removeprefix(prefix) for ref in refs} <= defined
    pixels = document["components"]["schemas"]["PredictRequest"]["properties"]["pixels"]
    assert pixels["anyOf"][0]["minItems"] == 784


def test_docs_page_renders_markdown_and_links_every_schema(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    # The same policy as the drawing page: no inline style or script, nothing from elsewhere.
    assert (
        docs.headers["content-security-policy"]
        == client.get("/").headers["content-security-policy"]
    )
    html = docs.text
    assert "<style" not in html
    assert "<script" not in html
    assert "`" not in html  # every Markdown code span became <code>
    assert "$ref" not in html
    assert "<code>reason</code>" in html  # from the description of /api/predict
    assert client.get("/static/docs.css").status_code == 200
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    anchors = set(re.findall(r'id="([^"]+)"', html))
    links = set(re.findall(r'href="#([^"]+)"', html))
    assert set(schemas) <= anchors  # every schema has its section...
    assert links <= anchors  # ...and every link inside the page leads to one
    assert {"PredictRequest", "PredictResponse", "ErrorResponse", "Box"} <= links
    # A nullable field reads as such, and its description keeps its Markdown.
    assert "number or null" in html
    assert "<code>&quot;no_digit&quot;</code>" in html


def test_docs_schema_types_read_as_words() -> None:
    from digits.serve.routes.docs import schema_type

    assert (
        schema_type({"$ref": "#/components/schemas/Box"}) == '<a href="#Box"><code>Box</code></a>'
    )
    assert schema_type(
        {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "null"}]}
    ) == ("integer (0–9) or null")
    assert schema_type(
        {"type": "array", "items": {"type": "number"}, "minItems": 10, "maxItems": 10}
    ) == ("array of number (exactly 10 items)")
    assert schema_type({"type": "string", "format": "binary"}) == "string (binary)"
    assert (
        schema_type({"enum": ["a", "b"]})
        == "one of <code>&quot;a&quot;</code>, <code>&quot;b&quot;</code>"
    )


def test_docs_markdown_cannot_inject_markup_and_parameters_are_listed() -> None:
    from digits.serve.routes.docs import render

    operation = {
        "operationId": "find",
        "description": "Finds `things`. <script>alert(1)</script> [x](javascript:alert(1))",
        "parameters": [
            {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
        ],
        "responses": {"200": {"description": "**Found**"}},
    }
    html = render({"info": {"title": "t"}, "paths": {"/find": {"get": operation}}})
    assert "<code>things</code>" in html
    assert "<script" not in html
    assert 'href="javascript:' not in html
    assert "<strong>Found</strong>" in html
    assert "<td><code>limit</code></td><td>query</td><td>integer</td><td>no</td>" in html


def test_head_on_the_docs(client: TestClient) -> None:
    response = client.head("/docs")
    assert response.status_code == 200
    assert response.content == b""


def test_an_image_sent_as_the_body_itself(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    # What the page sends: the PNG as the body, with its own type; no form to parse.
    png = encode(paper(sure_digits[0][3]), "PNG")
    raw = client.post("/api/predict", content=png, headers={"content-type": "image/png"})
    form = client.post("/api/predict", **upload(png, "d.png", "image/png"))
    assert raw.status_code == 200, raw.text
    assert raw.json() == form.json()
    assert raw.json()["digit"] == int(sure_digits[1][3])
    read = client.post("/api/read", content=png, headers={"content-type": "image/png"})
    assert read.status_code == 200 and read.json()["text"] == str(int(sure_digits[1][3]))
    # The content decides, as for uploads: a declared image type that holds no image is 415.
    text = client.post(
        "/api/predict", content=b"hello " * 50, headers={"content-type": "image/png"}
    )
    assert text.status_code == 415
    assert text.json()["error"] == "unsupported_media_type"
    empty = client.post("/api/predict", content=b"", headers={"content-type": "image/jpeg"})
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
