"""Model-agnostic attributions: occlusion, SHAP and LIME, from a model's answers alone.

Each method takes `probabilities`, a function from uint8 N×28×28 images to N×10 probabilities (a
Predictor's `predict_arrays`), and asks it about many perturbed copies of one input, a few batches
in all. It needs no gradient, so it runs on the exported ONNX model and never imports torch.
Hiding part of the image makes it black: no ink, what MNIST's background is.

- Occlusion (Zeiler and Fergus, 2014) blacks out a 4×4 square at every position (169 copies) and
  credits each pixel with the mean fall of the digit's probability while it was hidden.
- SHAP (Lundberg and Lee, 2017) and LIME (Ribeiro et al., 2016) work on superpixels rather than
  on the 784 pixels: SLIC (Achanta et al., 2012) groups neighbouring pixels of like brightness,
  which cuts the strokes into short pieces and the background into a few patches. Only pieces
  with ink take part: blacking out a patch that is black already changes nothing, so its share
  is exactly zero and costs no model call. Every pixel gets the value of its superpixel.
- SHAP: the Shapley value of each piece for the log-odds of the digit, estimated by shap's
  Permutation explainer (random orders of the pieces, each walked forwards and backwards). The
  values add up exactly to the log-odds of the input minus those of the black image. Log-odds,
  the usual scale for a classifier: a confident digit's probability hardly moves until most
  strokes are gone, where its log-odds keep moving.
- LIME: lime_image's weighted linear model of the digit's probability over random subsets of the
  pieces, each kept with probability 1/2.

All three are deterministic for a given `seed` (occlusion has no randomness at all).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

Probabilities = Callable[[np.ndarray], np.ndarray]

AGNOSTIC_METHODS = ("occlusion", "shap", "lime")
SEED = 0
# The occluding square and its step, in pixels of the 28×28: a stroke is 2–3 pixels wide, so a
# 4-pixel square hides a piece of one stroke at a time; every pixel is under four positions.
PATCH = 4
STRIDE = 2
# SLIC on the 28×28: about 150 regions of ~5 pixels, and a compactness that lets a region follow a
# stroke's edge (intensities are 0–1). Against square grids of 2, 3 and 4 pixels and other SLIC
# settings, this gave both methods steep deletion curves at once (docs/design.md, "Explanations").
SEGMENTS = 150
COMPACTNESS = 0.5
# Budgets: ten orders for SHAP, 2 × 10 × (pieces + 1) images (a digit has 30–50 ink pieces);
# 1 000 subsets for LIME. Both explain a digit in about 60 ms on one core (docs/benchmarks.md).
SHAP_PERMUTATIONS = 10
LIME_SAMPLES = 1000
# Log-odds of probabilities this close to 0 or 1 are dominated by float32 rounding.
EPSILON = 1e-6

# shap's Permutation explainer draws its orders from NumPy's global generator, which it seeds
# when built: one explanation at a time, so that concurrent requests keep their maps seeded.
_SHAP_LOCK = threading.Lock()


class MissingLibraryError(ValueError):
    """A method whose library is not installed; the message says what to install."""


def _library(module: str, package: str, method: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingLibraryError(
            f"explaining by {method} needs {package}, which is not installed: "
            "install digits[explain] (pip install 'digits[explain]')"
        ) from None


def occlusion(
    probabilities: Probabilities,
    pixels: np.ndarray,
    target: int,
    patch: int = PATCH,
    stride: int = STRIDE,
) -> np.ndarray:
    """Per-pixel occlusion attribution of class `target` for one uint8 28×28 input: the mean drop
    of the target's probability over the squares that covered the pixel."""
    size = pixels.shape[0]
    starts = range(0, size - patch + 1, stride)
    positions = [(top, left) for top in starts for left in starts]
    hidden = np.repeat(pixels[None], len(positions), axis=0)
    for copy, (top, left) in zip(hidden, positions, strict=True):
        copy[top : top + patch, left : left + patch] = 0
    base = float(probabilities(pixels[None])[0, target])
    drops = base - probabilities(hidden)[:, target]
    total = np.zeros((size, size))
    count = np.zeros((size, size))
    for drop, (top, left) in zip(drops, positions, strict=True):
        total[top : top + patch, left : left + patch] += drop
        count[top : top + patch, left : left + patch] += 1
    return total / np.maximum(count, 1)


def superpixels(pixels: np.ndarray, method: str = "superpixels") -> tuple[np.ndarray, int]:
    """The pieces SHAP and LIME hide: a 28×28 map of piece numbers, 0 to M - 1 for the M SLIC
    regions holding ink and M for all the rest (the background, which hiding cannot change)."""
    segmentation = _library("skimage.segmentation", "scikit-image", method)
    regions = segmentation.slic(
        pixels, n_segments=SEGMENTS, compactness=COMPACTNESS, channel_axis=None, start_label=0
    )
    inked = np.unique(regions[pixels > 0])
    number = np.full(int(regions.max()) + 1, len(inked))
    number[inked] = np.arange(len(inked))
    return number[regions], len(inked)


