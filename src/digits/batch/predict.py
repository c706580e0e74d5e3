"""Predicting a chunk of inputs: each decoded, preprocessed and predicted with one model call
for the lot, one answer or error entry per input whatever happens to the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from digits.answers import NOT_SURE_THRESHOLD
from digits.batch.inputs import Input, InputError
from digits.predictor import Prediction, Predictor

# Files read and preprocessed per model call: large enough to batch the model, small enough that
# a folder of photos never sits in memory at once.
CHUNK = 64


def _predict_one(predictor: Predictor, data: bytes, name: str, min_confidence: float) -> Prediction:
    try:
        return predictor.predict_image(data, name=name, min_confidence=min_confidence)
    except Exception as exc:  # not an ImageError: preprocessing failed on this image's content
        detail = f"{type(exc).__name__}: {exc}"
        return Prediction(name, None, None, error=f"{name}: could not be processed ({detail})")


def predict_inputs(
    predictor: Predictor,
    inputs: Sequence[Input],
    min_confidence: float = NOT_SURE_THRESHOLD,
    base: str | None = None,
) -> list[Prediction]:
    """One answer or error entry per input, in order, whatever happens to the others; one model
    call for the lot."""
    answers: list[Prediction | None] = []
    readable: list[tuple[bytes, str]] = []
    for item in inputs:
        try:
            readable.append((item.read(base), item.name))
            answers.append(None)
        except InputError as exc:
            answers.append(Prediction(item.name, None, None, error=str(exc)))
    sources, names = [data for data, _ in readable], [name for _, name in readable]
    try:
        predicted = predictor.predict_images(sources, names=names, min_confidence=min_confidence)
    except Exception:
        # Something other than an ImageError escaped (an image mode preprocessing does not
        # handle): one at a time, so that only the file at fault gets an error entry.
        predicted = [_predict_one(predictor, d, n, min_confidence) for d, n in readable]
    filled = iter(predicted)
    return [answer if answer is not None else next(filled) for answer in answers]


def chunks(inputs: Iterable[Input], size: int = CHUNK) -> Iterator[list[Input]]:
    iterator = iter(inputs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def to_entries(predictions: list[Prediction]) -> list[dict[str, Any]]:
    return [prediction.to_dict() for prediction in predictions]
