"""Bad input gets one clear message (exit code 2) or a reported skip, and nothing is lost.

Each case runs the console entry point (``console_main``, what ``signbridge`` and ``python -m signbridge`` call) on
data the test makes, unless the case is about a library function.

| case | what happens |
|---|---|
| config with a YAML syntax error | one message naming the config file |
| misspelt option of a class | one line naming the option and the class |
| data root that does not exist | one line naming the root, before the trainer starts |
| image smaller than 8 px | read normally (OpenCV's reduced-size check asserts on it) |
| class folder without images | refused, naming the folder |
| ``__MACOSX``, hidden folders, dangling symlinks | not classes, not images |
| class folders 1, 2, 10 | natural order (1, 2, 10) |
| every class with a single image | refused before training: empty validation split, naming the classes |
| ``test`` without a test split | one line saying which option makes one |
| missing, 0-byte, truncated checkpoint | one line naming the file |
| checkpoint of another task class | refused, naming both classes |
| checkpoint trained on other class names | refused, naming both lists |
| an input error raised inside a DataLoader worker | the original message, not the worker's traceback |
| an unexpected error (a bug) | keeps its traceback |
| a corrupt ``active.json`` or one corrupt ``model.json`` | ``models list`` lists the rest, with a note per bad file |
| labels TSV with a byte-order mark | read; the mark is not part of the first path |
| labels TSV in Latin-1 | refused, naming the file, the line and the byte |
| a checkpoint or cache write that fails (disk full, file size limit) | the previous file intact, nothing partial left |
| files the library writes (model.json, caches) | mode 0666 less the umask, not 0600 |
| unreadable photos given to ``predict`` | a row each in the predictions file, with the reason in ``skipped`` |
| an output (cache, run folder, predictions file) that cannot be written | refused before the work, naming it |
| wrong ``class_weights`` length, fold out of range, fractions over 1 | one line naming the setting |
| ``batch_size 0``, ``num_workers -1``, ``lr 0``, ``label_smoothing 1``, ``num_classes 1``, more folds than the
  smallest class | one line naming the setting, before any work |
| ``max_epochs -5``, ``configs/trainer/gpu.yaml`` without a GPU | Lightning's refusal as one line (``trainer: ...``) |
| network dropout 2.0, kernel 0, detector confidence 2, ``max_image_side 0``, extraction workers -1 |
  one line naming it |
| one class folder | refused, naming the folder |
| a checkpoint without Lightning's keys | one line naming the file |
| a hand model zip whose members are not TensorFlow Lite models | refused, naming the file |
| an output inside the dataset, over the command's input, over a file that is not its kind | refused; the file is kept |
| a disk that fills during ``fit`` (a real 128 KiB tmpfs) | one line naming the checkpoint; no half checkpoint |
| an unknown model class, a value of the wrong type | one line naming the key, the types it takes and the value |
| links to nothing (images, sign sequences), link loops | skipped with a warning naming them; linked
  folders read |

Elsewhere: broken hand models (``tests/hands/test_detect.py``), truncated and foreign landmark caches
(``tests/hands/test_cache.py``), ``signbridge tune``'s storage URL, heartbeat and search space
(``tests/test_tuning.py``), early stopping inside the progressive schedule (``tests/tasks/test_progressive.py``),
kills during extraction (``benchmarks/fault_injection.py``).
"""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from signbridge.cli import console_main, main, user_error_message
from signbridge.data.text import read_labels
from signbridge.errors import InputError
from signbridge.hands.cache import LandmarkCache
from signbridge.imageio import find_unreadable, list_image_folder, read_image_rgb
from signbridge.metadata import models_table
from tests import forked
from tests.conftest import REPO

ATK = str(REPO / "configs" / "atk_cnn.yaml")
LANDMARKS = str(REPO / "configs" / "sign_landmarks.yaml")


