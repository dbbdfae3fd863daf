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
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from .errors import InputError

if TYPE_CHECKING:
    from .lightning_cli import SignbridgeCLI


def user_error_message(error: BaseException) -> str | None:
    """The message to show for a user's mistake (bad input, a wrong option, a missing or unwritable file), or None
    for anything else: an unexpected error keeps its traceback.

    The whole chain of causes is searched, because jsonargparse and Lightning re-raise what a class raised as their
    own errors. An error raised in a DataLoader worker arrives wrapped in the worker's traceback; the message is the
    text after the original error's name.
    """
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, argparse.ArgumentError):
            return _short_parser_message(str(current))
        if isinstance(current, OSError) and current.filename is not None and current.strerror:
            return f"{current.filename}: {current.strerror}"  # missing, unwritable, disk full
        if isinstance(current, InputError | FileNotFoundError | NotADirectoryError | IsADirectoryError
                      | PermissionError) or (isinstance(current, OSError) and current.filename is not None):
            return _unwrap_worker_message(current)
        current = current.__cause__ or current.__context__
    return None


def _short_parser_message(message: str) -> str:
    # jsonargparse explains a bad option of a class_path by listing every type of the union it tried; the reason
    # given for the class in the config is the one that matters
    found = re.search(r"Problem with given class_path '([^']+)':\n(.*?)(?:\n    - |\Z)", message, re.S)
    if found:
        key = message.splitlines()[0].rstrip(":")
        return f"{key} ({found.group(1)}): {' '.join(found.group(2).split())}"
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
    from .lightning_cli import run_cli  # after the check: a command's --help does not wait for Lightning

    return run_cli(argv)


def console_main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``signbridge`` console script and ``python -m signbridge``.

    A user's mistake is one message on stderr and exit code 2; a command's own failure (no readable image) exits 1;
    an unexpected error keeps its traceback. Stopped by SIGTERM: 143, by Ctrl-C: 130 (the shell's convention), after
    saving what was done.
    """
    argv = list(sys.argv[1:] if args is None else args)
    configs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
    raise SystemExit(run_console(lambda: main(argv), configs))


def run_console(work: Callable[[], object], configs: Sequence[str] = ()) -> int:
    """Run ``work`` as a console command does (see ``console_main``); its exit code (0 unless it returns an int).
    ``configs`` are the config files read, named in a YAML syntax error."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .signals import Terminated

    try:
        result = work()
    except (Terminated, SIGTERMException):
        # what was done is saved (a landmark cache, or last.ckpt of a fit): the same command continues
        print("signbridge: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("signbridge: stopped by Ctrl-C", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as raised:
        message = user_error_message(raised)
        if message is None:
            raise
        if message.startswith("Problems parsing config") and configs:  # a YAML syntax error: say in which file
            message = f"{', '.join(map(str, configs))}: {message}"
        print(f"signbridge: error: {message}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
