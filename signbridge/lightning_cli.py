"""LightningCLI for signbridge: ``SignbridgeCLI`` and the functions that run or parse it from Python (used by the
``signbridge`` command line in ``cli.py`` and by ``tuning.py``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.cli import LightningCLI

from . import data as _data  # noqa: F401  (imported so LightningCLI finds the classes by short name)
from . import tasks as _tasks  # noqa: F401
from .callbacks import PredictionWriter, SaveOnInterrupt
from .errors import InputError
from .files import check_writable, read_checkpoint
from .metadata import ModelMetadata
from .tasks.base import task_class_of

# the commands of ``cli.py`` besides LightningCLI's, named in the help text
OTHER_COMMANDS = ("landmarks", "tune", "models", "cv", "ensemble", "export", "recognize", "ui")


class SignbridgeCLI(LightningCLI):
    """LightningCLI in subclass mode: any signbridge LightningModule and LightningDataModule by class name.

    Every fit writes ``model.json`` beside its checkpoints (``ModelMetadata``); ``predict`` without ``--ckpt_path``
    uses the model activated in ``--models_dir`` (see ``with_active_checkpoint``).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ModelMetadata, "model_metadata")
        parser.add_argument("--models_dir", default="runs", help="models folder whose active model predict uses")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # a checkpoint is tensors and plain values: never unpickle code from one (Lightning's default still does)
        parser.set_defaults(weights_only=True)
        return parser

    def parse_arguments(self, parser, args) -> None:
        self._command_line = list(args) if args is not None else []
        super().parse_arguments(parser, args)

    def _check_data_settings(self) -> None:
        # before the trainer starts: a wrong num_classes or image_size must not wait for minutes of extraction
        from .tasks.classification import ClassificationTask

        if isinstance(self.model, ClassificationTask):
            self.model.check_data(self.datamodule)

    before_validate = before_test = _check_data_settings

    def before_fit(self) -> None:
        self._check_data_settings()
        logger = self.trainer.logger
        check_writable((logger.save_dir if logger is not None else None) or self.trainer.default_root_dir, "folder")
        self._resume_in_the_run_folder()

    def _resume_in_the_run_folder(self) -> None:
        """``fit --ckpt_path RUN/version_N/checkpoints/last.ckpt`` continues in ``version_N``, not in a new version
        folder: the restored best checkpoint, the metadata history and the logs stay together (Lightning only
        reloads a ModelCheckpoint's best model when its folder is unchanged)."""
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        logger = self.trainer.logger
        # TensorBoardLogger and CSVLogger pick a new version lazily; before that, their version can still be set
        if not ckpt_path or logger is None or getattr(logger, "_version", 0) is not None:
            return
        run = Path(ckpt_path).resolve().parent
        run = run.parent if run.name == "checkpoints" else run
        version = run.name.removeprefix("version_")
        if version.isdigit() and logger.root_dir and run.parent == Path(logger.root_dir).resolve():
            logger._version = int(version)  # type: ignore[attr-defined]

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint here to rebuild the model from its hyperparameters: check it first, so
        # that a bad file is one clear message, not an unpickler traceback or a silently different model class
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            checkpoint = read_checkpoint(ckpt_path)
            saved = checkpoint.get("hyper_parameters", {}).get("_class_path")
            configured = self.config[subcommand].get("model", {}).get("class_path")
            if saved and configured and saved.rsplit(".", 1)[-1] != configured.rsplit(".", 1)[-1]:
                raise InputError(f"{ckpt_path} is a {saved} checkpoint but the config builds a {configured}: use "
                                 f"the config it was trained with")
            if saved:
                task_class_of(ckpt_path, checkpoint)
        super()._parse_ckpt_path()
        # the checkpoint's hyperparameters replace the configs' (a tuned model's sizes differ from the config's), but
        # a model setting typed on the command line is what the user asks for now, e.g.
        # --model.init_args.apply_thresholds false
        given = command_line_model_args(getattr(self, "_command_line", []))
        if ckpt_path and given:
            model = {"class_path": self.config[subcommand]["model"]["class_path"], "init_args": given}
            self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)


def command_line_model_args(args: Sequence[str]) -> dict:
    """The ``--model.init_args.NAME VALUE`` (or ``=VALUE``) settings of a command line, values read as YAML."""
    prefix = "--model.init_args."
    given = {}
    for i, arg in enumerate(args):
        if arg.startswith(prefix):
            name, has_value, value = arg[len(prefix):].partition("=")
            if not has_value and i + 1 < len(args):
                value = args[i + 1]
            if "." not in name:
                given[name] = yaml.safe_load(value)
    return given


def with_active_checkpoint(args: list[str]) -> list[str]:
    """``predict`` without ``--ckpt_path``: add the checkpoint of the model activated in ``--models_dir``.

    Added before parsing, so that LightningCLI builds the model from the hyperparameters saved in the checkpoint
    (a tuned model's sizes differ from the config's).
    """
    if not args or args[0] != "predict" or any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args):
        return args
    if _builds_ensemble(args):  # an ensemble is built from its members' checkpoints
        return args
    from .metadata import active_model, checkpoint_of

    models_dir = "runs"
    for i, arg in enumerate(args):
        if arg == "--models_dir" and i + 1 < len(args):
            models_dir = args[i + 1]
        elif arg.startswith("--models_dir="):
            models_dir = arg.split("=", 1)[1]
    active = active_model(models_dir) if Path(models_dir).is_dir() else None
    if active is None:
        raise InputError(f"predict needs --ckpt_path, or a model activated with 'signbridge models activate "
                         f"{models_dir} MODEL'")
    print(f"predicting with the active model of {models_dir}: {active.parent}")
    return [*args, "--ckpt_path", str(checkpoint_of(active))]


def _builds_ensemble(args: list[str]) -> bool:
    configs = [Path(args[i + 1]) for i, arg in enumerate(args[:-1]) if arg in ("--config", "-c")]
    texts = [*args, *(config.read_text() for config in configs if config.is_file())]
    return any("EnsembleClassifier" in text for text in texts)


def _build_cli(args: list[str], run: bool = True, callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    # `signbridge tune` runs fits from inside a command line of its own; Lightning would warn about sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    return SignbridgeCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        seed_everything_default=0, save_config_kwargs={"overwrite": True}, args=args, run=run,
        trainer_defaults={"callbacks": [SaveOnInterrupt(), *(callbacks or [])]},
        parser_kwargs={"prog": "signbridge",
                       "description": "signbridge: train, test and predict with LightningCLI. Other commands: "
                       + ", ".join(f"'signbridge {name} --help'" for name in OTHER_COMMANDS),
                       # a wrong option raises, so that the console shows one line instead of the whole usage
                       "exit_on_error": False,
                       **{command: {"exit_on_error": False} for command in ("fit", "validate", "test", "predict")}},
    )


def run_cli(args: Sequence[str], callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    """Run ``signbridge fit|validate|test|predict`` from Python; ``callbacks`` are added to the configured ones."""
    return _build_cli(with_active_checkpoint(list(args)), callbacks=callbacks)


def fit_config(fit_args: Sequence[str]) -> dict:
    """The full config (a plain dict) that ``signbridge fit FIT_ARGS`` would run with, read by LightningCLI's parser
    (the classes are built, nothing is trained)."""
    cli = _build_cli(list(fit_args), run=False)
    return yaml.safe_load(cli.parser.dump(cli.config, skip_link_targets=False, skip_none=False))
