"""Fixtures of the browser-app tests: a models folder with a landmark classifier trained and tested on real
Sign Language Digits photos, and the app's settings pointing at it."""

import json
import signal
import time
from pathlib import Path

import pytest

from signbridge.cli import main
from signbridge.ui.common import CONFIGS_DIR_VARIABLE, MODELS_DIR_VARIABLE
from signbridge.ui.jobs import Job, make_step, read_job
from tests.conftest import REPO


@pytest.fixture(scope="session", autouse=True)
def _survive_sigprof():
    """AppTest runs the Predict page in this process, which has trained models before; MediaPipe built in such a
    process gets SIGPROF signals, whose default action ends it (the hazard noted on ``HandDetector``: the test run
    stopped with exit code 155 right after the Predict test). The signals go on after the test, so they stay
    ignored for the rest of the session. The app's own server never trains."""
    signal.signal(signal.SIGPROF, signal.SIG_IGN)


@pytest.fixture(autouse=True)
def _release_the_apps_models():
    """AppTest runs the pages in this process: the models the Predict page cached (with their MediaPipe detectors)
    are released, and so closed, after each test, not by the garbage collector during a later test's training."""
    import streamlit as st

    yield
    st.cache_resource.clear()


def landmark_args(models_dir: Path, root: Path, cache: Path, *extra: str) -> list[str]:
    return ["--config", str(REPO / "configs" / "sign_landmarks.yaml"), "--data.init_args.root", str(root),
            "--data.init_args.landmarks_file", str(cache), "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(models_dir), "--trainer.enable_progress_bar", "false",
            *extra]


def landmark_fit_step(models_dir: Path, root: Path, cache: Path, **overrides) -> dict:
    """A job step (``make_step``) fitting the landmark recipe, with dotted ``overrides`` (``__`` for ``.``)."""
    settings = {"data.init_args.root": str(root), "data.init_args.landmarks_file": str(cache),
                "data.init_args.batch_size": 8, "trainer.logger.init_args.save_dir": str(models_dir),
                "trainer.enable_progress_bar": False}
    settings.update({name.replace("__", "."): value for name, value in overrides.items()})
    return make_step("fit", [str(REPO / "configs" / "sign_landmarks.yaml")], settings)


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory, digits_subset, digits_cache) -> Path:
    """A models folder with one landmark classifier (4 digits), fitted and tested through the CLI."""
    models_dir = tmp_path_factory.mktemp("ui") / "runs"
    cli = main(["fit", *landmark_args(models_dir, digits_subset, digits_cache, "--trainer.max_epochs", "60")])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    main(["test", *landmark_args(models_dir, digits_subset, digits_cache), "--ckpt_path", str(best),
          "--trainer.logger", "false", "--trainer.default_root_dir", str(best.parent.parent)])
    assert "test" in json.loads((best.parent / "model.json").read_text())
    return models_dir


@pytest.fixture
def app_settings(monkeypatch, tmp_path):
    """Point the app at a fresh copy-free models folder (tests may use ``trained_models`` instead)."""
    def use(models_dir: Path) -> Path:
        monkeypatch.setenv(MODELS_DIR_VARIABLE, str(models_dir))
        monkeypatch.setenv(CONFIGS_DIR_VARIABLE, str(REPO / "configs"))
        return models_dir
    return use


def wait_for(job: Job, states: tuple[str, ...], timeout: float = 240.0) -> Job:
    """Poll a job's folder until it reaches one of ``states`` (its output is in the assertion message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = read_job(job.folder)
        if current is not None and current.state in states:
            return current
        time.sleep(0.5)
    current = read_job(job.folder)
    raise AssertionError(f"job {job.id} is {current.state if current else '?'} after {timeout} s:\n"
                         f"{job.log_tail(60)}")
