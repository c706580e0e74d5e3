"""The drawing page end to end in Debian's Chromium: mouse strokes on a desktop, touch on a phone,
upload, clear and undo, against the real service on loopback. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image
from playwright.sync_api import Browser, Page, Route, sync_playwright

from digits.data import DigitData
from digits.data.negatives import generate
from digits.predictor import Predictor
from digits.serve import Settings, create_app
from tests.handwriting import non_digit_photo

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

Stroke = list[tuple[float, float]]  # points in canvas units, 0–1 from the top-left corner

# Playwright evaluates string expressions with eval(), which the page's Content-Security-Policy
# forbids; the checks below are written as functions, which it runs without eval.

# Digits as a person draws them, one list of strokes each.
ONE: list[Stroke] = [[(0.5, 0.18), (0.5, 0.82)]]
SEVEN: list[Stroke] = [[(0.28, 0.22), (0.72, 0.22), (0.42, 0.82)]]
ZERO: list[Stroke] = [
    [
        (0.5 + 0.2 * math.sin(2 * math.pi * t / 32), 0.5 - 0.3 * math.cos(2 * math.pi * t / 32))
        for t in range(33)
    ]
]
FOUR: list[Stroke] = [[(0.36, 0.18), (0.3, 0.56), (0.72, 0.56)], [(0.6, 0.3), (0.6, 0.84)]]


@pytest.fixture(scope="module")
def server(trained_cnn_run: Path) -> Iterator[str]:
    yield from _serve(trained_cnn_run)


@pytest.fixture(scope="module")
def refusing_server(refusing_run: Path) -> Iterator[str]:
    """The same for a model with the class "not a digit"."""
    yield from _serve(refusing_run)


class LiveServer:
    """The app on uvicorn, in a thread of this process, on a free loopback port."""

    def __init__(self, model: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        app = create_app(Settings(model=model))
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.instance = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.instance.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.instance.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.instance.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def _serve(model: Path) -> Iterator[str]:
    live = LiveServer(model)
    yield live.url
    live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (tools/system-deps)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class Watch:
    """Problems the page must never have: console errors, and requests leaving the server."""

    def __init__(self, page: Page, base: str) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def only_local(route: Route) -> None:
            if route.request.url.startswith(base) or route.request.url.startswith("data:"):
                route.continue_()
            else:
                self.foreign.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)

    def check(self) -> None:
        assert self.errors == []
        assert self.foreign == []


@pytest.fixture
def desktop(browser: Browser, server: str) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    watch = Watch(page, server)
    page.goto(server + "/")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=model]').textContent.includes('cnn')"
    )
    yield page, watch
    context.close()


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    watch = Watch(page, server)
    page.goto(server + "/")
    yield page, watch
    context.close()


def canvas_box(page: Page) -> dict[str, float]:
    box: dict[str, float] = page.get_by_test_id("canvas").bounding_box()
    return box


def answered(page: Page, action: Callable[[], None], read: bool = True) -> str:
    """Run `action`, wait for the page's requests and for the answer it shows; return its state."""
    with page.expect_response("**/api/predict"):
        if read:
            with page.expect_response("**/api/read"):
                action()
        else:
            action()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction]').dataset.state !== 'busy'"
    )
    state: str = page.get_by_test_id("prediction").get_attribute("data-state")
    return state


def mouse_draw(page: Page, strokes: list[Stroke]) -> None:
    for stroke in strokes:
        answered(page, lambda stroke=stroke: pen_stroke(page, stroke))


def touch_draw(page: Page, strokes: list[Stroke]) -> None:
    """Real touch events through the DevTools protocol: Chromium turns them into pointer events
    with pointerType "touch", and would scroll the page if the canvas let it.

    Events carry timestamps 16 ms apart, as a finger's do, and the finger rests before lifting.
    The tap on Clear afterwards checks that a stroke leaves no gesture behind (a fling would
    swallow that tap)."""
    session = page.context.new_cdp_session(page)
    box = canvas_box(page)
    for stroke in strokes:

        def draw(stroke: Stroke = stroke) -> None:
            points = []
            for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
                points += [(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8) for k in range(8)]
            points += [stroke[-1]] * 4
            kinds = ["touchStart"] + ["touchMove"] * (len(points) - 1)
            start = time.time()
            for step, (kind, (x, y)) in enumerate(zip(kinds, points, strict=True)):
                touch = {"x": box["x"] + x * box["width"], "y": box["y"] + y * box["height"]}
                event = {"type": kind, "touchPoints": [touch], "timestamp": start + step * 0.016}
                session.send("Input.dispatchTouchEvent", event)
            end = start + len(points) * 0.016
            session.send(
                "Input.dispatchTouchEvent",
                {"type": "touchEnd", "touchPoints": [], "timestamp": end},
            )

        answered(page, draw)


