"""How a model's output becomes an answer: a digit, "not sure", or "not a digit".

One place for the rules, so that `digits predict`, `digits read`, the HTTP API, the page and
`digits evaluate` answer alike:

- A model trained with negatives (`negatives` > 0 in its recipe) has an eleventh output, "not a
  digit". When its probability reaches `NOT_DIGIT_THRESHOLD`, the answer is `digit: null` with a
  reason that starts "not a digit". The ten digit probabilities are then renormalised among
  themselves: they say which digit it is, given that it is one.
- Otherwise, when the best digit's calibrated probability is below `NOT_SURE_THRESHOLD`, the answer
  is `digit: null`, "not sure: ...". With a calibrated model "51 % sure" means right about half
  the time, so 0.5 is where a guess stops being more likely right than wrong.
- "no digit: ..." (nothing on the image) comes from preprocessing, before any model runs.

NumPy only: this is on the torch-free prediction path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

NOT_SURE_THRESHOLD = 0.5
"""Default confidence below which an answer is "not sure" (CLI `--min-confidence`, service
`DIGITS_SERVE_THRESHOLD`)."""

NOT_DIGIT_THRESHOLD = 0.68
"""Probability of the "not a digit" class from which an input is refused as not a digit. Read off
the curves of `benchmarks/not_digit.py` (docs/benchmarks.md, "Not a digit") for three `speed`
seeds: the held-out generated non-digits, scikit-learn's scans through the real preprocessing, and
MNIST test, which therefore no longer counts as unseen for this one number. From 0.679 to 0.690
every seed refuses ≥ 90 % of the non-digits while losing ≤ 0.05 pt of MNIST test and ≤ 0.5 pt of
the scans (pooled); `best` refuses ~92.5 % there and loses nothing on MNIST test. (It was 0.6,
chosen on `best`'s validation split, when `speed` was trained with half as many negatives.)"""

DIGITS = 10

# What each kind of null answer's reason starts with; `answer_kind` reads them back.
NO_DIGIT = "no digit"
NOT_A_DIGIT = "not a digit"
NOT_SURE = "not sure"
Answer = Literal["digit", "no_digit", "not_digit", "not_sure"]
"""The kinds of answer, as the API's `answer` field names them."""


def split_not_digit(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """N×10 or N×11 class probabilities → (N×10 digit probabilities summing to 1, the N
    "not a digit" probabilities, or None for a model without that class)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] not in (DIGITS, DIGITS + 1):
        raise ValueError(f"probabilities must be N×10 or N×11, got {probabilities.shape}")
    if probabilities.shape[1] == DIGITS:
        return probabilities, None
    digits = probabilities[:, :DIGITS]
    total = digits.sum(axis=1, keepdims=True)
    return digits / np.maximum(total, 1e-30), probabilities[:, DIGITS]


def percent(value: float) -> str:
    """A share as a whole percentage, never rounded up to a threshold it is below (0.929 with a
    threshold of 0.93 reads "92 %", not "93 %")."""
    return f"{math.floor(value * 100 + 1e-9):.0f} %"


def _places(share: float) -> int:
    """Decimal places that show a threshold as it was set: 0 for 0.93, 1 for 0.925, at most 2."""
    for places in (0, 1):
        scaled = share * 100 * 10**places
        if abs(scaled - round(scaled)) < 1e-6:
            return places
    return 2


def not_sure_reason(best: int, confidence: float, threshold: float) -> str:
    """'not sure: best guess 2 at 92 %, below the 93 % threshold'. The confidence is floored, and
    never shown at or above the threshold it is below: 0.92999999999 is not "93 %, below 93 %"."""
    places = _places(threshold)
    step = 10.0**-places
    shown_threshold = round(threshold * 100, places)
    shown = math.floor(confidence * 100 / step + 1e-9) * step
    shown = max(0.0, min(shown, shown_threshold - step))
    return (
        f"{NOT_SURE}: best guess {best} at {shown:.{places}f} %, "
        f"below the {shown_threshold:.{places}f} % threshold"
    )


def not_digit_reason(not_digit: float, best: int) -> str:
    return (
        f"{NOT_A_DIGIT}: this looks like a letter, a symbol or a drawing "
        f"({percent(not_digit)} sure; the closest digit is {best})"
    )


@dataclass(frozen=True)
class Verdict:
    """The answer for one row of digit probabilities."""

    digit: int | None
    reason: str | None
    confidence: float
    """The best digit's probability, whether or not it was given as the answer."""


def judge(row: np.ndarray, threshold: float, not_digit: float | None = None) -> Verdict:
    """One image's digit probabilities (and its "not a digit" probability, for models with
    that class) → the digit, or null and why."""
    best = int(np.argmax(row))
    confidence = float(row[best])
    if not_digit is not None and not_digit >= NOT_DIGIT_THRESHOLD:
        return Verdict(None, not_digit_reason(not_digit, best), confidence)
    if confidence < threshold:
        return Verdict(None, not_sure_reason(best, confidence, threshold), confidence)
    return Verdict(best, None, confidence)


def answer_kind(digit: int | None, reason: str | None) -> Answer:
    """What kind of answer a digit (or null) and its reason are."""
    if digit is not None:
        return "digit"
    text = reason or ""
    if text.startswith(NOT_A_DIGIT):
        return "not_digit"
    if text.startswith(NOT_SURE):
        return "not_sure"
    return "no_digit"