def image_folder(root: Path, classes=("a", "b", "c"), per_class: int = 6, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def atk_args(root: Path, runs: Path, *extra: str) -> list[str]:
    return ["--config", ATK, "--data.init_args.root", str(root), "--data.init_args.image_size", "16",
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false", *extra]


def run_console(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and the error message line of ``signbridge ARGS``; fails if a traceback was printed."""
    with pytest.raises(SystemExit) as info:
        console_main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    messages = [line for line in err.splitlines() if line.startswith("signbridge: error: ")]
    return info.value.code, messages[-1] if messages else ""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A data folder with a test split and a one-epoch ATK checkpoint trained on it."""
    root = image_folder(tmp_path_factory.mktemp("data") / "abc")
    cli = main(["fit", *atk_args(root, tmp_path_factory.mktemp("runs"), "--data.init_args.test_fraction", "0.2")])
    return root, Path(cli.trainer.checkpoint_callback.best_model_path)


def test_config_and_option_mistakes_are_one_message(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  init_args: {lr: [1,\n")
    code, message = run_console(["fit", "--config", str(broken)], capsys)
    assert code == 2 and str(broken) in message and "parsing config" in message
    code, message = run_console(["fit", "--config", ATK, "--data.init_args.rooot", "x"], capsys)
    assert code == 2 and "'rooot' is not accepted" in message and "ImageFolderDataModule" in message
    code, message = run_console(["fit", "--config", ATK, "--data.init_args.root", str(tmp_path / "absent")], capsys)
    assert code == 2 and message.endswith(f"{tmp_path / 'absent'}: the data root is not a folder "
                                          "(data.init_args.root)")


def test_tiny_images_are_read_and_odd_folders_are_not_classes(tmp_path):
    root = image_folder(tmp_path / "data", classes=("1", "10", "2"), per_class=1)
    cv2.imwrite(str(root / "1" / "tiny.png"), np.full((4, 3, 3), 200, np.uint8))
    (root / "__MACOSX" / "1").mkdir(parents=True)
    cv2.imwrite(str(root / "__MACOSX" / "1" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    (root / ".thumbnails").mkdir()
    (root / "2" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    classes, paths, labels = list_image_folder(root)
    assert classes == ["1", "2", "10"]
    assert paths == ["1/0.png", "1/tiny.png", "2/0.png", "10/0.png"] and labels == [0, 0, 1, 2]
    assert find_unreadable(root, paths) == {}
    assert read_image_rgb(root / "1" / "tiny.png").shape == (4, 3, 3)
    (root / "3").mkdir()
    with pytest.raises(InputError, match="class folders without images: 3"):
        list_image_folder(root)


def test_too_few_images_per_class_is_refused_before_training(tmp_path, capsys):
    root = image_folder(tmp_path / "data", per_class=1)
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs")], capsys)
    assert code == 2 and "the val split is empty" in message and "a (1), b (1), c (1)" in message
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_bad_checkpoints_are_one_message(trained, tmp_path, capsys):
    root, checkpoint = trained
    runs = tmp_path / "runs"
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:5000])
    for path, problem in ((tmp_path / "absent.ckpt", "checkpoint not found"), (empty, "the checkpoint is empty"),
                          (truncated, "not a readable checkpoint")):
        code, message = run_console(["test", *atk_args(root, runs), "--ckpt_path", str(path)], capsys)
        assert code == 2 and f"{path}: {problem}" in message
    code, message = run_console(["test", "--config", LANDMARKS, "--data.init_args.root", str(root),
                                 "--ckpt_path", str(checkpoint)], capsys)
    assert code == 2 and "is a signbridge.ATKClassifier checkpoint" in message and "LandmarkClassifier" in message
    # a checkpoint of another version, with an argument the task no longer takes: one message, from the CLI and export
    older = tmp_path / "older.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["landmark_encoder"] = "mlp"
    torch.save(saved, older)
    code, message = run_console(["test", *atk_args(root, runs), "--ckpt_path", str(older)], capsys)
    assert code == 2 and f"{older}: ATKClassifier takes no argument landmark_encoder" in message
    code, message = run_console(["export", str(older), "--output", str(tmp_path / "older.onnx")], capsys)
    assert code == 2 and "another version of signbridge" in message


def test_a_checkpoint_is_not_tested_on_other_classes_or_without_a_test_split(trained, tmp_path, capsys):
    root, checkpoint = trained
    runs = tmp_path / "runs"
    other = image_folder(tmp_path / "xyz", classes=("x", "y", "z"))
    code, message = run_console(["test", *atk_args(other, runs, "--data.init_args.test_fraction", "0.2"),
                                 "--ckpt_path", str(checkpoint)], capsys)
    assert code == 2 and "trained on the classes a, b, c but the data has x, y, z" in message
    code, message = run_console(["test", *atk_args(root, runs), "--ckpt_path", str(checkpoint)], capsys)
    assert code == 2 and "there is no test split (test_fraction=0.0)" in message
    main(["test", *atk_args(root, runs, "--data.init_args.test_fraction", "0.2"), "--ckpt_path", str(checkpoint)])


class _RaisingDataset(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise InputError(f"sample {index}: a problem with\ntwo lines")


def test_worker_errors_show_the_original_message_and_bugs_keep_their_traceback():
    with pytest.raises(InputError) as info:
        next(iter(DataLoader(_RaisingDataset(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # what the worker re-raises
    assert user_error_message(info.value) == "sample 0: a problem with\ntwo lines"
    assert user_error_message(ZeroDivisionError("a bug")) is None
    assert user_error_message(RuntimeError("wrapped")) is None


def test_a_failed_checkpoint_write_leaves_the_previous_file(tmp_path):
    """A real failed write: the process may not write files over 200 kB (as with a full disk, the write raises).

    Lightning's checkpoint writer (through an fsspec transaction) writes a temporary file and moves it into place;
    this guards that behaviour, which older Lightning/fsspec versions lacked (they truncated the file in place).
    """
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent("""
        import resource, signal, sys
        import torch
        from lightning.pytorch.plugins.io import TorchCheckpointIO
        writer = TorchCheckpointIO()  # what the Trainer uses
        writer.save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, sys.argv[1])  # small: fits
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        writer.save_checkpoint({"state_dict": {"w": torch.zeros(500_000)}}, sys.argv[1])
    """)
    run = forked.run(path, code=script)
    assert run.returncode != 0 and "File too large" in run.stderr
    assert torch.load(path, weights_only=True)["state_dict"]["w"].shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_failed_cache_write_leaves_the_previous_file(tmp_path):
    """The same for the library's own writes (landmark caches, model.json) through ``files.atomic_write``."""
    path = tmp_path / "cache.npz"
    script = textwrap.dedent("""
        import resource, signal, sys
        import numpy as np
        from signbridge.files import atomic_write
        with atomic_write(sys.argv[1]) as f:
            np.save(f, np.zeros(10))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        with atomic_write(sys.argv[1]) as f:
            np.save(f, np.zeros(500_000))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert run.returncode != 0 and "OSError" in run.stderr  # numpy reports the short write itself
    assert np.load(path).shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]


def test_written_files_are_readable_by_others(trained, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    _, checkpoint = trained
    assert (checkpoint.parent / "model.json").stat().st_mode & 0o777 == expected
    assert checkpoint.stat().st_mode & 0o777 == expected
    LandmarkCache.empty().save(tmp_path / "cache.npz")
    assert (tmp_path / "cache.npz").stat().st_mode & 0o777 == expected


def test_one_bad_file_does_not_hide_the_models_folder(trained, tmp_path, capsys):
    _, checkpoint = trained
    models = tmp_path / "models"
    (models / "good").mkdir(parents=True)
    (models / "good" / "model.json").write_bytes((checkpoint.parent / "model.json").read_bytes())
    (models / "broken").mkdir()
    (models / "broken" / "model.json").write_text('{"checkpoint": ')
    (models / "active.json").write_bytes(b"\x00\xff")
    table = models_table(models)
    assert "good" in table and "ATKClassifier" in table
    assert "broken/model.json" in table and "not a readable model metadata file" in table
    assert "active.json: not a readable active-model file" in table
    with pytest.raises(SystemExit) as info:
        console_main(["models", "list", str(models)])
    assert info.value.code == 0 and "good" in capsys.readouterr().out


def test_labels_file_encodings(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "bom.tsv").write_bytes("\ufeffpath\ttext\na.png\tcafé\n".encode())
    assert read_labels(tmp_path, "bom.tsv") == [("a.png", "café")]
    (tmp_path / "latin1.tsv").write_bytes("a.png\tok\na.png\tcafé\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.tsv:2: not UTF-8 \(byte 0xe9\)"):
        read_labels(tmp_path, "latin1.tsv")


def test_skipped_images_stay_in_the_predictions_file(trained, tmp_path):
    root, checkpoint = trained
    photos = image_folder(tmp_path / "photos", classes=("any",), per_class=3)
    (photos / "any" / "broken.png").write_bytes(b"\x89PNG not really")
    output = tmp_path / "predictions.csv"
    main(["predict", *atk_args(root, tmp_path / "runs"), "--ckpt_path", str(checkpoint),
          "--data.init_args.predict_root", str(photos), "--prediction_writer.output", str(output)])
    with open(output) as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["any/0.png", "any/1.png", "any/2.png", "any/broken.png"]
    assert rows["any/broken.png"]["predicted_class"] == "" and "not a decodable image" in rows["any/broken.png"][
        "skipped"]
    assert rows["any/0.png"]["predicted_class"] in ("a", "b", "c") and rows["any/0.png"]["skipped"] == ""


def test_an_unwritable_output_is_refused_before_the_work(trained, tmp_path, capsys):
    root, _ = trained
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, message = run_console(["landmarks", str(root), "--output", str(blocker / "cache.npz")], capsys)
    assert code == 2 and str(blocker) in message and "cannot write" in message
    code, message = run_console(["fit", *atk_args(root, blocker / "runs")], capsys)
    assert code == 2 and str(blocker) in message and "cannot write" in message
    code, message = run_console(["predict", *atk_args(root, tmp_path / "runs"), "--ckpt_path", str(trained[1]),
                                 "--prediction_writer.output", str(blocker / "p.csv")], capsys)
    assert code == 2 and str(blocker) in message


def test_settings_the_library_checks_are_one_message(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"),
                                 "--model.init_args.class_weights", "[1.0, 2.0]"], capsys)
    assert code == 2 and "class_weights has 2 values, expected 3" in message
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), "--data.init_args.num_folds", "3",
                                 "--data.init_args.fold", "3"], capsys)
    assert code == 2 and "fold must be in 0..2" in message
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), "--data.init_args.val_fraction",
                                 "1.5"], capsys)
    assert code == 2 and message.endswith("val_fraction must be in [0, 1), got 1.5")


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--data.init_args.batch_size", "0", "batch_size must be at least 1, got 0"),
    ("--data.init_args.num_workers", "-1", "num_workers must be at least 0, got -1"),
    ("--trainer.max_epochs", "-5", "trainer: `max_epochs` must be a non-negative integer or -1. You passed in -5."),
    ("--model.init_args.lr", "0", "lr must be above 0, got 0"),
    ("--model.init_args.label_smoothing", "1.0", "label_smoothing must be in [0, 1), got 1.0"),
    ("--model.init_args.num_classes", "1", "num_classes must be at least 2 (a classifier tells classes apart), got 1"),
    ("--data.init_args.num_folds", "7", "num_folds=7 is more than the 6 samples of the smallest class (class 0)"),
    ("--model.init_args.dropout", "2.0", "dropout must be in [0, 1), got 2.0"),
    ("--model.init_args.units", "0", "units must be at least 1, got 0"),
])
def test_a_value_out_of_range_is_one_line_before_any_work(tmp_path, capsys, option, value, expected):
    root = image_folder(tmp_path / "data")
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), option, value], capsys)
    assert code == 2 and expected in message, message
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.ckpt"))


def test_model_and_detector_settings_out_of_range_are_one_line(tmp_path, capsys):
    from signbridge.hands.detect import DetectorSettings
    from signbridge.models import LandmarkNetConfig, SequenceNetConfig

    with pytest.raises(InputError, match=r"net dropout must be in \[0, 1\), got 2.0"):
        LandmarkNetConfig(dropout=2.0)
    with pytest.raises(InputError, match="net kernel_size must be at least 1, got 0"):
        SequenceNetConfig(kernel_size=0)
    with pytest.raises(InputError, match=r"min_hand_detection_confidence must be in \[0, 1\], got 2"):
        DetectorSettings(min_hand_detection_confidence=2)
    with pytest.raises(InputError, match="max_image_side must be at least 192, got 0"):
        DetectorSettings(max_image_side=0)
    root = image_folder(tmp_path / "data")
    code, message = run_console(["landmarks", str(root), "--output", str(tmp_path / "c.npz"), "--workers", "-1"],
                                capsys)
    assert code == 2 and message.endswith("extraction workers must be 0 (this process) or more, got -1"), message
    one_class = image_folder(tmp_path / "one", classes=("a",))
    code, message = run_console(["fit", *atk_args(one_class, tmp_path / "runs")], capsys)
    assert code == 2 and message.endswith("1 class folder (a); a classifier needs at least 2"), message


def test_a_gpu_config_without_a_gpu_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: configs/trainer/gpu.yaml is valid here")
    root = image_folder(tmp_path / "data")
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), "--config",
                                 str(REPO / "configs" / "trainer" / "gpu.yaml")], capsys)
    assert code == 2 and message == "signbridge: error: trainer: No supported gpu backend found!", message


def test_a_checkpoint_without_lightnings_keys_is_one_line(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    weights = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, weights)
    code, message = run_console(["test", *atk_args(root, tmp_path / "runs"), "--ckpt_path", str(weights)], capsys)
    assert code == 2 and message.endswith(f"{weights}: not a Lightning checkpoint (no pytorch-lightning_version); "
                                          "give a .ckpt of signbridge fit"), message


def test_a_hand_model_zip_without_tflite_models_is_refused(tmp_path):
    import zipfile

    from signbridge.hands.model_file import HandModelUnavailable, check_hand_model_file

    fake = tmp_path / "hand_landmarker.task"
    with zipfile.ZipFile(fake, "w") as bundle:
        bundle.writestr("hand_detector.tflite", b"not a model")
        bundle.writestr("hand_landmarks_detector.tflite", b"nor this one")
    with pytest.raises(HandModelUnavailable, match="is not a TensorFlow Lite model"):
        check_hand_model_file(fake)


def test_no_command_writes_over_a_file_that_is_not_its_own(tmp_path, capsys, hand_model):
    """The outputs of landmarks, sequences extract, export, recognize and predict refuse the dataset being read,
    the command's own inputs and any existing file that is not their kind of output; the files are left as they
    were."""
    from tests.conftest import write_sequences

    root, signs = image_folder(tmp_path / "data"), write_sequences(tmp_path / "signs")
    photo = root / "a" / "0.png"
    photo_bytes, model_bytes = photo.read_bytes(), Path(hand_model).read_bytes()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    cases = [
        (["landmarks", root, "--output", photo], "inside the dataset being read"),
        (["landmarks", root, "--output", hand_model, "--model_path", hand_model], "over the command's own input"),
        (["landmarks", root, "--output", notes], "an existing file that is not a signbridge landmark cache"),
        (["sequences", "extract", signs, "--output", notes], "not a signbridge sequence cache"),
        (["sequences", "extract", signs, "--output", signs / "cache.npz"], "inside the dataset being read"),
    ]
    for args, expected in cases:
        code, message = run_console([str(arg) for arg in args], capsys)
        assert code == 2 and expected in message, (args, message)
    assert photo.read_bytes() == photo_bytes and Path(hand_model).read_bytes() == model_bytes
    assert notes.read_text() == "my notes\n"


def test_export_recognize_and_predict_keep_a_users_files(trained, tmp_path, capsys):
    root, checkpoint = trained
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    code, message = run_console(["export", str(checkpoint), "--output", str(notes)], capsys)
    assert code == 2 and "an existing file that is not a signbridge export file" in message, message
    code, message = run_console(["export", str(checkpoint), "--output", str(checkpoint)], capsys)
    assert code == 2 and "over the command's own input" in message, message
    photo = next(root.rglob("*.png"))
    code, message = run_console(["recognize", str(root), "--model", str(checkpoint), "--output", str(photo)], capsys)
    assert code == 2 and "inside the dataset being read" in message, message
    code, message = run_console(["recognize", str(photo), "--model", str(checkpoint), "--output", str(notes)], capsys)
    assert code == 2 and "an existing file that is not a signbridge recognitions file" in message, message
    code, message = run_console(["predict", *atk_args(root, tmp_path / "runs"), "--ckpt_path", str(checkpoint),
                                 "--trainer.callbacks+=signbridge.lightning_callbacks.PredictionWriter",
                                 f"--trainer.callbacks.output={notes}"], capsys)
    assert code == 2 and "an existing file that is not a signbridge predictions file" in message, message
    assert notes.read_text() == "my notes\n"


def test_a_full_disk_is_one_line_naming_the_file_when_it_is_known():
    import errno

    assert user_error_message(OSError(errno.ENOSPC, "No space left on device", "/runs/last.ckpt")) == \
        "/runs/last.ckpt: No space left on device"
    # Lightning's checkpoint writes do not say where
    assert user_error_message(RuntimeError("saving failed").with_traceback(None)) is None
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert user_error_message(wrapped) == ("No space left on device: free some space and run the same command "
                                           "again")


@pytest.fixture
def small_disk(tmp_path):
    """A 128 KiB filesystem (tmpfs), for a full disk during the work; skipped where mounting is not permitted."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode:
        pytest.skip(f"a full disk needs a small filesystem, and mounting one is not permitted here: "
                    f"{mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_disk_that_fills_during_fit_is_one_line_and_leaves_no_half_checkpoint(tmp_path, capsys, small_disk):
    root = image_folder(tmp_path / "data", size=32)
    code, message = run_console(["fit", *atk_args(root, small_disk / "runs"), "--trainer.max_epochs", "3",
                                 "--data.init_args.image_size", "32"], capsys)
    assert code == 2 and message.endswith("No space left on device"), message
    written = [path for path in small_disk.rglob("*") if path.is_file()]
    assert not [path for path in written if ".ckpt" in path.name and path.suffix != ".ckpt"], written  # no temp
    for checkpoint in (path for path in written if path.suffix == ".ckpt"):  # whole, or not there
        assert torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]


def test_an_unknown_class_or_a_value_of_the_wrong_type_is_one_line_naming_the_key(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), "--model", "NoSuchTask"], capsys)
    assert code == 2 and message == ('signbridge: error: Parser key "model": expected a LightningModule (a class name '
                                     "or import path) or None, got 'NoSuchTask'"), message
    code, message = run_console(["fit", *atk_args(root, tmp_path / "runs"), "--trainer.max_epochs", "abc"], capsys)
    assert code == 2 and message == ('signbridge: error: Parser key "trainer.max_epochs": expected int or None, got '
                                     "'abc'"), message


def test_dangling_links_and_link_loops_are_skipped_by_name(tmp_path, caplog):
    import logging

    root = image_folder(tmp_path / "data")
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "b" / "loop").symlink_to(root / "b")  # b/loop/loop/... forever, if followed blindly
    (root / "c" / "more").symlink_to(root / "a", target_is_directory=True)  # a linked folder is read
    with caplog.at_level(logging.WARNING, logger="signbridge.imageio"):
        classes, paths, _ = list_image_folder(root)
    assert len(paths) == 18 + 6 and "c/more/0.png" in paths and "a/gone.png" not in paths
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "a/gone.png (a link to nothing)" in warned and "b/loop (a link loop)" in warned


def test_a_link_to_nothing_among_sign_sequences_is_named(tmp_path, caplog):
    import logging

    from signbridge.hands.video import list_sequence_folder
    from tests.conftest import write_sequences

    root = write_sequences(tmp_path / "signs")
    first = sorted(p.name for p in root.iterdir())[0]
    (root / first / "gone").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (root / first / "clip.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with caplog.at_level(logging.WARNING, logger="signbridge.hands.video"):
        _, paths, _, source = list_sequence_folder(root)
    assert source == "npy" and len(paths) == 3 * 6 and not any(p.endswith(("gone", "clip.mp4")) for p in paths)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert f"{first}/gone" in warned and f"{first}/clip.mp4" in warned and "2 links to nothing" in warned


def test_a_full_disk_in_an_atomic_write_names_the_file_and_leaves_nothing(small_disk):
    from signbridge.files import atomic_write

    target = small_disk / "cache.npz"
    target.write_bytes(b"the previous cache")
    with pytest.raises(OSError) as info:
        with atomic_write(target) as f:
            np.savez(f, landmarks=np.zeros((64, 1024), np.float32))  # 256 KiB into 128 KiB
    assert info.value.filename == str(target) and info.value.strerror == "No space left on device"
    assert user_error_message(info.value) == f"{target}: No space left on device"
    assert target.read_bytes() == b"the previous cache" and [p.name for p in small_disk.iterdir()] == ["cache.npz"]
