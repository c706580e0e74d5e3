"""The served model with the API's rules: one image or 784 pixels in, a `PredictResponse` out.

It joins the pieces the command line also uses (`digits.preprocess`, `digits.segment`,
`digits.Predictor`) and adds what belongs to the service: the confidence threshold and its
"not sure" answer, the preview of the 28×28 the model saw, and box coordinates in the pixels of
the image as sent. Everything here is thread-safe: routes call it from the thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from digits.answers import answer_kind, judge
from digits.predictor import Predictor
from digits.preprocess import ImageError, preprocess
from digits.segment import read_number
from digits.serve.errors import APIError, bad_input
from digits.serve.imaging import OpenedImage, decode_image, decode_opened, png_data_url
from digits.serve.schemas import Box, PredictResponse, ReadDigit, ReadResponse

log = logging.getLogger("digits.serve")
T = TypeVar("T")

# A 28×28 whose brightest pixel is this faint holds no stroke; MNIST strokes peak at 255.
BLANK_LEVEL = 24
# One ONNX Runtime thread per request: under concurrent requests, parallelism comes from the
# requests themselves, and intra-op threads would only fight over the same cores.
THREADS = 1


@dataclass(frozen=True)
class ServedModel:
    """What /api/model reports about the loaded model."""

    name: str
    recipe: str | None
    accuracy: float | None
    temperature: float
    calibration: str
    parameters: int | None
    preprocessing_version: str
    source: str


def prepared_or_bad_input(step: Callable[[], T]) -> T:
    """Run a preparation step on a decoded image; whatever it raises is answered as a 4xx.

    ImageError is the preparation's own verdict on the input. Anything else is a bug that some
    input reached: it is logged in full for fixing, and the client still gets a 4xx naming the
    problem, because no input may turn into a 5xx."""
    try:
        return step()
    except ImageError as exc:
        raise bad_input(str(exc)) from None
    except Exception as exc:
        log.exception("preparing an image failed")
        raise APIError(
            422, "unprocessable_image", f"the image could not be prepared: {exc}"
        ) from None


class Recognizer:
    def __init__(self, predictor: Predictor, threshold: float, max_digits: int) -> None:
        self.predictor = predictor
        self.threshold = threshold
        self.max_digits = max_digits
        info = predictor.info
        self.info = ServedModel(
            name=info.model,
            recipe=info.recipe,
            accuracy=info.test_accuracy,
            temperature=info.temperature,
            calibration=info.temperature_source,
            parameters=info.parameters,
            preprocessing_version=info.preprocessing_version,
            source=Path(info.path).name,
        )

    @classmethod
    def load(cls, model: str | Path, threshold: float, max_digits: int) -> Recognizer:
        """Load MODEL (a run directory or an .onnx file) once, for the life of the process."""
        return cls(Predictor.from_path(model, threads=THREADS), threshold, max_digits)

    def _answer(self, pixels: np.ndarray) -> PredictResponse:
        probabilities, refusals = self.predictor.score_arrays(pixels[None])
        row = probabilities[0]
        not_digit = None if refusals is None else float(refusals[0])
        verdict = judge(row, self.threshold, not_digit)
        return PredictResponse(
            digit=verdict.digit,
            answer=answer_kind(verdict.digit, verdict.reason),
            reason=verdict.reason,
            confidence=verdict.confidence,
            not_digit=not_digit,
            probabilities=[float(p) for p in row],
            preview=png_data_url(pixels),
            model=self.info.name,
        )

    def _no_digit(self, reason: str) -> PredictResponse:
        # Nothing reached the model, so there is no confidence and no probability to give:
        # zeros would read as a model that is sure of nothing, and would not sum to 1.
        return PredictResponse(
            digit=None,
            answer="no_digit",
            reason=reason,
            not_digit=None,
            confidence=None,
            probabilities=None,
            preview=None,
            model=self.info.name,
        )

    def predict_pixels(self, pixels: np.ndarray) -> PredictResponse:
        """A 28×28 uint8 already in MNIST form (ink bright on dark), straight to the model."""
        if int(pixels.max()) < BLANK_LEVEL:
            return self._no_digit("no digit: the pixels are blank")
        return self._answer(pixels)

    def predict_opened(self, opened: OpenedImage) -> PredictResponse:
        """An image file whose header was read and checked (`imaging.open_image`): decoded,
        prepared as MNIST was, then classified."""
        image, _ = decode_opened(opened)
        prepared = prepared_or_bad_input(lambda: preprocess(image, name="the image"))
        if prepared.pixels is None:
            return self._no_digit(prepared.reason or "no digit")
        return self._answer(prepared.pixels)

    def read_file(self, data: bytes, max_bytes: int, max_pixels: int) -> ReadResponse:
        """Every digit of an image file, left to right."""
        image, scale = decode_image(data, max_bytes, max_pixels)
        reading = prepared_or_bad_input(
            lambda: read_number(self.predictor, image, name="the image")
        )
        found = reading.digits[: self.max_digits]
        digits = []
        for piece in found:
            row = np.asarray(piece.probabilities, dtype=np.float32)
            verdict = judge(row, self.threshold, piece.not_digit)
            left, top, right, bottom = (round(v * scale) for v in piece.box)
            digits.append(
                ReadDigit(
                    digit=verdict.digit,
                    answer=answer_kind(verdict.digit, verdict.reason),
                    reason=verdict.reason,
                    confidence=verdict.confidence,
                    not_digit=piece.not_digit,
                    probabilities=piece.probabilities,
                    preview=png_data_url(piece.pixels),
                    box=Box(x=left, y=top, width=right - left, height=bottom - top),
                )
            )
        reason = reading.reason
        if len(reading.digits) > len(found):
            reason = f"showing the first {len(found)} of {len(reading.digits)} digits found"
        return ReadResponse(
            text="".join("?" if d.digit is None else str(d.digit) for d in digits),
            digits=digits,
            reason=reason,
            model=self.info.name,
        )
