"""`POST /api/feedback` through FastAPI's TestClient: corrections kept in a real SQLite store, the
model's answer recomputed on the server, every kind of bad input a 4xx, and feedback turned off.

The model is the session's trained seed cnn run; the images are real MNIST test digits printed
dark on light paper, as in tests/test_serve_api.py (whose builders are reused).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.data import DigitData
from digits.feedback import open_store
from digits.serve import Settings, create_app
from tests.test_serve_api import decode_preview, encode, paper

ROW_EXTRA = 28 * 28  # bytes a row with a 28×28 counts against the store cap beside its image


def store_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'feedback.sqlite'}"


@pytest.fixture(scope="module")
def digit_pngs(mnist: DigitData) -> list[tuple[bytes, int]]:
    """Ten MNIST test digits as photos of paper, one per class, with their labels."""
    chosen = [int(np.flatnonzero(mnist.y_test == digit)[0]) for digit in range(10)]
    return [(encode(paper(mnist.x_test[i])), int(mnist.y_test[i])) for i in chosen]


def make_client(model: Path, folder: Path, **settings: Any) -> Iterator[TestClient]:
    options: dict[str, Any] = {"feedback_url": store_url(folder)} | settings
    with TestClient(create_app(Settings(model=model, **options))) as client:
        yield client


@pytest.fixture
def client(trained_cnn_run: Path, tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(trained_cnn_run, tmp_path)


def rows(folder: Path) -> list[Any]:
    """Every stored correction, as the store gives them back, and the raw rows."""
    with open_store(store_url(folder), create=False) as store:
        return list(store.examples())


def stats(folder: Path) -> Any:
    with open_store(store_url(folder), create=False) as store:
        return store.stats()


def kept(folder: Path) -> int:
    """How many corrections the store holds; 0 when nothing ever made it create its file."""
    if not (folder / "feedback.sqlite").exists():
        return 0
    count: int = stats(folder).count
    return count


def correction(data: bytes, label: object, name: str = "digit.png") -> dict[str, Any]:
    return {"files": {"file": (name, data, "image/png")}, "data": {"label": str(label)}}


# --- kept ----------------------------------------------------------------------------------------


def test_a_correction_is_kept_with_the_models_own_answer(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    png, truth = digit_pngs[3]
    predicted = client.post("/api/predict", files={"file": ("d.png", png, "image/png")}).json()
    wrong = (truth + 4) % 10

    response = client.post("/api/feedback", **correction(png, wrong))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["label"] == wrong
    assert body["model_digit"] == predicted["digit"]
    assert body["model_answer"] == predicted["answer"]
    assert body["confidence"] == pytest.approx(predicted["confidence"])
    assert body["right"] is False
    assert body["model"] == "cnn"
    (kept,) = rows(tmp_path)
    assert kept.label == wrong
    assert kept.image == png  # the file as sent, byte for byte
    assert kept.media_type == "image/png"
    np.testing.assert_array_equal(kept.pixels, decode_preview(predicted["preview"]))
    summary = stats(tmp_path)
    assert summary.count == 1 and summary.models == {"cnn": 1}
    assert body["id"] >= 1


def test_right_answers_count_as_right(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    answers = []
    for png, truth in digit_pngs:
        answers.append(client.post("/api/feedback", **correction(png, truth)).json())
    right = [a["right"] for a in answers]
    assert right == [
        a["model_digit"] == truth for a, (_, truth) in zip(answers, digit_pngs, strict=True)
    ]
    assert sum(right) >= 9  # the seed cnn reads clean MNIST digits
    summary = stats(tmp_path)
    assert summary.count == 10
    assert summary.per_digit == {str(digit): 1 for digit in range(10)}
    assert summary.model_right == pytest.approx(sum(right) / 10)


def test_json_with_base64_is_kept_like_multipart(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    png, truth = digit_pngs[7]
    as_json = client.post(
        "/api/feedback",
        json={"image": "data:image/png;base64," + base64.b64encode(png).decode(), "label": truth},
    )
    as_form = client.post("/api/feedback", **correction(png, truth))
    assert as_json.status_code == as_form.status_code == 201
    one, other = as_json.json(), as_form.json()
    assert one["id"] != other["id"]
    assert {k: v for k, v in one.items() if k != "id"} == {
        k: v for k, v in other.items() if k != "id"
    }
    first, second = rows(tmp_path)
    assert first.image == second.image == png


def test_the_client_cannot_claim_the_models_answer(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    png, truth = digit_pngs[2]
    claimed = {"model_digit": "9", "model_answer": "not_sure", "confidence": "0.01"}
    form = correction(png, truth)
    form["data"] |= claimed
    by_form = client.post("/api/feedback", **form).json()
    by_json = client.post(
        "/api/feedback",
        json={"image": base64.b64encode(png).decode(), "label": truth, **claimed},
    ).json()
    for body in (by_form, by_json):
        assert body["model_digit"] == truth and body["model_answer"] == "digit"
        assert body["confidence"] > 0.5


def test_a_jpeg_keeps_its_type_from_its_bytes(
    client: TestClient, tmp_path: Path, mnist: DigitData
) -> None:
    jpeg = encode(paper(mnist.x_test[0]).convert("RGB"), "JPEG", quality=90)
    response = client.post(
        "/api/feedback", files={"file": ("scan.png", jpeg, "image/png")}, data={"label": "7"}
    )
    assert response.status_code == 201, response.text
    (kept,) = rows(tmp_path)
    assert kept.media_type == "image/jpeg"  # whatever the name and declared type said


def test_a_blank_image_is_kept_without_a_28x28(client: TestClient, tmp_path: Path) -> None:
    blank = encode(Image.new("L", (120, 120), 255))
    response = client.post("/api/feedback", **correction(blank, 5))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["model_digit"], body["model_answer"], body["confidence"]) == (
        None,
        "no_digit",
        None,
    )
    summary = stats(tmp_path)
    assert (summary.count, summary.trainable) == (1, 0)
    assert rows(tmp_path) == []  # nothing there to train on


# --- refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["x", "10", "-1", "", "3.0", "٣"])
def test_a_label_that_is_not_a_digit_is_422(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]], label: str
) -> None:
    response = client.post("/api/feedback", **correction(digit_pngs[0][0], label))
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("label: expected one digit 0–9")
    assert kept(tmp_path) == 0


@pytest.mark.parametrize("label", [10, -1, "7", True, 3.5, None])
def test_a_json_label_that_is_not_a_digit_is_422(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]], label: object
) -> None:
    image = base64.b64encode(digit_pngs[0][0]).decode()
    response = client.post("/api/feedback", json={"image": image, "label": label})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("label: ")
    assert kept(tmp_path) == 0


def test_no_label_and_no_image_are_422(
    client: TestClient, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    png = digit_pngs[0][0]
    no_label = client.post("/api/feedback", files={"file": ("d.png", png, "image/png")})
    no_file = client.post("/api/feedback", data={"label": "3"}, files={"other": ("x", b"x")})
    no_image = client.post("/api/feedback", json={"label": 3})
    assert no_label.json()["detail"] == "label: expected one digit 0–9, got nothing"
    assert no_file.json()["detail"].startswith(
        'multipart: send the image in a file field named "file"'
    )
    assert no_image.json()["detail"] == "image: Field required"
    assert {r.status_code for r in (no_label, no_file, no_image)} == {422}
    assert kept(tmp_path) == 0


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "bad_input"),
        (b"hello, not an image", 415, "unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 415, "unsupported_media_type"),
    ],
)
def test_bad_images_are_refused_like_predict_refuses_them(
    client: TestClient, tmp_path: Path, data: bytes, status: int, code: str
) -> None:
    response = client.post("/api/feedback", **correction(data, 1))
    predicted = client.post("/api/predict", files={"file": ("d.png", data, "image/png")})
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert predicted.status_code == status
    assert kept(tmp_path) == 0


def test_other_body_types_are_415(client: TestClient, digit_pngs: list[tuple[bytes, int]]) -> None:
    response = client.post(
        "/api/feedback", content=digit_pngs[0][0], headers={"Content-Type": "image/png"}
    )
    assert response.status_code == 415
    assert '"label"' in response.json()["detail"]


def test_an_image_over_the_feedback_cap_is_413(
    trained_cnn_run: Path, tmp_path: Path, mnist: DigitData
) -> None:
    png = encode(paper(mnist.x_test[1]), "PNG", compress_level=0)  # ~60 KB: over the floor
    for client in make_client(trained_cnn_run, tmp_path, feedback_max_image_bytes=len(png) - 1):
        too_big = client.post("/api/feedback", **correction(png, 1))
        predicted = client.post("/api/predict", files={"file": ("d.png", png, "image/png")})
    assert too_big.status_code == 413
    assert too_big.json()["error"] == "too_large"
    assert f"up to {len(png) - 1} bytes" in too_big.json()["detail"]
    assert predicted.status_code == 200  # predictions are not limited by it


def test_a_full_store_refuses_with_409_and_keeps_what_it_had(
    trained_cnn_run: Path, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    cap = 1024 * 1024  # the setting's floor
    png, label = digit_pngs[0]
    fits = cap // (len(png) + ROW_EXTRA)
    with open_store(store_url(tmp_path)) as store:  # filled to within one drawing of the cap
        for _ in range(fits):
            store.add(
                label=label,
                model_digit=label,
                model_answer="digit",
                confidence=0.9,
                model_name="cnn",
                image=png,
                media_type="image/png",
                pixels=np.zeros((28, 28), np.uint8),
            )
    for client in make_client(trained_cnn_run, tmp_path, feedback_max_store_bytes=cap):
        full = client.post("/api/feedback", **correction(png, label))
        predicted = client.post("/api/predict", files={"file": ("d.png", png, "image/png")})
    assert full.status_code == 409
    assert full.json() == {
        "error": "store_full",
        "detail": "the corrections store is full: no more corrections are kept",
    }
    assert predicted.status_code == 200
    assert stats(tmp_path).count == fits


def test_a_body_over_the_service_limit_is_413_before_parsing(
    trained_cnn_run: Path, tmp_path: Path
) -> None:
    for client in make_client(trained_cnn_run, tmp_path, max_upload_bytes=20_000):
        response = client.post("/api/feedback", **correction(b"\x00" * 200_000, 1))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_an_unreachable_database_is_503_and_tells_no_secret(
    trained_cnn_run: Path, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    url = "postgresql://digits:hunter2@127.0.0.1:9/feedback"  # the discard port: refused
    for client in make_client(trained_cnn_run, tmp_path, feedback_url=url):
        response = client.post("/api/feedback", **correction(digit_pngs[4][0], 4))
        predicted = client.post(
            "/api/predict", files={"file": ("d.png", digit_pngs[4][0], "image/png")}
        )
    assert response.status_code == 503
    assert response.json()["error"] == "feedback_unavailable"
    assert "hunter2" not in response.text and "127.0.0.1" not in response.text
    assert predicted.status_code == 200


# --- on and off --------------------------------------------------------------------------------


def test_feedback_off_is_404_and_said_by_api_model(
    trained_cnn_run: Path, tmp_path: Path, digit_pngs: list[tuple[bytes, int]]
) -> None:
    for client in make_client(trained_cnn_run, tmp_path, feedback_url=""):
        info = client.get("/api/model").json()
        response = client.post("/api/feedback", **correction(digit_pngs[0][0], 0))
    assert info["feedback"] is False
    assert response.status_code == 404
    assert response.json()["error"] == "feedback_off"
    assert not (tmp_path / "feedback.sqlite").exists()


def test_feedback_on_is_said_by_api_model(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/api/model").json()["feedback"] is True
    assert not (tmp_path / "feedback.sqlite").exists()  # nothing is created before it is used


def test_the_url_and_caps_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DIGITS_SERVE_FEEDBACK_URL", "postgresql://u@db.example/feedback")
    monkeypatch.setenv("DIGITS_SERVE_FEEDBACK_MAX_IMAGE_BYTES", "65536")
    settings = Settings()
    assert settings.feedback_url == "postgresql://u@db.example/feedback"
    assert settings.feedback_max_image_bytes == 65536
    monkeypatch.setenv("DIGITS_SERVE_FEEDBACK_URL", "")
    assert Settings().feedback_url == ""
    monkeypatch.delenv("DIGITS_SERVE_FEEDBACK_URL")
    default = Settings().feedback_url
    assert default.startswith("sqlite:///") and default.endswith("/feedback.sqlite")


def test_the_route_is_documented(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/feedback"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert content["application/json"]["schema"]["$ref"].endswith("/FeedbackRequest")
    assert set(content["multipart/form-data"]["schema"]["required"]) == {"file", "label"}
    assert {"201", "404", "409", "413", "422", "503"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    assert {"FeedbackRequest", "FeedbackResponse"} <= set(schemas)
    assert "label" in schemas["FeedbackResponse"]["properties"]
    assert "feedback" in schemas["ModelInfo"]["properties"]
    docs = client.get("/docs").text
    assert "/api/feedback" in docs and "Correct an answer" in docs
