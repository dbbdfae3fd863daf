"""Models: the trained models of the models folder, their curves and test scores, activation, comparison, and the
tuning studies."""

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from signbridge.errors import InputError
from signbridge.metadata import activate_model, read_metadata, run_folder
from signbridge.ui.common import evaluation_step, settings
from signbridge.ui.jobs import prepare_jobs, start_job
from signbridge.ui.runs import (
    confusion_matrix_image,
    find_studies,
    history_frame,
    intermediate_frame,
    load_studies,
    models_frame,
    per_class_frame,
    trials_frame,
)

folders = settings()
prepare_jobs()  # the jobs' server imports Lightning in the background: the job started here starts at once
st.title("Models")
models = models_frame(folders.models_dir)
listing, compare, studies = st.tabs(["Models", "Compare", "Tuning studies"])


def curves(frame: pd.DataFrame, where) -> None:
    """Loss curves beside accuracy curves."""
    losses = [c for c in frame.columns if (c.endswith("loss") and not c.startswith("val_")) or c == "val_loss"]
    scores = [c for c in ("train_acc", "val_acc", "val_f1_macro") if c in frame.columns]
    left, right = where.columns(2)
    if losses:
        left.line_chart(frame[losses], x_label="epoch")
    if scores:
        right.line_chart(frame[scores], x_label="epoch")


def show_model(row: pd.Series) -> None:
    """One model: activate, test, metrics, curves, per-class scores, confusion matrix."""
    path = Path(row["path"])
    try:
        meta = read_metadata(path)
    except InputError as error:
        st.error(str(error))
        return
    buttons = st.columns(4)
    if buttons[0].button("Activate", disabled=bool(row["active"]),
                         help="the model 'signbridge predict' and the Predict page use by default"):
        activate_model(str(folders.models_dir), str(path.parent))
        st.rerun()
    config = str(meta.get("config") or "")
    if buttons[1].button("Test", disabled=not config,
                         help="run 'signbridge test' on its test split in the background (Train page shows it)"):
        run = run_folder(path)
        step = evaluation_step(str((path.parent / config).resolve()), str(path.parent / meta["checkpoint"]),
                               str(run))
        start_job(folders.models_dir, "test", row["model"], [step], run)
        st.success("Test started: follow it on the Train page; its scores appear here when it ends.")
    monitor = meta.get("monitor")
    cells = st.columns(4)
    cells[0].metric(f"best {monitor}", f"{(meta.get('best') or {}).get(monitor) or float('nan'):.4f}")
    cells[1].metric("best epoch", str((meta.get("best") or {}).get("epoch")))
    test_metrics = (meta.get("test") or {}).get("metrics") or {}
    cells[2].metric("test accuracy", f"{test_metrics['test_acc']:.4f}" if "test_acc" in test_metrics else "–")
    cells[3].metric("test macro F1",
                    f"{test_metrics['test_f1_macro']:.4f}" if "test_f1_macro" in test_metrics else "–")
    history = history_frame(meta)
    if not history.empty:
        st.subheader("Training curves")
        curves(history, st)
    per_class = per_class_frame(meta)
    if per_class.empty:
        st.caption("Not tested yet: press Test to see per-class scores and the confusion matrix.")
    else:
        st.subheader(f"Test split ({meta['test'].get('checkpoint')})")
        left, right = st.columns(2)
        # x is the index (the classes) whatever the orientation
        left.bar_chart(per_class[["f1"]], horizontal=True, x_label="class", y_label="F1")
        left.dataframe(per_class, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                 for c in ("precision", "recall", "f1")})
        image = confusion_matrix_image(meta)
        if image is not None:
            right.image(image, caption="confusion matrix (rows: true class)")
    with st.expander("Hyperparameters and data"):
        st.json({"hyperparameters": meta.get("hyperparameters"), "data": meta.get("data"),
                 "thresholds": meta.get("thresholds"), "versions": meta.get("versions")}, expanded=False)


with listing:
    if models.empty:
        st.info(f"No model.json below {folders.models_dir}: train a model first (Train page or 'signbridge fit').")
    else:
        st.dataframe(models.drop(columns=["path", "predicts_signs"]), hide_index=True, column_config={
            "active": st.column_config.CheckboxColumn("active"),
            "best": st.column_config.NumberColumn(format="%.4f"),
            "val_acc": st.column_config.NumberColumn(format="%.4f"),
            "test_acc": st.column_config.NumberColumn(format="%.4f"),
            "test_f1_macro": st.column_config.NumberColumn(format="%.4f")})
        labels = list(models["model"])
        choice = st.selectbox("Model", labels, index=len(labels) - 1)
        show_model(models.iloc[labels.index(choice)])

with compare:
    if len(models) < 2:
        st.info("Compare needs two models or more.")
    else:
        chosen = st.multiselect("Models", list(models["model"]), default=list(models["model"])[-2:])
        frames = {}
        for label in chosen:
            try:
                frames[label] = history_frame(read_metadata(Path(models.set_index("model").loc[label, "path"])))
            except InputError as error:
                st.warning(str(error))
        metrics = sorted({c for frame in frames.values() for c in frame.columns})
        if metrics:
            metric = st.selectbox("Metric", metrics, index=metrics.index("val_acc") if "val_acc" in metrics else 0)
            overlay = pd.DataFrame({label: frame[metric] for label, frame in frames.items() if metric in frame})
            st.line_chart(overlay, x_label="epoch", y_label=metric)
        st.dataframe(models[models["model"].isin(chosen)].drop(columns=["path", "predicts_signs"]), hide_index=True)

with studies:
    found = find_studies(folders.models_dir)
    if not found:
        st.info(f"No tuning study (study.db of 'signbridge tune') below {folders.models_dir}.")
    else:
        study_file = st.selectbox("Study", found, format_func=lambda p: os.path.relpath(p, folders.models_dir))
        for study in load_studies(study_file):
            st.subheader(f"{study.study_name} ({study.direction.name.lower()})")
            trials = trials_frame(study)
            if trials.empty:
                st.caption("No trials yet.")
                continue
            counts = trials["state"].value_counts()
            st.caption(" · ".join(f"{n} {state}" for state, n in counts.items()))
            complete = trials[trials["state"] == "complete"]
            if not complete.empty:
                best = complete["value"].idxmax() if study.direction.name == "MAXIMIZE" else complete["value"].idxmin()
                st.success(f"Best trial {best}: {complete.loc[best, 'value']:.4f}")
            st.dataframe(trials, column_config={"value": st.column_config.NumberColumn(format="%.4f")})
            steps = intermediate_frame(study)
            if not steps.empty:
                st.caption("Monitored value per epoch; a line that stops early is a pruned trial.")
                st.line_chart(steps, x_label="epoch")
