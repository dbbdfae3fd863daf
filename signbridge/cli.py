"""``signbridge`` command line: LightningCLI (fit/validate/test/predict) plus the commands of ``commands.py``,
and the one error path every command shares.

    signbridge fit --config configs/sign_digits_hybrid.yaml --data.init_args.root PATH
    signbridge landmarks ROOT [--output FILE]
    signbridge tune --config configs/atk_cnn.yaml --search_space configs/atk_cnn_search.yaml --run_dir DIR ...
    signbridge models list|show|activate DIR [MODEL]
    signbridge cv --config configs/sign_landmarks.yaml --folds 5 --run_dir DIR ...
    signbridge ensemble --config configs/sign_landmarks.yaml --seeds 5 --run_dir DIR ...
    signbridge export CKPT --format onnx|torchscript [--quantize int8]
    signbridge recognize SOURCE [--model CKPT_OR_ONNX]
    signbridge ui [--models_dir DIR] [--port N]
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import InputError, error_chain

if TYPE_CHECKING:
    from .lightning_cli import SignbridgeCLI


def user_error_message(error: BaseException) -> str | None:
    """The message to show for a user's mistake (bad input, a wrong option, a missing or unwritable file), or None
    for anything else: an unexpected error keeps its traceback.

    The whole chain of causes is searched, because jsonargparse and Lightning re-raise what a class raised as their
    own errors. An error raised in a DataLoader worker arrives wrapped in the worker's traceback; the message is the
    text after the original error's name.
    """
    full_disk = None
    for current in error_chain(error):
        if isinstance(current, argparse.ArgumentError):
            return _short_parser_message(str(current))
        if isinstance(current, OSError) and current.filename is not None and current.strerror:
            return f"{current.filename}: {current.strerror}"  # missing, unwritable, disk full
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT) and full_disk is None:
            # a write that does not say where (a log, the save attempted on the way out): a cause may say
            full_disk = (f"{current.strerror or 'no space left on device'}: free some space and run the same command "
                         "again")
        if isinstance(current, InputError | FileNotFoundError | NotADirectoryError | IsADirectoryError
                      | PermissionError) or (isinstance(current, OSError) and current.filename is not None):
            return _unwrap_worker_message(current)
        if _is_lightning_refusal(current):  # a trainer setting Lightning refuses (max_epochs -5, no GPU, ...)
            return f"trainer: {' '.join(str(current).split())}"
    return full_disk


def _is_lightning_refusal(error: BaseException) -> bool:
    # by name: the commands that never load Lightning must not import it to find out
    return type(error).__name__ == "MisconfigurationException" and type(error).__module__.startswith("lightning")


def _short_parser_message(message: str) -> str:
    # jsonargparse explains a bad option of a class_path by listing every type of the union it tried; the reason
    # given for the class in the config is the one that matters
    found = re.search(r"Problem with given class_path '([^']+)':\n(.*?)(?:\n    - |\Z)", message, re.S)
    if found:
        key = message.splitlines()[0].rstrip(":")
        return f"{key} ({found.group(1)}): {' '.join(found.group(2).split())}"
    # a value that fits none of a union's types: the key, the types it takes and the value given, on one line
    subtypes = re.search(r"Subtypes: \[(.*?)\]", message)
    given = re.search(r"Given value: (.*)", message)
    if subtypes and given and message.startswith("Parser key"):
        names = [name.rsplit(".", 1)[-1] for name in re.findall(r"<class '([^']+)'>", subtypes.group(1))]
        kinds = [("None" if name == "NoneType" else f"a {name} (a class name or import path)"
                  if name[:1].isupper() else name) for name in names]
        return f"{message.splitlines()[0].rstrip(':')}: expected {' or '.join(kinds)}, got {given.group(1).strip()!r}"
    return message


def _unwrap_worker_message(error: BaseException) -> str:
    message = str(error).strip() or repr(error)
    if "Original Traceback" in message:
        name = f"{type(error).__module__}.{type(error).__qualname__}: "
        message = message.rsplit(name, 1)[-1].strip() if name in message else message.splitlines()[-1]
    return message


def main(args: Sequence[str] | None = None) -> int | SignbridgeCLI:
    """Run a ``signbridge`` command from Python (``args`` defaults to ``sys.argv[1:]``); errors propagate."""
    from .commands import COMMANDS, run_command

    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    for config in config_files(argv):  # before Lightning's seconds of imports: a mistyped path fails at once
        if config != "-" and not Path(config).is_file():
            raise InputError(f"{config}: config file not found (--config)")
    from .lightning_cli import run_cli  # after the check: a command's --help does not wait for Lightning

    return run_cli(argv)


def config_files(argv: Sequence[str]) -> list[str]:
    """The files of the ``--config FILE`` / ``-c FILE`` / ``--config=FILE`` options of a command line."""
    files = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
    return files + [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, and the container's CPU quota where one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota and period in microseconds)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores(window_s: float = 0.2) -> int:
    """How many of this process's cores other work keeps busy now: their busy share over ``window_s`` in
    ``/proc/stat`` (Linux), else the 1-minute load average."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def sample() -> dict[str, tuple[int, int]]:
        times = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values[:8]]
                times[name] = (sum(ticks), ticks[3] + ticks[4])  # all, idle + iowait
        return times

    try:
        before = sample()
        time.sleep(window_s)
        after = sample()
        busy = 0.0
        for cpu in cpus or range(len(after)):
            total = after[f"cpu{cpu}"][0] - before[f"cpu{cpu}"][0]
            idle = after[f"cpu{cpu}"][1] - before[f"cpu{cpu}"][1]
            busy += (total - idle) / total if total > 0 else 0.0
        return round(busy)
    except (OSError, ValueError, KeyError, IndexError):
        return round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0


