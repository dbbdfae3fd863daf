"""The sequence networks: masking, padding, normalisation and the batch augmentation's invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from signbridge.data.sequences import collate_sequences
from signbridge.data.transforms import SequenceAugment
from signbridge.hands.sequence import from_vectors, part_slices
from signbridge.models.sequence import (
    SequenceNet,
    SequenceNetConfig,
    frame_features,
    landmark_descriptor,
    landmark_descriptor_size,
    normalize_sequence,
    valid_points,
)
from tests.conftest import write_sequences

PARTS = ("pose", "left_hand", "right_hand")
ENCODERS = ["conv_transformer", "gru", "lstm", "pooled"]


def _sequences(tmp_path, count: int = 4, frames: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    root = write_sequences(tmp_path / "data", classes=2, per_class=count // 2, frames=frames)
    points, present = [], []
    for folder in sorted(root.glob("*/*")):
        vectors = np.stack([np.load(folder / f"{frame}.npy") for frame in range(frames)])
        p, r, _ = from_vectors(vectors)
        points.append(p)
        present.append(r)
    return torch.tensor(np.stack(points)), torch.tensor(np.stack(present))


def _net(encoder: str) -> SequenceNet:
    torch.manual_seed(0)
    net = SequenceNet(5, PARTS, SequenceNetConfig(encoder=encoder, dim=32, depth=1, kernel_size=5, num_heads=2))
    return net.eval()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_padding_never_changes_the_prediction(tmp_path, encoder):
    points, present = _sequences(tmp_path)
    net = _net(encoder)
    # real lengths 12, 7, 12, 9 in one padded batch against each sequence alone
    lengths = [12, 7, 12, 9]
    items = [{"points": points[i, :n], "present": present[i, :n], "label": 0, "path": str(i)}
             for i, n in enumerate(lengths)]
    batch = collate_sequences(items)
    assert batch["mask"].sum(1).tolist() == lengths
    padded = batch["points"].clone()
    padded[~batch["mask"]] = torch.rand_like(padded[~batch["mask"]])  # garbage in the padding must not matter
    with torch.no_grad():
        together = net(padded, batch["present"], batch["mask"])
        alone = torch.cat([net(item["points"][None], item["present"][None], torch.ones(1, len(item["points"]),
                                                                                         dtype=torch.bool))
                           for item in items])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_missing_hands_and_empty_frames_give_finite_outputs(tmp_path, encoder):
    points, present = _sequences(tmp_path)
    present[0, :, 1:] = False  # no hand at all in the first sequence
    points[0, :, 11:] = 0
    present[1] = False  # nothing found in the second
    points[1] = 0
    mask = torch.ones(points.shape[:2], dtype=torch.bool)
    mask[2] = False  # an empty window
    net = _net(encoder).train()  # batch statistics too
    out = net(points, present, mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_normalisation_removes_position_and_size(tmp_path):
    points, present = _sequences(tmp_path, count=2)
    mask = torch.ones(points.shape[:2], dtype=torch.bool)
    moved = points.clone()
    valid = valid_points(points, present, mask, PARTS)
    moved[..., :2] = torch.where(valid[..., None], points[..., :2] * 0.5 + 0.2, points[..., :2])
    a = normalize_sequence(points, valid, PARTS)
    b = normalize_sequence(moved, valid_points(moved, present, mask, PARTS), PARTS)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    features = frame_features(points, present, mask, PARTS)
    assert features.shape[-1] == 4 * 53 + 2 * 63 + 3
    assert torch.isfinite(features).all()


def test_mirror_swaps_the_hands_and_keeps_what_was_not_found():
    parts = PARTS
    slices = part_slices(parts)
    points = torch.rand(2, 6, 53, 3)
    present = torch.ones(2, 6, 3, dtype=torch.bool)
    present[:, :, 1] = False  # no left hand
    points[:, :, slices["left_hand"]] = 0
    batch = {"points": points, "present": present, "mask": torch.ones(2, 6, dtype=torch.bool), "label": [0, 1]}
    only_mirror = SequenceAugment(mirror=1.0, affine=0, resample=0, time_mask=0, part_dropout=0, point_dropout=0)
    out = only_mirror(batch, parts)
    # the right hand became the left one, x mirrored; the missing left hand is now the missing right hand
    torch.testing.assert_close(out["points"][:, :, slices["left_hand"], 0], 1 - points[:, :, slices["right_hand"], 0])
    torch.testing.assert_close(out["points"][:, :, slices["left_hand"], 1:], points[:, :, slices["right_hand"], 1:])
    assert out["present"][:, :, 1].all() and not out["present"][:, :, 2].any()
    assert not out["points"][:, :, slices["right_hand"]].any()
    # the shoulders swap sides
    torch.testing.assert_close(out["points"][:, :, 1, 1], points[:, :, 2, 1])
    assert out["label"] == [0, 1]
    twice = only_mirror(out, parts)
    torch.testing.assert_close(twice["points"], points)


def test_every_augmentation_keeps_padding_and_missing_parts_empty(tmp_path):
    points, present = _sequences(tmp_path)
    present[0, :, 1] = False
    points[0, :, 11:32] = 0
    items = [{"points": points[i, :n], "present": present[i, :n], "label": i, "path": str(i)}
             for i, n in enumerate([12, 8, 12, 5])]
    batch = collate_sequences(items)
    torch.manual_seed(0)
    strong = SequenceAugment(mirror=0.5, affine=1.0, resample=1.0, time_mask=1.0, part_dropout=0.2,
                             point_dropout=0.2)
    for _ in range(5):
        out = strong(batch, PARTS)
        assert out["points"].shape[:2] == batch["points"].shape[:2]
        lengths = out["mask"].sum(1)
        assert (lengths >= 1).all() and (lengths <= 12).all()
        assert not out["points"][~out["mask"]].any()  # padding stays zeros
        sizes = torch.tensor([11, 21, 21])
        absent = ~out["present"].repeat_interleave(sizes, dim=-1)
        assert not out["points"][absent].any()  # a part not found is zeros
        assert torch.isfinite(out["points"]).all()


def test_resampling_changes_the_length_and_keeps_the_motion(tmp_path):
    points, present = _sequences(tmp_path, count=2, frames=20)
    batch = {"points": points, "present": present, "mask": torch.ones(2, 20, dtype=torch.bool)}
    slow = SequenceAugment(mirror=0, affine=0, resample=1.0, speed=0.0, crop=0.5, time_mask=0, part_dropout=0,
                           point_dropout=0)
    torch.manual_seed(3)
    out = slow(batch, PARTS)
    lengths = out["mask"].sum(1)
    assert (lengths < 20).any() and (lengths >= 10).all()  # up to half of the frames cut
    wrist = part_slices(PARTS)["right_hand"].start
    # the right wrist still moves monotonically along its class direction (class 0: +x)
    x = out["points"][0, : int(lengths[0]), wrist, 0]
    assert (x[1:] >= x[:-1] - 1e-3).all()


def test_conv_transformer_default_size_is_about_a_million_parameters():
    net = SequenceNet(40, PARTS, SequenceNetConfig(dim=128))
    count = sum(p.numel() for p in net.parameters())
    assert 0.5e6 < count < 1.5e6


def test_landmark_descriptor_against_hand_computed_values():
    # one sequence of 4 frames (the 5th padded), the right hand moving right by 1 a frame, the left hand never found
    parts = ("left_hand", "right_hand")
    points = torch.zeros(1, 5, 42, 3)
    for t in range(4):
        points[0, t, 21:, 0] = 1.0 + t
        points[0, t, 21:, 1] = 2.0
    points[0, 4, 21:] = 50.0  # a padded frame's values never count
    present = torch.tensor([[[False, True]] * 5])
    mask = torch.tensor([[True, True, True, True, False]])
    descriptor = landmark_descriptor(points, present, mask, parts)
    assert descriptor.shape == (1, landmark_descriptor_size(parts)) == (1, 3 * 42 * 3)
    mean, spread, movement = descriptor.view(3, 42, 3)
    assert torch.allclose(mean[21:], torch.tensor([2.5, 2.0, 0.0]).expand(21, 3))
    assert torch.allclose(spread[21:, 0], torch.full((21,), np.sqrt(1.25), dtype=torch.float32))
    assert torch.allclose(movement[21:], torch.tensor([2.0, 0.0, 0.0]).expand(21, 3))  # (3 + 4) / 2 - (1 + 2) / 2
    assert not descriptor.view(3, 42, 3)[:, :21].any()  # the hand never found: zeros


def test_point_presence_is_each_points_part_flag():
    from signbridge.hands.sequence import part_of_point
    from signbridge.models.sequence import point_presence

    parts = ("pose", "left_hand", "right_hand", "face")
    present = torch.rand(3, 7, len(parts)) < 0.5
    assert torch.equal(point_presence(present, parts), present[..., torch.as_tensor(part_of_point(parts))])
