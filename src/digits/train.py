"""Training: `fit(config, out_dir)` trains a registered model and writes a run directory.

A run directory holds everything needed to rebuild, evaluate and resume the model:
  config.json        the TrainConfig, as given
  history.csv        one row per epoch (loss, accuracy, validation, learning rate, speed)
  model.safetensors  the best epoch's weights; metadata carries the model name and arguments
  checkpoint.pt      the last completed epoch (weights, optimizer, schedule), for --resume
  metrics.json       the outcome: best epoch, validation and test metrics, time, parameters,
                     calibration (temperature fitted on the validation split)
  model.onnx         the best epoch exported for ONNX Runtime (see digits.export)

The whole data set lives in memory as one tensor and batches are gathered by index, so there is no
per-sample Python on the hot path. Each epoch reseeds from (seed, epoch): a run resumed after a kill
continues exactly as if it had never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from digits.atomic import atomic_write_bytes, atomic_write_text
from digits.augment import AugmentConfig, augment_batch
from digits.data import DigitData, load_dataset, load_mnist, stratified_split
from digits.ema import WeightAverage
from digits.models import REGISTRY, count_parameters, create_model

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "onecycle", "cosine", "exponential")
PRECISIONS = ("auto", "fp32", "bf16")
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"


class RunError(RuntimeError):
    """A run directory that cannot be used as asked (missing, already trained, incompatible)."""


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
    rotation, zoom, shift, shear, elastic, elastic_sigma); None trains on the images as they are."""
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
    """'bf16' trains under bfloat16 autocast (weights stay float32); 'auto' uses it when the CPU
    has native bfloat16 instructions, where it is ~1.4x faster at equal accuracy."""
    data: str | None = None
    """A data file or IDX folder (see `digits.data.load_dataset`); None means MNIST."""
    recipe: str | None = None
    """Name of the recipe this config came from, for the record."""
    limit: int | None = None
    """Use only the first N training images (quick experiments and tests)."""
    negatives: float = 0.0
    """Generated non-digits (letters, symbols, shapes: `digits.data.negatives`) added to every
    batch, as a share of its digits (0.1 = one for every ten), labelled as an eleventh class "not
    a digit"; 0 trains a ten-class model on digits alone."""

    def __post_init__(self) -> None:
        problems = []
        if self.model not in REGISTRY:
            problems.append(f"unknown model {self.model!r} (choose from {', '.join(REGISTRY)})")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if not 0.0 <= self.val_split < 1.0:
            problems.append(f"val_split must be in [0, 1), got {self.val_split}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.augment is not None:
            try:
                AugmentConfig.from_dict(self.augment)
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if self.limit is not None and self.limit < 1:
            problems.append(f"limit must be >= 1, got {self.limit}")
        if not 0.0 <= self.negatives <= 1.0:
            problems.append(f"negatives must be in [0, 1], got {self.negatives}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

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


def use_bf16(precision: str) -> bool:
    if precision == "auto":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return precision == "bf16"


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×28×28 → float32 N×1×28×28 in [0, 1], the input every model expects."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
    )


def _make_schedule(
    config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=0.25
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "exponential":  # x0.95 per epoch, applied smoothly per step
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.95 ** (1 / steps_per_epoch))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 500, bf16: bool = False
) -> torch.Tensor:
    """Logits for a float image tensor, in batches, without gradients."""
    model.eval()
    outputs = []
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch_size):
            outputs.append(model(images[start : start + batch_size]).float())
    return torch.cat(outputs) if outputs else torch.empty(0, 10)


def _loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


def load_data(config: TrainConfig) -> DigitData:
    return load_mnist() if config.data is None else load_dataset(config.data)


def save_weights(path: Path, model: nn.Module, config: TrainConfig) -> None:
    """Weights as safetensors, with what rebuilds the model in the metadata (no pickle anywhere)."""
    metadata = {"model": config.model, "model_args": json.dumps(config.factory_args())}
    tensors = {name: value.detach().contiguous() for name, value in model.state_dict().items()}
    buffer_path = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(buffer_path), metadata=metadata)
    buffer_path.replace(path)


def _write_history(path: Path, history: list[EpochRecord]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(EpochRecord)])
    writer.writeheader()
    for record in history:
        writer.writerow(asdict(record))
    atomic_write_text(path, buffer.getvalue())


def read_history(run_dir: Path) -> list[dict[str, float | None]]:
    """history.csv as a list of rows, numbers parsed; empty cells become None."""
    with (run_dir / HISTORY_FILE).open(newline="") as handle:
        return [
            {
                key: (float(value) if value not in ("", "None") else None)
                for key, value in row.items()
            }
            for row in csv.DictReader(handle)
        ]


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


ProgressFactory = Callable[[int, int], Any]


class _NullProgress:
    """Stands in for the progress bar when training quietly (tests, library use)."""

    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start_epoch(self, epoch: int, total: int) -> None:
        return None

    def advance(self, count: int, loss: float, accuracy: float, samples_per_s: float) -> None:
        return None


