"""Saved models: a ``model.json`` beside each run's checkpoints, and the models folder that lists them."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_json_atomic
from .hands.sequence import FRAME_FEATURES

METADATA_FILE = "model.json"
ACTIVE_FILE = "active.json"
FORMAT = 1


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a trained model depends on (recorded in ``model.json``)."""
    versions = {"python": platform.python_version()}
    for package in ("signbridge", "torch", "torchvision", "lightning", "timm", "torchmetrics", "mediapipe", "optuna"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


def _checkpoint_facts(checkpoint: Path, class_names: list[str] | None) -> tuple[dict[str, float] | None, dict | None]:
    """The per-class decision biases saved in a checkpoint (``fit_thresholds``), by class name (None without), and
    its inference contract (None for a task without one)."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    bias = saved["state_dict"].get("logit_bias")
    thresholds = None
    if bias is not None and bias.numel() and bias.any():
        names = class_names or [str(i) for i in range(bias.numel())]
        thresholds = {name: round(float(value), 6) for name, value in zip(names, bias)}
    return thresholds, saved.get("inference")


def predicts_signs(metadata: dict) -> bool:
    """Whether a ``model.json``'s model reads signs in photos, frames or videos (an image, hand landmarks or landmark
    sequences as input; or a continuous recognizer of tracked landmarks)."""
    inference = metadata.get("inference")
    if not inference:  # written before inference contracts: a classifier has classes, a recognizer a charset
        return bool(metadata.get("classes")) and "charset" not in (metadata.get("hyperparameters") or {})
    names = {spec["name"] for spec in inference.get("inputs", [])}
    tracked = (inference.get("preprocessing") or {}).get("sequence", {}).get("frame_features") == FRAME_FEATURES
    return (inference.get("decoding") == "argmax" and bool(names & {"image", "landmarks", "points"})
            or "features" in names and tracked)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not hasattr(v, "numel") or v.numel() == 1}


def __getattr__(name: str) -> Any:
    # the callback lives with the other Lightning callbacks; reading model.json needs no Lightning (seconds of imports)
    if name == "ModelMetadata":
        from .lightning_callbacks import ModelMetadata

        return ModelMetadata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------------
# the models folder


def read_metadata(path: str | os.PathLike) -> dict:
    """A ``model.json`` as a dict; an unreadable or foreign file is an ``InputError`` naming it."""
    path = Path(path)
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable model metadata file ({error})") from error
    if not isinstance(metadata, dict) or "checkpoint" not in metadata:
        raise InputError(f"{path}: model metadata without a 'checkpoint' entry")
    return metadata


def find_models(models_dir: str | os.PathLike) -> list[Path]:
    """Every ``model.json`` below ``models_dir``, sorted by path."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise FileNotFoundError(f"models folder does not exist: {models_dir}")
    return sorted(models_dir.rglob(METADATA_FILE))


def resolve_model(models_dir: str | os.PathLike, key: str) -> Path:
    """A model by its number in ``models list`` or by its folder (relative to ``models_dir``) or metadata path."""
    models = find_models(models_dir)
    if key.isdigit():
        index = int(key)
        if not 1 <= index <= len(models):
            raise InputError(f"{models_dir}: no model number {key} (there are {len(models)})")
        return models[index - 1]
    for candidate in (Path(models_dir) / key, Path(key)):
        if candidate.is_dir():
            candidate = candidate / METADATA_FILE
        if candidate.is_file():
            return candidate
    raise InputError(f"{models_dir}: no model '{key}' (see 'signbridge models list {models_dir}')")


def activate_model(models_dir: str, model: str) -> Path:
    """Make a model the one ``predict`` and ``recognize`` use by default.

    Args:
        models_dir: the models folder.
        model: number from ``models list``, or the model's folder relative to the models folder.

    Returns:
        the model's ``model.json``.
    """
    path = resolve_model(models_dir, model)
    read_metadata(path)
    write_json_atomic(Path(models_dir) / ACTIVE_FILE, {"model": os.path.relpath(path, models_dir)})
    return path


