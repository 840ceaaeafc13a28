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
removed only after the new one is in place. A run killed while saving leaves its hidden
temporary folder behind; :meth:`CheckpointStore.clean_stale` (called when a run starts or
resumes) removes those, and only those: names this module makes, nothing else.

``trainer.json`` also keeps the run's loss log up to its step (``history``), so a resumed or
finished run can still draw every step's losses.

Loading trusts nothing it reads: a truncated safetensors file, a trainer.json that is not
what this module writes, missing tensors or a ``latest`` that names anything but a checkpoint
folder of this run are each a one-line :class:`~slimvision.errors.InputError` naming the file.

Example:
    >>> store = CheckpointStore("runs/predictor-0.35", keep_last=2)              # doctest: +SKIP
    >>> store.save(step, model, {"main": optimizer}, extra={"config": cfg.to_dict()})  # doctest: +SKIP
    >>> state = store.load_latest(model, {"main": optimizer})                    # doctest: +SKIP
    >>> state.step if state else 0                                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
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
FORMAT = "slimvision-checkpoint-v1"
#: A checkpoint folder's name; ``latest`` must name one (no paths, nothing outside the run).
_STEP_NAME = re.compile(r"step-\d{8}")
#: The staging folder a save is written into, ``.step-NNNNNNNN.<pid>-<random>.tmp``: what a run
#: killed mid-save leaves. The writer's PID tells a dead run's leftover from a live run's save in
#: progress; names without one were made by earlier versions (no writer of theirs can be alive).
_STAGING_NAME = re.compile(r"\.step-\d{8}\.(?:(?P<pid>\d{1,10})-)?[A-Za-z0-9_]+\.tmp")
_DAMAGED_HINT = "delete that checkpoint folder to resume from the one before it, or use a new run folder"

log = logging.getLogger(__name__)


@dataclass
class CheckpointState:
    """What a loaded checkpoint tells the trainer."""

    step: int
    path: Path
    extra: dict[str, Any] = field(default_factory=dict)
    #: The loss log up to ``step``: {"steps": [...], "values": {name: [...]}} (empty in older checkpoints).
    history: dict[str, Any] = field(default_factory=dict)


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
    # The tensors' names too, so a loader can tell a missing one from one the optimiser never had.
    stored = sorted(key for key in tensors if key.startswith(f"{name}/state/"))
    return {"param_groups": state["param_groups"], "state": plain_state, "tensors": stored}