class _RichProgress:
    """One bar per epoch showing running loss, accuracy and samples/s."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  "
                "{task.fields[speed]:,.0f} img/s"
            ),
            transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> _RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def start_epoch(self, epoch: int, total: int) -> None:
        self.task = self.bar.add_task("", total=total, epoch=epoch, loss=0.0, acc=0.0, speed=0.0)

    def advance(self, count: int, loss: float, accuracy: float, samples_per_s: float) -> None:
        self.bar.update(self.task, advance=count, loss=loss, acc=accuracy, speed=samples_per_s)


def _prepare_run_dir(out_dir: Path, config: TrainConfig, resume: bool) -> TrainConfig:
    config_path = out_dir / CONFIG_FILE
    if resume:
        if not config_path.exists():
            raise RunError(f"{out_dir}: nothing to resume (no {CONFIG_FILE})")
        saved = TrainConfig.from_dict(json.loads(config_path.read_text()))
        # Only the epoch budget may change on resume; everything else must stay as it was.
        if config.epochs != saved.epochs:
            saved.epochs = config.epochs
            atomic_write_text(config_path, json.dumps(asdict(saved), indent=2))
        return saved
    if config_path.exists():
        raise RunError(
            f"{out_dir} already holds a run; pass --resume to continue it or --out for a new one"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, json.dumps(asdict(config), indent=2))
    return config


def fit(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    data: DigitData | None = None,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> Path:
    """Train, keep the best epoch, evaluate on the test set if there is one; return the run dir.

    `stop_after_epoch` ends the run after that epoch as a kill would (for tests of --resume).
    `on_epoch` sees each epoch's record once it is saved; an exception it raises (a tuner's
    pruning signal, say) ends training there and propagates to the caller.
    """
    out_dir = Path(out_dir)
    config = _prepare_run_dir(out_dir, config, resume)
    data = load_data(config) if data is None else data

    x_all, y_all = data.x_train, data.y_train
    if config.limit is not None:
        x_all, y_all = x_all[: config.limit], y_all[: config.limit]
    train_idx, val_idx = stratified_split(y_all, config.val_split, config.seed)
    x_train, y_train = to_tensor(x_all[train_idx]), torch.from_numpy(y_all[train_idx]).long()
    x_val, y_val = to_tensor(x_all[val_idx]), torch.from_numpy(y_all[val_idx]).long()
    has_val = len(val_idx) > 0

    # Non-digits for the eleventh class, drawn once per machine and cached (digits.data.negatives).
    negatives = _negative_images() if config.negatives > 0 else None

    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.factory_args())
    # channels_last lets oneDNN pick its fastest convolution kernels on CPU (~30 % per epoch).
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = _make_optimizer(config, model)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    schedule = _make_schedule(config, optimizer, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    augment = AugmentConfig.from_dict(config.augment) if config.augment else None
    # With EMA on, the averaged copy is what gets validated, kept and tested.
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    kept = ema.module if ema is not None else model
    bf16 = use_bf16(config.precision)

    history: list[EpochRecord] = []
    best_accuracy, best_epoch, stale_epochs, start_epoch = -1.0, 0, 0, 1
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history = [EpochRecord(**row) for row in json.loads(state["history"])]
        best_accuracy, best_epoch = state["best_accuracy"], state["best_epoch"]
        stale_epochs, start_epoch = state["stale_epochs"], state["epoch"] + 1

    finished_early = config.patience > 0 and stale_epochs >= config.patience
    reporter = _RichProgress() if progress else _NullProgress()
    with reporter:
        for epoch in range(start_epoch, config.epochs + 1):
            if finished_early:
                break
            torch.manual_seed(config.seed * 100_003 + epoch)  # dropout and batch order, per epoch
            order = torch.randperm(len(x_train))
            reporter.start_epoch(epoch, len(x_train))
            model.train()
            started = time.perf_counter()
            loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
            seen = digits_seen = reported = 0  # seen counts negatives too; the bar, digits only
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size]
                images, labels = x_train[batch], y_train[batch]
                if negatives is not None:
                    images, labels = _add_negatives(images, labels, negatives, config.negatives)
                images = augment_batch(images, augment)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    logits = model(images).float()
                loss = loss_fn(logits, labels)
                loss.backward()
                optimizer.step()
                if ema is not None:
                    ema.update(model)
                schedule.step()
                with torch.no_grad():
                    loss_sum += loss.detach() * len(labels)
                    correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                digits_seen += len(batch)
                if step % 20 == 0 or step == steps_per_epoch - 1:
                    elapsed = time.perf_counter() - started
                    reporter.advance(
                        digits_seen - reported,
                        loss_sum.item() / seen,
                        correct.item() / seen,
                        seen / max(elapsed, 1e-9),
                    )
                    reported = digits_seen
            seconds = time.perf_counter() - started

            val_loss = val_accuracy = None
            if has_val:
                val_loss, val_accuracy = _loss_and_accuracy(
                    predict_logits(kept, x_val, bf16=bf16), y_val
                )
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss_sum.item() / seen,
                train_accuracy=correct.item() / seen,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                lr=optimizer.param_groups[0]["lr"],
                seconds=seconds,
                samples_per_s=seen / seconds,
            )
            history.append(record)

            # Without a validation split, the last epoch is the one kept.
            score = val_accuracy if val_accuracy is not None else float(epoch)
            if score > best_accuracy:
                best_accuracy, best_epoch, stale_epochs = score, epoch, 0
                save_weights(out_dir / WEIGHTS_FILE, kept, config)
            else:
                stale_epochs += 1
            finished_early = config.patience > 0 and stale_epochs >= config.patience

            _write_history(out_dir / HISTORY_FILE, history)
            _save_checkpoint(
                checkpoint_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "history": json.dumps([asdict(r) for r in history]),
                    "best_accuracy": best_accuracy,
                    "best_epoch": best_epoch,
                    "stale_epochs": stale_epochs,
                    "epoch": epoch,
                },
            )
            if on_epoch is not None:
                on_epoch(record)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return out_dir

    _write_metrics(out_dir, config, data, history, best_epoch, has_val, bf16)
    # A temperature fitted on held-out data, then model.onnx for the torch-free predictor.
    from digits.export import finish_run

    finish_run(out_dir, x_val, y_val, x_train, y_train)
    return out_dir


def _negative_images() -> torch.Tensor:
    from digits.data.negatives import load_negatives

    return to_tensor(load_negatives("train").images)


def _add_negatives(
    images: torch.Tensor, labels: torch.Tensor, negatives: torch.Tensor, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with round(share × its size) random non-digits appended, labelled 10. Drawn from
    torch's generator, which training reseeds every epoch, so resumed runs stay exact."""
    count = max(1, round(share * len(images)))
    picked = negatives[torch.randint(len(negatives), (count,))]
    other = torch.full((count,), 10, dtype=labels.dtype)
    return torch.cat([images, picked]), torch.cat([labels, other])