def shown_digit(page: Page) -> str:
    text: str = page.get_by_test_id("prediction").inner_text()
    return text


def bar_widths(page: Page) -> list[float]:
    """Each bar's drawn length as a percentage of its track, as laid out on screen, once the
    bars' short animation has settled."""
    script = """() => [...document.querySelectorAll('[data-testid=probabilities] li')].map(li =>
        100 * li.querySelector('.fill').getBoundingClientRect().width /
        li.querySelector('.track').getBoundingClientRect().width)"""
    settled = """() => [...document.querySelectorAll('[data-testid=probabilities] .fill')].every(
        f => Math.abs(f.getBoundingClientRect().width /
            f.parentElement.getBoundingClientRect().width * 100 -
            (parseFloat(f.style.width) || 0)) < 0.5)"""
    page.wait_for_function(settled)
    widths: list[float] = page.evaluate(script)
    return widths


def assert_shows(page: Page, digit: int) -> None:
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "digit"
    assert shown_digit(page) == str(digit)
    widths = bar_widths(page)
    assert len(widths) == 10
    assert int(np.argmax(widths)) == digit
    assert sum(widths) == pytest.approx(100, abs=1)
    preview = page.get_by_test_id("preview")
    assert preview.is_visible()
    assert preview.get_attribute("src").startswith("data:image/png;base64,")


def photo_file(tmp_path: Path, pixels: np.ndarray, name: str) -> Path:
    """An MNIST test digit as dark ink on light paper, photo-sized."""
    ink = np.kron(255 - pixels, np.ones((8, 8), dtype=np.uint8))
    path = tmp_path / name
    Image.fromarray(np.pad(ink, 60, constant_values=235)).convert("RGB").save(path, quality=90)
    return path


def test_desktop_mouse_drawing(desktop: tuple[Page, Watch]) -> None:
    page, watch = desktop
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "idle"
    assert page.get_by_test_id("clear").is_disabled()

    for strokes, digit in ((ONE, 1), (SEVEN, 7), (ZERO, 0)):
        mouse_draw(page, strokes)
        assert_shows(page, digit)
        page.get_by_test_id("clear").click()
        assert page.get_by_test_id("prediction").get_attribute("data-state") == "idle"
        assert shown_digit(page) == "–"
        assert not page.get_by_test_id("preview").is_visible()
        assert bar_widths(page) == pytest.approx([0.0] * 10, abs=0.5)
        # Cleared means blank: every pixel of the canvas is white again.
        assert page.evaluate(
            """() => { const c = document.querySelector('[data-testid=canvas]');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                return d.every(v => v === 255); }"""
        )

    # Two strokes make a 4, with an answer after each stroke; undo takes the last stroke back.
    mouse_draw(page, FOUR)
    assert_shows(page, 4)
    mouse_draw(page, [[(0.75, 0.75), (0.8, 0.8)]])
    answered(page, lambda: page.get_by_test_id("undo").click())
    assert_shows(page, 4)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-desktop.png"), full_page=True)
    watch.check()


