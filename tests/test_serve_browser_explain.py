"""The drawing page's "Why?" toggle in Debian's Chromium, against the real service on loopback:
off, the page asks nothing more than before; on, each single-digit answer is followed by
/api/explain for the same image and its overlay lies on the 28×28 preview. Reached and worked by
keyboard. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from digits.data import DigitData
from tests import test_serve_browser as pages
from tests.test_serve_browser import (
    ARTIFACTS,
    SEVEN,
    Watch,
    answered,
    assert_shows,
    mouse_draw,
    pen_stroke,
    photo_file,
    shown_digit,
)

pytestmark = pytest.mark.browser

# The same Chromium, live server (trained seed cnn) and desktop page (fixtures, found by name).
browser, server, desktop = pages.browser, pages.server, pages.desktop

WHY_NAME = "Why? Show which pixels drove the answer"


def explain_requests(page: Page) -> list[str]:
    """URLs of the page's requests to /api/explain, as they are sent."""
    sent: list[str] = []
    page.on("request", lambda request: "/api/explain" in request.url and sent.append(request.url))
    return sent


def tab_to(page: Page, testid: str, limit: int = 30) -> None:
    """Press Tab until the element with `testid` has the focus, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.dataset.testid || ''")
        if focused == testid:
            return
    pytest.fail(f"{testid} is not reached with Tab")


def overlay_pixels(page: Page) -> np.ndarray:
    source = page.get_by_test_id("explanation").get_attribute("src") or ""
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(source[len(prefix) :]))))


def test_why_lays_the_explanation_on_the_preview(desktop: tuple[Page, Watch]) -> None:
    page, watch = desktop
    sent = explain_requests(page)
    mouse_draw(page, SEVEN)
    assert_shows(page, 7)
    why = page.get_by_role("button", name=WHY_NAME)
    assert why.is_visible() and why.get_attribute("aria-pressed") == "false"
    assert page.get_by_test_id("explanation").is_hidden()
    assert sent == []  # switched off, the page asks for no explanation

    # By keyboard: Tab to "Why?", Space switches it on and the shown answer is explained.
    tab_to(page, "why")
    with page.expect_response("**/api/explain") as response:
        page.keyboard.press("Space")
    body = json.loads(response.value.text())
    assert response.value.status == 200
    assert body["method"] == "occlusion" and body["explained"] == body["digit"] == 7
    explanation = page.get_by_test_id("explanation")
    explanation.wait_for(state="visible")
    assert why.get_attribute("aria-pressed") == "true"
    assert "7" in (explanation.get_attribute("alt") or "")
    assert page.get_by_test_id("why-legend").inner_text() == "red: towards 7 · blue: away"
    # Exactly over the preview, and drawn from the same 28×28 (4 pixels of it to one).
    over = explanation.bounding_box()
    under = page.get_by_test_id("preview").bounding_box()
    assert over is not None and under is not None
    for key in ("x", "y", "width", "height"):
        assert over[key] == pytest.approx(under[key], abs=0.5)
    first = overlay_pixels(page)
    assert first.shape == (112, 112, 3)
    # The answer is still /api/predict's: the digit, its bars and the preview as before.
    assert_shows(page, 7)

    # Still on: the next stroke's answer is explained anew.
    with page.expect_response("**/api/explain"):
        answered(page, lambda: pen_stroke(page, [(0.8, 0.8), (0.85, 0.85)]))
    explanation.wait_for(state="visible")
    assert len(sent) == 2
    assert not np.array_equal(overlay_pixels(page), first)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-why.png"), full_page=True)

    # Enter on the focused toggle switches it off: the overlay goes, and nothing more is asked.
    why.focus()
    page.keyboard.press("Enter")
    assert why.get_attribute("aria-pressed") == "false"
    assert explanation.is_hidden() and page.get_by_test_id("why-legend").is_hidden()
    answered(page, lambda: page.keyboard.press("Control+z"))
    assert shown_digit(page) == "7" and explanation.is_hidden()
    assert len(sent) == 2
    page.get_by_test_id("clear").click()
    assert explanation.is_hidden() and page.get_by_test_id("preview").is_hidden()
    watch.check()


def test_why_follows_uploads_and_skips_blank_ones(
    desktop: tuple[Page, Watch], mnist: DigitData, tmp_path: Path
) -> None:
    page, watch = desktop
    sent = explain_requests(page)
    label = int(mnist.y_test[0])
    photo = photo_file(tmp_path, mnist.x_test[0], "digit.jpg")
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(photo)))
    assert_shows(page, label)
    with page.expect_response("**/api/explain"):
        page.get_by_test_id("why").click()
    explanation = page.get_by_test_id("explanation")
    explanation.wait_for(state="visible")

    # A blank page has no digit: no preview, so nothing to explain and nothing asked.
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (240, 240, 240)).save(blank)
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(blank)))
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "empty"
    assert explanation.is_hidden() and len(sent) == 1

    # The next photo is explained as soon as it is answered, "Why?" still on.
    other = photo_file(tmp_path, mnist.x_test[1], "other.png")
    with page.expect_response("**/api/explain"):
        answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(other)))
    explanation.wait_for(state="visible")
    assert f"the answer {int(mnist.y_test[1])}:" in (explanation.get_attribute("alt") or "")
    assert page.get_by_test_id("why").get_attribute("aria-pressed") == "true"
    watch.check()
