"""Background runs for the browser app: ``signbridge`` commands started detached, with their state on disk.

A job is a folder ``MODELS_DIR/.jobs/<id>/`` holding ``job.json`` (what to run), ``status.json`` (what happened)
and ``output.log`` (the commands' console output). A driver process runs the job's steps one after the other in its
own session, so a job outlives the browser tab and the app's server; a browser reload finds it again by reading the
folder. The app's drivers are forked from a server that has imported Lightning (``prepare_jobs``), so a job starts
at once instead of after a new interpreter's seconds of imports; ``python -m signbridge.ui.jobs FOLDER`` runs a
driver in a new interpreter. Stopping a job sends SIGTERM to its command,
which saves ``last.ckpt`` (``fit``) or the study (``tune``) before it exits, as on the command line.

A step is a config and what to run on it: ``{"command": "fit" | "test" | "tune", "configs": [files], "overrides":
{dotted name: value}, "arguments": {...}}`` (``arguments``: ``tune``'s own, e.g. ``search_space``); each runs in a
process of its own, through the Python API, never through argv strings: the driver imports Lightning once
(``STEP_MODULES``) and forks a process per step, so that no step waits for a new interpreter's seconds of imports
(``python -m signbridge.ui.jobs --step JSON`` runs one step in a new interpreter). A step may name the results of
the step before it in its strings: ``{checkpoint}`` (the best checkpoint of the model that the job trained) and
``{run}`` (that model's log folder), so that a job can ``fit`` and then ``test`` what it trained.
"""

from __future__ import annotations

import atexit
import importlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..errors import InputError
from ..files import write_json_atomic
from ..metadata import checkpoint_of, find_models, run_folder

JOBS_FOLDER = ".jobs"
STOPPED = 128 + signal.SIGTERM  # the exit code of a signbridge command stopped by SIGTERM
# what every step imports: the job's driver imports them once, before it forks the steps' processes
STEP_MODULES = ("signbridge.lightning_cli", "signbridge.commands", "lightning.pytorch.loggers.tensorboard")


@dataclass
class Job:
    """A background job: ``spec`` is its ``job.json``, ``status`` its ``status.json`` (empty before it starts)."""

    folder: Path
    spec: dict[str, Any]
    status: dict[str, Any]

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def name(self) -> str:
        return str(self.spec.get("name", self.id))

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", "fit"))

    @property
    def log_path(self) -> Path:
        return self.folder / "output.log"

    @property
    def state(self) -> str:
        """``starting``, ``running``, ``finished``, ``failed``, ``stopped``, or ``lost`` (its driver died)."""
        state = self.status.get("state", "starting")
        if state in ("starting", "running") and not _alive(self.status.get("pid")):
            started = float(self.spec.get("created", 0))
            # the jobs' server may still be importing Lightning: seconds, more on a busy machine
            return "starting" if state == "starting" and time.time() - started < 120 else "lost"
        return state

    @property
    def running(self) -> bool:
        return self.state in ("starting", "running")

    def model_metadata(self) -> Path | None:
        """The ``model.json`` of the model this job trained (None before its fit has finished)."""
        return trained_model(Path(self.spec["run_dir"]), float(self.spec.get("created", 0)))

    def log_dir(self) -> Path | None:
        """The log folder of this job's fit (``RUN_DIR/version_N``), as soon as it exists."""
        run_dir = Path(self.spec["run_dir"])
        created = float(self.spec.get("created", 0))
        versions = [p for p in run_dir.glob("version_*") if p.is_dir() and p.stat().st_mtime >= created - 1]
        return max(versions, key=lambda p: p.stat().st_mtime, default=None)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the console output; a progress bar redrawn with carriage returns shows its last
        state."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 64_000))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        shown = [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")]
        shown = [line for line in shown if line.strip()]
        return "\n".join(shown[-lines:])


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a process that has ended but not been waited for (a zombie) is not running
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    # without /proc: a finished child of this process stays a zombie until it is reaped
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def trained_model(run_dir: Path, since: float = 0.0) -> Path | None:
    """The newest ``model.json`` below ``run_dir`` written at or after ``since`` (a time stamp)."""
    found = [p for p in find_models(run_dir) if p.stat().st_mtime >= since - 1] if run_dir.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def make_step(command: str, configs: list[str], overrides: dict[str, Any] | None = None,
              **arguments: Any) -> dict[str, Any]:
    """A job step: ``command`` (``fit``, ``test``, ``tune``) on the config files with dotted ``overrides``;
    ``arguments`` are the command's own (``tune``: ``search_space``, ``run_dir``, ``trials``, ...)."""
    return {"command": command, "configs": [str(c) for c in configs], "overrides": dict(overrides or {}),
            "arguments": arguments}