def test_phone_touch_drawing(phone: tuple[Page, Watch]) -> None:
    page, watch = phone
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll
    canvas = canvas_box(page)
    assert canvas["width"] >= 0.8 * width - 40  # the canvas fills the phone's width
    assert page.evaluate("getComputedStyle(document.querySelector('canvas')).touchAction") == "none"
    scrolled = page.evaluate("window.scrollY")

    touch_draw(page, SEVEN)
    assert_shows(page, 7)
    assert page.evaluate("window.scrollY") == scrolled  # drawing did not scroll the page
    page.get_by_test_id("clear").tap()
    # A tap's click follows its touchend after the browser's gesture handling, not at once.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=prediction]').dataset.state === 'idle'"
    )
    touch_draw(page, ONE)
    assert_shows(page, 1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-phone.png"), full_page=True)
    watch.check()


def drop_file(page: Page, path: Path) -> None:
    """Drop the file on the drawing area, as a File made in the page from its bytes (unlike an
    uploaded one, its bytes then show in the request Playwright reports)."""
    transfer = page.evaluate_handle(
        """([bytes, name]) => { const t = new DataTransfer();
            t.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
            return t; }""",
        [list(path.read_bytes()), path.name],
    )
    page.get_by_test_id("dropzone").dispatch_event("drop", {"dataTransfer": transfer})


def test_upload_photos_blank_and_several_digits(
    desktop: tuple[Page, Watch], mnist: DigitData, tmp_path: Path
) -> None:
    page, watch = desktop
    label = int(mnist.y_test[0])
    photo = photo_file(tmp_path, mnist.x_test[0], "digit.jpg")
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(photo)))
    assert_shows(page, label)
    assert page.get_by_test_id("read").is_hidden()  # one digit: no "several digits" panel

    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (240, 240, 240)).save(blank)
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(blank)))
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "empty"
    assert "No digit" in page.get_by_test_id("status").inner_text()

    gap = np.zeros((28, 10), dtype=np.uint8)
    number = np.hstack([mnist.x_test[1], gap, mnist.x_test[2], gap, mnist.x_test[3]])
    several = photo_file(tmp_path, number, "number.png")
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(several)))
    assert page.get_by_test_id("read").is_visible()
    expected = "".join(str(int(d)) for d in mnist.y_test[1:4])
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "several"
    assert shown_digit(page) == expected
    assert page.get_by_test_id("read-text").inner_text() == expected
    assert page.locator("[data-testid=read-digits] li").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-read.png"), full_page=True)

    # Dropping a photo on the drawing area reads it the same way.
    dropped = photo_file(tmp_path, mnist.x_test[4], "dropped.png")
    answered(page, lambda: drop_file(page, dropped))
    assert_shows(page, int(mnist.y_test[4]))

    not_image = tmp_path / "notes.png"
    not_image.write_bytes(b"this is not an image")
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(not_image)))
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "error"
    assert page.get_by_test_id("prediction").get_attribute("data-error") == "input"
    assert "not an image" in page.get_by_test_id("status").inner_text()
    # The browser logs the 415 as a failed resource load; that one is expected.
    watch.errors = [e for e in watch.errors if "415" not in e]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-upload-error.png"), full_page=True)
    watch.check()


def test_keyboard_and_labels(desktop: tuple[Page, Watch]) -> None:
    page, watch = desktop
    mouse_draw(page, ONE)
    mouse_draw(page, [[(0.2, 0.8), (0.3, 0.85)]])
    # Tab reaches every control, each with a name a screen reader can say.
    names = []
    for _ in range(8):
        page.keyboard.press("Tab")
        names.append(
            page.evaluate(
                """() => { const e = document.activeElement;
                    if (e.id === 'upload') return document.querySelector('label[for=upload]')
                        .textContent;
                    return e.getAttribute('aria-label') || e.textContent; }"""
            )
        )
    assert {"Undo", "Clear", "Upload a photo"} <= set(names)
    assert page.get_by_test_id("canvas").get_attribute("aria-label")
    # Ctrl+Z undoes the last stroke; Enter on the focused Clear button clears.
    answered(page, lambda: page.keyboard.press("Control+z"))
    assert_shows(page, 1)
    page.get_by_test_id("clear").focus()
    page.keyboard.press("Enter")
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "idle"
    watch.check()


def test_page_uses_the_canvas_size_for_the_brush(browser: Browser, server: str) -> None:
    """The same 1 drawn on a small and a large canvas covers the same share of it."""
    shares = []
    for side in (360, 1200):
        context = browser.new_context(viewport={"width": side, "height": 900})
        page = context.new_page()
        page.goto(server + "/")
        mouse_draw(page, ONE)
        shares.append(
            page.evaluate(
                """() => { const c = document.querySelector('[data-testid=canvas]');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let ink = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) ink++;
                    return ink / (c.width * c.height); }"""
            )
        )
        context.close()
    assert shares[0] > 0
    assert shares[1] == pytest.approx(shares[0], rel=0.25)


def test_png_roundtrip_of_the_canvas(desktop: tuple[Page, Watch]) -> None:
    """What the page sends is the drawing itself: a PNG of the canvas, dark strokes on white."""
    page, watch = desktop
    with page.expect_request("**/api/predict") as request_info:
        mouse_draw(page, SEVEN)
    request = request_info.value
    assert request.headers["content-type"] == "image/png"  # the PNG itself, not a form
    body = request.post_data_buffer
    start = body.index(b"\x89PNG")
    image = Image.open(io.BytesIO(body[start:]))
    pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (160, 160)  # downscaled from the screen's resolution before sending
    assert pixels.min() < 50  # ink
    assert np.median(pixels) > 200  # paper
    watch.check()


