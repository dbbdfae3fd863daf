"""LightningCLI for signbridge: ``SignbridgeCLI``, and the functions that run it from Python on a config dict
(``run``, ``fit``), used by the ``signbridge`` command line, ``tune``, ``cv``, ``ensemble`` and the browser app.

A run is described by a *config*: the plain dict LightningCLI parses a command line into (``trainer``, ``model``,
``data``, ``seed_everything``, ``ckpt_path``, ...), read from YAML files with ``load_config`` and changed with
``with_overrides`` (dotted names, ``{"model.init_args.lr": 0.01}``). Nothing above this module assembles argv
strings.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from . import data as _data  # noqa: F401  (imported so LightningCLI finds the classes by short name)
from . import tasks as _tasks  # noqa: F401
from .errors import InputError
from .files import check_writable, read_checkpoint
from .hparams import import_object
from .lightning_callbacks import AtomicCheckpointIO, ModelMetadata, PredictionWriter, SaveOnInterrupt
from .metadata import active_checkpoint
from .tasks.base import task_class_of

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class SaveConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` of the run, without validating the config once more: it was when it was
    parsed, and validating it again took 15-25 ms of every run's start (a tenth of a small fit's start-up)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved or not self.save_to_log_dir or not self.overwrite or self.multifile:
            return super().setup(trainer, pl_module, stage)
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank asks
        if trainer.is_global_zero and log_dir is not None:
            fs = get_filesystem(log_dir)
            fs.makedirs(log_dir, exist_ok=True)
            with fs.open(f"{log_dir}/{self.config_filename}", "w") as f:
                f.write(self.parser.dump(self.config, skip_none=False, skip_validation=True))
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True


class SignbridgeCLI(LightningCLI):
    """LightningCLI in subclass mode: any signbridge LightningModule and LightningDataModule by class name.

    Every fit writes ``model.json`` beside its checkpoints (``ModelMetadata``); ``predict`` without ``--ckpt_path``
    uses the model activated in ``--models_dir``; checkpoints are loaded with ``weights_only``; ``fit --ckpt_path
    RUN/version_N/checkpoints/last.ckpt`` continues in ``version_N``; a model setting given on the command line wins
    over the one saved in ``--ckpt_path``'s checkpoint.
    """

    def __init__(self, *args: Any, subcommand: str | None = None, **kwargs: Any) -> None:
        # the parser of the subcommand that runs only (None: all four, for the top-level --help): building the
        # four took a third of a small fit's start-up
        self.only_subcommand = subcommand
        super().__init__(*args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]  # Lightning's is a staticmethod
        every = LightningCLI.subcommands()
        return {self.only_subcommand: every[self.only_subcommand]} if self.only_subcommand in every else every

    def _dump_config(self) -> None:
        # Lightning's, which records the model's and data's hyperparameters from the config, less a third validation
        # of the parsed config (35-50 ms of every run's start)
        if hasattr(self, "config_dump"):
            return
        self.config_dump = yaml.safe_load(self.parser.dump(self.config, skip_link_targets=False, skip_none=False,
                                                           format="yaml", skip_validation=True))
        if "subcommand" in self.config:
            self.config_dump = self.config_dump[self.config.subcommand]

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ModelMetadata, "model_metadata")
        parser.add_argument("--models_dir", default="runs", help="models folder whose active model predict uses")

    def parse_arguments(self, parser, args) -> None:
        self.command_line_model = command_line_model_args(args) if isinstance(args, Sequence) else {}
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        settings = self.config[subcommand]
        # a checkpoint is tensors and plain values: never unpickle code from one (Lightning's default still does)
        if settings.get("weights_only") is None:
            settings.weights_only = True
        if subcommand == "predict" and not settings.get("ckpt_path") and _built_from_checkpoint(settings):
            settings.ckpt_path = str(active_checkpoint(settings.get("models_dir") or "runs"))  # checked below
        # Lightning reads the checkpoint right after this to rebuild the model from its hyperparameters: check it
        # first, so that a bad file is one clear message, not an unpickler traceback or another model class
        check_checkpoint(settings.get("ckpt_path"), (settings.get("model") or {}).get("class_path"))

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        # checkpoints written atomically unless the config names its own plugins (set here, not as a default of the
        # parser, which would have to write an instance into every saved config.yaml)
        trainer_config = {**(self._get(self.config_init, "trainer", default={}) or {}), **kwargs}
        if not trainer_config.get("plugins"):
            trainer_config["plugins"] = [AtomicCheckpointIO()]
        # Lightning's, less the CSV writer outside predict: it has nothing to write there, yet every callback is
        # called at every hook (three per optimizer step)
        keys = [key for key in self._parser(self.subcommand).callback_keys
                if key != "prediction_writer" or self.subcommand == "predict"]
        return self._instantiate_trainer(trainer_config, [self._get(self.config_init, key) for key in keys])

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        settings = self.config[subcommand]
        if settings.get("ckpt_path") and self.command_line_model:
            # the checkpoint's hyperparameters replaced the configs' (a tuned model's sizes differ from the config's),
            # but a model setting typed on the command line is what the user asks for now, e.g.
            # --model.init_args.apply_thresholds false or --model.init_args.net.inputs image
            model = {"class_path": settings.model.class_path, "init_args": self.command_line_model}
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        if subcommand == "fit":
            resume_in_run_folder(self.config[subcommand])

    def _check_data_settings(self) -> None:
        # before the trainer starts: a wrong num_classes or image_size must not wait for minutes of extraction
        check = getattr(self.model, "check_data", None)
        if callable(check):
            check(self.datamodule)

    before_validate = before_test = _check_data_settings

    def before_fit(self) -> None:
        self._check_data_settings()
        logger = self.trainer.logger
        check_writable((logger.save_dir if logger is not None else None) or self.trainer.default_root_dir, "folder")


def _built_from_checkpoint(settings) -> bool:
    task_class = import_object((settings.get("model") or {}).get("class_path") or "", "signbridge.tasks")
    return bool(getattr(task_class, "built_from_checkpoint", True))


def check_checkpoint(ckpt_path: str | None, configured: str | None) -> None:
    """An ``InputError`` for a checkpoint file that is unreadable, of another task than the config builds, or of a
    task that no longer takes its saved hyperparameters."""
    if not ckpt_path or ckpt_path in ("last", "best", "hpc", "registry"):
        return
    checkpoint = read_checkpoint(ckpt_path)
    if "pytorch-lightning_version" not in checkpoint:  # (read_checkpoint refused one without a state_dict)
        raise InputError(f"{ckpt_path}: not a Lightning checkpoint (no pytorch-lightning_version); give a .ckpt of "
                         "signbridge fit")
    saved = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if saved and configured and saved.rsplit(".", 1)[-1] != configured.rsplit(".", 1)[-1]:
        raise InputError(f"{ckpt_path} is a {saved} checkpoint but the config builds a {configured}: use the config "
                         "it was trained with")
    if saved:
        task_class_of(ckpt_path, checkpoint)


def resume_in_run_folder(settings) -> None:
    """``fit --ckpt_path RUN/version_N/checkpoints/last.ckpt`` continues in ``version_N``, not in a new version
    folder: the restored best checkpoint, the metadata history and the logs stay together (Lightning only reloads a
    ModelCheckpoint's best model when its folder is unchanged). Sets the logger's ``version`` in the config."""
    ckpt_path = settings.get("ckpt_path")
    logger = (settings.get("trainer") or {}).get("logger")
    init = logger.get("init_args") if logger is not None and hasattr(logger, "get") else None
    if not ckpt_path or init is None or init.get("version") is not None or "save_dir" not in init:
        return
    run = Path(ckpt_path).resolve().parent
    run = run.parent if run.name == "checkpoints" else run
    version = run.name.removeprefix("version_")
    root = Path(init.get("save_dir") or ".") / str(init.get("name") or "lightning_logs")
    if version.isdigit() and run.parent == root.resolve():
        init.version = int(version)


def overrides_from_options(args: Sequence[str]) -> dict[str, Any]:
    """``--NAME VALUE`` (or ``--NAME=VALUE``) options as dotted overrides (``with_overrides``), values read as YAML:
    ``["--model.init_args.lr", "0.01"]`` gives ``{"model.init_args.lr": 0.01}``."""
    overrides: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--"):
            raise InputError(f"expected an option --NAME VALUE, got {arg!r}")
        name, has_value, value = arg[2:].partition("=")
        if not has_value:
            if index + 1 >= len(args):
                raise InputError(f"option {arg} has no value")
            index += 1
            value = args[index]
        overrides[name] = yaml.safe_load(value)
        index += 1
    return overrides


def command_line_model_args(args: Sequence[str]) -> dict:
    """The ``--model.init_args.NAME VALUE`` (or ``=VALUE``) settings of a command line as a nested dict
    (``--model.init_args.net.inputs image``: ``{"net": {"inputs": "image"}}``), values read as YAML."""
    prefix = "--model.init_args."
    chosen: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith(prefix):
            chosen += [arg] if "=" in arg else [arg, *args[i + 1:i + 2]]
    flat = overrides_from_options(chosen)
    return with_overrides({}, {name.removeprefix("model.init_args."): value for name, value in flat.items()})


class _ConfigRead(Exception):
    def __init__(self, cli: SignbridgeCLI):
        super().__init__("parsed")
        self.cli = cli


class ConfigReader(SignbridgeCLI):
    """``SignbridgeCLI`` that stops once the config is parsed (and the checkpoint's and command line's settings
    applied): nothing is built or run."""

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        raise _ConfigRead(self)


def build_cli(args: list[str] | dict, callbacks: list[L.Callback] | None = None,
              cli_class: type[SignbridgeCLI] = SignbridgeCLI) -> SignbridgeCLI:
    """``SignbridgeCLI`` on a command line (a list) or a config (``{"subcommand": ..., SUBCOMMAND: config}``)."""
    # `signbridge tune` runs fits from inside a command line of its own; Lightning would warn about sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    named = args.get("subcommand") if isinstance(args, dict) else args[0] if args else None
    subcommand = named if named in SUBCOMMANDS else None  # None: a top-level option such as --help
    chosen = (subcommand,) if subcommand else SUBCOMMANDS
    return cli_class(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        seed_everything_default=0, save_config_callback=SaveConfig, save_config_kwargs={"overwrite": True}, args=args,
        trainer_defaults={"callbacks": [SaveOnInterrupt(), *(callbacks or [])]},
        parser_kwargs={"prog": "signbridge",
                       "description": "signbridge: train, test and predict with LightningCLI. Other commands: "
                       + ", ".join(f"'signbridge {name} --help'" for name in _other_commands()),
                       # a wrong option raises, so that the console shows one line instead of the whole usage
                       "exit_on_error": False,
                       **{command: {"exit_on_error": False} for command in chosen}},
        subcommand=subcommand,
    )


def _other_commands() -> list[str]:
    from .commands import COMMANDS

    return list(COMMANDS)


def run_cli(args: Sequence[str], callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    """Run ``signbridge fit|validate|test|predict ARGS`` (a command line) from Python."""
    return build_cli(list(args), callbacks=callbacks)


def run(subcommand: str, config: Mapping[str, Any], callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    """Run ``fit``, ``validate``, ``test`` or ``predict`` on a config dict (see ``load_config``); returns the CLI,
    whose ``trainer`` and ``model`` hold the results."""
    if subcommand not in SUBCOMMANDS:
        raise InputError(f"unknown subcommand {subcommand!r}: one of {', '.join(SUBCOMMANDS)}")
    return build_cli({"subcommand": subcommand, subcommand: dict(config)}, callbacks=callbacks)


def fit(config: Mapping[str, Any] | Sequence[str | Path], overrides: Mapping[str, Any] | None = None,
        callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    """``signbridge fit`` from Python: ``config`` is a config dict or config files (merged in order, as repeated
    ``--config``), ``overrides`` dotted settings on top (``{"data.init_args.root": "DATA"}``)."""
    if isinstance(config, Mapping):
        return run("fit", with_overrides(config, overrides or {}), callbacks)
    return run("fit", config_from_files(config, overrides), callbacks)


def config_from_files(files: Sequence[str | Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config files merged in order, as repeated ``--config`` options are (``merge_configs``), with the dotted
    ``overrides`` on top; not yet checked or completed with defaults (``run`` and ``load_config`` do that)."""
    merged: dict[str, Any] = {}
    for file in files:
        try:
            loaded = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"{file}: cannot read the config ({error})") from error
        if not isinstance(loaded, dict):
            raise InputError(f"{file}: a config is a YAML mapping (trainer, model, data, ...)")
        merged = merge_configs(merged, loaded)
    return with_overrides(merged, overrides or {})


