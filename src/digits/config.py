"""What decides a training run: `TrainConfig` (saved as a run's config.json), the per-epoch
`EpochRecord`, and the names they accept. The ground floor of training: it imports only the model
registry and the augmentation settings it validates against."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from digits.augment import AugmentConfig
from digits.models import REGISTRY

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "onecycle", "cosine", "exponential")
PRECISIONS = ("auto", "fp32", "bf16")
FREEZES = ("none", "features")


class ConfigError(ValueError):
    """A TrainConfig with values out of range, each problem naming its field."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        """(field, text) pairs; the text has "{name}" where the field is named."""
        super().__init__(self.describe())

    def describe(self, names: Mapping[str, str] | None = None) -> str:
        """The message, with each field called as `names` says (default: its own name)."""
        names = names or {}
        texts = (text.replace("{name}", names.get(f, f)) for f, text in self.problems)
        return "invalid training config: " + "; ".join(texts)


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved as config.json in the run directory."""

    model: str
    """Registered model name (see `digits models`)."""
    model_args: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the model factory (widths, dropout)."""
    epochs: int = 10
    """Maximum number of passes over the training split."""
    batch_size: int = 128
    """Images per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate."""
    optimizer: str = "adam"
    """One of OPTIMIZERS."""
    weight_decay: float = 0.0
    """L2 penalty (decoupled for adamw)."""
    schedule: str = "constant"
    """Learning-rate schedule, one of SCHEDULES; stepped per batch."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    augment: dict[str, float] | None = None
    """Random distortion strengths of training batches (`digits.augment.AugmentConfig` fields:
    rotation, zoom, shift, shear, elastic, elastic_sigma, and the pen and scan effects stretch,
    thicken, thin, lowres, blur, jpeg, binarise); None trains on the images as they are."""
    ema_decay: float | None = None
    """Keep an exponential moving average of the weights with this decay per step (e.g. 0.999);
    validation, the kept checkpoint and the test metrics then use the averaged weights."""
    seed: int = 0
    """Seeds the split, the initial weights, the batch order and dropout."""
    val_split: float = 0.1
    """Fraction of the training data held out (stratified) for validation; 0 disables it."""
    patience: int = 0
    """Stop after this many epochs without a better validation accuracy; 0 never stops early."""
    precision: str = "auto"
    """'bf16' trains under bfloat16 autocast (weights stay float32); 'auto' uses it on CUDA
    GPUs that support it, and on a CPU with native bfloat16 when a few timed steps of the model
    show it faster there (`digits.precision`: measured once per CPU, model and batch size)."""
    data: str | None = None
    """A data file or IDX folder (see `digits.data.load_dataset`); None means MNIST. Stored as an
    absolute path, so that the run finds its data from any working directory."""
    recipe: str | None = None
    """Name of the recipe this config came from, for the record."""
    limit: int | None = None
    """Use only the first N training images (quick experiments and tests)."""
    negatives: float = 0.0
    """Generated non-digits (letters, symbols, shapes: `digits.data.negatives`) added to every
    batch, as a share of its digits (0.1 = one for every ten), labelled as an eleventh class "not
    a digit"; 0 trains a ten-class model on digits alone."""
    world_size: int = 1
    """Processes that trained the run together (DistributedDataParallel under torchrun), each
    on its shard of every batch; set by the training itself, and a resume needs as many."""
    parent: str | None = None
    """A finished run whose best weights start this one (fine-tuning, `digits finetune`); the
    model and its arguments must be the parent's. Stored as an absolute path."""
    freeze: str = "none"
    """With a parent: 'features' trains only the last layer (the classifier), 'none' all."""
    replay: float = 0.0
    """MNIST training images added to every batch, as a share of its images (1.0 = one for
    each): a fine-tuned model keeps what it knew while it learns the new digits."""
    source: str | None = None
    """Where a fine-tuning run's images came from, as given (a folder, a file, `feedback:URL`
    without its password), for the record: `data` is the copy the run trained on."""

    def __post_init__(self) -> None:
        if self.data is not None:
            # A path as typed is relative to where `digits train` ran; `digits evaluate` and
            # `digits report` may run anywhere. A config written before paths were stored
            # absolute still loads: its path is read, as it always was, from the working directory.
            self.data = absolute_data_path(self.data)
        if self.parent is not None:
            self.parent = absolute_data_path(self.parent)
        # Each problem names its field as "{name}": the command line says "--val-split" where a
        # recipe file says "val_split" (ConfigError.describe).
        problems: list[tuple[str, str]] = []
        if self.model not in REGISTRY:
            # Said the same way wherever the name came from: "unknown model 'x'" is clear as it is.
            problems.append(
                ("model", f"unknown model {self.model!r} (choose from {', '.join(REGISTRY)})")
            )
        if self.epochs < 1:
            problems.append(("epochs", f"{{name}} must be >= 1, got {self.epochs}"))
        if self.batch_size < 1:
            problems.append(("batch_size", f"{{name}} must be >= 1, got {self.batch_size}"))
        if not self.lr > 0:
            problems.append(("lr", f"{{name}} must be > 0, got {self.lr}"))
        if self.optimizer not in OPTIMIZERS:
            problems.append(
                ("optimizer", f"{{name}} {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
            )
        if self.schedule not in SCHEDULES:
            problems.append(
                ("schedule", f"{{name}} {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
            )
        if self.precision not in PRECISIONS:
            problems.append(
                ("precision", f"{{name}} {self.precision!r} is not one of {', '.join(PRECISIONS)}")
            )
        if not 0.0 <= self.val_split < 1.0:
            problems.append(("val_split", f"{{name}} must be in [0, 1), got {self.val_split}"))
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(
                ("label_smoothing", f"{{name}} must be in [0, 1), got {self.label_smoothing}")
            )
        if self.augment is not None:
            try:
                AugmentConfig.from_dict(self.augment)
            except (TypeError, ValueError) as exc:
                problems.append(("augment", f"{{name}}: {exc}"))
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(("ema_decay", f"{{name}} must be in (0, 1), got {self.ema_decay}"))
        if self.patience < 0:
            problems.append(("patience", f"{{name}} must be >= 0, got {self.patience}"))
        if self.limit is not None and self.limit < 1:
            problems.append(("limit", f"{{name}} must be >= 1, got {self.limit}"))
        if not 0.0 <= self.negatives <= 1.0:
            problems.append(("negatives", f"{{name}} must be in [0, 1], got {self.negatives}"))
        if self.freeze not in FREEZES:
            problems.append(
                ("freeze", f"{{name}} {self.freeze!r} is not one of {', '.join(FREEZES)}")
            )
        if self.freeze != "none" and self.parent is None:
            problems.append(("freeze", "{name} needs a parent run to freeze the layers of"))
        if not 0.0 <= self.replay <= 10.0:
            problems.append(("replay", f"{{name}} must be in [0, 10], got {self.replay}"))
        if self.world_size < 1:
            problems.append(("world_size", f"{{name}} must be >= 1, got {self.world_size}"))
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)

    def factory_args(self) -> dict[str, Any]:
        """The model factory's arguments: `model_args`, plus the eleventh class with negatives."""
        return {**self.model_args, "classes": 11} if self.negatives > 0 else dict(self.model_args)


def absolute_data_path(path: str | os.PathLike[str]) -> str:
    """`path` made absolute against the working directory, `~` expanded, symbolic links kept."""
    return os.path.abspath(os.path.expanduser(path))


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    seconds: float
    samples_per_s: float