def configure_threads() -> int:
    """Choose the CPU threads of a console command and return them: ``SIGNBRIDGE_THREADS`` when set; else
    ``OMP_NUM_THREADS`` when set; else the cores this process may use that other work is not keeping busy
    (``busy_cores``), at least 1. Threads on cores that other work is using spin while they wait for each other:
    beside a second CPU-bound process on 2 cores, 2 threads trained the landmark model 15 times slower than 1
    (``benchmarks/landmark_training.py``). The choice goes to ``OMP_NUM_THREADS``, which torch reads when it is
    imported (so a command that needs no torch does not wait for it), and to torch directly if it is loaded."""
    chosen = os.environ.get("SIGNBRIDGE_THREADS")
    if chosen is not None:
        if not chosen.isdigit() or int(chosen) < 1:
            raise InputError(f"SIGNBRIDGE_THREADS must be a whole number of threads >= 1, got {chosen!r}")
        threads = int(chosen)
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) >= 1:
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        cores = available_cores()
        threads = max(1, cores - min(busy_cores(), cores - 1))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def console_main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``signbridge`` console script and ``python -m signbridge``.

    A user's mistake is one message on stderr and exit code 2; a command's own failure (no readable image) exits 1;
    an unexpected error keeps its traceback. Stopped by SIGTERM: 143, by Ctrl-C: 130 (the shell's convention), after
    saving what was done.
    """
    argv = list(sys.argv[1:] if args is None else args)
    configs = config_files(argv)

    def work() -> object:
        if not {"-h", "--help"} & set(argv):  # help answers without importing torch
            configure_threads()
        return main(argv)

    raise SystemExit(run_console(work, configs))


def run_console(work: Callable[[], object], configs: Sequence[str] = ()) -> int:
    """Run ``work`` as a console command does (see ``console_main``); its exit code (0 unless it returns an int).
    ``configs`` are the config files read, named in a YAML syntax error."""
    from .signals import Terminated

    def sigterm() -> int:
        # what was done is saved (a landmark cache, or last.ckpt of a fit): the same command continues
        print("signbridge: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM

    try:
        result = work()
    except Terminated:
        return sigterm()
    except KeyboardInterrupt:
        print("signbridge: stopped by Ctrl-C", file=sys.stderr)
        return 128 + signal.SIGINT
    except SystemExit as raised:
        # Lightning's SIGTERM error (a SystemExit), without importing Lightning for the commands that never load it
        lightning = sys.modules.get("lightning.pytorch.utilities.exceptions")
        if lightning is not None and isinstance(raised, lightning.SIGTERMException):
            return sigterm()
        raise
    except Exception as raised:
        message = user_error_message(raised)
        if message is None:
            raise
        if message.startswith("Problems parsing config") and configs:  # a YAML syntax error: say in which file
            message = f"{', '.join(map(str, configs))}: {message}"
        print(f"signbridge: error: {message}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
