"""Train: start ``fit`` or ``tune`` from a config in the background, follow its progress and curves, stop it."""

import inspect
import re
import shlex
from pathlib import Path

import streamlit as st
import yaml

from signbridge.errors import InputError
from signbridge.lightning_cli import overrides_from_options
from signbridge.tuning import tune as tune_study
from signbridge.ui.common import evaluation_step, settings
from signbridge.ui.jobs import JOBS_FOLDER, list_jobs, make_step, prepare_jobs, start_job, stop_job
from signbridge.ui.runs import STUDY_FILE, load_studies, scalars_frame

folders = settings()
prepare_jobs()  # the jobs' server imports Lightning in the background: the job started here starts at once
TUNE_PARAMETERS = set(inspect.signature(tune_study).parameters) - {"config"}


def read_yaml(path: Path) -> dict:
    """A YAML mapping, or {} for anything else (a config that does not parse is not offered)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def find_configs(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Recipes (a model and data), partial configs to add to one (e.g. trainer/gpu.yaml) and search spaces."""
    files = sorted(root.rglob("*.yaml")) if root.is_dir() else []
    spaces = [f for f in files if f.stem.endswith("_search")]
    others = [f for f in files if f not in spaces]
    recipes = [f for f in others if {"model", "data"} <= read_yaml(f).keys()]
    partial = [f for f in others if f not in recipes]
    return recipes, partial, spaces


st.title("Train")
recipes, partial, spaces = find_configs(folders.configs_dir)
with st.form("start"):
    left, right = st.columns(2)
    names = [str(p.relative_to(folders.configs_dir)) for p in recipes]
    config_name = left.selectbox("Config", names + ["(uploaded below)"], key="config",
                                 index=names.index("sign_landmarks.yaml") if "sign_landmarks.yaml" in names else 0)
    uploaded = left.file_uploader("…or upload a config", type=["yaml", "yml"])
    extra = left.multiselect("Add configs", [str(p.relative_to(folders.configs_dir)) for p in partial],
                             help="partial configs applied after the main one, e.g. trainer/gpu.yaml")
    root = left.text_input("Data root", key="root", placeholder="/path/to/Dataset (one folder per class)")
    name = left.text_input("Run name", key="name", placeholder="default: the config's name",
                           help=f"models are written to {folders.models_dir}/NAME/version_N")
    action = right.radio("Command", ["fit", "tune"], horizontal=True, key="action")
    space_name = right.selectbox("Search space (tune)", [str(p.relative_to(folders.configs_dir)) for p in spaces],
                                 key="space")
    trials = right.number_input("Trials (tune)", min_value=1, value=10, key="trials")
    epochs = right.number_input("Max epochs (0: the config's or the search space's)", min_value=0, value=0,
                                key="epochs")
    batch_size = right.number_input("Batch size (0: the config's)", min_value=0, value=0)
    lr = right.number_input("Learning rate (0: the config's)", min_value=0.0, value=0.0, format="%g")
    accelerator = right.selectbox("Accelerator", ["the config's", "cpu", "gpu", "auto"], key="accelerator")
    evaluate = right.checkbox("Test the best checkpoint when the fit ends", value=True)
    more = st.text_input("More arguments", key="more",
                         placeholder="--model.init_args.loss focal --data.init_args.num_workers 2",
                         help="any option of 'signbridge fit' (or of 'signbridge tune')")
    start = st.form_submit_button("Start", type="primary")

