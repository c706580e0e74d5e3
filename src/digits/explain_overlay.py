"""An attribution map drawn over the 28×28 the model saw, with NumPy and OpenCV alone.

This is the service's picture (no matplotlib on the serving path): the input in grey, dimmed,
under red where a pixel pushed the answer towards the digit and blue where it pushed away, more
opaque the larger its share. Each of the 28×28 pixels becomes a square block, so the map lines up
with the preview of the input, drawn pixelated too.
"""

from __future__ import annotations

import numpy as np

SCALE = 4  # 112×112: sharp where the page shows it at 84 to 168 CSS pixels
# BGR, as OpenCV writes them.
TOWARDS = np.array([40, 40, 230], dtype=np.float64)  # red
AWAY = np.array([230, 120, 30], dtype=np.float64)  # blue
INK_LEVEL = 0.55  # the input's brightness under the colours: seen, but not competing with them
MAX_OPACITY = 0.85


def overlay(pixels: np.ndarray, attributions: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """A BGR uint8 image (28·scale a side) of `attributions` over the uint8 28×28 `pixels`; the
    largest magnitude gets the full colour, the sign picks red or blue."""
    if pixels.shape != attributions.shape or pixels.ndim != 2:
        raise ValueError(
            f"pixels {pixels.shape} and attributions {attributions.shape}: "
            "expected the same 2-D shape"
        )
    values = np.nan_to_num(np.asarray(attributions, dtype=np.float64))
    limit = float(np.abs(values).max()) or 1.0
    opacity = (MAX_OPACITY * np.abs(values) / limit)[..., None]
    grey = np.repeat((INK_LEVEL * pixels.astype(np.float64))[..., None], 3, axis=2)
    colour = np.where((values >= 0)[..., None], TOWARDS, AWAY)
    image = np.rint((1 - opacity) * grey + opacity * colour).astype(np.uint8)
    return np.kron(image, np.ones((scale, scale, 1), dtype=np.uint8))
