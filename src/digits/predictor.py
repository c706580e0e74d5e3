"""Torch-free inference: an exported `model.onnx` in ONNX Runtime, fed by `preprocess`.

    predictor = Predictor.from_path("runs/cnn-seed0")        # or a .onnx file
    predictor.predict_arrays(uint8_images)                   # N×28×28 → float32 N×10
    predictor.predict_images(["photo.jpg", pil_image])       # decode + preprocess + predict

This module imports NumPy, Pillow and ONNX Runtime only, never torch, so the `serve` install stays
small and a command that predicts starts in well under a second. Load a predictor once and reuse it:
creating the session is the expensive part.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from digits.answers import NOT_SURE_THRESHOLD, answer_kind, judge
from digits.preprocess import (
    IMAGE_SUFFIXES,
    PREPROCESSING_VERSION,
    ImageError,
    Source,
    describe_source,
    preprocess,
)
from digits.run_files import (
    CONFIG_FILE,
    ENSEMBLE_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    run_state,
    unfinished_message,
)

INPUT_NAME = "images"
LOGITS_OUTPUT = "logits"
PROBABILITIES_OUTPUT = "probabilities"
NOT_DIGIT_OUTPUT = "not_digit"
METADATA_PREFIX = "digits."


class ModelError(ValueError):
    """A MODEL argument that is not a usable exported model; the message names it."""


@dataclass(frozen=True)
class ModelInfo:
    """What an exported model says about itself (ONNX metadata written by `digits export`)."""

    path: str
    model: str
    recipe: str | None
    test_accuracy: float | None
    temperature: float
    temperature_source: str
    preprocessing_version: str
    labels: list[str]
    parameters: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "recipe": self.recipe,
            "test_accuracy": self.test_accuracy,
            "temperature": self.temperature,
            "temperature_source": self.temperature_source,
            "preprocessing_version": self.preprocessing_version,
            "labels": self.labels,
            "parameters": self.parameters,
        }


def _optional_float(value: str | None) -> float | None:
    return None if value is None or value in ("", "null") else float(value)


def read_model_info(path: str, metadata: dict[str, str]) -> ModelInfo:
    meta = {
        key[len(METADATA_PREFIX) :]: value
        for key, value in metadata.items()
        if key.startswith(METADATA_PREFIX)
    }
    parameters = _optional_float(meta.get("parameters"))
    return ModelInfo(
        path=path,
        model=meta.get("model", "unknown"),
        recipe=meta.get("recipe") or None,
        test_accuracy=_optional_float(meta.get("test_accuracy")),
        temperature=_optional_float(meta.get("temperature")) or 1.0,
        temperature_source=meta.get("temperature_source", "not recorded: temperature 1"),
        preprocessing_version=meta.get("preprocessing_version", "unknown"),
        labels=json.loads(meta.get("labels", json.dumps([str(d) for d in range(10)]))),
        parameters=None if parameters is None else int(parameters),
    )


def resolve_model_path(model: str | Path) -> Path:
    """MODEL as given on the command line (run directory or .onnx file) → the .onnx file."""
    path = Path(model)
    if path.is_dir():
        onnx_path = path / ONNX_FILE
        is_run = any((path / name).exists() for name in (CONFIG_FILE, ENSEMBLE_FILE))
        # A run's model.onnx is only whole once the run is finished (calibrated, then exported);
        # a folder holding just an .onnx file (an exported copy) is served as the file.
        if is_run and run_state(path) != "finished":
            raise ModelError(unfinished_message(path))
        if onnx_path.exists():
            return onnx_path
        if (path / WEIGHTS_FILE).exists():
            raise ModelError(
                f"{path}: the run has no {ONNX_FILE}; create it with `digits export {path}`"
            )
        raise ModelError(f"{path}: not a run directory (no {ONNX_FILE} in it)")
    if not path.exists():
        raise ModelError(f"{path}: no such model (give a run directory or an .onnx file)")
    if path.suffix != ".onnx":
        raise ModelError(f"{path}: not an .onnx file or a run directory")
    return path


@dataclass
class Prediction:
    """The answer for one image. `digit` is None when there is no digit ("no digit: ..."), it is
    not a digit ("not a digit: ..."), the model is not sure ("not sure: ...") or the input failed
    (`error`); `reason` says which."""

    file: str
    digit: int | None
    confidence: float | None
    probabilities: list[float] | None = None
    reason: str | None = None
    error: str | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)
    box: tuple[int, int, int, int] | None = None
    not_digit: float | None = None
    """Probability that the input is no digit at all (models with that class; else None)."""

    @property
    def answer(self) -> str:
        """The kind of answer (`digits.answers.Answer`), or "error" for an unusable input."""
        return "error" if self.error is not None else answer_kind(self.digit, self.reason)

    def top(self, k: int) -> list[dict[str, float | int]]:
        if self.probabilities is None:
            return []
        order = np.argsort(self.probabilities)[::-1][:k]
        return [{"digit": int(d), "probability": float(self.probabilities[d])} for d in order]

    def to_dict(self, top: int = 0) -> dict[str, Any]:
        """The `digits predict --json` entry: every answer has every key (null where there is
        nothing to say: no box on a blank image, no `not_digit` for a model without that
        class), so that a consumer reads each entry the same way; `top` only when asked for."""
        document: dict[str, Any] = {
            "file": self.file,
            "digit": self.digit,
            "answer": self.answer,
            "confidence": self.confidence,
        }
        if top:
            document["top"] = self.top(top)
        document["box"] = box_to_dict(self.box)
        document["not_digit"] = self.not_digit
        document["reason"] = self.reason
        document["error"] = self.error
        return document


def box_to_dict(box: tuple[int, int, int, int] | None) -> dict[str, int] | None:
    """A (left, top, right, bottom) box as the API writes one: {x, y, width, height} in pixels of
    the image as read; None stays None."""
    if box is None:
        return None
    left, top, right, bottom = box
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}


def default_threads() -> int:
    # Two threads saturate the small convolutions here; more only add synchronisation cost.
    return max(1, min(2, os.cpu_count() or 1))


class Predictor:
    """An exported model in an ONNX Runtime session; thread-safe for concurrent `run` calls."""

    def __init__(self, session: Any, info: ModelInfo) -> None:
        self.session = session
        self.info = info
        outputs = {output.name for output in session.get_outputs()}
        self._input = session.get_inputs()[0].name
        self._output = PROBABILITIES_OUTPUT if PROBABILITIES_OUTPUT in outputs else None
        self._not_digit = NOT_DIGIT_OUTPUT if NOT_DIGIT_OUTPUT in outputs else None

    @property
    def refuses_non_digits(self) -> bool:
        """Whether the model has the "not a digit" class (trained with negatives)."""
        return self._not_digit is not None

    @classmethod
    def from_path(cls, model: str | Path, *, threads: int | None = None) -> Predictor:
        """Load MODEL: a run directory holding model.onnx, or an .onnx file."""
        import onnxruntime as ort

        path = resolve_model_path(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad files
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        metadata = session.get_modelmeta().custom_metadata_map
        return cls(session, read_model_info(str(path), dict(metadata)))

    def predict_arrays(self, images: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """uint8 N×28×28 (or one 28×28) in MNIST form → float32 N×10 calibrated probabilities."""
        return self.score_arrays(images, batch_size)[0]

    def score_arrays(
        self, images: np.ndarray, batch_size: int = 4096
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The N×10 calibrated digit probabilities and, for a model with that class, the N
        probabilities that each input is not a digit at all (else None)."""
        images = np.asarray(images)
        if images.ndim == 2:
            images = images[None]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"images must be N×28×28, got shape {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0–255, as MNIST), got {images.dtype}")
        results, not_digit = [], []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].astype(np.float32)
            batch *= 1.0 / 255.0
            feed = {self._input: batch[:, None]}
            if self._output is not None:
                names = [self._output] + ([self._not_digit] if self._not_digit else [])
                outputs = self.session.run(names, feed)
                results.append(outputs[0])
                not_digit.extend(outputs[1:])
            else:  # a foreign ONNX file with logits only: softmax here, temperature 1
                logits = self.session.run(None, feed)[0].astype(np.float32)
                logits -= logits.max(axis=1, keepdims=True)
                exp = np.exp(logits)
                results.append(exp / exp.sum(axis=1, keepdims=True))
        if not results:
            empty = np.empty(0, dtype=np.float32) if self._not_digit else None
            return np.empty((0, 10), dtype=np.float32), empty
        probabilities = np.concatenate(results).astype(np.float32, copy=False)
        refusals = np.concatenate(not_digit).astype(np.float32) if not_digit else None
        return probabilities, refusals

    def predict_images(
        self,
        images: Iterable[Source],
        *,
        names: Sequence[str] | None = None,
        min_confidence: float = NOT_SURE_THRESHOLD,
    ) -> list[Prediction]:
        """Decode, preprocess and classify each image; a bad input gets its own error entry.

        `names` label the inputs in the results (defaults to the path or a description).
        An answer whose confidence is below `min_confidence` comes back with digit None ("not
        sure"), and so does one the model takes for no digit at all ("not a digit").
        """
        sources = list(images)
        labels = list(names) if names is not None else [describe_source(s) for s in sources]
        if len(labels) != len(sources):
            raise ValueError(f"{len(labels)} names for {len(sources)} images")
        predictions: list[Prediction] = []
        ready: list[tuple[int, np.ndarray]] = []
        for source, name in zip(sources, labels, strict=True):
            try:
                result = preprocess(source, name=name)
            except ImageError as exc:
                predictions.append(Prediction(name, None, None, error=str(exc)))
                continue
            predictions.append(
                Prediction(name, None, None, reason=result.reason, pixels=result.pixels)
            )
            if result.pixels is not None:
                predictions[-1].box = result.box
                ready.append((len(predictions) - 1, result.pixels))
        if ready:
            probabilities, not_digit = self.score_arrays(np.stack([pixels for _, pixels in ready]))
            for position, ((index, _), row) in enumerate(zip(ready, probabilities, strict=True)):
                refusal = None if not_digit is None else float(not_digit[position])
                fill_prediction(predictions[index], row, min_confidence, refusal)
        return predictions

    def predict_image(
        self, image: Source, *, name: str | None = None, min_confidence: float = NOT_SURE_THRESHOLD
    ) -> Prediction:
        """One image; `name` labels it in the result and in error messages (e.g. a filename)."""
        names = None if name is None else [name]
        return self.predict_images([image], names=names, min_confidence=min_confidence)[0]

    def describe(self) -> dict[str, Any]:
        document = self.info.to_dict()
        document["runtime_preprocessing_version"] = PREPROCESSING_VERSION
        return document


