"""Not a digit: how often a run refuses non-digits, and what refusing costs on real digits. Run:

    .venv/bin/python benchmarks/not_digit.py [--run RUN ...] [--limit N] [--examples DIR]
        [--no-write]

For each run it measures:

1. The trade-off curve of the "not a digit" threshold: at each threshold in THRESHOLDS, the share
   of the held-out generated negatives refused (`load_negatives("heldout")`: glyphs of fonts the
   training negatives never used, pen letters and shapes drawn with other seeds), overall and per
   kind; MNIST test digits refused and the accuracy they cost (a refusal counts as wrong) against
   the run's plain argmax accuracy; and the same on the real out-of-domain scans of
   benchmarks/ood_sets.py (load_digits rendered nine ways, then also its generated photos), put
   through `Predictor.predict_images` so that the real preprocessing runs.
2. The held-out drawings (`negatives.draw("heldout", N)`) as images a user hands over, through the
   whole pipeline: dark on white with a margin (PNG) and photographed on grey paper (uneven light,
   noise, blur, JPEG). What they are answered with the defaults: "not a digit", "not sure", "no
   digit" or a digit.
3. `digits read` (`read_number`) on long images that hold no digit (a bar, a long thin line, a
   wavy line, a scribble, a row of letters) and, as a control, on rows of four MNIST test digits.

A run without the "not a digit" class refuses nothing; it is measured the same way, so that the
comparison shows what the class buys. It writes benchmarks/results/not_digit.json and the
"## Not a digit" section of docs/benchmarks.md (only that section). `--examples DIR` saves a few
refused real digits and non-digits that got a digit, as PNGs, to look at.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# The renderers and the reporting helpers sit beside this script, on the path when it runs.
from ood_digits import commit, default_min_confidence, machine, outcome, run_info, wrap
from ood_sets import CONDITIONS, Condition

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the handwriting generators live in tests/

from tests.handwriting import Look, encode, mnist_photo  # noqa: E402

from docs_section import replace_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "not_digit.json"
SECTION = "## Not a digit"
DEFAULT_RUNS = [ROOT / "runs" / "speed-neg", ROOT / "runs" / "speed-base"]
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.65, 0.68, 0.7, 0.8)
# The targets: share of non-digits refused, and the most accuracy refusing may cost (points).
TARGET_REFUSED = 0.90
TARGET_MNIST_DROP = 0.05
TARGET_SCAN_DROP = 0.5
DRAWINGS = 1000  # held-out drawings made into images: ±1.5 pt on a share near 90 %
VARIANTS = 8  # images per kind of no-digit strip in the `digits read` check
CONTROL_ROWS = 50  # rows of four MNIST test digits
STRIP = (400, 100)  # size of the no-digit strips, as a short line of writing
EXAMPLES = 8  # images saved per kind of mistake with --examples

Scores = tuple[np.ndarray, np.ndarray]  # N×10 digit probabilities, N not-a-digit probabilities


def scores(predictor: Any, images: np.ndarray) -> Scores:
    """Digit probabilities and not-a-digit probabilities; a run without that class gives 0."""
    probabilities, not_digit = predictor.score_arrays(images)
    if not_digit is None:
        not_digit = np.zeros(len(probabilities), dtype=np.float32)
    return probabilities, not_digit


def refusal_cost(labels: np.ndarray, guesses: np.ndarray, not_digit: np.ndarray) -> dict[str, Any]:
    """Real digits at each threshold: how many are refused and the accuracy that costs. A guess
    of -1 is an image the preprocessing found no digit in: wrong at every threshold."""
    right = guesses == labels
    plain = float(right.mean()) if len(labels) else 0.0
    curve = {}
    for threshold in THRESHOLDS:
        refused = not_digit >= threshold
        accuracy = float((right & ~refused).mean()) if len(labels) else 0.0
        curve[f"{threshold:g}"] = {
            "refused": int(refused.sum()),
            "refused_share": float(refused.mean()) if len(labels) else 0.0,
            "accuracy": accuracy,
            "drop_pt": 100 * (plain - accuracy),
        }
    return {"images": len(labels), "accuracy": plain, "curve": curve}


def lowest_allowed(
    labels: np.ndarray, guesses: np.ndarray, not_digit: np.ndarray, pt: float
) -> float:
    """The lowest threshold at which refusing costs at most `pt` points of accuracy: only digits
    read right cost anything when refused, so it sits just above the k-th highest not-a-digit
    probability among them, k the number of them `pt` allows to lose."""
    scores_right = np.sort(not_digit[guesses == labels])[::-1]
    allowed = int(np.floor(pt / 100 * len(labels) + 1e-9))
    if allowed >= len(scores_right):
        return 0.0
    return float(np.nextafter(scores_right[allowed], np.float32(np.inf)))


# --- 1. the curve ---------------------------------------------------------------------------


def negatives_curve(not_digit: np.ndarray, kinds: np.ndarray) -> dict[str, Any]:
    """Share of the held-out negatives refused at each threshold, overall and per kind."""
    names = ["all", *sorted(set(kinds.tolist()), key=lambda k: (k not in ("glyph", "letter"), k))]
    rows: dict[str, Any] = {}
    for name in names:
        chosen = not_digit if name == "all" else not_digit[kinds == name]
        rows[name] = {
            "images": len(chosen),
            "refused": {f"{t:g}": float((chosen >= t).mean()) for t in THRESHOLDS},
        }
    return rows


@dataclass
class RealSet:
    """Real digits as the pipeline answered them: label, argmax (-1: no digit found), score."""

    name: str
    kind: str
    labels: np.ndarray
    guesses: np.ndarray
    not_digit: np.ndarray
    images: list[Any]
    """What was handed over (for --examples)."""
    pixels: list[np.ndarray | None]
    """What the model saw."""


def through_pipeline(predictor: Any, condition: Condition, limit: int | None) -> RealSet:
    """A condition of ood_sets through `predict_images`, with no minimum confidence, so that the
    argmax and the not-a-digit probability of every image come back."""
    samples = condition.make(limit)
    predictions = predictor.predict_images([image for image, _ in samples], min_confidence=0.0)
    guesses, refusals = [], []
    for prediction in predictions:
        probabilities = prediction.probabilities
        guesses.append(-1 if probabilities is None else int(np.argmax(probabilities)))
        refusals.append(prediction.not_digit or 0.0)
    return RealSet(
        condition.name,
        condition.kind,
        np.array([label for _, label in samples]),
        np.array(guesses),
        np.array(refusals, dtype=np.float32),
        [image for image, _ in samples],
        [prediction.pixels for prediction in predictions],
    )


def pooled(sets: list[RealSet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.concatenate([s.labels for s in sets]),
        np.concatenate([s.guesses for s in sets]),
        np.concatenate([s.not_digit for s in sets]),
    )


def highest_refusing(negatives: np.ndarray, share: float) -> float:
    """The highest threshold that still refuses `share` of the non-digits: the not-a-digit
    probability of the last one that must be refused, the highest first."""
    if len(negatives) == 0:
        return 0.0
    ranked = np.sort(negatives)[::-1]
    return float(ranked[int(np.ceil(share * len(ranked) - 1e-9)) - 1])


def round_inside(low: float, high: float) -> float:
    """A round threshold between `low` and `high` (both in), near the middle: the coarsest of
    0.05, 0.01 and 0.001 steps that lands inside, else `low` itself."""
    middle = (low + high) / 2
    for step in (0.05, 0.01, 0.001):
        candidate = round(round(middle / step) * step, 3)
        if low <= candidate <= high:
            return candidate
    return low


def at_threshold(
    threshold: float,
    negatives: np.ndarray,
    mnist: tuple[np.ndarray, np.ndarray, np.ndarray],
    scans: list[RealSet],
) -> dict[str, Any]:
    """Every figure the targets name, at one threshold."""

    def drop(labels: np.ndarray, guesses: np.ndarray, not_digit: np.ndarray) -> float:
        right = guesses == labels
        return 100 * float(right.mean() - (right & (not_digit < threshold)).mean())

    each = {s.name: drop(s.labels, s.guesses, s.not_digit) for s in scans}
    worst = max(each, key=lambda name: each[name])
    return {
        "threshold": threshold,
        "refused": float((negatives >= threshold).mean()),
        "mnist_drop_pt": drop(*mnist),
        "pooled_drop_pt": drop(*pooled(scans)),
        "worst_scan": worst,
        "worst_drop_pt": each[worst],
    }


def threshold_ranges(
    negatives: np.ndarray, mnist: tuple[np.ndarray, np.ndarray, np.ndarray], scans: list[RealSet]
) -> dict[str, Any]:
    """Where the targets can all be met, on any threshold, not only the table's: from the lowest
    threshold the accuracy targets allow (the scans held to theirs condition by condition,
    "each", or pooled) up to the highest that still refuses TARGET_REFUSED of the non-digits;
    and a round threshold inside, when the range is not empty."""
    mnist_t = lowest_allowed(*mnist, TARGET_MNIST_DROP)
    scan_t = {
        "each": max(
            lowest_allowed(s.labels, s.guesses, s.not_digit, TARGET_SCAN_DROP) for s in scans
        ),
        "pooled": lowest_allowed(*pooled(scans), TARGET_SCAN_DROP),
    }
    high = highest_refusing(negatives, TARGET_REFUSED)
    found: dict[str, Any] = {"mnist_test_low": mnist_t, "refusing_high": high}
    for mode, threshold in scan_t.items():
        low = max(mnist_t, threshold)
        choice = round_inside(low, high) if low <= high else None
        found[mode] = {
            "scans_low": threshold,
            "low": low,
            "at_low": at_threshold(low, negatives, mnist, scans),
            "choice": None if choice is None else at_threshold(choice, negatives, mnist, scans),
        }
    return found


# --- 2. non-digits as images ------------------------------------------------------------------

# How the held-out drawings are handed over. `mnist_photo` crops the ink and prints it under a
# look; the drawings are ink bright on black, as MNIST is.
CLEAN = Look(size=(160, 160), digit_height=0.6, paper=(255, 255, 255), ink=(0, 0, 0))
PHOTO = Look(
    size=(320, 240),
    digit_height=0.45,
    centre=(0.55, 0.45),
    paper=(200, 195, 185),
    ink=(35, 35, 45),
    gradient=0.35,
    noise=6.0,
    blur=1.0,
)
RENDERINGS: dict[str, tuple[str, Callable[[Image.Image, int], bytes]]] = {
    "dark on white (PNG)": (
        "black on white, 160×160, the drawing 60 % of the height, PNG",
        lambda drawing, seed: encode(mnist_photo(np.asarray(drawing), CLEAN, seed), "PNG"),
    ),
    "photo (JPEG)": (
        "dark ink on grey paper, 320×240, 45 % of the height, uneven light, noise, blur 1 px, "
        "JPEG quality 60",
        lambda drawing, seed: encode(
            mnist_photo(np.asarray(drawing), PHOTO, seed), "JPEG", quality=60
        ),
    ),
}
ANSWERS = ("not a digit", "not sure", "no digit", "digit", "error")


def answered(
    predictor: Any, images: list[bytes], min_confidence: float
) -> tuple[list[str], np.ndarray]:
    """Each image's answer with the defaults of `digits predict`, and its not-a-digit
    probability (0 where the preprocessing found no digit or the run has no such class)."""
    predictions = predictor.predict_images(images, min_confidence=min_confidence)
    kinds = []
    for prediction in predictions:
        kind = outcome(prediction.digit, prediction.reason, prediction.error, -1)
        kinds.append("digit" if kind in ("right", "wrong") else kind)
    not_digit = np.array([prediction.not_digit or 0.0 for prediction in predictions])
    return kinds, not_digit


def drawings_as_images(
    predictor: Any,
    drawings: list[tuple[Image.Image, str]],
    rendered: dict[str, list[bytes]],
    min_confidence: float,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """What the rendered drawings are answered, how many of each kind got a digit, and the
    share refused at each threshold of the curve."""
    results, answers = {}, {}
    kinds = [kind for _, kind in drawings]
    groups = {"glyph", "letter"}
    for name, images in rendered.items():
        answers[name], not_digit = answered(predictor, images, min_confidence)
        counts = Counter(answers[name])
        passed = Counter(
            kind if kind in groups else "shape: " + kind
            for kind, answer in zip(kinds, answers[name], strict=True)
            if answer == "digit"
        )
        results[name] = {
            "images": len(images),
            **{answer: counts[answer] for answer in ANSWERS},
            "digit_by_kind": dict(passed.most_common()),
            "refused": {f"{t:g}": float((not_digit >= t).mean()) for t in THRESHOLDS},
        }
    return results, answers


# --- 3. digits read on strips without a digit ---------------------------------------------------


def _strip(draw: Callable[[ImageDraw.ImageDraw, int], None], width: int, photo: bool) -> bytes:
    """A 400×100 strip: black ink on white as PNG, or dark on grey paper, blurred, as JPEG."""
    image = Image.new("L", STRIP, 0)
    draw(ImageDraw.Draw(image), width)
    strength = np.asarray(image, dtype=np.float32) / 255
    paper, ink = (200.0, 40.0) if photo else (255.0, 0.0)
    page = Image.fromarray(np.rint(paper + (ink - paper) * strength).astype(np.uint8), mode="L")
    if photo:
        return encode(page.filter(ImageFilter.GaussianBlur(1.0)), "JPEG", quality=60)
    return encode(page, "PNG")


def _bar(draw: ImageDraw.ImageDraw, width: int) -> None:
    draw.rectangle((40, 50 - 2 * width, 360, 50 + 2 * width), fill=255)


def _line(draw: ImageDraw.ImageDraw, width: int) -> None:
    draw.line((10, 48, 390, 54), fill=255, width=max(1, width // 3))


def _wavy(draw: ImageDraw.ImageDraw, width: int) -> None:
    x = np.linspace(20, 380, 200)
    y = 50 + 22 * np.sin((x - 20) / 360 * 4 * np.pi)
    draw.line(list(zip(x.tolist(), y.tolist(), strict=True)), fill=255, width=width, joint="curve")


def _scribble(seed: int) -> Callable[[ImageDraw.ImageDraw, int], None]:
    def scribble(draw: ImageDraw.ImageDraw, width: int) -> None:
        rng = np.random.default_rng(seed)
        count = 16
        control = np.column_stack([np.linspace(30, 370, count), rng.uniform(15, 85, count)])
        control[:, 0] += rng.uniform(-25, 25, count)  # back and forth, as a hand scribbles
        t = np.linspace(0, count - 1, 40 * count)
        x = np.interp(t, np.arange(count), control[:, 0])
        y = np.interp(t, np.arange(count), control[:, 1])
        kernel = np.ones(21) / 21  # a moving average rounds the corners into a pen's curve
        x = np.convolve(np.pad(x, 10, mode="edge"), kernel, mode="valid")
        y = np.convolve(np.pad(y, 10, mode="edge"), kernel, mode="valid")
        points = list(zip(x.tolist(), y.tolist(), strict=True))
        draw.line(points, fill=255, width=width, joint="curve")

    return scribble


LETTER_ROWS = ("KEHWAM", "xwkmnv", "FRUNPE", "hkmwex")


def _letters(text: str) -> Callable[[ImageDraw.ImageDraw, int], None]:
    def letters(draw: ImageDraw.ImageDraw, width: int) -> None:
        font = ImageFont.load_default(size=64)
        draw.text((200, 50), text, fill=255, font=font, anchor="mm", stroke_width=width // 4)

    return letters


STRIP_KINDS: dict[str, str] = {
    "bar": "a filled horizontal bar, 320 px long and 12 to 64 px thick",
    "thin line": "a line across the whole strip, 1 to 5 px wide, slightly sloping",
    "wavy line": "two periods of a sine across the strip, 3 to 16 px wide",
    "scribble": "a seeded back-and-forth tangle across the strip, 3 to 16 px wide",
    "letters": "a row of letters no digit resembles ("
    + ", ".join(LETTER_ROWS)
    + "), Pillow's font",
}


def no_digit_strips() -> dict[str, list[bytes]]:
    """VARIANTS strips of each kind: four pen widths, each clean and as a photo."""
    widths = (3, 6, 10, 16)
    strips: dict[str, list[bytes]] = {kind: [] for kind in STRIP_KINDS}
    for n in range(VARIANTS):
        width, photo = widths[n % len(widths)], n >= len(widths)
        strips["bar"].append(_strip(_bar, width, photo))
        strips["thin line"].append(_strip(_line, width, photo))
        strips["wavy line"].append(_strip(_wavy, width, photo))
        strips["scribble"].append(_strip(_scribble(n), width, photo))
        strips["letters"].append(_strip(_letters(LETTER_ROWS[n % len(LETTER_ROWS)]), width, photo))
    return strips


def digit_rows(images: np.ndarray, labels: np.ndarray, count: int) -> list[tuple[bytes, str]]:
    """Rows of four MNIST test digits pasted side by side on white, 4 px apart at MNIST scale,
    enlarged to 100 px high: the control, which must still read as four digits."""
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(count):
        picks = rng.choice(len(images), 4, replace=False)
        strip = np.concatenate([np.pad(images[i], ((0, 0), (2, 2))) for i in picks], axis=1)
        page = Image.fromarray(255 - np.pad(strip, 4), mode="L")
        page = page.resize((page.width * 100 // page.height, 100), Image.Resampling.BICUBIC)
        rows.append((encode(page, "PNG"), "".join(str(int(labels[i])) for i in picks)))
    return rows


def read_text(predictor: Any, image: bytes, min_confidence: float) -> str | Exception:
    """What `digits read` reads ('?' for an unsure digit), or the error it failed with: a
    benchmark reports a crash on one image instead of stopping at it."""
    from digits.segment import read_number

    try:
        return read_number(predictor, image, min_confidence=min_confidence).text
    except Exception as exc:  # any crash in the reading is a finding, reported per image
        return exc


def read_summary(readings: list[str | Exception]) -> dict[str, Any]:
    texts = [reading for reading in readings if isinstance(reading, str)]
    errors = Counter(
        f"{type(reading).__name__}: {reading}"
        for reading in readings
        if isinstance(reading, Exception)
    )
    return {
        "images": len(readings),
        "texts": [reading if isinstance(reading, str) else None for reading in readings],
        "digits_read": [len(text) for text in texts],
        "none_read": sum(not text for text in texts),
        "errors": sum(errors.values()),
        "error_messages": dict(errors.most_common()),
    }


def read_strips(
    predictor: Any,
    strips: dict[str, list[bytes]],
    rows: list[tuple[bytes, str]],
    min_confidence: float,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind, images in strips.items():
        results[kind] = read_summary([read_text(predictor, i, min_confidence) for i in images])
    readings = [read_text(predictor, image, min_confidence) for image, _ in rows]
    control = read_summary(readings)
    control["four_read"] = sum(isinstance(r, str) and len(r) == 4 for r in readings)
    control["read_right"] = sum(r == text for r, (_, text) in zip(readings, rows, strict=True))
    results["control: 4 MNIST digits"] = control
    return results


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Inputs:
    """Everything the runs are measured on, made once."""

    negatives: Any
    mnist_x: np.ndarray
    mnist_y: np.ndarray
    conditions: list[Condition]
    drawings: list[tuple[Image.Image, str]]
    rendered: dict[str, list[bytes]]
    strips: dict[str, list[bytes]]
    rows: list[tuple[bytes, str]]


def make_inputs(limit: int | None) -> Inputs:
    from digits.data import load_mnist
    from digits.data.negatives import Negatives, draw, load_negatives

    negatives = load_negatives("heldout")
    if limit is not None:
        negatives = Negatives(negatives.images[:limit], negatives.kinds[:limit])
    mnist = load_mnist()
    # MNIST always has its test split.
    assert mnist.x_test is not None
    assert mnist.y_test is not None
    drawings = draw("heldout", DRAWINGS if limit is None else min(limit, DRAWINGS))
    rendered = {
        name: [render(drawing, seed) for seed, (drawing, _) in enumerate(drawings)]
        for name, (_, render) in RENDERINGS.items()
    }
    return Inputs(
        negatives,
        mnist.x_test[:limit],
        mnist.y_test[:limit].astype(np.int64),
        CONDITIONS,
        drawings,
        rendered,
        no_digit_strips(),
        digit_rows(
            mnist.x_test, mnist.y_test, CONTROL_ROWS if limit is None else min(limit, CONTROL_ROWS)
        ),
    )


def measure_run(
    run: Path, inputs: Inputs, limit: int | None, min_confidence: float, examples: Path | None
) -> dict[str, Any]:
    from digits.answers import NOT_DIGIT_THRESHOLD
    from digits.predictor import Predictor

    predictor = Predictor.from_path(run)
    started = time.perf_counter()
    _, refused_scores = scores(predictor, inputs.negatives.images)
    mnist_probabilities, mnist_scores = scores(predictor, inputs.mnist_x)
    mnist_guesses = np.argmax(mnist_probabilities, axis=1)
    real = [through_pipeline(predictor, condition, limit) for condition in inputs.conditions]
    scans = [s for s in real if s.kind == "scan"]
    photos = [s for s in real if s.kind == "photo"]
    drawings, answers = drawings_as_images(
        predictor, inputs.drawings, inputs.rendered, min_confidence
    )
    reading = read_strips(predictor, inputs.strips, inputs.rows, min_confidence)
    mnist_cost = refusal_cost(inputs.mnist_y, mnist_guesses, mnist_scores)
    scan_cost = {s.name: refusal_cost(s.labels, s.guesses, s.not_digit) for s in scans}
    result = {
        **run_info(run),
        "refuses_non_digits": predictor.refuses_non_digits,
        "negatives": negatives_curve(refused_scores, inputs.negatives.kinds),
        "mnist_test": mnist_cost,
        # What the run answers with its own default threshold, as `digits evaluate` counts it.
        "mnist_test_default": {
            "threshold": NOT_DIGIT_THRESHOLD,
            "refused": int((mnist_scores >= NOT_DIGIT_THRESHOLD).sum()),
            "accuracy": float(
                ((mnist_guesses == inputs.mnist_y) & (mnist_scores < NOT_DIGIT_THRESHOLD)).mean()
            ),
        },
        "scans": {"pooled": refusal_cost(*pooled(scans)), **scan_cost},
        "photos": refusal_cost(*pooled(photos)),
        "ranges": threshold_ranges(
            refused_scores, (inputs.mnist_y, mnist_guesses, mnist_scores), scans
        ),
        "drawings": drawings,
        "read": reading,
        "seconds": time.perf_counter() - started,
    }
    if examples is not None and predictor.refuses_non_digits:
        save_examples(
            examples / Path(run).name,
            inputs,
            (mnist_guesses, mnist_scores),
            scans,
            answers,
            NOT_DIGIT_THRESHOLD,
        )
    return result


def save_examples(
    folder: Path,
    inputs: Inputs,
    mnist: tuple[np.ndarray, np.ndarray],
    scans: list[RealSet],
    answers: dict[str, list[str]],
    threshold: float,
) -> None:
    """The most confidently refused real digits (what was handed over and what the model saw)
    and non-digits answered with a digit, as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    _, not_digit = mnist
    for index in np.argsort(-not_digit)[:EXAMPLES]:
        if not_digit[index] < threshold:
            break
        name = f"mnist-{index}-label{inputs.mnist_y[index]}-nd{not_digit[index]:.2f}.png"
        Image.fromarray(inputs.mnist_x[index]).resize((112, 112)).save(folder / name)
    refused = [(s.not_digit[i], s, i) for s in scans for i in range(len(s.labels))]
    refused.sort(key=lambda item: -item[0])
    # One rendering per scanned digit: the same digit is often refused in every condition.
    seen: set[int] = set()
    chosen: list[tuple[float, RealSet, int]] = []
    for score, scan, index in refused:
        if score < threshold or len(chosen) == EXAMPLES:
            break
        if index not in seen:
            seen.add(index)
            chosen.append((score, scan, index))
    for score, scan, index in chosen:
        stem = f"scan-{scan.name.replace(' ', '_')}-{index}-label{scan.labels[index]}-nd{score:.2f}"
        image = scan.images[index]
        image = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
        image.convert("L").resize((112, 112), Image.Resampling.NEAREST).save(folder / f"{stem}.png")
        pixels = scan.pixels[index]
        if pixels is not None:
            Image.fromarray(pixels).resize((112, 112)).save(folder / f"{stem}-model.png")
    for name, kinds in answers.items():
        passed = [i for i, kind in enumerate(kinds) if kind == "digit"][:EXAMPLES]
        for index in passed:
            kind = inputs.drawings[index][1]
            path = folder / f"passed-{name.split(' ')[0]}-{index}-{kind}.png"
            Image.open(io.BytesIO(inputs.rendered[name][index])).save(path)