def load_config(files: Sequence[str | Path], overrides: Mapping[str, Any] | None = None,
                subcommand: str = "fit") -> dict[str, Any]:
    """The full config (a plain dict) that ``signbridge SUBCOMMAND --config FILE ...`` would run with, with the
    dotted ``overrides`` on top (``config_from_files``), read and checked by LightningCLI's parser, which fills in
    every default; nothing is built."""
    return read_config({"subcommand": subcommand, subcommand: config_from_files(files, overrides)})


def merge_configs(base: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` merged into ``base`` as LightningCLI merges config files: mappings key by key, except that a block
    naming another ``class_path`` replaces the earlier one; other values are replaced."""
    merged = dict(base)
    for key, value in new.items():
        old = merged.get(key)
        same_class = not (isinstance(old, Mapping) and isinstance(value, Mapping) and "class_path" in old
                          and "class_path" in value and old["class_path"] != value["class_path"])
        if isinstance(old, Mapping) and isinstance(value, Mapping) and same_class:
            merged[key] = merge_configs(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config(args: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The full config (a plain dict) that ``signbridge ARGS`` (``fit``, ``test``, ... and its options; or a config
    ``{"subcommand": ..., SUBCOMMAND: {...}}``) would run with, read and checked by LightningCLI's parser; nothing is
    built or run."""
    try:
        build_cli(dict(args) if isinstance(args, Mapping) else list(args), cli_class=ConfigReader)
    except _ConfigRead as read:
        cli = read.cli
    else:  # pragma: no cover  (ConfigReader always stops)
        raise AssertionError("the config reader ran the command")
    subcommand = cli.config["subcommand"]
    dumped = yaml.safe_load(cli.parser.dump(cli.config, skip_link_targets=False, skip_none=False))
    config = dumped[subcommand]
    config.pop("config", None)  # the files it was read from: their settings are in it
    return config


def fit_config(fit_args: Sequence[str]) -> dict[str, Any]:
    """The full config (a plain dict) that ``signbridge fit FIT_ARGS`` would run with (``read_config``)."""
    return read_config(["fit", *fit_args])


def with_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with dotted settings replaced: ``{"model.init_args.lr": 0.01}`` sets
    ``config["model"]["init_args"]["lr"]``; missing levels are created."""
    result = copy.deepcopy(dict(config))
    for name, value in overrides.items():
        *parents, last = name.split(".")
        node = result
        for parent in parents:
            child = node.get(parent)
            if not isinstance(child, dict):
                child = node[parent] = {} if child is None or not isinstance(child, Mapping) else dict(child)
            node = child
        node[last] = value
    return result


def run_folder_overrides(config: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """Settings that put a run's checkpoints and logs into ``folder`` (the logger's ``save_dir`` too, when the
    config's logger has one)."""
    logger = (config.get("trainer") or {}).get("logger")
    overrides: dict[str, Any] = {"trainer.default_root_dir": str(folder)}
    if isinstance(logger, Mapping) and "save_dir" in (logger.get("init_args") or {}):
        overrides["trainer.logger.init_args.save_dir"] = str(folder)
    return overrides


def latest_checkpoint(folder: str | Path, name: str = "last.ckpt") -> Path | None:
    """The newest ``name`` below ``folder`` (the one an interrupted run continues from); None without one."""
    folder = Path(folder)
    found = folder.rglob(name) if folder.is_dir() else iter(())
    return max(found, key=lambda p: p.stat().st_mtime, default=None)
