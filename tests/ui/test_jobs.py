"""Background jobs of the browser app: real ``signbridge`` processes started detached, followed through their
folder, stopped with SIGTERM (which saves), and a job whose driver died reported as lost."""

import json
import os
import subprocess
import sys
import time

from signbridge.files import write_json_atomic
from signbridge.ui.common import evaluation_step
from signbridge.ui.jobs import STOPPED, list_jobs, make_step, read_job, start_job, stop_job
from signbridge.ui.runs import scalars_frame
from tests.ui.conftest import landmark_fit_step, wait_for


def test_fit_then_test_job_records_the_test_in_the_models_metadata(tmp_path, digits_subset, digits_cache):
    models_dir = tmp_path / "runs"
    fit = landmark_fit_step(models_dir, digits_subset, digits_cache, trainer__max_epochs=3,
                            trainer__logger__init_args__name="digits")
    job = start_job(models_dir, "fit", "digits", [fit, evaluation_step("{run}/config.yaml", "{checkpoint}", "{run}")],
                    models_dir / "digits", max_epochs=3)
    assert [j.id for j in list_jobs(models_dir)] == [job.id]
    done = wait_for(job, ("finished", "failed", "lost"))
    assert done.state == "finished", done.log_tail(40)
    metadata_path = done.model_metadata()
    assert metadata_path is not None and metadata_path.parent.parent.parent == models_dir / "digits"
    metadata = json.loads(metadata_path.read_text())
    assert metadata["test"]["checkpoint"] == metadata["checkpoint"]
    assert 0.0 <= metadata["test"]["metrics"]["test_acc"] <= 1.0
    assert len(metadata["test"]["confusion"]) == 4 and len(metadata["test"]["per_class"]) == 4
    assert (metadata_path.parent.parent / "test_per_class.csv").exists()
    assert "$ signbridge test" in done.log_path.read_text()
    curves = scalars_frame(done.log_dir())
    assert list(curves.index) == [0, 1, 2] and {"val_loss", "val_acc", "train_loss"} <= set(curves.columns)


def test_a_stopped_fit_saves_last_ckpt_and_says_stopped(tmp_path, digits_subset, digits_cache):
    models_dir = tmp_path / "runs"
    fit = landmark_fit_step(models_dir, digits_subset, digits_cache, trainer__max_epochs=100000,
                            trainer__logger__init_args__name="long")
    job = start_job(models_dir, "fit", "long", [fit], models_dir / "long", max_epochs=100000)
    running = wait_for(job, ("running",))
    # the driver is nobody's here: in a session of its own, not a child of this (the app's) process
    driver = running.status["pid"]
    assert os.getsid(driver) == driver
    assert int(open(f"/proc/{driver}/stat").read().rsplit(")", 1)[1].split()[1]) != os.getpid()
    deadline = time.monotonic() + 240
    while True:  # until an epoch has been logged: the fit is under way
        log_dir = running.log_dir()
        if log_dir is not None and not scalars_frame(log_dir).empty:
            break
        assert time.monotonic() < deadline and running.running, running.log_tail(40)
        time.sleep(0.5)
    assert stop_job(running)
    stopped = wait_for(job, ("stopped", "finished", "failed", "lost"))
    assert stopped.state == "stopped" and stopped.status["returncode"] == STOPPED, stopped.log_tail(40)
    assert (stopped.log_dir() / "checkpoints" / "last.ckpt").exists()
    assert not stop_job(stopped)  # nothing left to stop


def test_a_failing_command_is_failed_with_its_one_line_error(tmp_path):
    models_dir = tmp_path / "runs"
    job = start_job(models_dir, "fit", "broken", [make_step("fit", [str(tmp_path / "missing.yaml")])],
                    models_dir / "broken")
    failed = wait_for(job, ("failed", "finished", "lost"))
    assert failed.state == "failed" and failed.status["returncode"] == 2
    assert "missing.yaml" in failed.log_tail(1)


def test_a_job_whose_driver_died_is_lost(tmp_path):
    models_dir = tmp_path / "runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = models_dir / ".jobs" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    write_json_atomic(folder / "job.json", {"kind": "fit", "name": "x", "steps": [], "run_dir": str(models_dir),
                                            "created": 0})
    write_json_atomic(folder / "status.json", {"state": "running", "pid": dead.pid})
    job = read_job(folder)
    assert job is not None and job.state == "lost" and not job.running
    (folder / "job.json").write_text("{not json")
    assert read_job(folder) is None and list_jobs(models_dir) == []
    assert os.path.isdir(folder)
