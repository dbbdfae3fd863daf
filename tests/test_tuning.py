"""signbridge tune on real data: Optuna studies in SQLite and PostgreSQL, Hyperband pruning, concurrency, resume."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from signbridge.errors import InputError
from signbridge.lightning_cli import fit_config
from signbridge.metadata import read_metadata
from signbridge.tuning import check_params_exist, load_search_space, trials_table, tune
from tests import forked
from tests.conftest import REPO

ATK = str(REPO / "configs" / "atk_cnn.yaml")
SPACE = str(REPO / "configs" / "atk_cnn_search.yaml")


def fit_args(root: Path) -> list[str]:
    return ["--data.init_args.root", str(root), "--data.init_args.image_size", "24",
            "--model.init_args.image_size", "24", "--model.init_args.num_classes", "4",
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8"]


def atk_config(root: Path) -> dict:
    return fit_config(["--config", ATK, *fit_args(root)])


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("params: {}", "non-empty 'params'"),
    ("params:\n  model.init_args.units: {choices: []}", "'choices' must be a non-empty list"),
    ("params:\n  model.init_args.units: {low: 9, high: 3}", "low < high"),
    ("params:\n  model.init_args.units: {choices: [1], low: 1, high: 2}", "cannot be combined"),
    ("params:\n  model.init_args.units: {values: [1]}", "unknown keys"),
    ("params:\n  model.init_args.units: 7", "give 'choices"),
    ("goal: up\nparams:\n  model.init_args.units: {choices: [1]}", "unknown keys ['goal']"),
    ("direction: up\nparams:\n  model.init_args.units: {choices: [1]}", "direction must be"),
    ("params:\n  model.init_args.lr: {low: 0, high: 0.1, log: true}", "a log range needs low > 0"),
    ("params:\n  model.init_args.units: {low: 1, high: 9, step: 0}", "step must be a number above 0"),
])
def test_bad_search_spaces_are_clear_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=str(path)) as info:
        load_search_space(path)
    assert message in str(info.value)


def test_seed_space_and_unknown_argument(tmp_path):
    space = load_search_space(SPACE)
    assert space.params["model.init_args.units"].grid_values() == list(range(32, 257, 32))
    assert space.params["model.init_args.filters1"].choices == [32, 64, 96, 128]
    assert (space.monitor, space.direction, space.max_epochs) == ("val_acc", "maximize", 25)
    config = fit_config(["--config", ATK, "--data.init_args.root", str(tmp_path)])
    check_params_exist(space, config)
    wrong = load_search_space(write(tmp_path, "params:\n  model.init_args.filterz: {choices: [1, 2]}"))
    with pytest.raises(InputError, match="'model.init_args.filterz' is not an argument"):
        check_params_exist(wrong, config)
    for text, message in (
            ("params:\n  model.init_args.units: {choices: [64, many]}", "the config's value is a number (128), got "
                                                                         "'many'"),
            ("params:\n  model.init_args.units: {low: 32.5, high: 64}", "an integer (128), got the range 32.5..64"),
            ("params:\n  model.init_args.compile: {choices: [1, 0]}", "a switch (False), got 1")):
        with pytest.raises(InputError, match=r".*") as info:
            check_params_exist(load_search_space(write(tmp_path, text)), config)
        assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("storage, message", [
    ("postgresql+nosuchdriver://u@localhost/db", "not a database URL signbridge can use"),
    ("sqlite:////no/such/folder/study.db", "the SQLite database's folder /no/such/folder does not exist"),
    ("mysql+mysqldb://u@localhost/db", "the Python driver of this database is not installed"),
    ("a study", "not a database URL signbridge can use"),
])
def test_an_unusable_study_storage_is_one_line_before_any_trial(tmp_path, capsys, storage, message):
    from tests.conftest import console

    done = console(capsys, "tune", "--config", ATK, "--data.init_args.root", tmp_path, "--search_space", SPACE,
                   "--run_dir", tmp_path / "study", "--storage", storage)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, \
        done.stderr
    done = console(capsys, "tune", "--config", ATK, "--data.init_args.root", tmp_path, "--search_space", SPACE,
                   "--run_dir", tmp_path / "study", "--heartbeat", "0")
    assert done.returncode == 2 and "heartbeat must be at least 1, got 0" in done.stderr, done.stderr


def test_tune_prunes_keeps_the_best_checkpoint_and_labels_it(tmp_path, digits_folder):
    # the reference search space judged on val_loss: on 48 images val_acc is mostly ties, which Hyperband never prunes
    space = yaml.safe_load(Path(SPACE).read_text()) | {"monitor": "val_loss", "direction": "minimize"}
    space_file = write(tmp_path, yaml.safe_dump(space))
    run_dir = tmp_path / "run"
    study = tune(atk_config(digits_folder), space_file, run_dir, trials=8, max_epochs=3, seed=0)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.PRUNED) == 8
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.user_attrs["epochs"] < 3 for t in pruned)  # Hyperband stopped them early
    best = study.best_trial
    checkpoint = Path(best.user_attrs["checkpoint"])
    assert checkpoint.exists()
    assert sorted(p.parent for p in run_dir.rglob("*.ckpt")) == [checkpoint.parent]  # only the best is kept
    metadata = read_metadata(checkpoint.parent / "model.json")
    assert metadata["tune"]["trial"] == best.number and metadata["tune"]["params"] == best.params
    assert metadata["hyperparameters"]["units"] == best.params["model.init_args.units"]
    table = trials_table(study)
    assert "PRUNED" in table and "filters1" in table
    # rerunning the same command resumes the study and adds nothing: it is complete
    again = tune(atk_config(digits_folder), space_file, run_dir, trials=8, max_epochs=3, seed=0)
    assert len(again.trials) == 8


def test_grid_mode_runs_every_combination(tmp_path, digits_folder):
    space = write(tmp_path, "params:\n  model.init_args.units: {low: 32, high: 64, step: 32}\n"
                            "  model.init_args.loss: {choices: [cross_entropy, focal]}\n")
    study = tune(atk_config(digits_folder), space, tmp_path / "grid", trials=None, sampler="grid", max_epochs=1)
    combos = {(t.params["model.init_args.units"], t.params["model.init_args.loss"]) for t in study.trials}
    assert combos == {(32, "cross_entropy"), (32, "focal"), (64, "cross_entropy"), (64, "focal")}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:  # each trial trained with what it was given, strings included (unquoted)
        config = yaml.safe_load(next(Path(trial.user_attrs["run_dir"]).rglob("config.yaml")).read_text())
        given = config["model"]["init_args"]
        assert (given["units"], given["loss"]) == (trial.params["model.init_args.units"],
                                                   trial.params["model.init_args.loss"])
    best = json.loads((Path(study.best_trial.user_attrs["checkpoint"]).parent / "model.json").read_text())
    assert best["hyperparameters"]["loss"] == study.best_trial.params["model.init_args.loss"]


def test_a_monitor_never_logged_is_found_before_the_first_trial(tmp_path, digits_folder):
    space = write(tmp_path, "monitor: val_acuracy\nparams:\n  model.init_args.lr: {choices: [0.01]}\n")
    with pytest.raises(InputError, match="monitor 'val_acuracy' is not a metric this task logs") as info:
        tune(atk_config(digits_folder), space, tmp_path / "typo", trials=1, max_epochs=5)
    assert "val_acc" in str(info.value)  # the message lists what can be monitored
    study = optuna.load_study(study_name="typo", storage=f"sqlite:///{tmp_path / 'typo' / 'study.db'}")
    assert not study.trials  # no trial spent on it


def test_a_training_monitor_never_logged_stops_after_the_first_epoch(tmp_path, digits_folder):
    space = write(tmp_path, "monitor: train_acuracy\nparams:\n  model.init_args.lr: {choices: [0.01]}\n")
    with pytest.raises(InputError, match="monitor 'train_acuracy' is not a metric this task logs") as info:
        tune(atk_config(digits_folder), space, tmp_path / "typo", trials=1, max_epochs=5)
    assert "train_acc" in str(info.value)
    study = optuna.load_study(study_name="typo", storage=f"sqlite:///{tmp_path / 'typo' / 'study.db'}")
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert study.trials[0].user_attrs["epochs"] <= 1  # stopped after one epoch, not five


def _tune_process(run_dir: Path, root: Path, trials: int, *extra: str, epochs: int = 2) -> forked.ForkedCommand:
    return forked.start("tune", "--config", ATK, "--search_space", SPACE, "--run_dir", run_dir, "--trials", trials,
                        "--max_epochs", epochs, *extra, *fit_args(root))


def test_two_processes_share_one_sqlite_study(tmp_path, digits_folder):
    run_dir = tmp_path / "shared"
    processes = [_tune_process(run_dir, digits_folder, 4, "--seed", str(seed)) for seed in (0, 1)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{run_dir / 'study.db'}")
    finished = [t for t in study.trials if t.state.is_finished()]
    # each process stops once the study has 4; the other may be finishing one more at that moment
    assert 4 <= len(finished) <= 5 and len(study.trials) == len(finished)
    assert all(t.state != optuna.trial.TrialState.FAIL for t in study.trials)
    # no trial lost or run twice: one run folder per trial
    assert sorted(p.name for p in run_dir.glob("trial_*")) == [f"trial_{t.number:04d}" for t in study.trials]


def test_resume_after_the_process_is_killed(tmp_path, digits_folder):
    run_dir = tmp_path / "killed"
    storage = f"sqlite:///{run_dir / 'study.db'}"

    def kill_mid_trial() -> list[int]:
        """Start the study and SIGKILL it while a trial is between its epochs; the trials left running."""
        process = _tune_process(run_dir, digits_folder, 3, "--heartbeat", "1", epochs=3)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                trials = optuna.load_study(study_name="killed", storage=storage).trials
            except Exception:  # the study is not created yet
                trials = []
            # a trial that has reported an epoch and is still running has more epochs to go
            if any(t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values for t in trials):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the tune process ended before it could be killed mid-trial"
        return [t.number for t in optuna.load_study(study_name="killed", storage=storage).trials
                if t.state == optuna.trial.TrialState.RUNNING]

    running = kill_mid_trial()
    running = running or kill_mid_trial()  # the trial finished in the moment before the kill: once more
    assert running, "no trial was running when the process was killed"
    time.sleep(3)  # past the grace period of the dead trial's heartbeat
    resumed = _tune_process(run_dir, digits_folder, 3, "--heartbeat", "1", epochs=3)
    stdout, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=storage)
    # the killed trials, found by their stopped heartbeats, and only they
    assert [t.number for t in study.trials if t.state == optuna.trial.TrialState.FAIL] == running
    states = [t.state for t in study.trials]
    assert sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states) == 3
    assert "best trial" in stdout


def _postgres_binaries() -> tuple[str, str] | None:
    installed = sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")))
    for folder in [os.path.dirname(shutil.which("initdb") or ""), *installed]:
        if folder and os.path.exists(os.path.join(folder, "initdb")) and os.path.exists(os.path.join(folder, "pg_ctl")):
            return os.path.join(folder, "initdb"), os.path.join(folder, "pg_ctl")
    return None


@pytest.fixture
def postgres_url():
    """A real PostgreSQL server started for the test on a Unix socket (as user postgres when run as root)."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; .ci/run installs them")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver psycopg2 is not installed ([test] extra)")
    initdb, pg_ctl = binaries
    # its own folder: pytest's tmp tree is private to this user, and the server may run as another
    data = Path(tempfile.mkdtemp(prefix="signbridge-pg-"))
    prefix = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(data, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    port = 20000 + os.getpid() % 10000
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={data}&port={port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_study_in_a_real_postgresql_server(tmp_path, digits_folder, postgres_url):
    study = tune(atk_config(digits_folder), SPACE, tmp_path / "pg_run", trials=3, max_epochs=2, storage=postgres_url,
                 study_name="atk_pg")
    loaded = optuna.load_study(study_name="atk_pg", storage=postgres_url)
    assert len(loaded.trials) == 3 and loaded.best_trial.number == study.best_trial.number
    assert all(t.state.is_finished() for t in loaded.trials)
