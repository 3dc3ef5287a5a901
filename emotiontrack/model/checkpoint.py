"""A training run's checkpoint folder, OUTPUT.ckpt/: last.pt (everything a resume needs), state.json (the
same, readable) and summary.json, each written atomically, so a run killed at any moment resumes."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from emotiontrack.errors import EmotionTrackError
from emotiontrack.files import atomic_file, write_text
from emotiontrack.model.network import TrainingNet
from emotiontrack.model.settings import TrainConfig

log = logging.getLogger(__name__)


def checkpoint_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ckpt")


def save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """last.pt (everything a resume needs) and state.json (the same, readable), each written atomically."""
    with atomic_file(folder / "last.pt") as tmp:
        torch.save(state, tmp)
    summary = {k: v for k, v in state.items() if k in ("epochs_done", "config", "history", "train_seconds")}
    write_json_atomic(folder / "state.json", summary)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EmotionTrackError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not its own
        raise EmotionTrackError(f"{path} is not a training checkpoint (OUTPUT.ckpt/last.pt of an earlier run): "
                                f"{exc.__class__.__name__}") from None


def load_checkpoint_config(output: Path) -> TrainConfig:
    state_path = checkpoint_dir(output) / "state.json"
    if not state_path.is_file():
        raise EmotionTrackError(f"nothing to resume: {state_path} not found")
    # The run's settings, written where `output` says now: a copied or moved checkpoint must not overwrite the
    # model (and summary) of the run it was copied from.
    config = TrainConfig.from_json(json.loads(state_path.read_text())["config"])
    return dataclasses.replace(config, output=output)


def restore(folder: Path, net: TrainingNet, optimizer: torch.optim.Optimizer,
            average: AveragedModel | None) -> list[dict[str, float]]:
    """Restore weights, optimiser, weight average and RNG state from the last checkpoint; returns the history
    so far."""
    state = load_checkpoint(folder / "last.pt")
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if average is not None and state.get("average") is not None:
        average.load_state_dict(state["average"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming after epoch %d", state["epochs_done"])
    return state["history"]