def fill_prediction(
    prediction: Prediction, row: np.ndarray, min_confidence: float, not_digit: float | None = None
) -> None:
    """Set digit, confidence and probabilities from one probability row (and the probability
    that the input is not a digit, for models that have that class); see `digits.answers`."""
    verdict = judge(row, min_confidence, not_digit)
    prediction.digit, prediction.reason = verdict.digit, verdict.reason
    prediction.confidence = verdict.confidence
    prediction.probabilities = [float(p) for p in row]
    prediction.not_digit = not_digit


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the image files under directories (walked, sorted, symbolic links
    followed). What cannot be used is kept too, so that each gets its own error entry instead of
    silently vanishing: missing paths, folders that cannot be read, dangling symbolic links,
    symbolic-link loops and links to a folder above (only a link whose name says it is not an
    image is left out, like any other file of that kind)."""
    return list(iter_images(paths))


def iter_images(paths: Iterable[str | Path]) -> Iterator[Path]:
    """`find_images` one path at a time, in the same order: a folder is walked as the paths are
    taken, holding the listings of the folders on the way down only, never the whole tree's."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from _walk(path, Path(os.path.realpath(path)), frozenset())
        else:
            yield path


def _walk(folder: Path, real: Path, above: frozenset[tuple[int, int]]) -> Iterator[Path]:
    """Depth first, each folder's entries sorted as paths: the order of sorting every path found
    under the top folder. `real` is the folder's real path and `above` the identities of the
    folders walked to reach it, so that a link back to any of them is reported, not followed."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: Path(entry.path))
    except OSError:
        yield folder  # opening it again for its entry says why it cannot be read
        return
    for entry in entries:
        path = Path(entry.path)
        named_image = path.suffix.lower() in IMAGE_SUFFIXES
        try:
            info = entry.stat()  # follows symbolic links
        except OSError:  # dangling, a loop, or gone since the listing
            if named_image or not path.suffix:  # a link without a suffix may be to a folder
                yield path
            continue
        if not stat.S_ISDIR(info.st_mode):
            if named_image:
                yield path  # non-regular files (a FIFO) too: each gets its refusal
            continue
        target = Path(os.path.realpath(path))
        identity = (info.st_dev, info.st_ino)
        if real.is_relative_to(target) or identity in above:
            yield path  # a link to a folder above: walking it would never end
            continue
        yield from _walk(path, target, above | {identity})
