"""What the browser app shows, read from the files that training writes: the models of a models folder, metric
curves from TensorBoard logs or ``model.json`` histories, and tuning studies. Plain pandas, no Streamlit, so that
it can be used (and tested) on its own."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..metadata import active_model, find_models, model_name, predicts_signs, read_metadata, test_accuracy
from ..plots import confusion_image

STUDY_FILE = "study.db"


def models_frame(models_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per ``model.json`` below ``models_dir`` (as ``signbridge models list``): name, task, classes, the
    monitored best value, validation and test accuracy, epochs, date, active; ``path`` is the metadata file.
    Unreadable metadata gives a row that says so instead of hiding the folder."""
    try:
        active = active_model(models_dir)
    except InputError:
        active = None
    rows = []
    for path in find_models(models_dir) if Path(models_dir).is_dir() else []:
        row: dict = {"model": model_name(path, models_dir), "path": str(path)}
        try:
            meta = read_metadata(path)
        except InputError as error:
            rows.append({**row, "task": f"unreadable: {error}", "predicts_signs": False})
            continue
        monitor = meta.get("monitor")
        history = meta.get("history") or []
        best_epoch = (meta.get("best") or {}).get("epoch")
        best_row: dict = next((r for r in history if r.get("epoch") == best_epoch), {})
        rows.append({
            **row,
            "task": str(meta.get("task", "")).rsplit(".", 1)[-1],
            "classes": len(meta.get("classes") or []) or None,
            "monitor": monitor,
            "best": (meta.get("best") or {}).get(monitor),
            "val_acc": best_row.get("val_acc"),
            "test_acc": test_accuracy(meta),
            "test_f1_macro": ((meta.get("test") or {}).get("metrics") or {}).get("test_f1_macro"),
            "epochs": meta.get("epochs"),
            "created": str(meta.get("created", ""))[:19].replace("T", " "),
            "active": active is not None and path.resolve() == active.resolve(),
            "predicts_signs": predicts_signs(meta),
        })
    columns = ["model", "task", "classes", "monitor", "best", "val_acc", "test_acc", "test_f1_macro", "epochs",
               "created", "active", "path", "predicts_signs"]
    return pd.DataFrame(rows, columns=columns)


def history_frame(metadata: dict) -> pd.DataFrame:
    """The per-epoch metrics of a finished fit (``model.json``'s history), indexed by epoch."""
    history = metadata.get("history") or []
    if not history:
        return pd.DataFrame()
    return pd.DataFrame(history).set_index("epoch").sort_index()


def scalars_frame(log_dir: str | os.PathLike) -> pd.DataFrame:
    """The epoch-level scalars of a TensorBoard log folder (a running or finished fit), indexed by epoch: the
    validation metrics and the ``*_epoch`` training metrics Lightning logs. Empty while there are none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    if "epoch" not in tags:
        return pd.DataFrame()
    epoch_at = {event.step: int(event.value) for event in events.Scalars("epoch")}
    columns: dict[str, dict[int, float]] = {}
    for tag in tags:
        if tag.startswith("val_") or tag.endswith("_epoch"):
            name = tag.removesuffix("_epoch")
            for event in events.Scalars(tag):
                if event.step in epoch_at:
                    columns.setdefault(name, {})[epoch_at[event.step]] = event.value
    frame = pd.DataFrame(columns).sort_index()
    frame.index.name = "epoch"
    return frame


def per_class_frame(metadata: dict) -> pd.DataFrame:
    """The per-class precision/recall/F1 of the model's last ``signbridge test`` (empty if never tested)."""
    rows = (metadata.get("test") or {}).get("per_class") or []
    return pd.DataFrame(rows).set_index("class") if rows else pd.DataFrame()


def confusion_matrix_image(metadata: dict) -> np.ndarray | None:
    """An RGB image of the test confusion matrix (rows: true class; ``plots.confusion_image``), or None if never
    tested."""
    matrix = (metadata.get("test") or {}).get("confusion")
    if not matrix:
        return None
    names = metadata.get("classes")
    return confusion_image(matrix, names if names and len(names) == len(matrix) else None)


def find_studies(models_dir: str | os.PathLike) -> list[Path]:
    """The Optuna SQLite studies (``study.db`` of ``signbridge tune``) below ``models_dir``."""
    root = Path(models_dir)
    return sorted(root.rglob(STUDY_FILE)) if root.is_dir() else []


def load_studies(path: Path) -> list:
    """The studies stored in one SQLite file (read only: nothing is created)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}", skip_compatibility_check=True)
    return [optuna.load_study(study_name=s.study_name, storage=storage)
            for s in optuna.get_all_study_summaries(storage)]


def trials_frame(study) -> pd.DataFrame:
    """One row per trial: state, value, epochs trained (the epoch a pruned trial stopped at), seconds, parameters
    (short names) and the checkpoint of a finished trial."""
    rows = []
    for trial in study.trials:
        epochs = trial.user_attrs.get("epochs")
        if epochs is None and trial.intermediate_values:
            epochs = max(trial.intermediate_values) + 1
        rows.append({
            "trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, "epochs": epochs,
            "seconds": trial.user_attrs.get("seconds") or (
                (trial.datetime_complete - trial.datetime_start).total_seconds()
                if trial.datetime_complete and trial.datetime_start else None),
            **{name.rsplit(".", 1)[-1]: value for name, value in trial.params.items()},
            "checkpoint": trial.user_attrs.get("checkpoint"),
        })
    return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def intermediate_frame(study) -> pd.DataFrame:
    """The monitored value of every trial at every epoch it reported (columns: trials), for the pruning plot."""
    columns = {f"trial {t.number}": t.intermediate_values for t in study.trials if t.intermediate_values}
    frame = pd.DataFrame(columns).sort_index()
    frame.index.name = "epoch"
    return frame
