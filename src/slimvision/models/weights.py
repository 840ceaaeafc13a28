"""Save and load a model as ``model.safetensors`` + ``config.json`` in one folder.

The config holds the constructor arguments, so a folder rebuilds its model without pickles or
code from the file: the safetensors header names the registered model and the module that
registers it (only modules under ``slimvision.models`` are ever imported from it).

Example:
    >>> from slimvision.models.style import StyleTransformer
    >>> folder = save_model(StyleTransformer(), "out/teacher", overwrite=True)   # doctest: +SKIP
    >>> model = load_model(folder)                                              # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from torch import nn

import slimvision
from slimvision.errors import InputError, SlimvisionError
from slimvision.io.atomic import write_bytes_atomic, write_text_atomic
from slimvision.registry import MODELS

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_FORMAT = "slimvision-model-v1"


def registered_name(model: nn.Module) -> str:
    """The name ``model``'s class is registered under in :data:`slimvision.registry.MODELS`."""
    names = [name for name in MODELS.names() if MODELS.get(name) is type(model)]
    if not names:
        raise ValueError(f"{type(model).__name__} is not a registered model (see slimvision.registry)")
    return names[0]


def save_model(model: nn.Module, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` atomically; returns the folder.

    The model needs a ``config`` (a BaseConfig) and a registered class.
    """
    from safetensors.torch import save

    folder = Path(folder)
    metadata = {"format": _FORMAT, "model": registered_name(model), "module": type(model).__module__,
                "slimvision": slimvision.__version__}
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    write_bytes_atomic(folder / WEIGHTS_FILE, save(tensors, metadata=metadata), overwrite=overwrite)
    write_text_atomic(folder / CONFIG_FILE, model.config.to_json(), overwrite=overwrite)
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Rebuild the model saved in ``folder`` (eval mode); every weight must be present and fit.

    Raises:
        InputError: a file is missing or unreadable, or the weights do not fit the config.
        ConfigError: config.json has unknown keys or bad values.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    try:
        data = weights.read_bytes()
        metadata = _metadata(data)
        tensors = load(data)
    except OSError as exc:
        raise InputError(weights, f"cannot read ({exc.strerror or exc})") from None
    except (SafetensorError, ValueError) as exc:
        raise InputError(weights, f"not a slimvision safetensors file ({exc})") from None
    model_class = _model_class(weights, metadata)
    model = model_class(model_class.config_class.load(folder / CONFIG_FILE))
    missing, unexpected = _key_mismatch(model, tensors)
    if missing or unexpected:
        raise InputError(weights, f"does not fit config.json: missing {missing or 'none'}, "
                                  f"unexpected {unexpected or 'none'}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(weights, f"does not fit config.json: {str(exc).splitlines()[-1].strip()}") from None
    return model.eval()


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (first 8 bytes: little-endian header length)."""
    if len(data) < 8:
        raise ValueError("file too short")
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise ValueError("its __metadata__ is not an object of strings")
    return metadata or {}


def _model_class(path: Path, metadata: dict[str, str]) -> type[nn.Module]:
    if metadata.get("format") != _FORMAT:
        raise InputError(path, f"no '{_FORMAT}' header (was it written by slimvision.models.weights.save_model?)")
    module = metadata.get("module", "")
    if not module.startswith("slimvision.models."):
        raise InputError(path, f"names module {module!r}; only slimvision.models.* modules are imported")
    try:
        importlib.import_module(module)  # registers the model class
    except ImportError as exc:
        raise InputError(path, f"names module {module!r}, which cannot be imported ({exc})") from None
    name = metadata.get("model", "")
    try:
        model_class = MODELS.get(name)
    except SlimvisionError as exc:
        raise InputError(path, f"names model {name!r}, which is not registered ({exc})") from None
    is_model = isinstance(model_class, type) and issubclass(model_class, nn.Module)
    if not (is_model and hasattr(model_class, "config_class")):
        raise InputError(path, f"names {name!r}, which is not a model class saved with its config")
    return model_class


def _key_mismatch(model: nn.Module, tensors: dict[str, object]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(tensors)), sorted(set(tensors) - expected)
