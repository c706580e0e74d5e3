"""The run directory: its files, their atomic writing, its states and its loading.

A run directory holds everything needed to rebuild, evaluate and resume a model:
  config.json        the TrainConfig, as given
  history.csv        one row per epoch (loss, accuracy, validation, learning rate, speed)
  model.safetensors  the best epoch's weights; metadata carries the model name and arguments
  checkpoint.pt      the last completed epoch (weights, optimizer, schedule), for --resume
  metrics.json       the outcome: best epoch, validation and test metrics, time, parameters,
                     calibration (temperature fitted on held-out data)
  model.onnx         the best epoch exported for ONNX Runtime (see digits.export)
  finished.json      written last, once all of the above are: the run is complete

An ensemble directory (ensemble.json, members/*.safetensors) is read the same way: `load_model`
gives a `SoftmaxAverage` of its members.

States: created (config.json only) → training (epochs saved) → finished (finished.json). Every
file is replaced atomically (digits.atomic), so a kill leaves the old file or the new one; the
temporary files a kill may leave behind are removed when the run is next opened for training.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from digits.atomic import atomic_write_bytes, atomic_write_text
from digits.config import EpochRecord, TrainConfig
from digits.data import DigitData, load_dataset, load_mnist, stratified_split
from digits.models import create_model
from digits.run_files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENSEMBLE_FILE,
    FINISHED_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    is_ensemble,
    run_state,
    unfinished_message,
)


class RunError(ValueError):
    """A run directory that cannot be used as asked (missing, unfinished, damaged, incompatible).

    A ValueError: like a bad option, it is the user's input that is wrong, and the command line
    reports it in one line."""


# --- reading and writing files ------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; damage is a RunError that names the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc}); the file is damaged") from None
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(value, indent=2))


def read_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG_FILE
    try:
        return TrainConfig.from_dict(read_json(path))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RunError):
            raise
        raise RunError(f"{path}: not a usable training config ({exc})") from None


def save_weights(path: Path, model: nn.Module, config: TrainConfig) -> None:
    """Weights as safetensors, with what rebuilds the model in the metadata (no pickle anywhere);
    written atomically, fsynced, readable by all (0644)."""
    metadata = {"model": config.model, "model_args": json.dumps(config.factory_args())}
    # From the CPU whatever the device trained on: the file is the same everywhere.
    tensors = {
        name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()
    }
    atomic_write_bytes(path, save_safetensors(tensors, metadata=metadata))


def load_weights(path: Path) -> nn.Module:
    """A model from a safetensors file whose metadata names it (as `save_weights` writes it).

    A truncated or damaged file is a RunError naming it, not a SafetensorError traceback."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header_size = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8 : 8 + header_size]).get("__metadata__") or {}
        state = load_safetensors(raw)
    except Exception as exc:  # safetensors raises its own error type, from Rust
        raise RunError(
            f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "it is truncated or damaged"
        ) from None
    if "model" not in metadata:
        raise RunError(f"{path}: no model name in the metadata")
    try:
        model = create_model(metadata["model"], **json.loads(metadata.get("model_args", "{}")))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{path}: weights do not fit model {metadata['model']!r} ({exc})") from None
    return model.eval()


def write_history(run_dir: Path, history: Sequence[EpochRecord]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(EpochRecord)])
    writer.writeheader()
    for record in history:
        writer.writerow(asdict(record))
    atomic_write_text(run_dir / HISTORY_FILE, buffer.getvalue())


def read_history(run_dir: str | Path) -> list[dict[str, float | None]]:
    """history.csv as a list of rows, numbers parsed; empty cells become None."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        with path.open(newline="") as handle:
            return [
                {
                    key: (float(value) if value not in ("", "None") else None)
                    for key, value in row.items()
                }
                for row in csv.DictReader(handle)
            ]
    except FileNotFoundError:
        raise RunError(f"{path}: missing (no epoch has finished)") from None
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not a readable history ({exc}); the file is damaged") from None


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run_dir / CHECKPOINT_FILE, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        # Onto the CPU first: a run checkpointed on a GPU resumes on a machine without one.
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged archive
        raise RunError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    return state


def write_metrics(run_dir: Path, metrics: Mapping[str, Any]) -> None:
    """metrics.json as computed above this floor (digits.finish); a run is not finished by it."""
    write_json(run_dir / METRICS_FILE, metrics)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {METRICS_FILE} (training has not finished)")
    return read_json(path)


# --- states --------------------------------------------------------------------------------


def mark_finished(run_dir: Path) -> None:
    """The last write of a run: everything it promises is on disk."""
    write_json(run_dir / FINISHED_FILE, {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def require_finished(run_dir: str | Path) -> Path:
    """The run directory, if it holds a finished run; else a RunError saying how to finish it."""
    run_dir = Path(run_dir)
    state = run_state(run_dir)
    if state == "finished":
        return run_dir
    if state == "empty":
        if not run_dir.exists():
            raise RunError(f"{run_dir}: no such run directory")
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG_FILE} or {ENSEMBLE_FILE})")
    raise RunError(unfinished_message(run_dir))


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the `.NAME.*.tmp` files a killed write left behind; return them."""
    stale = sorted(run_dir.glob(".*.tmp")) if run_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def contradictions(saved: TrainConfig, given: Mapping[str, Any]) -> list[str]:
    """The config fields in `given` whose values differ from the stored config's."""
    return [key for key, value in given.items() if getattr(saved, key) != value]