# --- reporting --------------------------------------------------------------------------------


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def curve_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per threshold: non-digits refused; MNIST test digits refused and the points of
    accuracy lost; scans refused, points lost pooled and in the worst condition; photos."""
    rows = []
    scans = {name: row for name, row in result["scans"].items() if name != "pooled"}
    for threshold in THRESHOLDS:
        key = f"{threshold:g}"
        mnist = result["mnist_test"]["curve"][key]
        pooled_scans = result["scans"]["pooled"]["curve"][key]
        worst = max(row["curve"][key]["drop_pt"] for row in scans.values())
        rows.append(
            [
                key,
                pct(result["negatives"]["all"]["refused"][key]),
                str(mnist["refused"]),
                f"{mnist['drop_pt']:.2f}",
                pct(pooled_scans["refused_share"]),
                f"{pooled_scans['drop_pt']:.2f}",
                f"{worst:.2f}",
                f"{result['photos']['curve'][key]['drop_pt']:.2f}",
            ]
        )
    return rows


CURVE_HEAD = [
    "t",
    "non-digits",
    "MNIST ref.",
    "MNIST pt",
    "scans ref.",
    "scans pt",
    "worst pt",
    "photo pt",
]
CURVE_DOCS_HEAD = [
    "threshold",
    "non-digits refused",
    "MNIST test refused",
    "MNIST test drop (pt)",
    "scans refused",
    "scans drop (pt)",
    "worst scan drop (pt)",
    "photos drop (pt)",
]


def kind_rows(result: dict[str, Any]) -> list[list[str]]:
    """Refused per kind of 28×28 negative, and the drawings handed over as images."""
    rows = list(result["negatives"].items())
    # The renderings by their first word ("dark", "photo"), to keep the table in 80 columns.
    rows[1:1] = [("as " + name.split()[0], row) for name, row in result["drawings"].items()]
    return [
        [kind, str(row["images"]), *(pct(row["refused"][f"{t:g}"]) for t in THRESHOLDS)]
        for kind, row in rows
    ]


def scan_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per scan condition (and pooled): plain accuracy and the points lost at each threshold."""
    return [
        [
            name,
            pct(row["accuracy"]),
            *(f"{row['curve'][f'{t:g}']['drop_pt']:.2f}" for t in THRESHOLDS),
        ]
        for name, row in result["scans"].items()
    ]