def test_a_non_digit_is_answered_not_a_digit(
    browser: Browser, refusing_server: str, refusing_run: Path, tmp_path: Path
) -> None:
    drawn = generate("heldout", 200)
    _, not_digit = Predictor.from_path(refusing_run).score_arrays(drawn.images)
    assert not_digit is not None
    star = tmp_path / "symbol.png"
    non_digit_photo(drawn.images[int(np.argmax(not_digit))]).save(star)
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    watch = Watch(page, refusing_server)
    page.goto(refusing_server + "/")
    answered(page, lambda: page.get_by_test_id("upload").set_input_files(str(star)))
    assert page.get_by_test_id("prediction").get_attribute("data-state") == "notdigit"
    assert shown_digit(page) == "✗"
    assert page.get_by_test_id("status").inner_text().startswith("Not a digit")
    assert page.get_by_test_id("preview").is_visible()  # what the model saw, still shown
    assert bar_widths(page) == pytest.approx([0.0] * 10, abs=0.5)  # no digit ranked
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-not-a-digit.png"), full_page=True)
    watch.check()
    context.close()


# --- latency, photos under strokes, failures, the API reference ---------------------------------

# Loopback and a 160-pixel drawing: pen-up to the answer on screen is a few tens of milliseconds of
# upload, recognition and drawing; a second of it is the page waiting on something.
ANSWER_BUDGET_MS = 150


def pen_stroke(page: Page, stroke: Stroke) -> None:
    box = canvas_box(page)
    x, y = stroke[0]
    page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.mouse.down()
    for x, y in stroke[1:]:
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=6)
    page.mouse.up()


def pen_up_to_answer_ms(page: Page, pen_ups: int) -> float:
    """Wait until the page shows the answer to its `pen_ups`-th stroke; the time from that pen-up
    to the answer, measured by the page itself (performance.now() in data attributes)."""
    prediction = page.get_by_test_id("prediction")
    page.locator(f'[data-testid=prediction][data-answers="{pen_ups}"]').wait_for(timeout=5000)
    assert prediction.get_attribute("data-pen-up") == str(pen_ups)
    pen_up_at = float(prediction.get_attribute("data-pen-up-at") or "nan")
    answered_at = float(prediction.get_attribute("data-answered-at") or "nan")
    return answered_at - pen_up_at


def test_every_stroke_is_answered_soon_after_pen_up(desktop: tuple[Page, Watch]) -> None:
    """Not only the first: each stroke of a drawing, one after the other, as a person draws."""
    page, watch = desktop
    strokes = [*FOUR, [(0.2, 0.9), (0.35, 0.92)], [(0.7, 0.12), (0.8, 0.1)], *ONE]
    delays = []
    for count, stroke in enumerate(strokes, start=1):
        pen_stroke(page, stroke)
        delays.append(pen_up_to_answer_ms(page, count))
        assert page.get_by_test_id("prediction").get_attribute("data-state") != "error"
    assert max(delays) < ANSWER_BUDGET_MS, delays
    watch.check()


def landscape_photo(tmp_path: Path, pixels: np.ndarray) -> Path:
    """An MNIST digit on grey paper, much wider than tall: on the square canvas it leaves white
    bands above and below, which are not part of the photo."""
    ink = np.kron(255 - pixels, np.ones((8, 8), dtype=np.uint8))
    paper = np.pad(ink, ((60, 60), (260, 260)), constant_values=225)
    path = tmp_path / "landscape.png"
    Image.fromarray(paper).convert("RGB").save(path)
    return path


def sent_image(body: bytes) -> Image.Image:
    """The image file a request sent: the body itself, or inside a multipart body."""
    starts = [at for at in (body.find(b"\x89PNG"), body.find(b"\xff\xd8\xff")) if at >= 0]
    assert starts, "no PNG or JPEG in the request"
    return Image.open(io.BytesIO(body[min(starts) :]))


def test_strokes_on_a_photo_and_undo_back_to_it(
    desktop: tuple[Page, Watch], mnist: DigitData, tmp_path: Path
) -> None:
    page, watch = desktop
    label = int(mnist.y_test[0])
    photo = landscape_photo(tmp_path, mnist.x_test[0])
    answered(page, lambda: drop_file(page, photo))
    assert_shows(page, label)
    first_answer = page.get_by_test_id("status").inner_text()

    # A stroke on the paper beside the digit: what goes to the server is the photo, at its own
    # size and aspect, with the stroke on it; no white band of the square canvas around it.
    with page.expect_request("**/api/predict") as stroke_request:
        answered(page, lambda: pen_stroke(page, [(0.1, 0.45), (0.14, 0.5)]))
    drawn_on = sent_image(stroke_request.value.post_data_buffer or b"")
    with Image.open(photo) as original:
        assert drawn_on.size == original.size
    grey = np.asarray(drawn_on.convert("L"), dtype=np.int16)
    for edge in (grey[:3], grey[-3:], grey[:, -3:]):
        assert abs(float(edge.mean()) - 225) < 8  # the paper, not the canvas' white
    assert grey[:, :3].min() > 200  # the stroke sits inside the photo, not on its edge
    assert grey[140:170, 80:100].max() < 60  # ...where it was drawn, dark on the paper

    # Undo back to the photo alone sends the photo itself again, byte for byte, and gets the
    # same answer as the upload did.
    with page.expect_request("**/api/predict") as undo_request:
        answered(page, lambda: page.get_by_test_id("undo").click())
    assert photo.read_bytes() in (undo_request.value.post_data_buffer or b"")
    assert_shows(page, label)
    assert page.get_by_test_id("status").inner_text() == first_answer
    watch.check()


