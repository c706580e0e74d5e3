"""Request and response bodies of the HTTP API; these models are also its OpenAPI schema."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from digits.answers import Answer


class PredictRequest(BaseModel):
    """One image as JSON: either a base64 image file or 784 MNIST-style pixel values."""

    image: str | None = Field(
        None,
        description="An image file (PNG, JPEG, WebP, GIF, BMP, TIFF) as base64, or a data URL.",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )
    pixels: list[float] | None = Field(
        None,
        description="784 numbers from 0 to 255, row by row: a 28×28 image with the ink bright on "
        "a dark background, as in MNIST and the Kaggle CSV. Sent to the model as they are.",
        min_length=784,
        max_length=784,
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.image is None) == (self.pixels is None):
            raise ValueError('give exactly one of "image" or "pixels"')
        return self


class ReadRequest(BaseModel):
    """An image holding one or more digits, as base64 (plain or a data URL)."""

    image: str = Field(description="An image file as base64, plain or as a data URL.")


class Prediction(BaseModel):
    """What the model made of one digit."""

    digit: int | None = Field(
        description="The digit, or null when there is none, it is not a digit or the model is "
        "not sure.",
        ge=0,
        le=9,
    )
    answer: Answer = Field(
        description='What kind of answer this is: `"digit"`; `"no_digit"` (nothing written); '
        '`"not_digit"` (a letter, symbol or drawing); `"not_sure"` (below the threshold).'
    )
    reason: str | None = Field(
        None,
        description='Why `digit` is null: "no digit: ...", "not a digit: ..." or "not sure: ...".',
    )
    confidence: float | None = Field(
        description="Calibrated probability of the most likely digit, 0–1: of answers given at "
        '90 %, about 9 in 10 are right. Null for a `"no_digit"` answer: with nothing written, '
        "there is nothing to be sure of."
    )
    not_digit: float | None = Field(
        None,
        description="Probability that the input is no digit at all; null for a model trained "
        'without the "not a digit" class.',
    )
    probabilities: list[float] | None = Field(
        description='Probability of each digit 0–9; null for a `"no_digit"` answer, which the '
        "model never saw.",
        min_length=10,
        max_length=10,
    )
    preview: str | None = Field(
        description="The 28×28 image the model saw, as a PNG data URL (null when there was none)."
    )


class PredictResponse(Prediction):
    model: str = Field(description="Name of the model that answered.")


# The methods /api/explain offers: those that need only the model's answers
# (digits.explain_agnostic.AGNOSTIC_METHODS).
ExplainMethod = Literal["occlusion", "shap", "lime"]


class ExplainResponse(PredictResponse):
    """The answer /api/predict gives, and which pixels of the 28×28 drove it."""

    method: ExplainMethod = Field(description="How the attributions were found.")
    explained: int | None = Field(
        description="The digit explained: the most probable one, also when the answer is "
        '"not sure" or "not a digit"; null for a `"no_digit"` answer, which has no map.',
        ge=0,
        le=9,
    )
    attributions: list[list[float]] | None = Field(
        description="28 rows of 28 signed numbers, aligned with `preview`: above 0 a pixel pushed "
        "the answer towards `explained`, below 0 away from it. Units depend on the method "
        '(occlusion and LIME: probability; SHAP: log-odds). Null for a `"no_digit"` answer.'
    )
    overlay: str | None = Field(
        description="The map drawn over the 28×28 (red towards, blue away) as a 112×112 PNG data "
        'URL; null for a `"no_digit"` answer.'
    )


class Box(BaseModel):
    """Where a digit was found, in pixels of the image as sent."""

    x: int
    y: int
    width: int
    height: int


class ReadDigit(Prediction):
    box: Box


class ReadResponse(BaseModel):
    """The digits found in one image, left to right."""

    text: str = Field(description='The digits read, left to right; "?" where not sure.')
    digits: list[ReadDigit]
    reason: str | None = Field(None, description="Why nothing was read, when `digits` is empty.")
    model: str


class Health(BaseModel):
    status: str = Field(description='`"ok"` when a model is loaded and answering.')
    model: str
    version: str
    uptime_s: float


class Calibration(BaseModel):
    temperature: float = Field(description="Logits are divided by this before the softmax.")
    source: str = Field(description="How the temperature was chosen.")


class ModelInfo(BaseModel):
    """The model being served and how it answers."""

    name: str = Field(description="Model name, e.g. cnn.")
    recipe: str | None = Field(description="Training recipe, when the run used one.")
    accuracy: float | None = Field(description="Test accuracy on MNIST's 10 000 test images.")
    parameters: int | None = Field(description="Trainable parameters.")
    calibration: Calibration
    preprocessing_version: str = Field(description="Version of the image preparation it expects.")
    source: str = Field(description="File name the model was loaded from.")
    threshold: float = Field(description='Confidence below which the answer is "not sure".')
    version: str = Field(description="Version of the digits package serving it.")
    feedback: bool = Field(
        False, description="Whether `POST /api/feedback` keeps corrections (off: it answers 404)."
    )


class FeedbackRequest(BaseModel):
    """A correction as JSON: the image an answer was for, and the digit it really is."""

    image: str = Field(
        description="The image file that was sent for the answer, as base64 or a data URL.",
        examples=["data:image/png;base64,iVBORw0KGgo..."],
    )
    label: int = Field(strict=True, ge=0, le=9, description="The digit it is, 0–9.")


class FeedbackResponse(BaseModel):
    """A correction as kept: its id, the person's digit, and what the model answered."""

    id: int = Field(description="The correction's number in the store.")
    label: int = Field(ge=0, le=9, description="The digit the person says it is.")
    model_digit: int | None = Field(
        ge=0, le=9, description="The digit the model answered, or null when it gave none."
    )
    model_answer: Answer = Field(
        description="The kind of answer the model gave (as `answer` in `/api/predict`); "
        "computed here from the image, never taken from the client."
    )
    confidence: float | None = Field(description="The model's confidence in its best digit.")
    right: bool = Field(description="Whether the model had answered `label`.")
    model: str = Field(description="Name of the model that answered.")


class ErrorResponse(BaseModel):
    error: str = Field(
        description="A stable code: `bad_input`, `too_large`, `unsupported_media_type`, `busy`, "
        "`not_found`, ..."
    )
    detail: str = Field(description="What is wrong, for a person.")