def open_for_training(out_dir: Path, config: TrainConfig, resume: bool) -> TrainConfig:
    """Create the run (state created) or reopen it to resume; return the config to train.

    A resumed run keeps its stored config: only a larger `epochs` may extend it, and not under a
    schedule laid out over the epoch count (onecycle, cosine), whose steps are already taken.
    A directory that was created but never trained (a run whose data failed to load, say) is
    taken over by the new config."""
    state = run_state(out_dir)
    if resume:
        if state == "empty":
            raise RunError(f"{out_dir}: nothing to resume (no {CONFIG_FILE})")
        if is_ensemble(out_dir):
            raise RunError(f"{out_dir}: an ensemble; run the `digits train --ensemble` again")
        saved = read_config(out_dir)
        changed = [key for key in contradictions(saved, asdict(config)) if key != "epochs"]
        if changed:
            raise RunError(
                f"{out_dir}: resuming keeps the stored config; {', '.join(changed)} differ from it"
            )
        if config.epochs != saved.epochs:
            check_epochs(out_dir, saved, config.epochs)
            saved.epochs = config.epochs
        remove_stale_temporaries(out_dir)
        write_json(out_dir / CONFIG_FILE, asdict(saved))
        return saved
    if state not in ("empty", "created"):
        raise RunError(
            f"{out_dir} already holds a run; pass --resume to continue it or --out for a new one"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    write_json(out_dir / CONFIG_FILE, asdict(config))
    return config


def check_epochs(run_dir: Path, saved: TrainConfig, epochs: int, option: str = "epochs") -> None:
    """Refuse an epoch budget a resumed run cannot take."""
    if saved.schedule in ("onecycle", "cosine"):
        raise RunError(
            f"{run_dir}: {option} {epochs} contradicts the stored config (epochs "
            f"{saved.epochs}): its {saved.schedule} schedule is laid out over {saved.epochs} "
            "epochs; train a new run for more"
        )
    done = len(read_history(run_dir)) if (run_dir / HISTORY_FILE).exists() else 0
    if epochs < max(done, 1):
        raise RunError(f"{run_dir}: {option} {epochs} is fewer than the {done} epochs trained")


# --- a run's data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """The training and validation images of a run, uint8 N×28×28, as its config splits them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def load_data(config: TrainConfig) -> DigitData:
    return load_mnist() if config.data is None else load_dataset(config.data)


def split_data(config: TrainConfig, data: DigitData) -> Split:
    """The first `limit` training images, split stratified by the run's seed: the same split
    for the loop and for finishing, so calibration sees the validation images the loop held out."""
    x_all, y_all = data.x_train, data.y_train
    if config.limit is not None:
        x_all, y_all = x_all[: config.limit], y_all[: config.limit]
    train_idx, val_idx = stratified_split(y_all, config.val_split, config.seed)
    return Split(x_all[train_idx], y_all[train_idx], x_all[val_idx], y_all[val_idx])


# --- models --------------------------------------------------------------------------------


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×28×28 → float32 N×1×28×28 in [0, 1], the input every model expects."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)


def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 500, bf16: bool = False
) -> torch.Tensor:
    """Logits for a float image tensor, in batches, without gradients."""
    model.eval()
    outputs = []
    with torch.inference_mode(), torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch_size):
            outputs.append(model(images[start : start + batch_size]).float())
    return torch.cat(outputs) if outputs else torch.empty(0, 10)


class SoftmaxAverage(nn.Module):
    """log(mean_i softmax(member_i(x))): its softmax is the members' averaged probabilities."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # log-sum-exp of log-probabilities: the log of the summed probabilities without underflow.
        log_probs = torch.stack([torch.log_softmax(m(images).float(), 1) for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))


def load_ensemble(run_dir: str | Path) -> SoftmaxAverage:
    """The averaged model of an ensemble directory, in eval mode."""
    run_dir = Path(run_dir)
    path = run_dir / ENSEMBLE_FILE
    try:
        members = read_json(path)["members"]
        files = [run_dir / member["file"] for member in members]
    except (KeyError, TypeError) as exc:
        raise RunError(f"{path}: not a valid ensemble description ({exc})") from None
    missing = [str(file) for file in files if not file.exists()]
    if missing:
        raise RunError(f"{path}: member weights missing: {', '.join(missing)}")
    return SoftmaxAverage([load_weights(file) for file in files]).eval()


def load_model(run_dir: str | Path) -> nn.Module:
    """Rebuild the trained model of a run directory (best epoch), in eval mode; finished or not
    (see `require_finished`). An ensemble directory gives its `SoftmaxAverage`."""
    if is_ensemble(run_dir):
        return load_ensemble(run_dir)
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.exists():
        raise RunError(f"{run_dir}: no {WEIGHTS_FILE} (not a trained run directory)")
    return load_weights(path)