def step_text(step: dict[str, Any]) -> str:
    """A step as the equivalent ``signbridge`` command line, for the job's log."""
    parts = ["signbridge", step["command"], *(f"--config {c}" for c in step["configs"])]
    parts += [f"--{name} {json.dumps(value) if not isinstance(value, str) else value}"
              for name, value in {**step.get("arguments", {}), **step["overrides"]}.items()]
    return " ".join(parts)


def run_step(step: dict[str, Any]) -> int:
    """Run one step in this process (``python -m signbridge.ui.jobs --step JSON``)."""
    from ..lightning_cli import config_from_files, load_config, run

    command = step["command"]
    if command == "tune":  # the search checks its parameters against the complete config
        from ..commands import COMMANDS, Command

        entry = COMMANDS["tune"]
        assert isinstance(entry, Command)
        arguments = dict(step.get("arguments") or {})
        config = load_config(step["configs"], step.get("overrides"))
        return entry.report(entry.load()(config=config, **arguments), arguments)
    run(command, config_from_files(step["configs"], step.get("overrides")))
    return 0


_server: subprocess.Popen | None = None
_server_lock = threading.Lock()


def prepare_jobs() -> subprocess.Popen:
    """The jobs' server of this process (``python -m signbridge.ui.jobs --server``), started if it is not running.
    It imports ``STEP_MODULES`` once (seconds), then forks a driver for each job it is sent, so a job does not wait
    for a new interpreter's imports. The pages that start jobs call it as they load; it ends with this process."""
    global _server
    with _server_lock:  # Streamlit runs the pages of several browser tabs in threads
        if _server is None or _server.poll() is not None:
            _server = subprocess.Popen([sys.executable, "-m", "signbridge.ui.jobs", "--server"],
                                       stdin=subprocess.PIPE, text=True,
                                       start_new_session=True)  # Ctrl-C on the app's terminal stops the app only
        return _server


def _import_step_modules() -> None:
    """Import ``STEP_MODULES`` in this process, before it forks (it has no threads yet: forking it is safe)."""
    for module in STEP_MODULES:
        importlib.import_module(module)


def _serve() -> None:
    """The jobs' server: import what every step imports, then, for each job folder read from stdin (a JSON line
    with the app's working folder and environment), fork its driver and go on. Ends when stdin closes."""
    _import_step_modules()
    for line in sys.stdin:
        request = json.loads(line)
        driver = os.fork()
        if driver == 0:
            _detach(**request)
        os.waitpid(driver, 0)  # at once: this child forks the driver and ends