def test_failures_say_whose_they_are(browser: Browser, trained_cnn_run: Path) -> None:
    """A refused image, a busy or failing service and an unreachable one: three messages, none
    of them blaming the drawing for what the network or the server did."""
    live = LiveServer(trained_cnn_run)
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    watch = Watch(page, live.url)
    page.goto(live.url + "/")
    prediction = page.get_by_test_id("prediction")
    status_line = page.get_by_test_id("status")
    texts: dict[int, tuple[str | None, str]] = {}

    def fail_with(status: int, code: str, detail: str) -> None:
        def answer(route: Route) -> None:
            body = {"error": code, "detail": detail}
            route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

        page.route("**/api/predict", answer)
        answered(page, lambda: pen_stroke(page, ONE[0]))
        page.unroute("**/api/predict", answer)
        assert prediction.get_attribute("data-state") == "error"
        texts[status] = (prediction.get_attribute("data-error"), status_line.inner_text())

    fail_with(413, "too_large", "the file is 9000000 bytes, over the limit of 8388608")
    fail_with(503, "busy", "busy: every image slot was taken for 10 s; try again shortly")
    fail_with(500, "internal_error", "the server failed; see its log")
    assert texts[413][0] == "input"
    assert "8388608" in texts[413][1]
    assert texts[503] == ("server", "The service is busy right now: try again in a moment.")
    assert texts[500][0] == "server"
    assert "500" in texts[500][1]

    page.get_by_test_id("clear").click()
    mouse_draw(page, SEVEN)  # the service itself answers: the drawing is fine
    assert_shows(page, 7)
    live.stop()
    pen_stroke(page, [(0.3, 0.5), (0.7, 0.5)])
    page.locator('[data-testid=prediction][data-error="network"]').wait_for(timeout=10000)
    unreachable = status_line.inner_text()
    assert unreachable.startswith("Cannot reach the digits service")
    assert "Failed to fetch" not in unreachable
    assert len({texts[413][1], texts[503][1], unreachable}) == 3
    assert bar_widths(page) == pytest.approx([0.0] * 10, abs=0.5)  # no stale answer left
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-unreachable.png"), full_page=True)
    # The browser logs each failed request as a failed resource load; those are the point here.
    watch.errors = [e for e in watch.errors if "Failed to load resource" not in e]
    watch.check()
    context.close()


def test_docs_page_renders_descriptions_and_links_schemas(browser: Browser, server: str) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 820})
    page = context.new_page()
    watch = Watch(page, server)  # a style or script the policy blocks is a console error
    response = page.goto(server + "/docs")
    assert response is not None
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    text = page.locator("body").inner_text()
    assert "`" not in text  # Markdown code spans are rendered, not shown raw
    assert "$ref" not in text
    assert "#/components/schemas" not in text
    assert page.locator("code", has_text="reason").count() > 0
    # Every in-page link leads somewhere, and the schemas are tables of their fields.
    missing = page.evaluate(
        """() => [...document.querySelectorAll('a[href^="#"]')]
            .map(a => a.getAttribute('href').slice(1))
            .filter(id => !document.getElementById(id))"""
    )
    assert missing == []
    fields = page.locator("section.schema:has(h3#PredictResponse) table.fields tbody tr")
    assert fields.count() == 8
    confidence = fields.filter(has_text="confidence")
    assert "number or null" in confidence.inner_text()
    assert page.locator("table").first.evaluate("t => getComputedStyle(t).borderCollapse") == (
        "collapse"
    )  # the stylesheet loaded under the policy
    page.locator("#predict_api_predict_post ~ table a", has_text="PredictResponse").first.click()
    assert page.url.endswith("#PredictResponse")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve-docs.png"))
    watch.check()
    context.close()
