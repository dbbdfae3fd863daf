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
from .callbacks import PredictionWriter
from .errors import InputError
from .metadata import ModelMetadata

# the commands of ``cli.py`` besides LightningCLI's, named in the help text
OTHER_COMMANDS = ("landmarks", "tune", "models")


class SignbridgeCLI(LightningCLI):
    """LightningCLI in subclass mode: any signbridge LightningModule and LightningDataModule by class name.

    Every fit writes ``model.json`` beside its checkpoints (``ModelMetadata``); ``predict`` without ``--ckpt_path``
    uses the model activated in ``--models_dir`` (see ``with_active_checkpoint``).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ModelMetadata, "model_metadata")
        parser.add_argument("--models_dir", default="runs", help="models folder whose active model predict uses")

    def _check_data_settings(self) -> None:
        # before the trainer starts: a wrong num_classes or image_size must not wait for minutes of extraction
        from .tasks.classification import ClassificationTask

        if isinstance(self.model, ClassificationTask):
            self.model.check_data(self.datamodule)

    before_fit = before_validate = before_test = _check_data_settings


def with_active_checkpoint(args: list[str]) -> list[str]:
    """``predict`` without ``--ckpt_path``: add the checkpoint of the model activated in ``--models_dir``.

    Added before parsing, so that LightningCLI builds the model from the hyperparameters saved in the checkpoint
    (a tuned model's sizes differ from the config's).
    """
    if not args or args[0] != "predict" or any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args):
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


def _build_cli(args: list[str], run: bool = True, callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    # `signbridge tune` runs fits from inside a command line of its own; Lightning would warn about sys.argv
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    return SignbridgeCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        seed_everything_default=0, save_config_kwargs={"overwrite": True}, args=args, run=run,
        trainer_defaults={"callbacks": callbacks} if callbacks else None,
        parser_kwargs={"prog": "signbridge",
                       "description": "signbridge: train, test and predict with LightningCLI. Other commands: "
                       + ", ".join(f"'signbridge {name} --help'" for name in OTHER_COMMANDS)},
    )


def run_cli(args: Sequence[str], callbacks: list[L.Callback] | None = None) -> SignbridgeCLI:
    """Run ``signbridge fit|validate|test|predict`` from Python; ``callbacks`` are added to the configured ones."""
    return _build_cli(with_active_checkpoint(list(args)), callbacks=callbacks)


def fit_config(fit_args: Sequence[str]) -> dict:
    """The full config (a plain dict) that ``signbridge fit FIT_ARGS`` would run with, read by LightningCLI's parser
    (the classes are built, nothing is trained)."""
    cli = _build_cli(list(fit_args), run=False)
    return yaml.safe_load(cli.parser.dump(cli.config, skip_link_targets=False, skip_none=False))