def _detach(folder: str, cwd: str, environ: dict[str, str]) -> NoReturn:
    """In a child of the jobs' server: fork the job's driver into a session of its own, with the app's working folder
    and environment and its output in the job's log, and end. The driver is then nobody's child to wait for: it
    outlives the server and the app."""
    if os.fork():
        os._exit(0)
    code = 1
    try:
        os.setsid()  # not stopped by Ctrl-C on the app's terminal
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        log = os.open(Path(folder) / "output.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        for source, stream in ((null, 0), (log, 1), (log, 2)):
            os.dup2(source, stream)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # the app shows the log as it grows
        code = run_job(Path(folder))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def start_job(models_dir: str | os.PathLike, kind: str, name: str, steps: list[dict[str, Any]],
              run_dir: str | os.PathLike, **details: Any) -> Job:
    """Start ``steps`` (``make_step``) in the background; returns at once.

    ``run_dir`` is where the job's models are written (a fit's logger folder or a study's run folder); ``details``
    (max_epochs, trials, ...) are kept in ``job.json`` for the progress display.
    """
    folder = Path(models_dir) / JOBS_FOLDER / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    spec = {"kind": kind, "name": name, "steps": steps, "run_dir": str(Path(run_dir).resolve()),
            "created": time.time(), **details}
    write_json_atomic(folder / "job.json", spec)
    status = {"state": "starting"}  # before the driver starts: it writes its own status, with its pid
    write_json_atomic(folder / "status.json", status)
    request = json.dumps({"folder": str(folder), "cwd": os.getcwd(), "environ": dict(os.environ)}) + "\n"
    try:
        _send(prepare_jobs(), request)
    except OSError:  # the server ended (killed) since it was last asked: a new one
        _send(prepare_jobs(), request)
    return Job(folder, spec, status)


def _send(server: subprocess.Popen, request: str) -> None:
    assert server.stdin is not None
    try:
        server.stdin.write(request)
        server.stdin.flush()
    except OSError:
        server.wait()  # so that prepare_jobs sees it has ended
        raise


def read_job(folder: Path) -> Job | None:
    """The job in ``folder``; None when its ``job.json`` is missing or unreadable."""
    try:
        spec = json.loads((folder / "job.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        status = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        status = {}
    return Job(folder, spec, status) if isinstance(spec, dict) and isinstance(status, dict) else None


def list_jobs(models_dir: str | os.PathLike) -> list[Job]:
    """The jobs of a models folder, newest first."""
    root = Path(models_dir) / JOBS_FOLDER
    folders = sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []
    return [job for job in map(read_job, folders) if job is not None]


def stop_job(job: Job) -> bool:
    """Ask a running job to stop (SIGTERM to its driver, which passes it on); False if it was not running."""
    pid = job.status.get("pid")
    if not job.running or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# the driver: python -m signbridge.ui.jobs FOLDER


def _fill(value: Any, values: dict[str, str]) -> Any:
    """``value`` with ``{checkpoint}`` and ``{run}`` filled in, in every string it holds."""
    if isinstance(value, str):
        return value.format(**values) if "{" in value else value
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


def _names_results(step: dict[str, Any]) -> bool:
    return "{" in json.dumps(step)


def _console_step(step: dict[str, Any]) -> int:
    """Run one step with the console's error handling; its exit code."""
    from ..cli import run_console

    return run_console(lambda: run_step(step), step.get("configs", []))


def _step_process(step: dict[str, Any]) -> None:
    """A forked step: the console's signal handling, error handling and exit codes, as in a new interpreter."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the driver's handlers are not the command's
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        raise SystemExit(_console_step(step))
    finally:  # what the interpreter does at exit: a forked process ends with os._exit
        sys.stdout.flush()
        atexit._run_exitfuncs()


def run_job(folder: Path) -> int:
    """Run the steps of the job in ``folder``, recording the state in ``status.json``; the exit code of the last
    step run."""
    spec = json.loads((folder / "job.json").read_text())
    status: dict[str, Any] = {"state": "running", "pid": os.getpid(), "started": time.time(), "step": 0}
    write_json_atomic(folder / "status.json", status)
    child: multiprocessing.process.BaseProcess | None = None
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.pid is not None and child.exitcode is None:
            os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _import_step_modules()  # at once when forked from the jobs' server, which has imported them
    code = 0
    values: dict[str, str] = {}
    for index, step in enumerate(spec["steps"]):
        if stopping:
            break
        if index and _names_results(step):
            metadata = trained_model(Path(spec["run_dir"]), float(spec["created"]))
            if metadata is None:
                print(f"signbridge ui: no trained model found in {spec['run_dir']}; step {index + 1} skipped",
                      flush=True)
                code = 1
                break
            try:
                values = {"checkpoint": str(checkpoint_of(metadata)), "run": str(run_folder(metadata))}
            except InputError as error:  # its checkpoint is gone: the step would fail on it
                print(f"signbridge ui: {error}; step {index + 1} not run", flush=True)
                code = 2
                break
        filled = _fill(step, values)
        status.update(step=index, command=step_text(filled))
        write_json_atomic(folder / "status.json", status)
        print(f"$ {step_text(filled)}", flush=True)
        child = multiprocessing.get_context("fork").Process(target=_step_process, args=(filled,))
        child.start()
        child.join()
        code = child.exitcode if child.exitcode is not None else 1
        if code != 0:
            break
    stopped = stopping or code == STOPPED
    status.update(state="stopped" if stopped else "finished" if code == 0 else "failed", returncode=code,
                  ended=time.time())
    write_json_atomic(folder / "status.json", status)
    return code


if __name__ == "__main__":
    if sys.argv[1] == "--server":
        _serve()
        raise SystemExit(0)
    if sys.argv[1] == "--step":  # one step, with the console's error handling and exit codes
        raise SystemExit(_console_step(json.loads(sys.argv[2])))
    raise SystemExit(run_job(Path(sys.argv[1])))
