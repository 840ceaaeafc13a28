"""Crash-safe, resumable training checkpoints without pickles.

A checkpoint is a folder ``step-00001200/`` holding

* ``model.safetensors``: the trained module's state dict (a task's ``model``);
* ``optimizers.safetensors``: every optimizer's tensors, flattened to ``name/state/3/exp_avg``,
  plus the torch RNG state (``rng/torch``);
* ``trainer.json``: the step, each optimizer's ``param_groups`` and the non-tensor state
  (what the flattening left out), and anything the caller adds (``extra``), e.g. the config.

It is written into a hidden temporary folder and renamed into place in one ``os.replace``, so
a crash leaves either the complete checkpoint or none; ``latest`` (a one-line text file,
itself replaced atomically) names the newest one. Older checkpoints beyond ``keep_last`` are
removed only after the new one is in place.

Example:
    >>> store = CheckpointStore("runs/predictor-0.35", keep_last=2)              # doctest: +SKIP
    >>> store.save(step, model, {"main": optimizer}, extra={"config": cfg.to_dict()})  # doctest: +SKIP
    >>> state = store.load_latest(model, {"main": optimizer})                    # doctest: +SKIP
    >>> state.step if state else 0                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimvision.errors import InputError
from slimvision.io.atomic import write_text_atomic

MODEL_FILE = "model.safetensors"
OPTIMIZERS_FILE = "optimizers.safetensors"
TRAINER_FILE = "trainer.json"
LATEST_FILE = "latest"


@dataclass
class CheckpointState:
    """What a loaded checkpoint tells the trainer."""

    step: int
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _flatten_optimizer(name: str, optimizer: torch.optim.Optimizer,
                       tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Move the optimizer's tensors into ``tensors``; return the JSON-able rest."""
    state = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        plain_state[str(param_id)] = {}
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/state/{param_id}/{key}"] = value.detach().contiguous().cpu()
            else:
                plain_state[str(param_id)][key] = value
    return {"param_groups": state["param_groups"], "state": plain_state}


def _unflatten_optimizer(name: str, saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(values) for pid, values in saved["state"].items()}
    prefix = f"{name}/state/"
    for key, tensor in tensors.items():
        if key.startswith(prefix):
            param_id, entry = key[len(prefix):].split("/", 1)
            state.setdefault(int(param_id), {})[entry] = tensor
    return {"state": state, "param_groups": saved["param_groups"]}


class CheckpointStore:
    """Checkpoints of one run in ``folder``: save, list, load the latest, prune old ones."""

    def __init__(self, folder: str | Path, keep_last: int = 2) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (hidden temporary folders are not listed)."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("step-*") if (p / TRAINER_FILE).is_file())

    def save(self, step: int, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer],
             extra: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint for ``step`` atomically, point ``latest`` at it, prune old ones."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_for(step)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{target.name}.", suffix=".tmp"))
        try:
            weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(weights, str(staging / MODEL_FILE))
            tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state()}
            plain = {name: _flatten_optimizer(name, opt, tensors) for name, opt in optimizers.items()}
            save_file(tensors, str(staging / OPTIMIZERS_FILE))
            trainer = {"format": "slimvision-checkpoint-v1", "step": step, "optimizers": plain,
                       "extra": extra or {}}
            (staging / TRAINER_FILE).write_text(json.dumps(trainer, indent=2) + "\n")
            _fsync_folder(staging)
            if target.exists():  # re-saving a step (e.g. after a resume): replace it whole
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        write_text_atomic(self.folder / LATEST_FILE, target.name + "\n", overwrite=True)
        self._prune()
        return target

    def _prune(self) -> None:
        for old in self.checkpoints()[:-self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, else the newest complete one, else None."""
        pointer = self.folder / LATEST_FILE
        if pointer.is_file():
            named = self.folder / pointer.read_text().strip()
            if (named / TRAINER_FILE).is_file():
                return named
        found = self.checkpoints()
        return found[-1] if found else None

    def latest_step(self) -> int:
        """The step the latest checkpoint reached (its trainer.json says), 0 when there is none."""
        path = self.latest()
        return 0 if path is None else int(json.loads((path / TRAINER_FILE).read_text())["step"])

    def latest_extra(self) -> dict[str, Any]:
        """The ``extra`` the latest checkpoint was saved with (e.g. the run's config); {} when there is none."""
        path = self.latest()
        return {} if path is None else dict(json.loads((path / TRAINER_FILE).read_text()).get("extra", {}))

    def load_latest(self, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> CheckpointState | None:
        path = self.latest()
        return None if path is None else load_checkpoint(path, model, optimizers)


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer]) -> CheckpointState:
    """Restore weights, optimizer states and the torch RNG from a checkpoint folder."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        trainer = json.loads((path / TRAINER_FILE).read_text())
        weights = load_file(str(path / MODEL_FILE))
        tensors = load_file(str(path / OPTIMIZERS_FILE))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable checkpoint ({exc})") from None
    if trainer.get("format") != "slimvision-checkpoint-v1":
        raise InputError(path / TRAINER_FILE, "not a slimvision checkpoint")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise InputError(path / MODEL_FILE, f"does not fit this model: {str(exc).splitlines()[-1].strip()}") from None
    saved = trainer["optimizers"]
    if set(saved) != set(optimizers):
        raise InputError(path, f"has optimizers {sorted(saved)}, this run has {sorted(optimizers)}")
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(_unflatten_optimizer(name, saved[name], tensors))
    torch.set_rng_state(tensors["rng/torch"])
    return CheckpointState(step=int(trainer["step"]), path=path, extra=trainer.get("extra", {}))


def _fsync_folder(folder: Path) -> None:
    """Flush the staged files to disk before the rename makes them the checkpoint."""
    for item in folder.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
