"""The preprocessing recipe: every format, both polarities, lighting, noise, and the inputs that
must not produce a guess (blank, tiny) or must be refused (bombs, truncated, not images)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from digits import preprocess as pp
from digits.data import DigitData
from digits.preprocess import ImageError, preprocess
from tests.handwriting import (
    LOOKS,
    Look,
    border_shadow,
    encode,
    lined_paper,
    mnist_photo,
    pen_glyph,
    pen_photo,
    tight_scan,
    two_level,
)

FORMATS = {
    "PNG": {},
    "JPEG": {"quality": 90},
    "BMP": {},
    "GIF": {},
    "WEBP": {"quality": 90},
    "TIFF": {},
}


def _centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[0:28, 0:28]
    mass = pixels.astype(np.float64)
    return float((mass * rows).sum() / mass.sum()), float((mass * cols).sum() / mass.sum())


def _ink_box(pixels: np.ndarray) -> tuple[int, int]:
    rows = np.nonzero(pixels.max(axis=1) > 0)[0]
    cols = np.nonzero(pixels.max(axis=0) > 0)[0]
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two 28×28 images."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_output_follows_mnist_normalisation() -> None:
    result = preprocess(pen_photo(7, LOOKS["off-centre"]))
    assert result.pixels is not None and result.reason is None
    assert result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8
    assert max(_ink_box(result.pixels)) == pp.BOX  # longer side scaled to 20 px
    row, col = _centre_of_mass(result.pixels)
    assert abs(row - pp.CENTRE) <= 0.6 and abs(col - pp.CENTRE) <= 0.6
    assert (result.pixels == 0).mean() > 0.6  # ink bright on a dark background, as MNIST
    assert result.pixels.max() == 255


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_gives_the_same_digit_image(fmt: str) -> None:
    image = pen_photo(4, LOOKS["plain"])
    reference = preprocess(image).pixels
    data = encode(image.convert("P") if fmt == "GIF" else image, fmt, **FORMATS[fmt])
    result = preprocess(data)
    assert result.pixels is not None and reference is not None
    assert _similarity(result.pixels, reference) > 0.95


def test_path_input_and_debug_output(tmp_path: Path) -> None:
    path = tmp_path / "three.png"
    pen_photo(3, LOOKS["plain"]).save(path)
    debug = tmp_path / "seen.png"
    result = preprocess(path, debug_path=debug)
    assert result.source == str(path)
    assert result.pixels is not None
    saved = np.asarray(Image.open(debug))
    assert saved.shape == (28, 28) and np.array_equal(saved, result.pixels)


@pytest.mark.parametrize("look", ["inverted", "coloured-paper", "uneven-light", "noisy", "jpeg"])
def test_conditions_do_not_change_what_the_model_sees(look: str) -> None:
    clean = preprocess(pen_photo(5, LOOKS["plain"], seed=3)).pixels
    result = preprocess(pen_photo(5, LOOKS[look], seed=3)).pixels
    assert clean is not None and result is not None
    assert _similarity(result, clean) > 0.85


def test_transparent_canvas_drawing_is_flattened_onto_white() -> None:
    # What a browser canvas exports: black strokes, everything else fully transparent.
    strength = pen_glyph(2, 0.1)
    alpha = (np.pad(strength, 30) * 255).astype(np.uint8)
    rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    result = preprocess(encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    reference = preprocess(Image.fromarray(255 - alpha, mode="L")).pixels
    assert result.pixels is not None and reference is not None
    assert _similarity(result.pixels, reference) > 0.97


def test_thin_and_thick_strokes_come_out_alike() -> None:
    thin = preprocess(pen_photo(0, LOOKS["plain"], stroke=0.02)).pixels
    normal = preprocess(pen_photo(0, LOOKS["plain"], stroke=0.09)).pixels
    thick = preprocess(pen_photo(0, LOOKS["plain"], stroke=0.25)).pixels
    assert thin is not None and normal is not None and thick is not None
    ink = [float((p > 127).mean()) for p in (thin, normal, thick)]
    # Without stroke normalisation the hairline would be nearly empty and the marker a blob.
    assert max(ink) < 2.2 * min(ink)


def test_mnist_digit_passes_through_nearly_unchanged(mnist: DigitData) -> None:
    similarities = []
    for image in mnist.x_test[:50]:
        result = preprocess(image)
        assert result.pixels is not None
        similarities.append(_similarity(result.pixels, image))
    assert np.median(similarities) > 0.9


def test_printed_mnist_digit_matches_the_original(mnist: DigitData) -> None:
    photo = mnist_photo(mnist.x_test[1], LOOKS["photo"])
    result = preprocess(photo)
    assert result.pixels is not None
    assert _similarity(result.pixels, mnist.x_test[1]) > 0.85
    left, top, right, bottom = result.box or (0, 0, 0, 0)
    # The box is in the photo's pixels and surrounds the digit placed at (0.6, 0.45).
    assert left < 0.6 * photo.width < right and top < 0.45 * photo.height < bottom


@pytest.mark.parametrize("index", [0, 2, 5])  # a 7, a thin 1 and another 1
def test_sheet_of_white_paper_on_a_grey_table(mnist: DigitData, index: int) -> None:
    # The white sheet covers less of the frame than the table: the sheet is brighter than the
    # background the fit settles on, yet it is the dark strokes on it that are the ink.
    sheet = np.kron(255 - mnist.x_test[index], np.ones((8, 8), dtype=np.uint8))
    photo = Image.fromarray(np.pad(sheet, 60, constant_values=235)).convert("RGB")
    result = preprocess(encode(photo, "JPEG", quality=90))
    assert result.pixels is not None, result.reason
    assert _similarity(result.pixels, mnist.x_test[index]) > 0.8


def test_box_is_in_the_original_pixels_even_for_reduced_jpeg_decoding() -> None:
    photo = pen_photo(2, Look(size=(1600, 1200), digit_height=0.3, centre=(0.25, 0.7)))
    for data in (encode(photo, "JPEG", quality=90), encode(photo, "PNG")):
        left, top, right, bottom = preprocess(data).box or (0, 0, 0, 0)
        assert abs((left + right) / 2 - 0.25 * 1600) < 40
        assert abs((top + bottom) / 2 - 0.7 * 1200) < 40
        assert abs((bottom - top) - 0.3 * 1200) < 40


def test_arrays_of_every_kind() -> None:
    glyph = np.pad(pen_glyph(1, 0.1), 20)
    grey_float = preprocess(1.0 - glyph)
    grey_uint8 = preprocess((255 * (1 - glyph)).astype(np.uint8))
    colour = preprocess(np.repeat((255 * (1 - glyph)).astype(np.uint8)[..., None], 3, axis=2))
    boolean = preprocess(glyph > 0.5)
    results = [grey_float, grey_uint8, colour, boolean]
    assert all(r.pixels is not None for r in results)
    with pytest.raises(ImageError, match="array"):
        preprocess(np.zeros((2, 3, 4, 5)))


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (Image.new("L", (300, 200), 255), "blank"),
        (Image.new("RGB", (300, 200), (200, 180, 40)), "blank"),
        (Image.new("L", (5, 5), 0), "too small"),
        (Image.new("L", (1, 1), 128), "too small"),
    ],
    ids=["white", "yellow", "tiny", "one-pixel"],
)
def test_no_digit_is_never_a_guess(image: Image.Image, reason: str) -> None:
    result = preprocess(image)
    assert result.pixels is None
    assert result.reason is not None and result.reason.startswith("no digit:")
    assert reason in result.reason
    with pytest.raises(ValueError, match="nothing to save"):
        result.save("unused.png")


def test_near_blank_paper_with_noise_and_a_faint_smudge() -> None:
    rng = np.random.default_rng(0)
    paper = 230 + rng.normal(0, 3, (240, 320))
    paper[100:104, 150:154] -= 12  # a faint smudge, well under any pen's contrast
    image = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    result = preprocess(image)
    assert result.pixels is None and result.reason is not None
    assert result.reason.startswith("no digit:")


def test_salt_and_pepper_specks_alone_are_no_digit() -> None:
    rng = np.random.default_rng(1)
    paper = np.full((300, 300), 240, dtype=np.uint8)
    for row, col in rng.integers(0, 296, (40, 2)):
        paper[row : row + 4, col : col + 4] = 0  # dots big enough to survive the noise blur
    result = preprocess(paper)
    assert result.pixels is None and result.reason is not None
    assert "specks" in result.reason


def test_decompression_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # A PNG header announcing 20 000 × 20 000 pixels compresses to a few hundred bytes.
    image = Image.new("1", (20_000, 20_000))
    data = encode(image, "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageError, match="decompression bomb"):
        preprocess(data, name="bomb.png")
    monkeypatch.setattr(pp, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match=r"bomb.png: image is 40×40 = 1,600 pixels"):
        preprocess(Image.new("L", (40, 40)), name="bomb.png")


def test_truncated_file_names_the_input(tmp_path: Path) -> None:
    data = encode(pen_photo(6, LOOKS["plain"]), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: truncated or corrupt"):
        preprocess(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"label,pixel0\n1,0\n", "not an image"), (b"\x89PNG\r\n", "not")],
)
def test_non_images_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "upload.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=rf"upload\.png: .*{message}"):
        preprocess(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        preprocess(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="is a directory"):
        preprocess(tmp_path)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [pen_photo(d, LOOKS["plain"]).convert("P") for d in (8, 1, 4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    result = preprocess(buffer.getvalue())
    first = preprocess(frames[0]).pixels
    assert result.pixels is not None and first is not None
    assert _similarity(result.pixels, first) > 0.97


def test_sixteen_bit_tiff_and_exif_rotation() -> None:
    grey = (255 * (1 - np.pad(pen_glyph(7, 0.1), 30))).astype(np.uint16) * 257
    tiff = encode(Image.fromarray(grey), "TIFF")
    assert Image.open(io.BytesIO(tiff)).mode.startswith("I;16")
    reference = preprocess(Image.fromarray((grey // 257).astype(np.uint8))).pixels
    result = preprocess(tiff).pixels
    assert result is not None and reference is not None
    assert _similarity(result, reference) > 0.97

    # A phone photo stored sideways with an EXIF "rotate 90°" tag reads upright.
    upright = pen_photo(7, Look(size=(200, 200)))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    rotated = preprocess(encode(sideways, "JPEG", exif=exif, quality=95)).pixels
    plain = preprocess(upright).pixels
    assert rotated is not None and plain is not None
    assert _similarity(rotated, plain) > 0.9


def test_unsupported_source_type() -> None:
    with pytest.raises(ImageError, match="unsupported input type"):
        preprocess(12345)  # type: ignore[arg-type]


def test_blank_paper_with_the_table_showing_is_no_digit() -> None:
    pixels = np.full((300, 400), 235, dtype=np.uint8)
    pixels[:, :70] = 50  # the table beside the sheet
    result = preprocess(pixels)
    assert result.pixels is None and result.reason is not None
    assert "edge of the paper" in result.reason


# Any crop: tight scans, small and two-level images, printed lines, pens of every width.


def _with_margin(digit: int, seed: int, stroke: float = 0.12) -> np.ndarray:
    """The same pen digit on a plain canvas with a margin: what a tight crop should match."""
    pixels = preprocess(pen_photo(digit, LOOKS["plain"], stroke=stroke, seed=seed)).pixels
    assert pixels is not None
    return pixels


def _seen(image: Image.Image | np.ndarray) -> np.ndarray:
    result = preprocess(image)
    assert result.pixels is not None, result.reason
    return result.pixels


def _margin(image: Image.Image, share: float = 0.3) -> Image.Image:
    """The image with a margin of its background level (its darkest or lightest, whichever
    is nearer to its border's median) added all round."""
    pixels = np.asarray(image.convert("L"))
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    paper = int(pixels.min() if np.median(edge) < 128 else pixels.max())
    pad = max(2, round(share * max(pixels.shape)))
    return Image.fromarray(np.pad(pixels, pad, constant_values=paper))


@pytest.mark.parametrize("light_on_dark", [True, False], ids=["light-on-dark", "dark-on-light"])
@pytest.mark.parametrize("side", [8, 16, 28, 64])
def test_tight_crops_are_digits(side: int, light_on_dark: bool) -> None:
    # Strokes touch the frame: it is the digit's own box (or the digit is stretched to fill
    # it), as collections crop. Without a margin the digit must come out as with one.
    similarities = []
    for digit, stretch in itertools.product(range(10), (False, True)):
        scan = tight_scan(digit, side, seed=digit, light_on_dark=light_on_dark, stretch=stretch)
        pixels = _seen(scan)
        assert (pixels > 127).mean() < 0.4, digit  # ink bright on dark whichever way it came
        similarities.append(_similarity(pixels, _seen(_margin(scan))))
    # At 8×8 a digit is a few blobs and the margin changes how it is enlarged.
    assert min(similarities) > (0.55 if side == 8 else 0.8)
    assert np.median(similarities) > (0.85 if side == 8 else 0.95)


@pytest.mark.parametrize(("stroke", "stretch"), [(0.2, False), (0.14, True)])
def test_polarity_holds_when_thick_ink_fills_the_frame(stroke: float, stretch: bool) -> None:
    # A marker digit cropped tight covers about half the frame: which level is ink cannot be
    # told from how much of each there is. Up to 60 % of the frame it is still told apart.
    coverage = []
    for digit in range(10):
        bright = tight_scan(digit, 16, stroke=stroke, seed=digit, stretch=stretch)
        coverage.append(float((np.asarray(bright) > 127).mean()))
        if coverage[-1] > 0.6:
            continue
        pixels = _seen(bright)
        # (A small hole, as in a thick 4, can close one way round and not the other.)
        assert _similarity(pixels, _seen(ImageOps.invert(bright))) > 0.9, digit
        assert _similarity(pixels, _seen(_margin(bright))) > 0.75, digit
    assert np.median(coverage) > 0.4


@pytest.mark.parametrize("mode", ["1", "P", "L"], ids=["1-bit", "palette", "0-and-255"])
def test_two_level_scans_match_their_grey_originals(mode: str) -> None:
    similarities = []
    for digit in range(10):
        grey = tight_scan(digit, 16, seed=digit)
        binary = two_level(grey, mode)
        assert binary.mode == mode
        similarities.append(_similarity(_seen(binary), _seen(grey)))
        # And enlarged with nearest-neighbour, as binarised collections are often shipped.
        big = binary.resize((64, 64), Image.Resampling.NEAREST)
        similarities.append(_similarity(_seen(big), _seen(grey)))
    # Binarising moves every stroke's edge by up to half a pixel of the 16×16.
    assert min(similarities) > 0.8 and np.median(similarities) > 0.9


def test_real_scans_of_another_collection_are_all_found() -> None:
    # scikit-learn's 8×8 digits (43 writers, ink bright on dark, strokes touching the frame).
    from sklearn.datasets import load_digits

    images = (load_digits().images[:300] * (255 / 16)).round().astype(np.uint8)
    renderings = {
        "8×8": lambda d: d,
        "32×32 bilinear": lambda d: np.asarray(Image.fromarray(d).resize((32, 32))),
        "inverted": lambda d: 255 - d,
        "binarised": lambda d: np.where(d >= 128, 255, 0).astype(np.uint8),
    }
    for name, render in renderings.items():
        reasons = [preprocess(render(d)).reason for d in images]
        refused = [r for r in reasons if r is not None]
        assert len(refused) <= 3, (name, refused[:5])


@pytest.mark.parametrize("kind", ["box", "cell", "ruled", "squared"])
def test_printed_lines_are_not_the_digit(kind: str) -> None:
    for digit in (1, 4, 7, 8):
        plain = _seen(pen_photo(digit, Look(size=(240, 240), digit_height=0.55), seed=digit))
        lined = lined_paper(digit, kind, seed=digit)
        result = preprocess(lined)
        assert result.pixels is not None, result.reason
        assert _similarity(result.pixels, plain) > 0.85, (kind, digit)
        left, top, right, bottom = result.box or (0, 0, 0, 0)
        assert right - left < 0.6 * 240 and bottom - top < 0.7 * 240  # the digit's box


@pytest.mark.parametrize("kind", ["box", "cell", "ruled", "squared"])
def test_blank_lined_paper_is_no_digit(kind: str) -> None:
    result = preprocess(lined_paper(None, kind))
    assert result.pixels is None and result.reason is not None
    assert result.reason.startswith("no digit:"), result.reason


def test_a_bar_across_a_tight_crop_is_part_of_the_digit() -> None:
    # The bar of a 7 or the base of a 2 in a tight crop runs across the whole width, straight
    # and thin like a ruled line; but it ends where the rest of the digit does.
    for digit in (7, 2, 4, 5):
        glyph = pen_glyph(digit, 0.04, seed=digit)
        tight = Image.fromarray((255 * (1 - glyph)).astype(np.uint8)).resize((96, 120))
        assert _similarity(_seen(tight), _with_margin(digit, digit, stroke=0.04)) > 0.8, digit


def test_pencil_hairline_and_thick_marker() -> None:
    # A grey pencil line a pixel wide, and a marker a quarter of the digit's height wide (its
    # strokes merge where they meet: a 2's corner fills in), against an ordinary pen.
    pencil = Look(paper=(236, 234, 228), ink=(150, 150, 155), noise=2.0)
    for digit in (0, 2, 5, 7):
        normal = _with_margin(digit, digit, stroke=0.09)
        assert _similarity(_seen(pen_photo(digit, pencil, stroke=0.012, seed=digit)), normal) > 0.8
        assert _similarity(_seen(pen_photo(digit, LOOKS["plain"], 0.3, digit)), normal) > 0.75


@pytest.mark.parametrize("side", ["left", "bottom", "top"])
def test_shadow_along_the_border_is_not_the_digit(side: str) -> None:
    for digit in (1, 6, 9):
        photo = pen_photo(digit, Look(size=(300, 240), digit_height=0.5), seed=digit)
        shaded = preprocess(border_shadow(photo, side))
        assert shaded.pixels is not None, shaded.reason
        assert _similarity(shaded.pixels, _seen(photo)) > 0.9, (side, digit)
    blank = border_shadow(Image.new("RGB", (300, 240), (240, 238, 232)), side)
    result = preprocess(blank)
    assert result.pixels is None and result.reason is not None
    assert result.reason.startswith("no digit:")


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (16, 16), 0),
        Image.new("1", (16, 16), 1),
        Image.fromarray(np.random.default_rng(2).normal(128, 3, (16, 16)).astype(np.uint8)),
        Image.fromarray(np.random.default_rng(3).normal(30, 2, (8, 8)).astype(np.uint8)),
    ],
    ids=["black-16", "white-1-bit", "grey-noise-16", "dark-noise-8"],
)
def test_small_blank_scans_are_no_digit(image: Image.Image) -> None:
    result = preprocess(image)
    assert result.pixels is None and result.reason is not None
    assert result.reason.startswith("no digit:")


