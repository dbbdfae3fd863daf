"""``signbridge`` commands in processes of their own, forked from a server that has already imported Lightning.

A new interpreter spends 6-7 s of CPU importing torch, torchvision, torchmetrics and Lightning before a command
starts; the tests that need a command in its own process (a signal or ``kill -9`` that must not hit pytest, two
processes sharing one file, MediaPipe in a process that has not trained) pay that once per test worker instead.
Each command still runs in a real process of its own: its own pid, signals, exit code (``-9`` when killed), working
folder, environment and stdout/stderr. What it does not go through is the interpreter's start and ``python -m``;
``tests/tasks/test_hybrid.py::test_python_dash_m_and_console_script_help`` covers those.

The server is multiprocessing's ``forkserver``: a fresh interpreter started on first use (it has never trained or
started threads of its own, so forking it is safe), which imports ``PRELOAD`` and forks a child per command.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

from signbridge.ui.jobs import STEP_MODULES

REPO = Path(__file__).resolve().parents[1]
# what the tests' commands import (the app's job steps import the same), but not MediaPipe: a detector is built in
# the child
PRELOAD = [*STEP_MODULES, "signbridge.tuning", "signbridge.recognize"]


def _child(code: str | None, argv: list[str], cwd: str, environ: dict[str, str], stdout: str, stderr: str) -> None:
    """The child: ``signbridge ARGV`` as a shell runs it (``code`` None), or the Python ``code`` with ``ARGV`` as
    its ``sys.argv[1:]``, as ``python -c`` runs it; its output in the two files."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    for path, stream in ((stdout, 1), (stderr, 2)):
        file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(file, stream)
        os.close(file)
    try:
        if code is None:
            from signbridge.cli import console_main

            sys.argv = ["signbridge", *argv]
            console_main(argv)
        else:
            sys.argv = ["-c", *argv]
            exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    finally:  # what the interpreter does at exit (the fork server's child ends with os._exit)
        atexit._run_exitfuncs()


_context: multiprocessing.context.ForkServerContext | None = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


class ForkedCommand:
    """A running command: the part of ``subprocess.Popen``'s interface the tests use, with ``communicate``
    returning the whole stdout and stderr (text) once the command has ended."""

    def __init__(self, code: str | None, argv: Sequence[str], cwd: Path, environ: Mapping[str, str]):
        self.args = [str(arg) for arg in argv]
        self._folder = tempfile.TemporaryDirectory(prefix="signbridge-command-")
        self._stdout, self._stderr = (os.path.join(self._folder.name, name) for name in ("stdout", "stderr"))
        self._process = _server().Process(target=_child, args=(code, self.args, str(cwd), dict(environ),
                                                               self._stdout, self._stderr))
        # multiprocessing runs this process's main module again in the child: pytest's script, or after an AppTest
        # the Streamlit app (Streamlit leaves its page as __main__). The child needs neither.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self._process.start()
        finally:
            sys.modules["__main__"] = main
        self.pid = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return tuple(Path(path).read_text(errors="replace") for path in (self._stdout, self._stderr))  # type: ignore

    def __del__(self) -> None:
        if getattr(self, "returncode", 0) is None and self.poll() is None:
            self.kill()
            self._process.join(10)


def start(*argv: object, cwd: Path = REPO, env: Mapping[str, str] | None = None,
          code: str | None = None, environ: Mapping[str, str] | None = None) -> ForkedCommand:
    """Start ``signbridge ARGV`` in a forked process, or with ``code`` the Python code (``python -c CODE ARGV``).
    ``env`` is added to this process's environment; ``environ`` replaces it."""
    environ = {**(os.environ if environ is None else environ), **(env or {})}
    return ForkedCommand(code, [str(arg) for arg in argv], cwd, environ)


def run(*argv: object, cwd: Path = REPO, env: Mapping[str, str] | None = None, code: str | None = None,
        environ: Mapping[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``start``, to the command's end: its exit code, stdout and stderr."""
    command = start(*argv, cwd=cwd, env=env, code=code, environ=environ)
    try:
        stdout, stderr = command.communicate(timeout)
    except subprocess.TimeoutExpired:
        command.kill()
        raise
    return subprocess.CompletedProcess(command.args, command.returncode, stdout, stderr)