def _unflatten_optimizer(name: str, saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    missing = sorted(set(saved.get("tensors", [])) - set(tensors))
    if missing:
        raise KeyError(f"{len(missing)} tensor(s) missing, e.g. {missing[0]!r}")
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
             extra: dict[str, Any] | None = None, history: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint for ``step`` atomically, point ``latest`` at it, prune old ones.

        ``history`` is the run's loss log up to ``step`` (see :attr:`CheckpointState.history`).
        """
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_for(step)
        staging = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp"))
        try:
            weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            save_file(weights, str(staging / MODEL_FILE))
            tensors: dict[str, torch.Tensor] = {"rng/torch": torch.get_rng_state()}
            plain = {name: _flatten_optimizer(name, opt, tensors) for name, opt in optimizers.items()}
            save_file(tensors, str(staging / OPTIMIZERS_FILE))
            trainer = {"format": FORMAT, "step": step, "optimizers": plain, "extra": extra or {},
                       "history": history or {}}
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

    def clean_stale(self) -> list[str]:
        """Remove what runs killed mid-save left here: staging folders (:data:`_STAGING_NAME`) and
        ``latest``'s temporary files (:func:`slimvision.io.atomic.temp_name`) whose writer is gone.
        Returns the names removed; nothing but those names is ever touched."""
        from slimvision.io.atomic import _TEMP_NAME, _writer_gone

        if not self.folder.is_dir():
            return []
        removed = []
        for item in self.folder.iterdir():
            staging, pointer = _STAGING_NAME.fullmatch(item.name), _TEMP_NAME.fullmatch(item.name)
            if staging is not None and item.is_dir() and not item.is_symlink():
                pid = staging["pid"]
            elif pointer is not None and item.name.startswith(f".{LATEST_FILE}.") and item.is_file():
                pid = pointer["pid"]
            else:
                continue
            if pid is not None and not _writer_gone(int(pid), item.lstat().st_mtime):
                continue  # another process is saving into this run right now
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            removed.append(item.name)
        if removed:
            log.info("%s: removed %d unfinished checkpoint file(s) left by an interrupted run: %s",
                     self.folder, len(removed), ", ".join(sorted(removed)))
        return removed

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names, else the newest complete one, else None.

        Raises:
            InputError: ``latest`` names anything but a checkpoint folder of this run.
        """
        pointer = self.folder / LATEST_FILE
        if pointer.is_file():
            named = self._pointed_to(pointer)
            if (named / TRAINER_FILE).is_file():
                return named
        found = self.checkpoints()
        return found[-1] if found else None

    def _pointed_to(self, pointer: Path) -> Path:
        """The folder ``latest`` names, which must be a ``step-NNNNNNNN`` folder inside this run's own."""
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(pointer, f"unreadable ({exc}); delete it to resume from the newest checkpoint") from None
        named = self.folder / name
        inside = named.resolve().parent == self.folder.resolve()
        if not _STEP_NAME.fullmatch(name) or not inside:
            raise InputError(pointer, f"names {name[:80]!r}, not a checkpoint folder of this run (step-NNNNNNNN "
                                      "beside it); delete it to resume from the newest checkpoint")
        return named

    def latest_state(self) -> CheckpointState | None:
        """The latest checkpoint's step, extra and loss log (from trainer.json alone), or None."""
        path = self.latest()
        if path is None:
            return None
        trainer = read_trainer_json(path)
        return CheckpointState(step=trainer["step"], path=path, extra=trainer["extra"], history=trainer["history"])

    def latest_step(self) -> int:
        """The step the latest checkpoint reached (its trainer.json says), 0 when there is none."""
        state = self.latest_state()
        return 0 if state is None else state.step

    def latest_extra(self) -> dict[str, Any]:
        """The ``extra`` the latest checkpoint was saved with (e.g. the run's config); {} when there is none."""
        state = self.latest_state()
        return {} if state is None else dict(state.extra)

    def load_latest(self, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> CheckpointState | None:
        path = self.latest()
        return None if path is None else load_checkpoint(path, model, optimizers)


def read_trainer_json(folder: str | Path) -> dict[str, Any]:
    """A checkpoint's trainer.json, checked to be what :meth:`CheckpointStore.save` writes:
    {"format", "step" (int >= 0), "optimizers" (dict), "extra" (dict), "history" (dict, maybe empty)}.

    Raises:
        InputError: the file is missing, unreadable, not JSON or not shaped like that.
    """
    path = Path(folder) / TRAINER_FILE
    try:
        trainer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable checkpoint file ({_one_line(exc)}); {_DAMAGED_HINT}") from None
    if not isinstance(trainer, dict) or trainer.get("format") != FORMAT:
        raise InputError(path, f"not a slimvision checkpoint (no \"format\": \"{FORMAT}\"); {_DAMAGED_HINT}")
    step, optimizers = trainer.get("step"), trainer.get("optimizers")
    extra, history = trainer.get("extra", {}), trainer.get("history", {})
    problem = ("its step is not a whole number >= 0" if type(step) is not int or step < 0 else
               "its optimizers are not an object" if not isinstance(optimizers, dict) else
               "its extra is not an object" if not isinstance(extra, dict) else
               "its history is not an object" if not isinstance(history, dict) else None)
    if problem:
        raise InputError(path, f"damaged checkpoint: {problem}; {_DAMAGED_HINT}")
    return {**trainer, "extra": extra, "history": history}


def read_json_rows(path: str | Path) -> list[dict[str, Any]]:
    """A run's JSON list of records (``metrics.json``, ``fid.json``); [] when the file does not exist.

    Raises:
        InputError: the file is unreadable, not JSON, or not a list of objects with a whole ``step``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"not a readable record of this run ({_one_line(exc)}); delete it and rerun "
                               "to measure again") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and type(row.get("step")) is int for row in rows):
        raise InputError(path, "damaged: expected a list of records with a whole \"step\"; delete it and rerun "
                               "to measure again")
    return rows


def read_cached_array(path: str | Path, key: str | None = None) -> Any:
    """A cache the run can rebuild (``.npy``, or ``key`` of an ``.npz``), or None when it is missing
    or damaged (logged): the caller computes it again."""
    import zipfile
    import zlib

    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as saved:
            return saved[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        log.info("%s is damaged (%s); computing it again", path, _one_line(exc))
        return None


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer]) -> CheckpointState:
    """Restore weights, optimizer states and the torch RNG from a checkpoint folder.

    Raises:
        InputError: one line naming the damaged or unfitting file (truncated safetensors,
            invalid trainer.json, missing or unexpected tensors, other optimisers).
    """
    path = Path(path)
    trainer = read_trainer_json(path)
    weights = _read_tensors(path / MODEL_FILE)
    tensors = _read_tensors(path / OPTIMIZERS_FILE)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise InputError(path / MODEL_FILE, f"does not fit this model: {_one_line(exc)}") from None
    saved = trainer["optimizers"]
    if set(saved) != set(optimizers):
        raise InputError(path / TRAINER_FILE, f"has optimizers {sorted(saved)}, this run has {sorted(optimizers)}")
    try:
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(_unflatten_optimizer(name, saved[name], tensors))
        if "rng/torch" not in tensors:
            raise KeyError("no 'rng/torch' tensor")
        torch.set_rng_state(tensors["rng/torch"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as exc:
        raise InputError(path / OPTIMIZERS_FILE, f"does not fit this run's optimisers "
                                                 f"({type(exc).__name__}: {_one_line(exc)}); {_DAMAGED_HINT}") from None
    return CheckpointState(step=trainer["step"], path=path, extra=trainer["extra"], history=trainer["history"])


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, truncated or damaged file is an InputError naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise InputError(path, f"not a readable safetensors file ({_one_line(exc)}); {_DAMAGED_HINT}") from None


def _one_line(error: BaseException) -> str:
    """The last non-empty line of an error's message (torch's are many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _fsync_folder(folder: Path) -> None:
    """Flush the staged files to disk before the rename makes them the checkpoint."""
    for item in folder.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
