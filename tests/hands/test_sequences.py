"""Landmark sequences: the per-frame vector layouts, the sequence cache, sharded extraction, and videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from signbridge.errors import InputError
from signbridge.hands.sequence import (
    PART_SIZES,
    VECTOR_LAYOUTS,
    SequenceCache,
    from_vectors,
    mirror_permutation,
    part_slices,
    read_npy_sequence,
)
from signbridge.hands.video import (
    extract_sequences,
    list_sequence_folder,
    merge_sequence_caches,
    parse_shard,
)
from tests.conftest import shared_dir, write_sequences


@pytest.mark.parametrize("length", [126, 170, 258, 1662])
def test_every_vector_layout_is_recognised_from_its_length(tmp_path, length):
    root = write_sequences(tmp_path / "data", length=length, classes=2, per_class=1, frames=5)
    folder = root / "sign1" / "0"
    vectors = np.stack([np.load(folder / f"{frame}.npy") for frame in range(5)])
    points, present, parts = read_npy_sequence(folder)[:3]
    layout = VECTOR_LAYOUTS[length]
    expected = [name for name in ("pose", "left_hand", "right_hand") if name in layout.parts]
    assert list(parts) == expected  # the face is left out unless asked for
    assert points.shape == (5, sum(PART_SIZES[name] for name in parts), 3) and points.dtype == np.float32
    slices = part_slices(parts)
    offset = layout.parts["right_hand"][0]
    np.testing.assert_allclose(points[:, slices["right_hand"]].reshape(5, -1), vectors[:, offset:offset + 63],
                               rtol=1e-6)
    # the left hand of class 1 appears in the second half only: absent frames are zeros and not present
    left = parts.index("left_hand")
    assert not present[:2, left].any() and present[-1, left]
    assert not points[0, slices["left_hand"]].any()
    if "pose" in parts:  # x, y, z of the 11 upper-body points (Holistic's 33 are reduced to them)
        offset, count, width, indices = layout.parts["pose"]
        pose = vectors[:, offset:offset + count * width].reshape(5, count, width)
        pose = pose[:, list(indices)] if indices else pose
        np.testing.assert_allclose(points[:, slices["pose"]], pose[..., :3], rtol=1e-6)
    if length == 1662:
        with_face = from_vectors(vectors, ["face", "right_hand"])
        assert with_face[2] == ("right_hand", "face")
        np.testing.assert_allclose(with_face[0][:, 21:].reshape(5, -1), vectors[:, 132:132 + 1404], rtol=1e-6)


def test_bad_frames_are_one_line_naming_the_file(tmp_path):
    folder = tmp_path / "sign" / "0"
    folder.mkdir(parents=True)
    np.save(folder / "0.npy", np.zeros(171))
    with pytest.raises(InputError, match=r"0\.npy: a frame vector of length 171 .* not a layout"):
        read_npy_sequence(folder)
    np.save(folder / "0.npy", np.zeros(170))
    np.save(folder / "1.npy", np.zeros(126))
    with pytest.raises(InputError, match=r"1\.npy: a frame vector of length 126 in a sequence whose first"):
        read_npy_sequence(folder)
    np.save(folder / "1.npy", np.array(["a"] * 170))
    with pytest.raises(InputError, match=r"1\.npy: a frame must be a 1-D numeric vector"):
        read_npy_sequence(folder)
    (folder / "1.npy").write_bytes(b"not a numpy file")
    with pytest.raises(InputError, match=r"1\.npy: not a readable \.npy frame"):
        read_npy_sequence(folder)
    (folder / "1.npy").unlink()
    np.save(folder / "last.npy", np.zeros(170))
    with pytest.raises(InputError, match="last.npy: a frame file whose name has no frame number"):
        read_npy_sequence(folder)


def test_frames_are_read_in_numeric_order(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for frame in (0, 1, 2, 10, 11):
        vector = np.zeros(126, np.float32)
        vector[63:] = frame + 1  # the right hand's x, y, z all equal the frame number + 1
        np.save(folder / f"{frame}.npy", vector)
    points = read_npy_sequence(folder)[0]
    assert points[:, 21, 0].tolist() == [1, 2, 3, 11, 12]


def test_mirror_swaps_hands_and_pose_sides():
    parts = ("pose", "left_hand", "right_hand")
    order = mirror_permutation(parts)
    slices = part_slices(parts)
    assert order[slices["left_hand"]].tolist() == list(range(slices["right_hand"].start, slices["right_hand"].stop))
    assert order[1] == 2 and order[2] == 1 and order[0] == 0  # shoulders swap, the nose stays
    assert sorted(order.tolist()) == list(range(len(order)))


def test_listing_recognises_the_form_and_refuses_empty_or_mixed(tmp_path):
    root = write_sequences(tmp_path / "data", classes=2, per_class=2, frames=3)
    classes, paths, labels, source = list_sequence_folder(root)
    assert classes == ["sign0", "sign1"] and source == "npy" and labels == [0, 0, 1, 1]
    assert paths == ["sign0/0", "sign0/1", "sign1/0", "sign1/1"]
    (root / "empty").mkdir()
    with pytest.raises(InputError, match="class folders without sequences: empty"):
        list_sequence_folder(root)
    (root / "empty").rmdir()
    (root / "sign1" / "clip.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="both .npy sequence folders and videos"):
        list_sequence_folder(root)


def test_cache_extraction_reuses_rows_and_notices_changes(tmp_path):
    root = write_sequences(tmp_path / "data", classes=2, per_class=3, frames=4)
    output = tmp_path / "cache.npz"
    summary = extract_sequences(root, output, workers=0, progress=False)
    assert (summary.sequences, summary.read, summary.reused, summary.skipped) == (6, 6, 0, {})
    cache = SequenceCache.load(output)
    assert cache.meta["complete"] and cache.parts == ("pose", "left_hand", "right_hand")
    assert cache.lengths().tolist() == [4] * 6
    # a rerun reads nothing; a changed sequence (a frame added) is read again
    assert extract_sequences(root, output, workers=0, progress=False).reused == 6
    np.save(root / "sign0" / "1" / "4.npy", np.zeros(170))
    again = extract_sequences(root, output, workers=0, progress=False)
    assert (again.read, again.reused) == (1, 5)
    assert SequenceCache.load(output).lengths().tolist()[1] == 5
    # a broken sequence is skipped with its reason, the rest is kept
    np.save(root / "sign1" / "2" / "1.npy", np.zeros(3))
    broken = extract_sequences(root, output, workers=0, progress=False)
    assert list(broken.skipped) == ["sign1/2"] and "length 3" in broken.skipped["sign1/2"]
    assert "skipped sequences" in broken.format()


def test_an_interrupted_extraction_resumes(tmp_path):
    root = write_sequences(tmp_path / "data", classes=2, per_class=3, frames=4)
    output = tmp_path / "cache.npz"
    extract_sequences(root, output, workers=0, progress=False)
    whole = SequenceCache.load(output)
    # what an interrupted run leaves: an incomplete cache with the first sequences
    rows = [whole.rows()[path] for path in ("sign0/0", "sign0/1")]
    SequenceCache.from_rows(rows, whole.parts, {**whole.meta, "complete": False}).save(output)
    resumed = extract_sequences(root, output, workers=0, progress=False)
    assert (resumed.reused, resumed.read) == (2, 4)
    again = SequenceCache.load(output)
    assert again.meta["complete"] and again.paths.tolist() == whole.paths.tolist()
    np.testing.assert_array_equal(again.points, whole.points)


def test_two_shards_merge_into_the_whole_cache(tmp_path):
    root = write_sequences(tmp_path / "data", classes=3, per_class=3, frames=4)
    whole = tmp_path / "whole.npz"
    extract_sequences(root, whole, workers=0, progress=False)
    shards = []
    for k in range(2):
        shards.append(tmp_path / f"part{k}.npz")
        summary = extract_sequences(root, shards[-1], shard=f"{k}/2", workers=1, progress=False)
        assert summary.sequences == (5 if k == 0 else 4)
    with pytest.raises(InputError, match="missing 1/2"):
        merge_sequence_caches([str(shards[0])], str(tmp_path / "merged.npz"))
    with pytest.raises(InputError, match="repeated 0/2"):
        merge_sequence_caches([str(shards[0]), str(shards[0])], str(tmp_path / "merged.npz"))
    print(merge_sequence_caches([str(shards[1]), str(shards[0])], str(tmp_path / "merged.npz")))
    merged, reference = SequenceCache.load(tmp_path / "merged.npz"), SequenceCache.load(whole)
    assert merged.paths.tolist() == reference.paths.tolist()
    np.testing.assert_array_equal(merged.points, reference.points)
    np.testing.assert_array_equal(merged.offsets, reference.offsets)
    assert merged.meta["complete"] and merged.meta["shard"] is None
    with pytest.raises(InputError, match="K must be in 0..N-1"):
        parse_shard("2/2")


def test_the_command_line_extracts_and_merges_shards(tmp_path, capsys):
    from signbridge.cli import main

    root = write_sequences(tmp_path / "data", classes=2, per_class=2, frames=3)
    for k in range(2):
        assert main(["sequences", "extract", str(root), "--output", str(tmp_path / f"s{k}.npz"), "--shard",
                     f"{k}/2", "--workers", "0", "--progress", "false"]) == 0
    assert main(["sequences", "merge", "--shards", json.dumps([str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz")]),
                 "--output", str(tmp_path / "all.npz")]) == 0
    assert "merged 2 shards: 4 sequences" in capsys.readouterr().out
    assert len(SequenceCache.load(tmp_path / "all.npz")) == 4


def test_a_photo_landmark_cache_is_not_a_sequence_cache(tmp_path, digits_cache):
    with pytest.raises(InputError, match="sequence cache lacks the keys"):
        SequenceCache.load(digits_cache)


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def test_videos_are_tracked_into_sequences(tmp_path, hand_model, digits_subset):
    """A test-written video of real hand photos and a video that cannot be decoded, with the real WLASL videos."""
    import cv2

    from signbridge.imageio import read_image_rgb

    root = tmp_path / "videos"
    (root / "digits").mkdir(parents=True)
    (root / "abdomen").mkdir()
    photos = sorted((digits_subset / "0").iterdir())[:2]
    frames = [cv2.resize(read_image_rgb(photo), (200, 200)) for photo in photos for _ in range(4)]
    _write_video(root / "digits" / "written.mp4", frames)
    (root / "digits" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real video")
    for video in sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[:2]:
        shutil.copy(video, root / "abdomen" / video.name)
    output = tmp_path / "videos.npz"
    summary = extract_sequences(root, output, hand_model=str(hand_model), workers=2, progress=False)
    assert summary.source == "video" and summary.parts == ["left_hand", "right_hand"]
    assert list(summary.skipped) == ["digits/broken.mp4"]
    assert "cannot open the video" in summary.skipped["digits/broken.mp4"] or "no frame" in \
        summary.skipped["digits/broken.mp4"]
    cache = SequenceCache.load(output)
    rows = cache.rows()
    points, present, fps = rows["digits/written.mp4"][1], rows["digits/written.mp4"][2], rows["digits/written.mp4"][3]
    assert len(points) == 8 and fps == pytest.approx(10.0)
    assert present.any(1).mean() >= 0.75  # the digits photos show one hand
    found = points[present.repeat(21, axis=1)]
    assert ((found[:, :2] >= -0.1) & (found[:, :2] <= 1.1)).all()  # image coordinates, not wrist-relative
    real = [path for path in rows if path.startswith("abdomen/")]
    assert len(real) == 2
    for path in real:
        frames_found = rows[path][2].any(1)
        # the signer's hand is tracked through the sign (WLASL clips may start or end with the hands at rest)
        assert len(frames_found) > 40 and frames_found.mean() > 0.3
        assert max(len(run) for run in "".join("x" if f else " " for f in frames_found).split()) >= 20
    assert "abdomen" in summary.format()