def train_or_reuse(
    config: TrainConfig,
    run_dir: Path,
    *,
    data: DigitData | None = None,
    progress: bool = False,
) -> Path:
    """Train into run_dir unless it already holds this very config (finished or resumable)."""
    saved_path = run_dir / CONFIG_FILE
    if saved_path.exists():
        saved = TrainConfig.from_dict(json.loads(saved_path.read_text()))
        if saved != config:
            changed = [
                f.name for f in fields(config) if getattr(saved, f.name) != getattr(config, f.name)
            ]
            raise RunError(
                f"{run_dir} holds a run with a different config ({', '.join(changed)}); "
                "remove it or choose another --out"
            )
        if (run_dir / METRICS_FILE).exists():
            return run_dir
    return fit(config, run_dir, resume=saved_path.exists(), progress=progress, data=data)


def _write_metrics(
    out_dir: Path,
    config: TrainConfig,
    data: DigitData,
    history: list[EpochRecord],
    best_epoch: int,
    has_val: bool,
    bf16: bool,
) -> None:
    from digits.evaluate import evaluate_model

    model = load_model(out_dir)
    best = history[best_epoch - 1]
    metrics: dict[str, Any] = {
        "model": config.model,
        "recipe": config.recipe,
        "parameters": count_parameters(model),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "train_seconds": sum(record.seconds for record in history),
        "samples_per_s": float(np.mean([record.samples_per_s for record in history])),
        "precision": "bf16" if bf16 else "fp32",
        "val_accuracy": best.val_accuracy if has_val else None,
        "val_loss": best.val_loss if has_val else None,
        "test": None,
    }
    if data.x_test is not None and data.y_test is not None:
        metrics["test"] = evaluate_model(model, data.x_test, data.y_test).to_dict()
    atomic_write_text(out_dir / METRICS_FILE, json.dumps(metrics, indent=2))


def load_model(run_dir: str | Path) -> nn.Module:
    """Rebuild the trained model of a run directory (best epoch), in eval mode.

    An ensemble directory gives the module that outputs the log of its averaged probabilities.
    """
    from digits.ensemble import is_ensemble, load_ensemble

    if is_ensemble(run_dir):
        return load_ensemble(run_dir)
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {WEIGHTS_FILE} (not a trained run directory)")
    return load_weights(path)


def load_weights(path: Path) -> nn.Module:
    """A model from a safetensors file whose metadata names it (as `save_weights` writes it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "model" not in metadata:
        raise RunError(f"{path}: no model name in the metadata")
    model = create_model(metadata["model"], **json.loads(metadata.get("model_args", "{}")))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {METRICS_FILE} (training has not finished)")
    result: dict[str, Any] = json.loads(path.read_text())
    return result