def _with_pieces(pixels: np.ndarray, pieces: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """N copies of `pixels`, copy i with the ink pieces where `keep[i]` is false blacked out."""
    shown = np.concatenate([keep, np.ones((len(keep), 1), dtype=bool)], axis=1)  # + background
    hidden: np.ndarray = pixels[None] * shown[:, pieces]
    return hidden


def shap_values(
    probabilities: Probabilities,
    pixels: np.ndarray,
    target: int,
    *,
    permutations: int = SHAP_PERMUTATIONS,
    seed: int = SEED,
) -> np.ndarray:
    """Per-pixel SHAP values of class `target`'s log-odds for one uint8 28×28 input, over its
    ink superpixels, the hidden ones black."""
    shap = _library("shap", "shap", "shap")
    pieces, count = superpixels(pixels, "shap")
    if count == 0:
        return np.zeros(pixels.shape)

    def log_odds(keep: np.ndarray) -> np.ndarray:
        shown = probabilities(_with_pieces(pixels, pieces, keep > 0.5))[:, target]
        shown = np.clip(shown.astype(np.float64), EPSILON, 1 - EPSILON)
        result: np.ndarray = np.log(shown) - np.log1p(-shown)
        return result

    # The game: a piece is "present" (1) as drawn, "absent" (0) black; the background row is all
    # absent, the input all present.
    masker = shap.maskers.Independent(np.zeros((1, count)))
    with _SHAP_LOCK:
        explainer = shap.explainers.Permutation(log_odds, masker, seed=seed)
        found = explainer(
            np.ones((1, count)),
            max_evals=permutations * (2 * count + 1),
            batch_size=2 * count + 1,
            silent=True,
        )
    values = np.append(np.asarray(found.values[0], dtype=np.float64), 0.0)
    spread: np.ndarray = values[pieces]
    return spread


def _lime_explainer(seed: int) -> Any:
    lime_image = _library("lime.lime_image", "lime", "lime")
    return _batched_explainer_class(lime_image.LimeImageExplainer)(random_state=seed)


@functools.cache
def _batched_explainer_class(base: Any) -> Any:
    """The batched subclass of lime's explainer class, made once per process."""

    class BatchedExplainer(base):
        """lime_image's explainer with its neighbourhood drawn as lime draws it (the same calls
        on its random state) but built in one array and predicted in one batch: lime's own loop
        copies the image and builds a mask per sample in Python, behind a progress bar."""

        def data_labels(
            self,
            image: np.ndarray,
            fudged_image: np.ndarray,
            segments: np.ndarray,
            classifier_fn: Callable[[np.ndarray], np.ndarray],
            num_samples: int,
            batch_size: int = 10,
        ) -> tuple[np.ndarray, np.ndarray]:
            features = np.unique(segments).shape[0]
            data = self.random_state.randint(0, 2, num_samples * features)
            data = data.reshape((num_samples, features))
            data[0, :] = 1
            keep = data.astype(bool)[:, segments][..., None]
            return data, classifier_fn(np.where(keep, image, fudged_image))

    return BatchedExplainer


def lime_weights(
    probabilities: Probabilities,
    pixels: np.ndarray,
    target: int,
    *,
    samples: int = LIME_SAMPLES,
    seed: int = SEED,
) -> np.ndarray:
    """Per-pixel LIME weights of class `target`'s probability for one uint8 28×28 input, over
    its ink superpixels, the hidden ones black."""
    explainer = _lime_explainer(seed)
    pieces, count = superpixels(pixels, "lime")
    if count == 0:
        return np.zeros(pixels.shape)

    def classify(images: np.ndarray) -> np.ndarray:
        # lime hands over RGB copies of the grey input (its gray2rgb): one channel is the image.
        return probabilities(np.ascontiguousarray(images[..., 0], dtype=np.uint8))

    found = explainer.explain_instance(
        pixels,
        classify,
        labels=(target,),
        top_labels=None,
        hide_color=0,
        num_samples=samples,
        segmentation_fn=lambda _: pieces,
    )
    weights = np.zeros(int(pieces.max()) + 1)
    for piece, weight in found.local_exp[target]:
        weights[piece] = weight
    weights[count:] = 0.0  # the background: no change reaches it, whatever the fit says
    spread: np.ndarray = weights[pieces]
    return spread


def agnostic_attributions(
    probabilities: Probabilities,
    pixels: np.ndarray,
    target: int,
    method: str,
    *,
    seed: int = SEED,
) -> np.ndarray:
    """Signed 28×28 attribution of class `target` by occlusion, SHAP or LIME."""
    if method == "occlusion":
        return occlusion(probabilities, pixels, target)
    if method == "shap":
        return shap_values(probabilities, pixels, target, seed=seed)
    if method == "lime":
        return lime_weights(probabilities, pixels, target, seed=seed)
    raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(AGNOSTIC_METHODS)}")