def drawing_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [name, str(row["images"]), *(str(row[answer]) for answer in ANSWERS[:4])]
        for name, row in result["drawings"].items()
    ]


def read_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for kind, row in result["read"].items():
        counts = row["digits_read"]
        spread = f"{min(counts)}–{max(counts)}" if counts else "–"
        control = f"{row['read_right']} right" if "read_right" in row else ""
        longest = max((text for text in row["texts"] if text), key=len, default="")
        shown = longest if len(longest) <= 10 else longest[:9] + "…"
        rows.append(
            [
                kind,
                str(row["images"]),
                str(row["none_read"]),
                spread,
                shown,
                str(row["errors"]),
                control,
            ]
        )
    return rows


def read_errors(result: dict[str, Any]) -> str:
    """The crashes of `digits read`, per kind of strip, for the docs."""
    found = [
        f"{kind}: " + "; ".join(f"{message} ({n})" for message, n in row["error_messages"].items())
        for kind, row in result["read"].items()
        if row["error_messages"]
    ]
    return "; ".join(found)


def text_table(head: list[str], rows: list[list[str]]) -> str:
    """Right-aligned columns but the first, as wide as their widest cell: fits 80 columns."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def drops(result: dict[str, Any], threshold: float) -> dict[str, float]:
    """Non-digits refused and the points lost at one threshold of the curve."""
    key = f"{threshold:g}"
    scans = [row for name, row in result["scans"].items() if name != "pooled"]
    return {
        "refused": result["negatives"]["all"]["refused"][key],
        "mnist": result["mnist_test"]["curve"][key]["drop_pt"],
        "pooled": result["scans"]["pooled"]["curve"][key]["drop_pt"],
        "each": max(row["curve"][key]["drop_pt"] for row in scans),
    }


def meets(result: dict[str, Any], threshold: float, scans: str) -> bool:
    """Whether a threshold meets the three targets, the scans taken "each" or "pooled"."""
    found = drops(result, threshold)
    return (
        found["refused"] >= TARGET_REFUSED
        and found["mnist"] <= TARGET_MNIST_DROP + 1e-9
        and found[scans] <= TARGET_SCAN_DROP + 1e-9
    )


NB = "\u00a0"  # a no-break space: a figure and its unit stay on one line of the docs


def points(value: float) -> str:
    return f"{value:.2f}{NB}pt"


def recommendation(result: dict[str, Any]) -> str:
    """Which thresholds meet every target, held in every scan condition and over all scans
    pooled, or how far the nearest one is; and the one to use."""
    name = f"`{Path(result['path']).name}`"
    if not result["refuses_non_digits"]:
        drawn = result["drawings"]
        digits = sum(row["digit"] for row in drawn.values())
        total = sum(row["images"] for row in drawn.values())
        return (
            f"{name} has no not-a-digit class: it refuses nothing, and {digits} of the {total} "
            "held-out drawings handed over as images get a digit."
        )
    target = pct(TARGET_REFUSED).replace(" ", NB)
    ranges = result["ranges"]
    limits = f"≤{NB}{TARGET_MNIST_DROP:g}{NB}pt on MNIST test and ≤{NB}{TARGET_SCAN_DROP:g}{NB}pt"
    parts = []
    wordings = {"each": "in every scan condition", "pooled": "over all scans"}
    for mode, wording in wordings.items():
        found = ranges[mode]
        listed = [t for t in THRESHOLDS if meets(result, t, mode)]
        table = f" (of the table's: {', '.join(f'{t:g}' for t in listed)})" if listed else ""
        lead = f"Holding the scans to the target {wording}"
        if found["choice"] is not None:
            parts.append(
                f"{lead}, every threshold from {found['low']:.3f} to "
                f"{ranges['refusing_high']:.3f} meets all three targets{table}."
            )
        else:
            refused = found["at_low"]["refused"]
            short = 100 * (TARGET_REFUSED - refused)
            parts.append(
                f"{lead}, no threshold meets all three: the lowest that keeps the cost {limits} "
                f"{wording} is {found['low']:.3f}, where {pct(refused).replace(' ', NB)} of the "
                f"non-digits are refused, {short:.1f}{NB}pt short of {target}."
            )
    each, pooled_mode = ranges["each"]["choice"], ranges["pooled"]["choice"]
    choice = each or pooled_mode
    if choice is None:
        parts.append(
            "Recommendation: no threshold; the class has to refuse more non-digits or fewer real "
            "digits before a threshold can meet the targets."
        )
        return f"{name}: " + " ".join(parts)
    figures = (
        f"{pct(choice['refused']).replace(' ', NB)} of non-digits refused, "
        f"{points(choice['mnist_drop_pt'])} lost on MNIST test, "
        f"{points(choice['pooled_drop_pt'])} over all scans and {points(choice['worst_drop_pt'])} "
        f"in *{choice['worst_scan']}*, the worst scan condition"
    )
    if each is not None:
        parts.append(f"Recommendation: {choice['threshold']:g}, inside that range: {figures}.")
    else:
        parts.append(
            f"Recommendation: {choice['threshold']:g}, which meets the targets with the scans "
            f"pooled ({figures}). In every condition none does: *{choice['worst_scan']}* needs "
            "fewer real digits refused (preprocessing or training), not another threshold."
        )
    return f"{name}: " + " ".join(parts)


def mnist_summary(document: dict[str, Any]) -> str:
    """Each run's MNIST test accuracy by plain argmax and as answered with its default
    threshold (refused digits wrong, as `digits evaluate` counts them)."""
    parts = []
    for result in document["runs"].values():
        name = f"`{Path(result['path']).name}`"
        plain = pct(result["mnist_test"]["accuracy"]).replace(" ", NB)
        if result["refuses_non_digits"]:
            default = result["mnist_test_default"]
            answered = pct(default["accuracy"]).replace(" ", NB)
            parts.append(
                f"{name} {plain} by plain argmax and {answered} as answered (it refuses "
                f"{default['refused']} test digits at its default threshold "
                f"{default['threshold']:g})"
            )
        else:
            parts.append(f"{name} {plain}, refusing none")
    return (
        "MNIST test accuracy: " + "; ".join(parts) + ". Runs differ by their training (one seed "
        "each) as well as by the class, so the gap between their plain accuracies is not the "
        "cost of the class alone."
    )


def title(result: dict[str, Any]) -> str:
    name = Path(result["path"]).name
    recipe = f"recipe `{result['recipe']}`, " if result["recipe"] else ""
    accuracy = result["mnist_test"]["accuracy"]
    return f"`{name}` ({recipe}{100 * accuracy:.2f} % plain argmax accuracy on MNIST test here)"


def markdown(document: dict[str, Any]) -> str:
    first = next(iter(document["runs"].values()))
    # Per kind, the first run that has the class: one that refuses nothing shows only zeros.
    refusing = next((r for r in document["runs"].values() if r["refuses_non_digits"]), first)
    scan_names = [name for name in first["scans"] if name != "pooled"]
    scans = first["scans"]["pooled"]["images"]
    lines = [
        SECTION,
        "",
        "How often a run refuses what is not a digit, and what refusing costs on real digits "
        "(`benchmarks/not_digit.py`). A run trained with negatives has an eleventh output, the "
        "probability that the input is no digit at all; it answers *not a digit* when that "
        "probability reaches a threshold (`digits.answers.NOT_DIGIT_THRESHOLD`, "
        f"{document['not_digit_threshold']:g} today). The curve shows each threshold t:",
        "",
        f"- *non-digits refused*: of the {first['negatives']['all']['images']} held-out "
        'generated negatives (`load_negatives("heldout")`): glyphs of fonts the training '
        "negatives never use (STIX, DejaVu Sans Mono Bold Oblique, Pillow's font), pen letters "
        "and shapes drawn with other seeds, as 28×28 model inputs.",
        f"- *MNIST test refused* and *drop*: of the {first['mnist_test']['images']} MNIST test "
        "digits, how many are refused, and how many points of accuracy that costs when a "
        "refusal counts as wrong, against the run's plain argmax accuracy.",
        f"- *scans*: the {scans} real handwritten digits of scikit-learn's `load_digits`, "
        f"rendered the nine ways of `benchmarks/ood_sets.py` ({'; '.join(scan_names)}) and "
        "put through `Predictor.predict_images`, the real preprocessing: the share refused, the "
        "points lost over all of them, and the points lost in the worst of the nine. An image "
        "the preprocessing finds no digit in is wrong at every threshold and costs nothing "
        "here. *Photos* are the generated photos, drawings and typed digits of the same file.",
        "",
        f"Targets: ≥ {pct(TARGET_REFUSED)} of non-digits refused, while MNIST test accuracy falls "
        f"≤ {TARGET_MNIST_DROP:g} pt and real scans ≤ {TARGET_SCAN_DROP:g} pt, checked here "
        "both in every scan condition and over all scans pooled. The held-out sets the targets "
        "are finally checked on are other collections; nothing is tuned on these.",
        "",
        f"Command: `{document['command']}` ({document['machine']}; commit {document['commit']}, "
        f"preprocessing version {document['preprocessing_version']}; "
        f"{document['seconds']:.0f} s in all).",
    ]
    for result in document["runs"].values():
        lines += ["", f"{title(result)}:", ""]
        lines += markdown_table(CURVE_DOCS_HEAD, curve_rows(result))
        lines += ["", recommendation(result)]
    lines += ["", mnist_summary(document)]
    lines += [
        "",
        "Non-digits refused per kind of held-out negative (*all*: every 28×28 negative; *as "
        "dark*, *as photo*: the held-out drawings handed over as images, below; *glyph*: a "
        "font's letter or symbol; *letter*: a letter drawn with a pen; the rest are shapes), "
        f"`{Path(refusing['path']).name}`:",
        "",
    ]
    lines += markdown_table(
        ["kind", "images", *(f"t {t:g}" for t in THRESHOLDS)], kind_rows(refusing)
    )
    lines += [
        "",
        "Points of accuracy refusing costs in each scan condition (plain argmax accuracy in the "
        f"second column), `{Path(refusing['path']).name}`:",
        "",
    ]
    lines += markdown_table(
        ["scan condition", "accuracy", *(f"t {t:g}" for t in THRESHOLDS)], scan_rows(refusing)
    )
    lines += [
        "",
        f"The first {first['drawings'][next(iter(RENDERINGS))]['images']} held-out drawings "
        '(`negatives.draw("heldout", N)`) handed over as images, through `predict_images` '
        "with the defaults of `digits predict` (minimum confidence "
        f"{document['min_confidence']:g}, "
        f"not-a-digit threshold {document['not_digit_threshold']:g}):",
        "",
    ]
    lines += [f"- **{name}**: {about}." for name, (about, _) in RENDERINGS.items()]
    for result in document["runs"].values():
        lines += ["", f"`{Path(result['path']).name}`:", ""]
        lines += markdown_table(["rendering", "images", *ANSWERS[:4]], drawing_rows(result))
        passed = [
            f"{name}: " + ", ".join(f"{k} {n}" for k, n in list(row["digit_by_kind"].items())[:5])
            for name, row in result["drawings"].items()
            if row["digit_by_kind"] and result["refuses_non_digits"]
        ]
        if passed:
            lines += ["", "Got a digit most often: " + "; ".join(passed) + "."]
    lines += [
        "",
        f"`digits read` (`read_number`, defaults) on {STRIP[0]}×{STRIP[1]} strips with no digit "
        f"on them, {VARIANTS} of each (pen widths 3, 6, 10 and 16 px, each black on white PNG "
        "and dark on grey paper, blurred, JPEG): how many digits it reads (an unsure one, *?*, "
        "counts) and the longest text it read. The control is "
        f"{first['read']['control: 4 MNIST digits']['images']} rows of four MNIST test digits "
        "side by side, 4 px apart at MNIST scale, enlarged to 100 px high.",
        "",
    ]
    lines += [f"- **{kind}**: {about}." for kind, about in STRIP_KINDS.items()]
    for result in document["runs"].values():
        lines += ["", f"`{Path(result['path']).name}`:", ""]
        lines += markdown_table(
            [
                "strip",
                "images",
                "none read",
                "digits read (min–max)",
                "longest",
                "errors",
                "control",
            ],
            read_rows(result),
        )
        errors = read_errors(result)
        if errors:
            lines += ["", f"`digits read` failed on some strips: {errors}."]
    return "\n".join(wrap(line) for line in lines) + "\n"


def write_section(text: str) -> None:
    replace_section(text, SECTION)


def show(result: dict[str, Any]) -> None:
    print(title(result).replace("`", ""))
    print(text_table(CURVE_HEAD, curve_rows(result)))
    print()
    print(text_table(["kind", "n", *(f"t {t:g}" for t in THRESHOLDS)], kind_rows(result)))
    print()
    head = ["scans: pt lost", "acc.", *(f"t {t:g}" for t in THRESHOLDS)]
    print(text_table(head, scan_rows(result)))
    print()
    print(text_table(["drawings as", "n", *ANSWERS[:4]], drawing_rows(result)))
    print()
    print(
        text_table(
            ["digits read", "n", "none", "min–max", "longest", "errors", "control"],
            read_rows(result),
        )
    )
    print()
    print(recommendation(result).replace("`", ""))
    print()


def source_state() -> str:
    """The commit measured, and whether the source differed from it: the preprocessing and the
    prediction path are what the scans go through."""
    try:
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        changed = ""
    return commit() + (" with uncommitted changes to src/" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run",
        type=Path,
        action="append",
        help="A run directory or .onnx file; repeat for several (default: runs/speed-neg and "
        "runs/speed-base).",
    )
    parser.add_argument("--limit", type=int, help="At most N images per set.")
    parser.add_argument(
        "--examples", type=Path, help="Save refused real digits and passed non-digits here."
    )
    parser.add_argument("--no-write", action="store_true", help="Print only; write no files.")
    args = parser.parse_args()
    runs: list[Path] = args.run or DEFAULT_RUNS
    for run in runs:
        if not run.exists():
            parser.error(f"{run}: no such run (train one with `digits train --recipe speed`)")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit {args.limit}: give at least 1 image per set")

    from digits.answers import NOT_DIGIT_THRESHOLD
    from digits.preprocess import PREPROCESSING_VERSION

    min_confidence = default_min_confidence()
    started = time.perf_counter()
    inputs = make_inputs(args.limit)
    results = {
        str(run): measure_run(run, inputs, args.limit, min_confidence, args.examples)
        for run in runs
    }
    document = {
        "command": shlex.join([".venv/bin/python", "benchmarks/not_digit.py", *sys.argv[1:]]),
        "machine": machine(),
        "commit": source_state(),
        "preprocessing_version": PREPROCESSING_VERSION,
        "min_confidence": min_confidence,
        "not_digit_threshold": NOT_DIGIT_THRESHOLD,
        "thresholds": list(THRESHOLDS),
        "targets": {
            "refused": TARGET_REFUSED,
            "mnist_drop_pt": TARGET_MNIST_DROP,
            "scan_drop_pt": TARGET_SCAN_DROP,
        },
        "limit": args.limit,
        "seconds": time.perf_counter() - started,
        "runs": results,
    }
    for result in results.values():
        show(result)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        write_section(markdown(document))


if __name__ == "__main__":
    main()
