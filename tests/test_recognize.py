"""``signbridge recognize``: real MediaPipe detection and a trained model on a video the test writes (frames with
and without hands), on a folder, and with an exported ONNX file. Each run in a process of its own (``tests.forked``),
since MediaPipe must not start in a process that has trained (see ``HandDetector``)."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from signbridge.export import export_checkpoint
from tests import forked
from tests.conftest import console, shared_dir
from tests.test_export import checkpoints  # noqa: F401  (the module-scoped fixture of trained checkpoints)


def recognize(*args: str, hand_model: Path) -> subprocess.CompletedProcess:
    return forked.run("recognize", *args, env={"SIGNBRIDGE_HAND_LANDMARKER": str(hand_model)})


def write_video(path: Path, photos: list[Path], blank: int) -> list[bool]:
    """An MJPG video of the photos (hands) and ``blank`` grey frames (no hand); returns which frames have a hand."""
    size = (320, 240)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    has_hand = []
    for photo in photos:
        for _ in range(2):
            writer.write(cv2.resize(cv2.imread(str(photo)), size))
            has_hand.append(True)
    for _ in range(blank):
        writer.write(np.full((size[1], size[0], 3), 128, np.uint8))
        has_hand.append(False)
    writer.release()
    return has_hand


def test_recognize_a_video_with_and_without_hands(tmp_path, checkpoints, hand_model):  # noqa: F811
    photos = sorted((shared_dir("data", "hand_photos")).glob("mps_hand_t*.jpg"))[:2]
    has_hand = write_video(tmp_path / "clip.avi", photos, blank=3)
    model = export_checkpoint(checkpoints["landmarks"], tmp_path / "landmarks.onnx").path
    result = recognize(str(tmp_path / "clip.avi"), "--model", str(model), "--output", str(tmp_path / "out.jsonl"),
                       "--smooth", "3", hand_model=hand_model)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == len(has_hand)
    for row, hand in zip(rows, has_hand):
        if hand:
            assert row["hands"] >= 1 and row["label"] in {"0", "1", "2", "3"} and 0 < row["probability"] <= 1
        else:  # a landmark-only model has nothing to classify: said so, not guessed
            assert row["hands"] == 0 and row["label"] is None
    assert all(row["total_ms"] > 0 for row in rows)
    assert f"{len(rows)} frames" in result.stderr


def test_recognize_a_folder_with_the_checkpoint_and_a_broken_file(tmp_path, checkpoints, hand_model,  # noqa: F811
                                                                  digits_subset):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((digits_subset / "2").glob("*.JPG"))[:3]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    result = recognize(str(folder), "--model", str(checkpoints["hybrid"]), hand_model=hand_model)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 4
    broken = [row for row in rows if row["frame"].endswith("broken.jpg")]
    assert len(broken) == 1 and "broken.jpg" in broken[0]["skipped"]
    # the hybrid reads the image too: every readable photo gets a class, with or without a detected hand
    assert all(row["label"] in {"0", "1", "2", "3"} for row in rows if "skipped" not in row)


def test_a_missing_source_is_one_clear_error(tmp_path, checkpoints, capsys):  # noqa: F811
    # in this process: the source is checked before MediaPipe would start
    result = console(capsys, "recognize", tmp_path / "nothing.mp4", "--model", checkpoints["landmarks"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nothing.mp4: no such file or folder" in result.stderr

