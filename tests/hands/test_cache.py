import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from signbridge.errors import InputError
from signbridge.hands.cache import LandmarkCache, coverage_problem, extract_landmarks
from signbridge.hands.detect import DetectorSettings
from tests.conftest import REPO, console, shared_dir


@pytest.fixture
def photo_dataset(tmp_path):
    """Real hand photos in two classes, plus the bad files a user's dataset has."""
    photos = shared_dir("data", "hand_photos")
    root = tmp_path / "photos"
    (root / "one").mkdir(parents=True)
    (root / "two").mkdir()
    shutil.copy(photos / "mps_hand_thumb_up.jpg", root / "one" / "thumb.jpg")
    shutil.copy(photos / "mps_hand_test_image.jpg", root / "one" / "hand.jpg")
    shutil.copy(photos / "mps_pose_test_image.jpg", root / "two" / "pose.jpg")
    shutil.copy(photos / "mps_thumbs-up.png", root / "two" / "thumbs.png")
    (root / "two" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (root / "two" / "empty.png").write_bytes(b"")
    (root / "two" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_extraction_writes_the_contract_and_reports_skips(photo_dataset, tmp_path, hand_model):
    output = tmp_path / "cache.npz"
    summary = extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    assert summary.images == 6 and summary.detected == 4 and summary.reused == 0
    assert set(summary.skipped) == {"two/corrupt.jpg", "two/empty.png"}
    assert "empty file" in summary.skipped["two/empty.png"]
    table = summary.format()
    assert "two/corrupt.jpg" in table and "skipped" in table
    assert summary.per_class["two"]["both"] == 1 and summary.per_class["two"]["skipped"] == 2

    with np.load(output, allow_pickle=False) as data:
        assert data["paths"].tolist() == ["one/hand.jpg", "one/thumb.jpg", "two/pose.jpg", "two/thumbs.png"]
        assert data["landmarks"].shape == (4, 2, 21, 3) and data["landmarks"].dtype == np.float32
        assert data["present"].dtype == bool and data["score"].dtype == np.float32
        assert data["image_size"][2].tolist() == [960, 640]
        meta = json.loads(str(data["meta"]))
    assert meta["complete"]
    assert meta["model_sha256"] == "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1"
    assert meta["detector"] == DetectorSettings().to_dict() and "mediapipe_version" in meta and "created" in meta


def test_rerun_reuses_and_updates_only_what_changed(photo_dataset, tmp_path, hand_model):
    output = tmp_path / "cache.npz"
    extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    again = extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    assert again.reused == 4 and again.detected == 0

    shutil.copy(photo_dataset / "one" / "hand.jpg", photo_dataset / "two" / "new.jpg")
    shutil.copy(photo_dataset / "two" / "pose.jpg", photo_dataset / "one" / "thumb.jpg")  # replaced image
    cache = LandmarkCache.load(output)
    paths = ["one/hand.jpg", "one/thumb.jpg", "two/new.jpg"]
    sizes = [(photo_dataset / p).stat().st_size for p in paths]
    problem = coverage_problem(cache, paths, sizes)
    assert "1 images not in the cache" in problem and "1 images changed size" in problem
    updated = extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    assert updated.detected == 2 and updated.reused == 3
    assert LandmarkCache.load(output).present[1].tolist() == [True, True]  # thumb.jpg now holds the pose photo


def test_other_detector_settings_make_the_cache_stale(photo_dataset, tmp_path, hand_model):
    output = tmp_path / "cache.npz"
    extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    strict = DetectorSettings(min_hand_detection_confidence=0.9)
    summary = extract_landmarks(photo_dataset, output, model_path=hand_model, settings=strict, workers=0,
                                progress=False)
    assert summary.reused == 0 and "detector differs" in summary.stale
    assert LandmarkCache.load(output).meta["detector"]["min_hand_detection_confidence"] == 0.9


def test_process_pool_gives_the_same_landmarks(photo_dataset, tmp_path, hand_model):
    inline = tmp_path / "inline.npz"
    pooled = tmp_path / "pooled.npz"
    extract_landmarks(photo_dataset, inline, model_path=hand_model, workers=0, progress=False)
    extract_landmarks(photo_dataset, pooled, model_path=hand_model, workers=2, progress=False)
    a, b = LandmarkCache.load(inline), LandmarkCache.load(pooled)
    assert a.paths.tolist() == b.paths.tolist()
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-5)
    np.testing.assert_array_equal(a.present, b.present)


def test_bad_cache_files_give_clear_errors(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK not really")
    with pytest.raises(InputError, match="broken.npz: not a readable landmark cache"):
        LandmarkCache.load(broken)
    partial = tmp_path / "partial.npz"
    np.savez(partial, paths=np.array(["a.jpg"]), meta=np.array("{}"))
    with pytest.raises(InputError, match="lacks the keys"):
        LandmarkCache.load(partial)


def test_a_truncated_cache_is_moved_aside_and_rebuilt(photo_dataset, tmp_path, hand_model):
    output = tmp_path / "landmarks.npz"
    extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    whole = LandmarkCache.load(output)
    truncated = output.read_bytes()[: output.stat().st_size // 2]  # a copy that was interrupted
    output.write_bytes(truncated)
    with pytest.raises(InputError, match="not a readable landmark cache"):
        LandmarkCache.load(output)
    summary = extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    assert summary.stale == "it was unreadable" and summary.reused == 0
    assert (tmp_path / "landmarks.npz.corrupt").read_bytes() == truncated  # kept, not deleted
    rebuilt = LandmarkCache.load(output)
    assert rebuilt.paths.tolist() == whole.paths.tolist() and np.array_equal(rebuilt.landmarks, whole.landmarks)


def test_the_cache_of_another_dataset_is_never_overwritten(photo_dataset, tmp_path, hand_model):
    output = tmp_path / "landmarks.npz"
    extract_landmarks(photo_dataset, output, model_path=hand_model, workers=0, progress=False)
    before = output.read_bytes()
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    shutil.copy(photo_dataset / "one" / "thumb.jpg", other / "x" / "thumb.jpg")
    with pytest.raises(InputError, match="landmark cache of another dataset"):
        extract_landmarks(other, output, model_path=hand_model, workers=0, progress=False)
    assert output.read_bytes() == before
    moved = tmp_path / "moved"  # the same dataset in another place is not "another dataset"
    shutil.copytree(photo_dataset, moved)
    summary = extract_landmarks(moved, output, model_path=hand_model, workers=0, progress=False)
    assert summary.reused == len(LandmarkCache.load(output).paths) > 0


def _landmarks_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "signbridge", "landmarks", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_cli_resumes_after_being_killed(digits_subset, tmp_path):
    output = tmp_path / "digits.npz"
    process = _landmarks_cli(digits_subset, "--output", output, "--workers", "0", "--checkpoint_every", "4",
                             "--progress", "false")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not output.exists():
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # at once: 48 small photos take about a second in all
    process.wait()
    interrupted = LandmarkCache.load(output)  # a killed run leaves a valid, partial file
    assert not interrupted.meta["complete"] and 4 <= len(interrupted) < 48
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]

    resumed = _landmarks_cli(digits_subset, "--output", output, "--workers", "0", "--progress", "false")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"{len(interrupted)} reused from the cache" in stdout
    final = LandmarkCache.load(output)
    assert final.meta["complete"] and len(final) == 48


def _children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    return {int(child) for task in Path(f"/proc/{pid}/task").glob("*")
            for child in (task / "children").read_text().split()}


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie is dead


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from Linux /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_stopped_extraction_saves_its_progress_and_leaves_no_worker(digits_subset, tmp_path, stop):
    """SIGTERM (timeout, Slurm) saves like Ctrl-C and exits 143; kill -9 cannot save, but its detector workers
    (several hundred MB each) still exit with it instead of running on as orphans."""
    output = tmp_path / "digits.npz"
    process = _landmarks_cli(digits_subset, "--output", output, "--workers", "2", "--checkpoint_every", "4",
                             "--progress", "false")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not output.exists():
        time.sleep(0.05)
    workers = _children(process.pid)
    assert process.poll() is None and len(workers) >= 2, "the extraction ended before it could be stopped"
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]
    interrupted = LandmarkCache.load(output)
    assert not interrupted.meta["complete"] and 4 <= len(interrupted) < 48
    if stop == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM
        assert stderr.strip().splitlines()[-1] == "signbridge: stopped by SIGTERM"


def test_cli_bad_root_is_one_clear_line(tmp_path, capsys):
    done = console(capsys, "landmarks", tmp_path / "missing", "--output", tmp_path / "x.npz")
    stderr = done.stderr
    assert done.returncode == 2
    assert stderr.strip().splitlines()[-1] == f"signbridge: error: dataset root is not a folder: {tmp_path / 'missing'}"
    assert "Traceback" not in stderr