if start:
    problems = []
    config_path: Path | None
    if uploaded is not None:
        saved = folders.models_dir / JOBS_FOLDER / "configs" / Path(uploaded.name).name
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(uploaded.getvalue())
        config_path = saved
    elif config_name in names:
        config_path = folders.configs_dir / config_name
    else:
        config_path = None
        problems.append("choose a config or upload one")
    if not root.strip():
        problems.append("give the data root")
    elif not Path(root.strip()).expanduser().is_dir():
        problems.append(f"data root {root.strip()} is not a folder")
    if action == "tune" and not space_name:
        problems.append(f"no search space (*_search.yaml) in {folders.configs_dir}")
    try:
        more_settings = overrides_from_options(shlex.split(more))
    except (InputError, ValueError) as error:
        problems.append(f"more arguments: {error}")
    if problems:
        st.error("Cannot start: " + "; ".join(problems))
    else:
        assert config_path is not None
        run_name = re.sub(r"[^\w.-]+", "_", name.strip()) or config_path.stem
        configs = [str(config_path), *(str(folders.configs_dir / added) for added in extra)]
        overrides: dict = {"data.init_args.root": str(Path(root.strip()).expanduser())}
        if epochs and action == "fit":
            overrides["trainer.max_epochs"] = int(epochs)
        if batch_size:
            overrides["data.init_args.batch_size"] = int(batch_size)
        if lr:
            overrides["model.init_args.lr"] = float(lr)
        if accelerator != "the config's":
            overrides["trainer.accelerator"] = accelerator
        # tune's own options (--sampler grid) are its arguments, the rest settings of the config
        tune_options = {name: more_settings.pop(name) for name in list(more_settings) if name in TUNE_PARAMETERS}
        overrides.update(more_settings)
        run_dir = folders.models_dir / run_name
        if action == "fit":
            fit = make_step("fit", configs, {**overrides, "trainer.logger.init_args.save_dir": str(folders.models_dir),
                                             "trainer.logger.init_args.name": run_name})
            steps = [fit] + ([evaluation_step("{run}/config.yaml", "{checkpoint}", "{run}")] if evaluate else [])
            max_epochs = epochs or (read_yaml(config_path).get("trainer") or {}).get("max_epochs")
            job = start_job(folders.models_dir, "fit", run_name, steps, run_dir, max_epochs=max_epochs)
        else:
            tune = make_step("tune", configs, overrides, search_space=str(folders.configs_dir / space_name),
                             run_dir=str(run_dir), trials=int(trials),
                             **({"max_epochs": int(epochs)} if epochs else {}), **tune_options)  # a trial's epochs
            job = start_job(folders.models_dir, "tune", run_name, [tune], run_dir, trials=int(trials))
        st.success(f"Started {action} '{run_name}' (job {job.id}); it runs in the background, also if you close "
                   "this page.")


def show_job(job) -> None:
    """One job: state, progress, stop button, curves, and the end of its console output."""
    state = job.state
    icon = {"running": "⏳", "starting": "⏳", "finished": "✅", "failed": "❌", "stopped": "⏹️", "lost": "❔"}[state]
    with st.expander(f"{icon} {job.kind} · {job.name} · {state}", expanded=job.running):
        st.caption(f"job {job.id} · {job.spec['run_dir']}")
        log_dir = job.log_dir() if job.kind == "fit" else None
        frame = scalars_frame(log_dir) if log_dir is not None else None
        if job.kind == "fit" and job.spec.get("max_epochs"):
            done = 0 if frame is None or frame.empty else int(frame.index.max()) + 1
            total = int(job.spec["max_epochs"])
            st.progress(min(done / total, 1.0), text=f"epoch {done} of at most {total}")
        if job.kind == "tune":
            study = Path(job.spec["run_dir"]) / STUDY_FILE
            if study.exists():
                finished = sum(t.state.is_finished() for s in load_studies(study) for t in s.trials)
                total = int(job.spec.get("trials") or 1)
                st.progress(min(finished / total, 1.0), text=f"{finished} of {total} trials finished")
        if job.running and st.button("Stop", key=f"stop-{job.id}"):
            stop_job(job)
            st.toast(f"Stopping {job.name}: the run saves its progress first")
        if frame is not None and not frame.empty:
            losses = [c for c in frame.columns if c.endswith("loss")]
            scores = [c for c in frame.columns if c.endswith("acc") or c.endswith("f1_macro")]
            charts = st.columns(2)
            if losses:
                charts[0].line_chart(frame[losses], x_label="epoch")
            if scores:
                charts[1].line_chart(frame[scores], x_label="epoch")
        if state in ("failed", "lost"):
            last = job.log_tail(1)
            st.error(f"The job {state}: {last}" if last else f"The job {state}")
        elif state == "finished":
            model = job.model_metadata()
            if model is not None:
                st.success(f"Model written: {model.parent} (see the Models page)")
        st.code(job.log_tail() or "(no output yet)", language=None)


@st.fragment(run_every=3)
def jobs_section() -> None:
    """The jobs of the models folder, newest first, refreshed every few seconds."""
    jobs = list_jobs(folders.models_dir)
    st.subheader("Runs")
    if not jobs:
        st.caption("No runs started from this app yet.")
    for job in jobs[:10]:
        show_job(job)


jobs_section()
