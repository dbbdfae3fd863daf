"""Stopping cleanly: SIGTERM handled like Ctrl-C, and worker processes that never outlive their parent.

``timeout``, Slurm, container runtimes and ``kill`` send SIGTERM, whose default action ends the process on the spot:
no final save, and pool workers left running. Long-running work wraps itself in ``sigterm_as_interrupt`` so the
signal raises ``Terminated`` (a ``KeyboardInterrupt``) and the ``except``/``finally`` blocks that already handle
Ctrl-C save progress and stop the workers. During ``fit`` Lightning has its own SIGTERM handling (it stops at the
next batch and raises ``SIGTERMException``); ``SaveOnInterrupt`` in ``lightning_callbacks.py`` saves the run then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM; raised where Ctrl-C would raise ``KeyboardInterrupt``."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated``. Only in the main thread (where Python runs handlers);
    elsewhere the block runs unchanged. The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated("stopped by SIGTERM")

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(parent_pid: int) -> None:
    """Call first in a worker process: it exits when ``parent_pid`` dies, even by ``kill -9``.

    The worker also leaves the parent's process group, so Ctrl-C in a terminal reaches only the parent, which then
    stops its workers in order (instead of every worker printing its own ``KeyboardInterrupt``).
    """
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    else:  # no parent-death signal: watch for being re-parented
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="die-with-parent").start()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
