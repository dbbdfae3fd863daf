"""The ``signbridge`` commands besides LightningCLI's fit/validate/test/predict: one list (``COMMANDS``) of typed
library functions, whose command-line parsers jsonargparse generates from their signatures and docstrings (as
LightningCLI does for classes). A command is the function plus the way its result is shown.

``signbridge tune|cv|ensemble`` also take any ``signbridge fit`` option (``--config FILE``, ``--data.init_args.root
DATA``, ``--trainer.max_epochs N``): they are read by LightningCLI's own parser into a config dict, which the
function receives as ``config``, so every fit option works and is checked before the first run.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError


def _summary_exit_code(summary, arguments: dict[str, Any]) -> int:
    print(summary.format())
    return 0 if summary.images > len(summary.skipped) else 1  # 1: not one readable image


def _sequences_exit_code(summary, arguments: dict[str, Any]) -> int:
    print(summary.format())
    return 0 if summary.sequences > len(summary.skipped) else 1  # 1: not one readable sequence


def _report_study(study, arguments: dict[str, Any]) -> int:
    from .tuning import summary, trials_table

    print(trials_table(study))
    print(summary(study, arguments["run_dir"]))
    return 0


def _report_folds(rows: list[dict], arguments: dict[str, Any]) -> int:
    from .experiments import summary_table

    print(summary_table(rows, {f"mean ± std over {len(rows)} folds": rows}))
    return 0


def _report_seeds(rows: list[dict], arguments: dict[str, Any]) -> int:
    from .experiments import summary_table

    print(summary_table(rows, {f"single models ({len(rows) - 1} seeds)": rows[:-1]}))
    return 0


def _report_recognitions(results: list[dict], arguments: dict[str, Any]) -> int:
    found = sum(1 for row in results if row.get("label") is not None)
    print(f"{len(results)} frames, {found} recognised", file=sys.stderr)
    return 0 if found or not results else 1  # 1: frames, none with a hand


def _printed(result: Any, arguments: dict[str, Any]) -> int:
    print(result if isinstance(result, str) else json.dumps(result, indent=2))
    return 0


@dataclass(frozen=True)
class Command:
    """A command: ``function`` (module path and name, imported when the command runs), how its result is shown
    (``report(result, arguments) -> exit code``), whether required parameters are positional (else required
    options), and whether it takes a fit config (``config``, from every ``signbridge fit`` option)."""

    function: str
    report: Callable[[Any, dict[str, Any]], int] = _printed
    positional: bool = True
    takes_fit_config: bool = False
    skip: frozenset[str] = frozenset()

    def load(self) -> Callable[..., Any]:
        from .hparams import import_object

        function = import_object(self.function)
        assert callable(function), f"COMMANDS names {self.function}, which does not exist"
        return function


def _report_export(report, arguments: dict[str, Any]) -> int:
    print(report.format_lines())
    return 0


def _exit_code(code: int, arguments: dict[str, Any]) -> int:
    return int(code)


def _activated(path, arguments: dict[str, Any]) -> int:
    print(f"active model of {arguments['models_dir']}: {path.parent}")
    return 0


COMMANDS: dict[str, Command | dict[str, Command]] = {
    "landmarks": Command("signbridge.hands.cache.extract_landmarks", _summary_exit_code, skip=frozenset({"paths"})),
    "sequences": {
        "extract": Command("signbridge.hands.video.extract_sequences", _sequences_exit_code,
                           skip=frozenset({"paths"})),
        "merge": Command("signbridge.hands.video.merge_sequence_caches", positional=False),
    },
    "tune": Command("signbridge.tuning.tune", _report_study, positional=False, takes_fit_config=True),
    "cv": Command("signbridge.experiments.cross_validate", _report_folds, positional=False, takes_fit_config=True),
    "ensemble": Command("signbridge.experiments.train_seeds", _report_seeds, positional=False, takes_fit_config=True),
    "models": {
        "list": Command("signbridge.metadata.models_table"),
        "show": Command("signbridge.metadata.show_model"),
        "activate": Command("signbridge.metadata.activate_model", _activated),
    },
    "export": Command("signbridge.export.export_checkpoint", _report_export),
    "recognize": Command("signbridge.recognize.recognize", _report_recognitions),
    "ui": Command("signbridge.ui.serve", _exit_code, positional=False),
}


def _parser(prog: str, command: Command, function: Callable[..., Any]):
    from jsonargparse import ArgumentParser

    doc = inspect.getdoc(function) or ""
    description = doc.split("\n\n", 1)[0].replace("\n", " ")
    if command.takes_fit_config:
        description += (" Any 'signbridge fit' option is taken too (--config FILE, repeatable; --data.init_args.root "
                        "DATA; --trainer.max_epochs N; ...).")
    # a wrong option raises, so that the console shows one line instead of the whole usage
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False)
    skip: set[str | int] = {*command.skip, *(["config"] if command.takes_fit_config else [])}
    parser.add_function_arguments(function, as_positional=command.positional, skip=skip, as_group=False)
    return parser


def command_parser(name: str):
    """The generated parser of a command (with a subcommand per entry for ``models``)."""
    from jsonargparse import ArgumentParser

    entry = COMMANDS[name]
    if isinstance(entry, Command):
        return _parser(f"signbridge {name}", entry, entry.load())
    parser = ArgumentParser(prog=f"signbridge {name}", exit_on_error=False)
    subcommands = parser.add_subcommands(dest="action")
    for action, command in entry.items():
        function = command.load()
        doc = (inspect.getdoc(function) or "").split("\n\n", 1)[0].replace("\n", " ")
        subcommands.add_subcommand(action, _parser(f"signbridge {name} {action}", command, function), help=doc)
    return parser


def split_fit_options(argv: Sequence[str], own: set[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into the command's own arguments (options named in ``own``, ``--help`` and positionals) and
    the ``signbridge fit`` options (every other option; each takes one value, as LightningCLI's do)."""
    mine: list[str] = []
    fit: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = arg.split("=", 1)[0].rstrip("+")
        takes_value = arg.startswith("-") and "=" not in arg and arg not in ("-h", "--help")
        value = [argv[index + 1]] if takes_value and index + 1 < len(argv) else []
        if value and value[0].startswith("--") and name in own:  # a flag given without its value
            value = []
        target = mine if not arg.startswith("-") or name in own or arg in ("-h", "--help") else fit
        target += [arg, *value]
        index += 1 + len(value)
    return mine, fit


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run ``signbridge NAME ARGV``; the exit code."""
    entry = COMMANDS[name]
    argv = list(argv)
    fit_options: list[str] = []
    if isinstance(entry, Command) and entry.takes_fit_config:
        own = {f"--{parameter}" for parameter in inspect.signature(entry.load()).parameters} - {"--config"}
        argv, fit_options = split_fit_options(argv, own)
    parser = command_parser(name)
    parsed = parser.parse_args(argv)
    # the function's arguments, dataclasses (the detector settings) built; with subcommands, the chosen one's
    instantiated = _instantiated(parser, parsed)
    if isinstance(entry, dict):  # models list|show|activate, sequences extract|merge
        command, instantiated = entry[parsed.action], instantiated[parsed.action]
    else:
        command = entry
    arguments = dict(instantiated.items())
    arguments.pop("__path__", None)
    if command.takes_fit_config:
        if not any(option in ("--config", "-c") or option.startswith("--config=") for option in fit_options):
            raise InputError(f"signbridge {name} needs a config: --config FILE (and any signbridge fit option)")
        from .lightning_cli import fit_config

        arguments["config"] = fit_config(fit_options)
    return command.report(command.load()(**arguments), arguments)


def _instantiated(parser, parsed):
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
    return instantiate(parsed)