@pytest.mark.parametrize("width", [2, 6, 16, 40])
def test_a_plain_bar_of_any_width_is_a_one(width: int) -> None:
    # A 1 two pixels wide at MNIST scale once had no mass: cv2.moments reads an N×2 array as
    # N points, not as an image.
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).rectangle((100 - width // 2, 30, 100 + width // 2, 170), fill=0)
    result = preprocess(image)
    assert result.pixels is not None
    rows, cols = np.nonzero(result.pixels > 64)
    assert rows.max() - rows.min() >= 18 and cols.max() - cols.min() <= 8  # tall and narrow
    centre = (result.pixels * np.arange(28)[None, :]).sum() / result.pixels.sum()
    assert abs(centre - 14) < 1


def _canvas_and_scan_inputs(mnist: DigitData) -> list[Image.Image]:
    """Inputs with one exact paper level: drawings on the page's canvas (pen digits of several
    widths in the middle of 160 px, anti-aliased, either polarity), MNIST digits printed on
    white with a margin, two-level scans with a margin."""
    inputs: list[Image.Image] = []
    for digit in range(10):
        glyph = pen_glyph(digit, stroke=0.05 + 0.005 * digit, seed=digit)
        ink = Image.fromarray(np.uint8(255 - 255 * glyph)).resize((112, 112))
        canvas = Image.new("L", (160, 160), 255)
        canvas.paste(ink, (24, 24))
        inputs += [canvas, ImageOps.invert(canvas)]
        inputs.append(_margin(Image.fromarray(255 - mnist.x_test[digit]), 0.5))
        inputs.append(_margin(two_level(tight_scan(digit, 16, seed=digit), "L"), 0.5))
    return inputs


def test_the_one_level_paper_shortcut_changes_no_answer(
    mnist: DigitData, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = []
    shortcut = pp._one_level_paper

    def recording(coarse: np.ndarray) -> tuple[float, int] | None:
        found = shortcut(coarse)
        taken.append(found is not None)
        return found

    inputs = _canvas_and_scan_inputs(mnist)
    monkeypatch.setattr(pp, "_one_level_paper", recording)
    quick = [preprocess(image) for image in inputs]
    monkeypatch.setattr(pp, "_one_level_paper", lambda coarse: None)
    general = [preprocess(image) for image in inputs]
    assert sum(taken) >= len(inputs) // 2  # the shortcut is really taken on such inputs
    for index, (a, b) in enumerate(zip(quick, general, strict=True)):
        assert a.reason == b.reason, index
        assert a.box == b.box, index
        assert a.pixels is not None and b.pixels is not None, index
        assert np.array_equal(a.pixels, b.pixels), index


@pytest.mark.parametrize(
    "coarse",
    [
        np.pad(np.full((4, 4), 0.0), 6, constant_values=255.0),  # border one level: taken
        np.pad(np.full((4, 4), 250.0), 6, constant_values=255.0),  # ink too faint
        np.pad(
            np.array([[0.0, 255.0], [250.0, 0.0]]).repeat(4, 0).repeat(4, 1),
            6,
            constant_values=128.0,
        ),  # ink on both sides of the paper
        np.pad(np.full((12, 12), 0.0), 2, constant_values=255.0),  # ink over a fifth
        np.full((16, 16), 255.0),  # blank
    ],
)
def test_the_shortcut_leaves_other_images_to_the_general_path(coarse: np.ndarray) -> None:
    found = pp._one_level_paper(coarse)
    taken = coarse.shape == (16, 16) and coarse[8, 8] == 0.0 and coarse[3, 3] == 255.0
    assert (found == (255.0, -1)) if taken else found is None
