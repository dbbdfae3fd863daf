import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from signbridge.hands import model_file
from signbridge.hands.detect import HandDetector
from signbridge.hands.layout import LEFT, RIGHT, flip_landmarks
from signbridge.hands.model_file import resolve_hand_landmarker
from signbridge.imageio import ImageReadError, read_image_rgb
from tests.conftest import shared_dir


@pytest.fixture(scope="module")
def detector(hand_model):
    with HandDetector(hand_model) as detector:
        yield detector


def test_two_hand_photo_fills_both_slots_wrist_relative(detector):
    detection, size = detector.detect_file(shared_dir("data", "hand_photos", "mps_pose_test_image.jpg"))
    assert size == (960, 640)
    assert detection.present.tolist() == [True, True]
    assert (detection.score > 0.5).all()
    assert detection.landmarks.shape == (2, 21, 3) and detection.landmarks.dtype == np.float32
    np.testing.assert_array_equal(detection.landmarks[:, 0], 0)  # relative to the wrist
    assert np.abs(detection.landmarks[:, 1:, :2]).max() > 0.01  # but not collapsed


def test_victory_photo_has_no_detectable_hand(detector):
    detection, size = detector.detect_file(shared_dir("data", "hand_photos", "mps_hand_victory.jpg"))
    assert size == (3000, 4000)  # a very large image is handled
    assert not detection.present.any()
    assert not detection.landmarks.any() and not detection.score.any()


def test_mirrored_photo_gives_flipped_landmarks(detector):
    image = read_image_rgb(shared_dir("data", "hand_photos", "mps_pose_test_image.jpg"))
    original = detector.detect(image)
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))
    expected, expected_present = flip_landmarks(original.landmarks, original.present)
    np.testing.assert_array_equal(mirrored.present, expected_present)
    # the detector is not exactly equivariant; the hand shapes agree to about a percent of the image
    assert np.abs(mirrored.landmarks[:, :, :2] - expected[:, :, :2]).max() < 0.03


def test_single_hand_goes_to_its_labelled_slot(detector):
    detection, _ = detector.detect_file(shared_dir("data", "hand_photos", "mps_hand_thumb_up.jpg"))
    assert detection.present.tolist() == [False, True]  # MediaPipe labels this hand "Left"
    assert detection.score[LEFT] > 0.5 and detection.score[RIGHT] == 0


# MediaPipe finds the hand of only one of these photos once the colour is gone
@pytest.mark.parametrize("mode, photo", [("gray", "mps_business-person.png"), ("rgba", "mps_pose_test_image.jpg"),
                                         ("upscaled", "mps_pose_test_image.jpg")])
def test_grayscale_rgba_and_large_images_work(detector, tmp_path, mode, photo):
    bgr = cv2.imread(str(shared_dir("data", "hand_photos", photo)))
    if mode == "gray":
        image, name = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), "gray.png"
    elif mode == "rgba":
        image, name = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), "rgba.png"
    else:
        image, name = cv2.resize(bgr, None, fx=4, fy=4), "large.jpg"
    cv2.imwrite(str(tmp_path / name), image)
    decoded = read_image_rgb(tmp_path / name)
    assert decoded.shape == (*image.shape[:2], 3) and decoded.dtype == np.uint8
    detection, size = detector.detect_file(tmp_path / name)
    assert size == (image.shape[1], image.shape[0])
    assert detection.present.sum() >= 1


def test_unreadable_files_raise_a_clear_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    jpeg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[:20])
    for name, problem in [("empty.jpg", "empty file"), ("text.jpg", "not a decodable image"),
                          ("truncated.jpg", "not a decodable image"), ("missing.jpg", "cannot read file")]:
        with pytest.raises(ImageReadError, match=problem) as info:
            read_image_rgb(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_model_file_resolution_order(tmp_path, monkeypatch, hand_model):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(model_file.ENV_VAR, str(hand_model))
    assert resolve_hand_landmarker() == hand_model
    other = tmp_path / "other.task"
    shutil.copy(hand_model, other)
    assert resolve_hand_landmarker(other) == other  # the argument wins
    with pytest.raises(FileNotFoundError, match="argument"):
        resolve_hand_landmarker(tmp_path / "nope.task")
    monkeypatch.setenv(model_file.ENV_VAR, str(tmp_path / "gone.task"))
    with pytest.raises(FileNotFoundError, match=model_file.ENV_VAR):
        resolve_hand_landmarker()
    monkeypatch.delenv(model_file.ENV_VAR)
    cached = tmp_path / "cache" / "signbridge" / "hand_landmarker.task"
    cached.parent.mkdir(parents=True)
    shutil.copy(hand_model, cached)
    assert resolve_hand_landmarker() == cached
    cached.unlink()
    with pytest.raises(model_file.HandModelUnavailable, match="downloading is disabled"):
        resolve_hand_landmarker(download=False)


@pytest.mark.parametrize("damage, problem", [
    (lambda data: b"", "it is empty"),
    (lambda data: bytes(range(256)) * 40, "not a .task archive"),
    (lambda data: data[: len(data) // 2], "not a .task archive"),
    (lambda data: data[:3_000_000] + bytes(1000) + data[3_001_000:], "corrupt"),  # the directory is intact
])
def test_a_broken_hand_model_is_refused_in_the_calling_process(tmp_path, hand_model, damage, problem):
    """MediaPipe kills a worker process on a bad model file; the file is checked before any worker starts."""
    broken = tmp_path / "hand_landmarker.task"
    broken.write_bytes(damage(hand_model.read_bytes()))
    with pytest.raises(model_file.HandModelUnavailable, match=problem) as info:
        resolve_hand_landmarker(broken)
    assert str(broken) in str(info.value)


def test_failed_or_wrong_download_leaves_nothing_and_says_how_to_work_offline(tmp_path):
    destination = tmp_path / "models" / "hand_landmarker.task"
    wrong = tmp_path / "wrong.task"
    wrong.write_bytes(b"not the model")
    with pytest.raises(model_file.HandModelUnavailable, match="sha256") as info:
        model_file.download_hand_landmarker(destination, url=wrong.as_uri())
    assert model_file.ENV_VAR in str(info.value)
    with pytest.raises(model_file.HandModelUnavailable, match="could not download"):
        model_file.download_hand_landmarker(destination, url=(tmp_path / "absent").as_uri())
    assert not destination.exists() and os.listdir(destination.parent) == []


def test_download_verifies_and_installs_a_good_file(tmp_path, hand_model):
    destination = tmp_path / "hand_landmarker.task"
    assert model_file.download_hand_landmarker(destination, url=Path(hand_model).as_uri()) == destination
    assert model_file.sha256_of(destination) == model_file.MODEL_SHA256
    assert destination.stat().st_size == model_file.MODEL_SIZE
