"""``signbridge`` command line: LightningCLI (fit/validate/test/predict) plus the extra commands.

    signbridge fit --config configs/sign_digits_hybrid.yaml --data.init_args.root PATH
    signbridge landmarks ROOT --output FILE
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import lightning as L
from lightning.pytorch.cli import LightningCLI

from . import data as _data  # noqa: F401  (imported so LightningCLI finds the classes by short name)
from . import tasks as _tasks  # noqa: F401
from .callbacks import PredictionWriter
from .errors import InputError


class SignbridgeCLI(LightningCLI):
    """LightningCLI in subclass mode: any signbridge LightningModule and LightningDataModule by class name."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")


def landmarks_command(argv: Sequence[str]) -> int:
    from .hands.cache import extract_landmarks
    from .hands.detect import DetectorSettings

    parser = argparse.ArgumentParser(
        prog="signbridge landmarks",
        description="Detect hand landmarks in a folder-per-class image dataset and write the landmark cache (.npz). "
        "Resumable: rerun the same command after an interruption.",
    )
    parser.add_argument("root", help="dataset folder: ROOT/<class>/<image>")
    parser.add_argument("--output", "-o", required=True, help="cache file to write (.npz)")
    parser.add_argument("--model-path", help="hand_landmarker.task (default: $SIGNBRIDGE_HAND_LANDMARKER, cache, download)")
    parser.add_argument("--workers", type=int, default=None, help="detector processes (default: all cores; 0: inline)")
    parser.add_argument("--min-detection-confidence", type=float, default=0.5)
    parser.add_argument("--min-presence-confidence", type=float, default=0.5)
    parser.add_argument("--max-image-side", type=int, default=1280, help="larger images are downscaled first")
    parser.add_argument("--checkpoint-every", type=int, default=256, help="save progress every N images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    settings = DetectorSettings(
        min_hand_detection_confidence=args.min_detection_confidence,
        min_hand_presence_confidence=args.min_presence_confidence,
        max_image_side=args.max_image_side,
    )
    summary = extract_landmarks(
        args.root, args.output, model_path=args.model_path, settings=settings, workers=args.workers,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
    )
    print(summary.format())
    return 0 if summary.images > len(summary.skipped) else 1


EXTRA_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"landmarks": landmarks_command}


def main(args: Sequence[str] | None = None) -> int | SignbridgeCLI:
    """Entry point of ``signbridge`` and ``python -m signbridge``; ``args`` defaults to ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            return EXTRA_COMMANDS[argv[0]](argv[1:])
        return SignbridgeCLI(
            L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            seed_everything_default=0, save_config_kwargs={"overwrite": True}, args=None if args is None else argv,
            parser_kwargs={"description": "signbridge: train, test and predict with LightningCLI. Other commands: "
                           + ", ".join(f"'signbridge {name} --help'" for name in EXTRA_COMMANDS)},
        )
    except (InputError, FileNotFoundError) as error:
        if args is not None:  # called from Python (tests, notebooks): let the caller see the exception
            raise
        # DataLoader workers wrap the original message in a traceback; its last line is the message itself
        message = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        print(f"signbridge: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def console_main() -> None:
    result = main()
    raise SystemExit(result if isinstance(result, int) else 0)
