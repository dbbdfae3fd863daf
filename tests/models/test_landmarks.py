"""The landmark branch: hand normalisation, joint identity, augmentation."""

import math

import numpy as np
import pytest
import torch

from signbridge.data.transforms import random_stretch_jitter
from signbridge.hands.layout import NUM_POINTS
from signbridge.models import LandmarkEncoder, LandmarkNet, LandmarkNetConfig, normalize_hands
from tests.conftest import synthetic_hand


def _hands(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    hands = np.stack([np.stack([synthetic_hand(rng), synthetic_hand(rng)]) for _ in range(batch)])
    present = torch.tensor([[True, True], [True, False], [False, True]])[:batch]
    return torch.from_numpy(hands) * present[..., None, None], present


def _rotate_xy(points: torch.Tensor, degrees: float) -> torch.Tensor:
    theta = math.radians(degrees)
    x, y, z = points.unbind(-1)
    return torch.stack([math.cos(theta) * x - math.sin(theta) * y, math.sin(theta) * x + math.cos(theta) * y, z], -1)


def test_normalisation_removes_position_size_and_photo_aspect():
    hands, present = _hands()
    reference = normalize_hands(hands, present)
    # a palm is about one unit long
    palm = reference[0, 0, [5, 9, 13, 17]].norm(dim=-1).mean()
    assert palm == pytest.approx(1.0, abs=1e-5)
    # the same hands 2.5 times larger, away from the wrist origin (as raw image coordinates would be)
    moved = hands * 2.5 + torch.tensor([0.3, -0.2, 0.05])
    assert torch.allclose(normalize_hands(moved, present), reference, atol=1e-5)
    # the same hands photographed in a 4:3 photo: x and z are in units of a width 4/3 of the height
    aspect = torch.full((3,), 4 / 3)
    squeezed = hands * torch.tensor([3 / 4, 1.0, 3 / 4])
    assert torch.allclose(normalize_hands(squeezed, present, aspect), reference, atol=1e-5)
    assert not torch.allclose(normalize_hands(squeezed, present), reference, atol=1e-3)
    # missing hands stay zeros
    assert torch.count_nonzero(normalize_hands(moved, present)[~present]) == 0


def test_rotation_is_normalised_only_when_asked():
    hands, present = _hands()
    turned = _rotate_xy(hands, 35.0)
    assert torch.allclose(normalize_hands(turned, present, rotate=True), normalize_hands(hands, present, rotate=True),
                          atol=1e-5)
    assert not torch.allclose(normalize_hands(turned, present), normalize_hands(hands, present), atol=1e-3)


@pytest.mark.parametrize("kind", ["mlp", "attention"])
def test_the_encoder_knows_which_joint_is_which(kind):
    torch.manual_seed(0)
    encoder = LandmarkEncoder(kind, dim=32).eval()
    hands, present = _hands()
    swapped = hands.clone()
    # the index fingertip and the pinky fingertip trade places: the same set of points, another hand shape
    swapped[:, :, [8, 20]] = hands[:, :, [20, 8]]
    feature, _, _ = encoder(hands, present)
    feature_swapped, _, _ = encoder(swapped, present)
    assert not torch.allclose(feature, feature_swapped, atol=1e-4)


@pytest.mark.parametrize("kind", ["mlp", "attention"])
def test_the_encoder_output_does_not_depend_on_the_hand_size(kind):
    torch.manual_seed(0)
    encoder = LandmarkEncoder(kind, dim=32).eval()
    hands, present = _hands()
    feature, tokens, valid = encoder(hands, present)
    assert torch.allclose(encoder(hands * 0.3, present)[0], feature, atol=1e-4)
    assert tokens.shape[:2] == valid.shape
    if kind == "attention":
        assert valid.shape == (3, 2 * NUM_POINTS) and valid[1, NUM_POINTS:].sum() == 0


def test_stretch_and_jitter_keep_wrists_missing_hands_and_the_shape():
    hands, present = _hands()
    generator = torch.Generator().manual_seed(0)
    stretched = random_stretch_jitter(hands, present, max_stretch=0.2, generator=generator)
    assert not torch.allclose(stretched, hands, atol=1e-3)
    # a per-axis stretch keeps ratios along each axis: every x of a hand is scaled by one factor
    xs, stretched_xs = hands[0, 0, :, 0], stretched[0, 0, :, 0]
    factor = (stretched_xs @ xs) / (xs @ xs)
    assert torch.allclose(stretched_xs, factor * xs, atol=1e-5) and 0.8 <= factor <= 1.2
    jittered = random_stretch_jitter(hands, present, 0.1, jitter=0.05, generator=generator)
    assert torch.count_nonzero(jittered[~present]) == 0
    assert torch.count_nonzero(jittered[..., 0, :]) == 0  # wrists stay at the origin
    one = random_stretch_jitter(hands[0], present[0], 0.1, generator=generator)  # a single sample works too
    assert one.shape == hands[0].shape


def test_landmark_net_predicts_per_sample():
    net = LandmarkNet(6, LandmarkNetConfig(use_geometry=True)).eval()
    hands, present = _hands()
    logits = net(hands, present)
    assert logits.shape == (3, 6) and torch.isfinite(logits).all()
    assert torch.allclose(net(hands[:1], present[:1]), logits[:1], atol=1e-5)
