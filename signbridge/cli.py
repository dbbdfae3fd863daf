"""``signbridge`` command line: LightningCLI (fit/validate/test/predict) plus the extra commands.

    signbridge fit --config configs/sign_digits_hybrid.yaml --data.init_args.root PATH
    signbridge landmarks ROOT --output FILE
    signbridge tune --config configs/atk_cnn.yaml --search-space configs/atk_cnn_search.yaml --run-dir DIR ...
    signbridge models list|show|activate DIR [MODEL]
    signbridge cv --config configs/sign_landmarks.yaml --folds 5 --run-dir DIR ...
    signbridge ensemble --config configs/sign_landmarks.yaml --seeds 5 --run-dir DIR ...
    signbridge export CKPT --format onnx|torchscript [--quantize int8]
    signbridge recognize SOURCE --model CKPT_OR_ONNX
    signbridge ui [--models-dir DIR] [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .errors import InputError
from .lightning_cli import OTHER_COMMANDS, SignbridgeCLI, run_cli


def _command_parser(command: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"signbridge {command}", description=description)


def landmarks_command(argv: Sequence[str]) -> int:
    """``signbridge landmarks ROOT --output FILE``: build or refresh a landmark cache; exit code 1 if no image was
    readable."""
    from .hands.cache import extract_landmarks
    from .hands.detect import DetectorSettings

    parser = _command_parser(
        "landmarks", "Detect hand landmarks in a folder-per-class image dataset and write the landmark cache (.npz). "
        "Resumable: rerun the same command after an interruption.")
    parser.add_argument("root", help="dataset folder: ROOT/<class>/<image>")
    parser.add_argument("--output", "-o", required=True, help="cache file to write (.npz)")
    parser.add_argument("--model-path",
                        help="hand_landmarker.task (default: $SIGNBRIDGE_HAND_LANDMARKER, cache, download)")
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


def tune_command(argv: Sequence[str]) -> int:
    """``signbridge tune``: run or resume an Optuna study over a config (see ``tuning.tune``)."""
    from .tuning import summary, trials_table, tune

    parser = _command_parser(
        "tune", "Search hyperparameters of any signbridge config with Optuna. Arguments it does not know are "
        "passed to 'signbridge fit' (e.g. --data.init_args.root DATA). Rerun the same command to resume; run it in "
        "several processes (one per GPU, or on several machines with --storage URL) to work on one study together.")
    parser.add_argument("--config", "-c", action="append", required=True, help="signbridge config (repeatable)")
    parser.add_argument("--search-space", required=True, help="YAML naming init args and their choices/ranges")
    parser.add_argument("--run-dir", required=True, help="folder for the trials (and the default SQLite study)")
    parser.add_argument("--trials", type=int, default=None,
                        help="finished trials the study should have (default 10; grid: the whole grid)")
    parser.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    parser.add_argument("--storage", default=None, help="database URL (default: sqlite:///RUN_DIR/study.db)")
    parser.add_argument("--study-name", default=None, help="default: the run folder's name")
    parser.add_argument("--sampler", choices=["tpe", "random", "grid"], default="tpe")
    parser.add_argument("--pruner", choices=["hyperband", "median", "none"], default=None,
                        help="default: hyperband (none for grid)")
    parser.add_argument("--max-epochs", type=int, default=None, help="epochs of a full trial (default: the space's)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--heartbeat", type=int, default=30, help="seconds; a trial silent for twice this is failed")
    args, fit_args = parser.parse_known_args(argv)
    trials = args.trials if args.trials is not None else (None if args.sampler == "grid" else 10)
    study = tune(
        args.config, args.search_space, args.run_dir, trials=trials, timeout=args.timeout, storage=args.storage,
        study_name=args.study_name, sampler=args.sampler, pruner=args.pruner, max_epochs=args.max_epochs,
        seed=args.seed, heartbeat=args.heartbeat, fit_args=fit_args,
    )
    print(trials_table(study))
    print(summary(study, args.run_dir))
    return 0


def _repeated_runs_parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = _command_parser(command, description + " Arguments it does not know are passed to every 'signbridge "
                             "fit' (e.g. --data.init_args.root DATA). Rerun the same command to continue after an "
                             "interruption.")
    parser.add_argument("--config", "-c", action="append", required=True, help="signbridge config (repeatable)")
    parser.add_argument("--run-dir", required=True, help="folder for the runs and results.jsonl")
    return parser


def cv_command(argv: Sequence[str]) -> int:
    """``signbridge cv``: k-fold cross-validation of a config (see ``experiments.cross_validate``)."""
    from .experiments import cross_validate, summary_table

    parser = _repeated_runs_parser(
        "cv", "Train and test a config on every fold of a stratified k-fold split (each fold is the test "
        "split once; validation is data.init_args.val_fraction of the rest) and report mean ± std.")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-list", type=int, nargs="+", default=None, help="only these folds (default: all)")
    args, fit_args = parser.parse_known_args(argv)
    rows = cross_validate(args.config, args.run_dir, args.folds, args.fold_list, fit_args)
    print(summary_table(rows, {f"mean ± std over {len(rows)} folds": rows}))
    return 0


def ensemble_command(argv: Sequence[str]) -> int:
    """``signbridge ensemble``: train N seeds of a config and test their ensemble (``experiments.train_seeds``)."""
    from .experiments import summary_table, train_seeds

    parser = _repeated_runs_parser(
        "ensemble", "Train a config with N seeds on the same split, test each, then test the ensemble of "
        "their best checkpoints (EnsembleClassifier: mean of probabilities, or weights fitted on validation).")
    parser.add_argument("--seeds", type=int, default=5, help="number of members")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST .. FIRST+N-1")
    parser.add_argument("--weights", choices=["mean", "fitted"], default="mean")
    parser.add_argument("--fit-thresholds", action="store_true", help="per-class thresholds fitted on validation")
    args, fit_args = parser.parse_known_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    rows = train_seeds(args.config, args.run_dir, seeds, fit_args, args.weights, args.fit_thresholds)
    print(summary_table(rows, {f"single models ({len(seeds)} seeds)": rows[:-1]}))
    return 0


def export_command(argv: Sequence[str]) -> int:
    """``signbridge export CKPT``: a classifier as ONNX or TorchScript, checked against PyTorch (``export.py``)."""
    parser = _command_parser(
        "export", "Export a trained classifier (hybrid, landmark-only or CNN) with its class names and input "
        "contract in the file's metadata; the exported file is run once against PyTorch and the difference printed.")
    parser.add_argument("checkpoint", help="a checkpoint of signbridge fit")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="int8: static quantization calibrated on the training data for a model that reads "
                        "images, dynamic for a landmark-only model")
    parser.add_argument("--calibration-root", default=None,
                        help="the training data, if it is no longer where the checkpoint says (int8 with images)")
    parser.add_argument("--landmarks-file", default=None, help="its landmark cache (with --calibration-root)")
    parser.add_argument("--output", "-o", default=None, help="default: beside the checkpoint, .onnx or .pt")
    parser.add_argument("--image-size", type=int, default=None,
                        help="the image side the model was trained at (default: read from the checkpoint)")
    args = parser.parse_args(argv)
    from .export import export_checkpoint  # after parsing: --help does not wait for torch and onnx

    report = export_checkpoint(args.checkpoint, args.output, args.format, args.quantize, args.image_size,
                               calibration_root=args.calibration_root, landmarks_file=args.landmarks_file)
    print(report.format_lines())
    return 0


def recognize_command(argv: Sequence[str]) -> int:
    """``signbridge recognize SOURCE --model PATH``: the sign in each frame of a photo, folder, video or camera."""
    parser = _command_parser(
        "recognize", "Recognise signs with a trained model: MediaPipe hand landmarks, then the model, for every frame "
        "of an image, a folder of images, a video file or a camera (an index such as 0). One JSON line per frame "
        "(label, probability, hands found, milliseconds per stage) on stdout or in --output.")
    parser.add_argument("source", help="image file, folder, video file or camera index")
    parser.add_argument("--model", "-m", required=True, help="a .ckpt of signbridge fit, or a .onnx/.pt of export")
    parser.add_argument("--hand-model", default=None, help="hand_landmarker.task (default: as signbridge landmarks)")
    parser.add_argument("--output", "-o", default=None, help="JSON lines file (default: stdout)")
    parser.add_argument("--smooth", type=int, default=1, help="average the probabilities over N frames of a stream")
    parser.add_argument("--every", type=int, default=1, help="recognise every Nth frame of a video")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of the model (default: all)")
    parser.add_argument("--show", action="store_true", help="draw the landmarks and the label in a window "
                        "(needs a display; Esc or q stops)")
    args = parser.parse_args(argv)
    from .recognize import Recognizer, recognize_source, source_kind  # after parsing: a quick --help

    kind = source_kind(args.source)
    show = args.show and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if args.show and not show:
        print("signbridge: no display: --show ignored", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(open(args.output, "w")) if args.output else sys.stdout
        recognizer = stack.enter_context(Recognizer(args.model, args.hand_model, video=kind in ("video", "camera"),
                                                    smoothing=args.smooth, threads=args.threads))
        results = recognize_source(recognizer, args.source, output, args.every, show, args.max_frames)
    found = sum(1 for row in results if row.get("label") is not None)
    print(f"{len(results)} frames, {found} recognised", file=sys.stderr)
    return 0 if found or not results else 1


def models_command(argv: Sequence[str]) -> int:
    """``signbridge models list|show|activate``: the trained models of a models folder."""
    from .metadata import activate_model, models_table, read_metadata, resolve_model

    parser = _command_parser("models", "Trained models in a models folder.")
    commands = parser.add_subparsers(dest="action", required=True)
    commands.add_parser("list", help="a table of the models below DIR").add_argument("dir")
    for action, text in (("show", "one model's metadata"), ("activate", "the model predict uses by default")):
        sub = commands.add_parser(action, help=text)
        sub.add_argument("dir")
        sub.add_argument("model", help="number from 'list', or the model's folder relative to DIR")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(models_table(args.dir))
    elif args.action == "show":
        print(json.dumps(read_metadata(resolve_model(args.dir, args.model)), indent=2))
    else:
        path = activate_model(args.dir, args.model)
        print(f"active model of {args.dir}: {path.parent}")
    return 0


def ui_command(argv: Sequence[str]) -> int:
    """``signbridge ui``: the browser app (Streamlit; the ``ui`` extra) on this machine."""
    from .files import check_writable
    from .ui.common import CONFIGS_DIR_VARIABLE, MODELS_DIR_VARIABLE

    parser = _command_parser(
        "ui", "A browser app to train (fit or tune in the background), predict on photos and compare the "
        "models of a models folder. Open the address it prints; Ctrl-C stops the app (runs started from it go on).")
    parser.add_argument("--models-dir", default="runs", help="the models folder: runs, studies and jobs")
    parser.add_argument("--configs-dir", default="configs", help="configs offered on the Train page")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="localhost",
                        help="interface to listen on (0.0.0.0: every interface, e.g. on a remote GPU machine)")
    args, streamlit_args = parser.parse_known_args(argv)
    if importlib.util.find_spec("streamlit") is None:
        raise InputError("signbridge ui needs Streamlit: pip install -e \".[ui]\"")
    models_dir = Path(args.models_dir)
    check_writable(models_dir, "folder")  # the app writes its jobs and the active model there
    models_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, MODELS_DIR_VARIABLE: str(models_dir.resolve()),
           CONFIGS_DIR_VARIABLE: str(Path(args.configs_dir).resolve())}
    app = Path(__file__).parent / "ui" / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.address", args.address, "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", *streamlit_args]
    print(f"signbridge ui: models in {models_dir.resolve()}, http://{args.address}:{args.port}", flush=True)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


EXTRA_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "landmarks": landmarks_command, "tune": tune_command, "models": models_command, "cv": cv_command,
    "ensemble": ensemble_command, "export": export_command, "recognize": recognize_command, "ui": ui_command,
}
assert set(EXTRA_COMMANDS) == set(OTHER_COMMANDS), "name new commands in lightning_cli.OTHER_COMMANDS too"


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
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[argv[0]](argv[1:])
    return run_cli(argv)


def console_main(args: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``signbridge`` console script and ``python -m signbridge``.

    A user's mistake is one message on stderr and exit code 2; a command's own failure (no readable image) exits 1;
    an unexpected error keeps its traceback. Stopped by SIGTERM: 143, by Ctrl-C: 130 (the shell's convention), after
    saving what was done.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .signals import Terminated

    try:
        result = main(args)
    except (Terminated, SIGTERMException):
        # what was done is saved (a landmark cache, or last.ckpt of a fit): the same command continues
        print("signbridge: stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except KeyboardInterrupt:
        print("signbridge: stopped by Ctrl-C", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except Exception as raised:
        message = user_error_message(raised)
        if message is None:
            raise
        if message.startswith("Problems parsing config"):  # a YAML syntax error: say in which file
            argv = list(sys.argv[1:] if args is None else args)
            configs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")]
            message = f"{', '.join(configs)}: {message}" if configs else message
        print(f"signbridge: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(result if isinstance(result, int) else 0)
