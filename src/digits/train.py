"""Training: `train_run(config, out_dir)` is the loop that trains a registered model into a run
directory (digits.run): config, history, the best epoch's weights, a checkpoint per epoch.

Finishing the run (test metrics, calibration, model.onnx, the finished marker) is a floor up, in
digits.finish, whose `fit` is the one call that does both; nothing here imports it.

The whole data set lives in memory as one tensor and batches are gathered by index, so there is no
per-sample Python on the hot path. Each epoch reseeds from (seed, epoch): a run resumed after a kill
continues exactly as if it had never stopped.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from digits.augment import AugmentConfig, augment_batch
from digits.config import OPTIMIZERS, PRECISIONS, SCHEDULES, EpochRecord, TrainConfig
from digits.data import DigitData
from digits.devices import resolve_device, use_bf16
from digits.distributed import Group, join
from digits.ema import WeightAverage
from digits.models import create_model

# Names that callers of this module have always found here; they live one floor down now.
from digits.run import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    RunError,
    load_checkpoint,
    load_data,
    load_model,
    load_weights,
    open_for_training,
    predict_logits,
    read_config,
    read_history,
    read_metrics,
    save_checkpoint,
    save_weights,
    split_data,
    to_tensor,
    write_history,
)

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "HISTORY_FILE",
    "METRICS_FILE",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "WEIGHTS_FILE",
    "EpochRecord",
    "RunError",
    "TrainConfig",
    "Trained",
    "load_data",
    "load_model",
    "load_weights",
    "predict_logits",
    "read_history",
    "read_metrics",
    "to_tensor",
    "train_run",
    "use_bf16",
]


@dataclass(frozen=True)
class Trained:
    """What the loop leaves: the run directory, the config it trained (the stored one when
    resumed), the data, and whether every epoch ran (False when stopped early on request)."""

    run_dir: Path
    config: TrainConfig
    data: DigitData
    complete: bool


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [param for param in model.parameters() if param.requires_grad]
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
    if config.schedule == "onecycle" and total >= 2:
        # A quarter of the steps warm up; at least 1.5 of them, or torch's phases are empty and
        # it divides by zero (a one-epoch recipe on a few hundred images, say).
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=max(0.25, 1.5 / total)
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "exponential":  # x0.95 per epoch, applied smoothly per step
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, 0.95 ** (1 / steps_per_epoch))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


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
    """One bar per epoch showing running loss, accuracy and samples/s, labelled with the run
    (`compare` and ensembles train several in a row: each bar says whose it is)."""

    def __init__(self, label: str) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn(escape(label) + " epoch {task.fields[epoch]}"),
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


def train_run(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    data: DigitData | None = None,
    stop_after_epoch: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    device: str = "auto",
) -> Trained:
    """Train into the run directory out_dir, keeping the best epoch: the loop, and nothing after.

    The data is loaded before the directory is created, so data that fails to load leaves no run
    behind. `stop_after_epoch` ends the run after that epoch as a kill would (for tests of
    --resume). `on_epoch` sees each epoch's record once it is saved; an exception it raises (a
    tuner's pruning signal, say) ends training there and propagates to the caller. `device` is
    one of `digits.devices.DEVICES` ("auto": the best one here).
    """
    target = resolve_device(device)  # before anything is written: a missing GPU leaves no run
    group = join(target)  # under torchrun: this process's rank among the trainers
    # torch.optim imports torch's compiler (torch._dynamo, 1.5 s on two cores) on first use:
    # done here in the background, it overlaps loading the data and building the model.
    compiler_import = threading.Thread(target=importlib.import_module, args=("torch._dynamo",))
    compiler_import.start()
    out_dir = Path(out_dir)
    if resume:  # the stored config decides what data to load
        # (A directory without a run gets open_for_training's own "nothing to resume".)
        stored = read_config(out_dir) if (out_dir / CONFIG_FILE).exists() else None
        if stored is not None and stored.world_size != group.world:
            raise RunError(
                f"{out_dir}: trained by {stored.world_size} process(es); resume it with as many "
                f"(`digits train --nproc {stored.world_size} --resume --out {out_dir}`)"
            )
        config = _open_on_main(group, out_dir, config, resume=True)
        data = load_data(config) if data is None else data
    else:
        data = load_data(config) if data is None else data
        config = _open_on_main(group, out_dir, replace(config, world_size=group.world), False)

    split = split_data(config, data)
    x_train, y_train = to_tensor(split.x_train), torch.from_numpy(split.y_train).long()
    # Validation images live on the device. Training images do too unless batches are built
    # on the CPU first: negatives and augmentation draw from the CPU's generator (the same
    # batches on every device, and resumed runs exact) and work on CPU tensors.
    x_val, y_val = to_tensor(split.x_val).to(target), torch.from_numpy(split.y_val).long()
    has_val = len(y_val) > 0

    # Non-digits for the eleventh class, drawn once per machine and cached (digits.data.negatives).
    negatives = _negative_images() if config.negatives > 0 else None
    augment = AugmentConfig.from_dict(config.augment) if config.augment else None
    # MNIST images mixed into a fine-tuning run's batches, so that it keeps what it knew.
    replay = _replay_images() if config.replay > 0 else None
    if negatives is None and augment is None and replay is None:
        x_train, y_train = x_train.to(target), y_train.to(target)

    torch.manual_seed(config.seed)
    model = create_model(config.model, **config.factory_args())
    if config.parent is not None:  # fine-tuning: start from the parent's best weights
        model.load_state_dict(_parent_model(config).state_dict())
    frozen = _freeze_features(model) if config.freeze == "features" else None
    # channels_last lets oneDNN (CPU) and cuDNN pick their fastest convolution kernels.
    model = model.to(target, memory_format=torch.channels_last)  # type: ignore[call-overload]
    # Several processes: each step's gradients are averaged over them (DDP) before the update.
    trainer: nn.Module = model
    if group.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        trainer = DistributedDataParallel(model)
    compiler_import.join()
    optimizer = _make_optimizer(config, model)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    schedule = _make_schedule(config, optimizer, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # With EMA on, the averaged copy is what gets validated, kept and tested.
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay else None
    kept = ema.module if ema is not None else model

    history: list[EpochRecord] = []
    best_accuracy, best_epoch, stale_epochs, start_epoch = -1.0, 0, 0, 1
    state = load_checkpoint(out_dir) if resume else None
    bf16 = _training_bf16(config, model, target, group, state)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history = [EpochRecord(**row) for row in json.loads(state["history"])]
        best_accuracy, best_epoch = state["best_accuracy"], state["best_epoch"]
        stale_epochs, start_epoch = state["stale_epochs"], state["epoch"] + 1

    finished_early = config.patience > 0 and stale_epochs >= config.patience
    label = f"{config.recipe or config.model} s{config.seed}"
    reporter = _RichProgress(label) if progress and group.main else _NullProgress()
    with reporter:
        for epoch in range(start_epoch, config.epochs + 1):
            if finished_early:
                break
            torch.manual_seed(config.seed * 100_003 + epoch)  # dropout and batch order, per epoch
            order = torch.randperm(len(x_train))
            if group.world > 1:
                # Every process drew the same order; each now draws its own negatives and
                # distortions for its own shard.
                torch.manual_seed(config.seed * 100_003 + epoch + 7_919 * (group.rank + 1))
            reporter.start_epoch(epoch, len(x_train))
            model.train()
            if frozen is not None:  # frozen layers keep their BatchNorm statistics, no dropout
                frozen.eval()
            started = time.perf_counter()
            loss_sum = torch.zeros((), device=target)
            correct = torch.zeros((), dtype=torch.long, device=target)
            seen = digits_seen = reported = 0  # seen counts negatives too; the bar, digits only
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size]
                # The step's batch is the same as one process would take; this process takes
                # every world-th image of it.
                batch = batch[group.rank :: group.world]
                index = batch.to(x_train.device)
                images, labels = x_train[index], y_train[index]
                if replay is not None:
                    images, labels = _add_replay(images, labels, replay, config.replay)
                if negatives is not None:
                    images, labels = _add_negatives(images, labels, negatives, config.negatives)
                images = augment_batch(images, augment)
                images = images.to(target, non_blocking=True)
                labels = labels.to(target, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(target.type, torch.bfloat16, enabled=bf16):
                    logits = trainer(images).float()
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
                if group.main and (step % 20 == 0 or step == steps_per_epoch - 1):
                    # (This process's share, scaled: the bar counts the whole epoch.)
                    elapsed = time.perf_counter() - started
                    reporter.advance(
                        (digits_seen - reported) * group.world,
                        loss_sum.item() / seen,
                        correct.item() / seen,
                        seen * group.world / max(elapsed, 1e-9),
                    )
                    reported = digits_seen
            seconds = time.perf_counter() - started
            # The epoch's figures over every process.
            loss_sum, correct = group.sum(loss_sum), group.sum(correct)
            seen = int(group.sum(torch.tensor(seen, device=target)).item())

            val_loss = val_accuracy = None
            if has_val:
                val_loss, val_accuracy = _loss_and_accuracy(
                    predict_logits(kept, x_val, bf16=bf16).cpu(), y_val
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
                if group.main:
                    save_weights(out_dir / WEIGHTS_FILE, kept, config)
            else:
                stale_epochs += 1
            finished_early = config.patience > 0 and stale_epochs >= config.patience

            if group.main:  # the one process that writes the run directory
                write_history(out_dir, history)
                save_checkpoint(
                    out_dir,
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
                        "device": target.type,
                        "precision": "bf16" if bf16 else "fp32",
                    },
                )
            group.barrier()  # no process runs ahead of the checkpoint a resume would start from
            if on_epoch is not None:
                on_epoch(record)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                return Trained(out_dir, config, data, complete=False)

    return Trained(out_dir, config, data, complete=True)


def _training_bf16(
    config: TrainConfig,
    model: nn.Module,
    target: torch.device,
    group: Group,
    state: dict[str, Any] | None,
) -> bool:
    """Whether the epochs run under bfloat16 autocast. A resumed run keeps the precision it
    started in on that kind of device; 'auto' on a CPU with native bfloat16 takes the faster
    of the two for this model and batch size (digits.precision), as rank 0 measured it."""
    if state is not None and state.get("device") == target.type and state.get("precision"):
        return bool(state["precision"] == "bf16")
    if config.precision != "auto" or target.type != "cpu" or not use_bf16("auto", target):
        return use_bf16(config.precision, target)
    from digits.precision import faster_on_cpu

    batch = math.ceil(config.batch_size / group.world)  # what each process computes per step
    model_key = f"{config.model} {json.dumps(config.factory_args(), sort_keys=True)}"
    chosen = faster_on_cpu(model, model_key, batch) if group.main else False
    return bool(group.sum(torch.tensor(int(chosen))).item())


def _open_on_main(group: Group, out_dir: Path, config: TrainConfig, resume: bool) -> TrainConfig:
    """`open_for_training` in the process that writes the run directory; the others take the
    config it settled on. A failure there is raised in every process (none is left waiting)."""
    failure: Exception | None = None
    if group.main:
        try:
            config = open_for_training(out_dir, config, resume=resume)
        except Exception as exc:  # raised below, once every process knows
            failure = exc
    failed = int(group.sum(torch.tensor(0 if failure is None else 1)).item())
    if failure is not None:
        raise failure
    if failed:
        raise RunError(f"{out_dir}: the run directory could not be opened (see rank 0's error)")
    return config if group.main or not resume else read_config(out_dir)


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


def _parent_model(config: TrainConfig) -> nn.Module:
    """The best weights of the run a fine-tuning run starts from; its model must be the same."""
    assert config.parent is not None
    parent_dir = Path(config.parent)
    parent = read_config(parent_dir)
    if (parent.model, parent.factory_args()) != (config.model, config.factory_args()):
        raise RunError(
            f"{parent_dir}: its model ({parent.model} {parent.factory_args()}) is not this "
            f"run's ({config.model} {config.factory_args()}); a fine-tuning run keeps its parent's"
        )
    return load_weights(parent_dir / WEIGHTS_FILE)


def _freeze_features(model: nn.Module) -> nn.Module:
    """Stop training every layer but the last linear one (the classifier); return the frozen
    part. Every registered model is a Sequential that ends in its classifier."""
    if not isinstance(model, nn.Sequential):
        raise RunError(f"freeze 'features' needs a Sequential model, not {type(model).__name__}")
    last = max(i for i, layer in enumerate(model) if isinstance(layer, nn.Linear))
    frozen = model[:last]
    for param in frozen.parameters():
        param.requires_grad_(False)
    return frozen


def _replay_images() -> tuple[torch.Tensor, torch.Tensor]:
    from digits.data import load_mnist

    mnist = load_mnist()
    return to_tensor(mnist.x_train), torch.from_numpy(mnist.y_train).long()


def _add_replay(
    images: torch.Tensor,
    labels: torch.Tensor,
    replay: tuple[torch.Tensor, torch.Tensor],
    share: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with round(share × its size) random MNIST training images appended, drawn from
    torch's generator like the negatives (resumed runs stay exact)."""
    count = max(1, round(share * len(images)))
    picked = torch.randint(len(replay[1]), (count,))
    return torch.cat([images, replay[0][picked]]), torch.cat([labels, replay[1][picked]])