def show_model(models_dir: str, model: str) -> dict:
    """One model's metadata (its ``model.json``).

    Args:
        models_dir: the models folder.
        model: number from ``models list``, or the model's folder relative to the models folder.
    """
    return read_metadata(resolve_model(models_dir, model))


def active_checkpoint(models_dir: str | os.PathLike, command: str = "predict") -> Path:
    """The checkpoint of the model activated in ``models_dir``; an ``InputError`` telling ``command`` what to do
    when there is none."""
    active = active_model(models_dir) if Path(models_dir).is_dir() else None
    if active is None:
        raise InputError(f"{command} needs a model: give its checkpoint, or activate one with 'signbridge models "
                         f"activate {models_dir} MODEL'")
    print(f"{command}: the active model of {models_dir}: {active.parent}")
    return checkpoint_of(active)


def active_model(models_dir: str | os.PathLike) -> Path | None:
    """The metadata file of the active model, or None when none was activated."""
    marker = Path(models_dir) / ACTIVE_FILE
    if not marker.exists():
        return None
    try:
        path = Path(models_dir) / json.loads(marker.read_text())["model"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{marker}: not a readable active-model file ({type(error).__name__}: {error}); "
                         f"activate a model again with 'signbridge models activate {models_dir} MODEL'") from error
    if not path.exists():
        raise InputError(f"{marker}: the active model {path} no longer exists; activate another one")
    return path


def checkpoint_of(metadata_path: Path) -> Path:
    """The checkpoint a ``model.json`` describes (an ``InputError`` if it is gone)."""
    checkpoint = metadata_path.parent / read_metadata(metadata_path)["checkpoint"]
    if not checkpoint.exists():
        raise InputError(f"{metadata_path}: its checkpoint {checkpoint} is missing")
    return checkpoint


def run_folder(metadata_path: Path) -> Path:
    """The run (log) folder of a model: the folder of its ``checkpoints`` folder (``NAME/version_N``)."""
    return metadata_path.parent.parent if metadata_path.parent.name == "checkpoints" else metadata_path.parent


def model_name(metadata_path: Path, models_dir: str | os.PathLike) -> str:
    """A model's name in a models folder: its run folder relative to the folder (``NAME/version_N``)."""
    return os.path.relpath(run_folder(metadata_path), models_dir)


def test_accuracy(metadata: dict) -> float | None:
    """The test accuracy recorded in a model's metadata (``signbridge test`` of its checkpoint), or None."""
    value = (metadata.get("test") or {}).get("metrics", {}).get("test_acc")
    return float(value) if isinstance(value, int | float) else None


def models_table(models_dir: str | os.PathLike) -> str:
    """The trained models of ``models_dir`` as a text table (the active one marked)."""
    models = find_models(models_dir)
    notes = []
    try:
        active = active_model(models_dir)
    except InputError as error:  # one bad file must not hide the whole folder
        active, notes = None, [f"note: {error}"]
    header = f"{'#':>3}  {'model':<44}{'task':<22}{'best':<24}{'epochs':>7}{'test acc':>9}  {'created':<20}"
    lines = [header, "-" * len(header)]
    for number, path in enumerate(models, start=1):
        try:
            meta = read_metadata(path)
        except InputError as error:
            lines.append(f"{number:>3}  {os.path.relpath(path, models_dir):<44}(unreadable: see the note below)")
            notes.append(f"note: {error}")
            continue
        monitor = meta.get("monitor")
        value = meta.get("best", {}).get(monitor)
        best = f"{monitor}={value:.4f}" if isinstance(value, float) else "-"
        marker = "*" if active is not None and path.resolve() == active.resolve() else " "
        name = model_name(path, models_dir)
        tested = test_accuracy(meta)
        lines.append(f"{number:>3}{marker} {name:<44}{meta.get('task', '').rsplit('.', 1)[-1]:<22}{best:<24}"
                     f"{meta.get('epochs', ''):>7}{f'{tested:.4f}' if tested is not None else '-':>9}  "
                     f"{str(meta.get('created', ''))[:19]:<20}")
    if not models:
        lines.append(f"(no {METADATA_FILE} found below {models_dir})")
    lines.append("* = active: used by 'signbridge predict' when no --ckpt_path is given")
    return "\n".join(lines + notes)
