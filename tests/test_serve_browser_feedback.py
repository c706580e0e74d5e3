"""Corrections from the drawing page in Debian's Chromium, against the real service on loopback:
"Wrong, it is 7" clicked after an answer keeps the drawing, as sent, in the store as a 7.

The server, browser and drawing helpers are those of tests/test_serve_browser.py.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Request, expect

from digits.feedback import open_store
from tests.test_serve_browser import (  # the module's browser fixture, shared by import
    ONE,
    LiveServer,
    Watch,
    answered,
    browser,  # noqa: F401
    mouse_draw,
    pen_stroke,
)

pytestmark = pytest.mark.browser


def serve_with_feedback(model: Path, url: str) -> LiveServer:
    """The service as `digits serve` starts it, with `DIGITS_SERVE_FEEDBACK_URL` set to `url`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DIGITS_SERVE_FEEDBACK_URL", url)
        return LiveServer(model)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('feedback') / 'feedback.sqlite'}"


@pytest.fixture(scope="module")
def server(trained_cnn_run: Path, store_url: str) -> Iterator[str]:
    live = serve_with_feedback(trained_cnn_run, store_url)
    yield live.url
    live.stop()


def open_page(chromium: Browser, base: str) -> tuple[Page, Watch, list[bytes]]:
    """The page, loaded, with every image it sends to /api/predict recorded."""
    page = chromium.new_context(viewport={"width": 1200, "height": 900}).new_page()
    watch = Watch(page, base)
    sent: list[bytes] = []

    def record(request: Request) -> None:
        if request.url.endswith("/api/predict") and request.post_data_buffer is not None:
            sent.append(request.post_data_buffer)

    page.on("request", record)
    page.goto(base + "/")
    # /api/model has answered (it says whether corrections are kept) once the line names the model.
    page.get_by_test_id("model").filter(has_text="cnn").wait_for()
    return page, watch, sent


def preview_pixels(page: Page) -> np.ndarray:
    url = page.get_by_test_id("preview").get_attribute("src") or ""
    data = base64.b64decode(url.removeprefix("data:image/png;base64,"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def test_wrong_it_is_7_keeps_the_drawing_as_a_7(
    browser: Browser,  # noqa: F811
    server: str,
    store_url: str,
) -> None:
    page, watch, sent = open_page(browser, server)
    feedback = page.get_by_test_id("feedback")
    status = page.get_by_test_id("feedback-status")
    expect(feedback).to_be_hidden()  # nothing to correct before an answer

    mouse_draw(page, ONE)
    shown = page.get_by_test_id("prediction").inner_text()
    assert shown == "1"
    expect(feedback).to_be_visible()
    seven = page.get_by_role("button", name="Wrong, it is 7", exact=True)
    expect(page.get_by_role("button", name="Right", exact=True)).to_be_visible()
    # "Wrong, it is 1" would contradict itself: the model's own digit is "Right".
    expect(page.get_by_role("button", name="Wrong, it is 1", exact=True)).to_be_hidden()

    with page.expect_response("**/api/feedback") as answer:
        seven.click()
    assert answer.value.status == 201
    expect(status).to_have_attribute("data-state", "saved")
    expect(status).to_have_text(re.compile(r"^Thanks, saved"))
    expect(seven).to_be_disabled()  # one correction per answer

    with open_store(store_url, create=False) as store:
        (kept,) = list(store.examples())
        stats = store.stats()
    assert kept.label == 7
    assert kept.image == sent[-1]  # the very PNG the answer was for
    assert kept.media_type == "image/png"
    np.testing.assert_array_equal(kept.pixels, preview_pixels(page))
    assert answer.value.json()["model_digit"] == 1  # computed by the server from that image
    assert stats.count == 1 and stats.model_right == 0.0

    # A new stroke is a new answer: the buttons come back, and the keyboard reaches "Right".
    answered(page, lambda: pen_stroke(page, [(0.52, 0.2), (0.5, 0.8)]))
    expect(status).to_have_attribute("data-state", "idle")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent") == "Right":
            break
    else:
        pytest.fail("Tab never reached the Right button")
    with page.expect_response("**/api/feedback") as again:
        page.keyboard.press("Enter")
    assert again.value.status == 201
    expect(status).to_have_attribute("data-state", "saved")
    with open_store(store_url, create=False) as store:
        newest = list(store.examples())[-1]
    assert newest.label == int(page.get_by_test_id("prediction").inner_text())
    assert newest.image == sent[-1]
    watch.check()
    page.context.close()


def test_no_buttons_when_the_service_keeps_no_corrections(
    browser: Browser,  # noqa: F811
    trained_cnn_run: Path,
) -> None:
    live = serve_with_feedback(trained_cnn_run, "")
    try:
        page, watch, _ = open_page(browser, live.url)
        mouse_draw(page, ONE)
        assert page.get_by_test_id("prediction").inner_text() == "1"
        expect(page.get_by_test_id("feedback")).to_be_hidden()
        expect(page.get_by_role("button", name="Wrong, it is 7")).to_have_count(0)
        watch.check()
        page.context.close()
    finally:
        live.stop()


def test_a_correction_that_cannot_be_kept_says_so(
    browser: Browser,  # noqa: F811
    trained_cnn_run: Path,
) -> None:
    # A database that refuses connections: the page must say the correction was not saved.
    live = serve_with_feedback(trained_cnn_run, "postgresql://digits@127.0.0.1:9/feedback")
    try:
        page, _, _ = open_page(browser, live.url)
        mouse_draw(page, ONE)
        with page.expect_response("**/api/feedback") as answer:
            page.get_by_role("button", name="Wrong, it is 7", exact=True).click()
        assert answer.value.status == 503
        status = page.get_by_test_id("feedback-status")
        expect(status).to_have_attribute("data-state", "error")
        expect(status).to_have_text(re.compile(r"^Could not save the correction \(503"))
        # The buttons stay usable, to try again.
        expect(page.get_by_role("button", name="Wrong, it is 7", exact=True)).to_be_enabled()
        page.context.close()
    finally:
        live.stop()
