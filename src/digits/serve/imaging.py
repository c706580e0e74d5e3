"""Turn request bytes into a decoded image, refusing anything unsafe before the work is done.

The content decides, never the file name or the declared type: Pillow identifies the format from
the bytes, the pixel count is read from the header and checked before any pixel is decoded (so a
small file that expands to gigabytes is refused), and the image is then fully decoded so that a
truncated or corrupt file fails here, as a 4xx, rather than later.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from digits.preprocess import jpeg_short_of_data
from digits.serve.errors import APIError, bad_input, too_large, unsupported

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# JPEGs decode directly at a reduced scale, no smaller than this on their longer side: digits are
# located at 512 pixels anyway, and a 12-megapixel photo then decodes in a fraction of the time.
DRAFT_SIDE = 1024
# Other images larger than this on their longer side are box-reduced by a whole factor right after
# decoding, so that preprocessing's copies (grey, float) are of the small image, not the big one.
# Preprocessing and reading work at 320 pixels, so three times that loses nothing they use.
REDUCE_SIDE = 1024
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "RGBa", "La", "I", "F", "I;16")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_without_pixels(data: bytes) -> tuple[int, int] | None:
    """The width and height of a PNG whose header declares no pixels, which Pillow refuses to
    open as if it were no image at all; None for anything else."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width == 0 or height == 0 else None


def _reduced(image: Image.Image) -> Image.Image:
    """A large decoded image box-reduced by a whole factor, its longer side staying at least
    REDUCE_SIDE; the image itself when small, or of a mode Pillow cannot reduce."""
    factor = max(image.size) // REDUCE_SIDE
    if factor < 2 or image.mode not in REDUCIBLE:
        return image
    reduced = image.reduce(factor)
    reduced.info = image.info
    return reduced


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Bytes of a base64 string, plain or as a data URL (`data:image/png;base64,...`)."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise bad_input("image: a data URL must be base64-encoded (data:...;base64,...)")
    text = "".join(text.split())
    if len(text) * 3 // 4 > max_bytes:
        raise too_large(f"image: larger than {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_input("image: not valid base64") from None


@dataclass(frozen=True)
class OpenedImage:
    """An image file whose header is read and checked, its pixels not decoded yet."""

    image: Image.Image
    data: bytes
    size: tuple[int, int]
    """Width and height as the file declares them."""

    @property
    def decoded_pixels(self) -> int:
        """How many pixels decoding will produce (fewer than declared for a JPEG in draft)."""
        width, height = self.image.size
        return width * height


@contextlib.contextmanager
def _decoding(data: bytes) -> Iterator[None]:
    """Pillow's many ways of saying "bad file" turned into the API's errors."""
    try:
        with warnings.catch_warnings():
            # Our own pixel limit is the guard; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except APIError:
        raise
    except UnidentifiedImageError:
        empty = _png_without_pixels(data)
        if empty is not None:
            raise bad_input(f"the image has no pixels ({empty[0]}×{empty[1]})") from None
        raise unsupported(
            f"not an image in a supported format ({', '.join(FORMATS)}); "
            "the content decides, not the file name"
        ) from None
    except Image.DecompressionBombError as exc:
        raise too_large(f"the image expands too far when decoded: {exc}") from None
    except Exception as exc:
        # Pillow reports corrupt and truncated data with many exception types (OSError,
        # SyntaxError, ValueError, struct.error, EOFError...): all of them mean bad input.
        raise bad_input(f"the image could not be decoded: {type(exc).__name__}: {exc}") from None


def open_image(data: bytes, max_bytes: int, max_pixels: int) -> OpenedImage:
    """Read an image file's header and check it against the limits, decoding no pixel: cheap
    enough for the event loop, and what tells whether decoding will be cheap too."""
    if not data:
        raise bad_input("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        # A multipart file is read one byte past the limit: the size beyond is unknown.
        raise too_large(f"the image is over {max_bytes} bytes, the limit")
    with _decoding(data):
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = image.size
        if width < 1 or height < 1:
            raise bad_input(f"the image has no pixels ({width}×{height})")
        if image.format == "JPEG":
            # Sets the size it will decode at (1/2, 1/4 or 1/8 while both sides stay at
            # least DRAFT_SIDE): the pixel limit is on that, what decoding costs.
            image.draft(image.mode, (DRAFT_SIDE, DRAFT_SIDE))
        decoded_width, decoded_height = image.size
        if decoded_width * decoded_height > max_pixels:
            at = (
                ""
                if image.size == (width, height)
                else f", {decoded_width}×{decoded_height} when decoded at reduced scale"
            )
            raise too_large(
                f"the image is {width}×{height} = {width * height} pixels{at}; "
                f"the limit is {max_pixels}"
            )
    return OpenedImage(image, data, (width, height))


def decode_opened(opened: OpenedImage) -> tuple[Image.Image, float]:
    """The opened image fully decoded, and the factor from its pixels to the file's (above 1
    when a JPEG was decoded at reduced scale or a large image reduced after decoding)."""
    image = opened.image
    with _decoding(opened.data):
        image.seek(0)  # the first frame of an animation
        image.load()
        if image.format == "JPEG":
            short = jpeg_short_of_data(opened.data)
            if short is not None:  # Pillow fills a truncated JPEG with grey, silently
                raise bad_input(f"the image is truncated or corrupt: {short}")
        decoded = _reduced(image)
    return decoded, max(opened.size) / max(decoded.size)


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> tuple[Image.Image, float]:
    """A fully decoded image from file bytes, and the factor from its pixels to the file's;
    or an APIError saying what is wrong (`open_image`, then `decode_opened`)."""
    return decode_opened(open_image(data, max_bytes, max_pixels))


def pixels_to_array(pixels: list[float]) -> np.ndarray:
    """784 numbers 0–255, row by row, ink bright on dark (MNIST, Kaggle CSV) → 28×28 uint8."""
    array = np.asarray(pixels, dtype=np.float64)
    if array.shape != (784,):
        raise APIError(422, "invalid_request", f"pixels: expected 784 numbers, got {array.size}")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise APIError(422, "invalid_request", "pixels: every value must be a number from 0 to 255")
    return np.rint(array).astype(np.uint8).reshape(28, 28)


def png_data_url(image: np.ndarray) -> str:
    """A 2-D uint8 array as a PNG data URL, for showing the user what the model saw. Encoded
    by OpenCV: a fifth of the time Pillow takes for a 28×28, once per answer."""
    encoded, png = cv2.imencode(".png", np.ascontiguousarray(image, dtype=np.uint8))
    if not encoded:  # (a 2-D uint8 array always encodes; this would be a bug)
        raise ValueError(f"could not encode a {image.shape} array as PNG")
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
