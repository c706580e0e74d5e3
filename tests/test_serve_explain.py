"""`POST /api/explain` through FastAPI's TestClient: the answer /api/predict gives, the 28×28 map
and its overlay, every kind of body, every method, and errors as JSON (never a 5xx).

The app, client and images are those of tests/test_serve_api.py: the session's trained seed cnn
run and real MNIST test digits printed dark on light paper.
"""

from __future__ import annotations

import base64
import sys
from typing import Any, get_args

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digits.data import DigitData
from digits.explain_agnostic import AGNOSTIC_METHODS
from digits.serve.routes.explain import DEFAULT_METHOD
from digits.serve.schemas import ExplainMethod
from tests import test_serve_api as api
from tests.test_serve_api import decode_preview, encode, paper, png_header_only, upload

# The same module-scoped app and client, model and digits (fixtures, found by their names here).
app, client, predictor, sure_digits = api.app, api.client, api.predictor, api.sure_digits

MAP_FIELDS = {"method", "explained", "attributions", "overlay"}


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in MAP_FIELDS}


def test_explain_answers_as_predict_does_and_credits_the_ink(
    client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = sure_digits
    on_ink, off_ink = [], []
    for pixels, label in zip(images[:5], labels[:5], strict=True):
        data = encode(paper(pixels))
        response = client.post("/api/explain", **upload(data))
        assert response.status_code == 200
        body = response.json()
        assert _answer(body) == client.post("/api/predict", **upload(data)).json()
        assert body["method"] == DEFAULT_METHOD == "occlusion"
        assert body["digit"] == body["explained"] == int(label)
        values = np.array(body["attributions"])
        seen = decode_preview(body["preview"])
        assert values.shape == seen.shape == (28, 28)
        on_ink.append(np.abs(values[seen > 0]).mean())
        off_ink.append(np.abs(values[seen == 0]).mean())
        drawn = decode_preview(body["overlay"])
        assert drawn.shape == (112, 112, 3)
        # The same 28×28, each pixel a 4×4 block: grey where nothing was credited, red where
        # the most was.
        blocks = drawn[::4, ::4].astype(int)
        uncredited = values == 0
        grey = np.rint(0.55 * seen).astype(int)
        assert (blocks[uncredited] == grey[uncredited, None]).all()
        red, _, blue = blocks[np.unravel_index(np.argmax(values), values.shape)]  # RGB here
        assert red > 190 and blue < 80
    assert np.mean(on_ink) > 2 * np.mean(off_ink)


@pytest.mark.parametrize("method", AGNOSTIC_METHODS)
def test_every_method_and_every_body(
    method: str, client: TestClient, sure_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    pixels, label = sure_digits[0][7], int(sure_digits[1][7])
    data = encode(paper(pixels))
    url = f"/api/explain?method={method}"
    as_file = client.post(url, **upload(data)).json()
    as_body = client.post(url, content=data, headers={"Content-Type": "image/png"}).json()
    as_json = client.post(url, json={"image": base64.b64encode(data).decode()}).json()
    # Seeded: the same image gives the same map, however it was sent.
    assert as_file == as_body == as_json
    assert as_file["method"] == method and as_file["explained"] == label
    values = np.array(as_file["attributions"])
    assert values.shape == (28, 28) and values.max() > 0
    # 784 MNIST pixels go to the model unchanged, and their map is over those very pixels.
    raw = client.post(url, json={"pixels": pixels.ravel().tolist()}).json()
    assert raw["explained"] == label
    assert np.array_equal(decode_preview(raw["preview"]), pixels)
    raw_values = np.array(raw["attributions"])
    ink = pixels > 0
    assert np.abs(raw_values[ink]).mean() > 2 * np.abs(raw_values[~ink]).mean()


def test_the_methods_offered_are_the_model_agnostic_ones() -> None:
    assert set(get_args(ExplainMethod)) == set(AGNOSTIC_METHODS)


def test_an_unsure_answer_is_still_explained(client: TestClient, mnist: DigitData) -> None:
    # Two digits laid over each other: the model leans one way without being sure.
    pixels = np.maximum(mnist.x_test[0], mnist.x_test[1])
    body = client.post("/api/explain", json={"pixels": pixels.ravel().tolist()}).json()
    assert body["answer"] in ("digit", "not_sure")
    assert body["explained"] == int(np.argmax(body["probabilities"]))
    assert np.array(body["attributions"]).shape == (28, 28)


def test_no_ink_answers_as_predict_does_with_no_map(client: TestClient) -> None:
    blank = encode(Image.new("L", (300, 300), 255))
    for request in ({**upload(blank)}, {"json": {"pixels": [0] * 784}}):
        explained = client.post("/api/explain", **request)
        assert explained.status_code == 200
        body = explained.json()
        assert _answer(body) == client.post("/api/predict", **request).json()
        assert body["answer"] == "no_digit" and body["reason"].startswith("no digit")
        assert body["explained"] is body["attributions"] is body["overlay"] is None
        assert body["method"] == "occlusion"


def test_errors_are_json_like_predicts(client: TestClient) -> None:
    cases: list[dict[str, Any]] = [
        upload(b"this is not an image"),
        upload(png_header_only(40_000, 40_000)),
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": {"pixels": [0] * 783}},
        {"json": {"image": "%%%"}},
        {"content": b"x", "headers": {"Content-Type": "text/plain"}},
    ]
    for case in cases:
        explained = client.post("/api/explain", **case)
        predicted = client.post("/api/predict", **case)
        assert 400 <= explained.status_code < 500
        assert (explained.status_code, explained.json()) == (
            predicted.status_code,
            predicted.json(),
        )
    unknown = client.post("/api/explain?method=gradcam", json={"pixels": [0] * 784})
    assert unknown.status_code == 422
    assert unknown.json()["error"] == "invalid_request"
    assert "method" in unknown.json()["detail"] and "'lime'" in unknown.json()["detail"]


@pytest.mark.parametrize(("method", "module"), [("shap", "shap"), ("lime", "lime.lime_image")])
def test_a_method_whose_library_is_missing_is_refused_in_json(
    method: str,
    module: str,
    client: TestClient,
    sure_digits: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    pixels = sure_digits[0][2].ravel().tolist()
    response = client.post(f"/api/explain?method={method}", json={"pixels": pixels})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "method_unavailable"
    assert f"method {method!r} is not available here" in body["detail"]
    assert "install digits[explain]" in body["detail"]


def test_explain_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/explain"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "image/*", "application/json"}
    [method] = [p for p in operation["parameters"] if p["name"] == "method"]
    assert method["in"] == "query" and "occlusion" in method["description"]
    success = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert success["$ref"].endswith("/ExplainResponse")
    fields = schema["components"]["schemas"]["ExplainResponse"]["properties"]
    assert MAP_FIELDS | {"digit", "preview", "probabilities"} <= set(fields)
    assert "/api/explain" in client.get("/docs").text
