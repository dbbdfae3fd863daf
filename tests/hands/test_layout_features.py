import math

import numpy as np
import pytest
import torch

from signbridge.hands.features import hand_geometry
from signbridge.hands.layout import FINGER_CHAINS, GEOMETRY_FEATURES, flip_landmarks
from tests.conftest import synthetic_hand


def test_flip_mirrors_x_and_swaps_slots_for_numpy_and_torch():
    rng = np.random.default_rng(0)
    landmarks = rng.normal(size=(4, 2, 21, 3)).astype(np.float32)
    present = np.array([[True, False], [False, True], [True, True], [False, False]])
    flipped, flipped_present = flip_landmarks(landmarks, present)
    np.testing.assert_array_equal(flipped[:, 0, :, 0], -landmarks[:, 1, :, 0])
    np.testing.assert_array_equal(flipped[:, 1, :, 1:], landmarks[:, 0, :, 1:])
    np.testing.assert_array_equal(flipped_present, present[:, ::-1])
    assert flipped.dtype == np.float32
    torch_flipped, torch_present = flip_landmarks(torch.from_numpy(landmarks), torch.from_numpy(present))
    np.testing.assert_array_equal(torch_flipped.numpy(), flipped)
    np.testing.assert_array_equal(torch_present.numpy(), flipped_present)
    twice, twice_present = flip_landmarks(flipped, flipped_present)
    np.testing.assert_array_equal(twice, landmarks)
    np.testing.assert_array_equal(twice_present, present)


def test_geometry_of_a_straight_fanned_hand_matches_hand_computed_values():
    hand = synthetic_hand()
    landmarks = np.zeros((2, 21, 3), np.float32)
    landmarks[0] = hand
    features = hand_geometry(landmarks, np.array([True, False]))
    assert features.shape == (GEOMETRY_FEATURES,)
    right, left = features[:34], features[34:]
    # fingertips are 4 segments of 0.05 from the wrist along straight fingers
    torch.testing.assert_close(right[0:5], torch.full((5,), 0.2))
    # tips at radius 0.2 separated by 30-degree steps: chord = 2 r sin(dtheta / 2)
    steps = [1, 2, 3, 4, 1, 2, 3, 1, 2, 1]  # triu order: (0,1),(0,2),(0,3),(0,4),(1,2),...
    expected = torch.tensor([2 * 0.2 * math.sin(math.radians(30 * s) / 2) for s in steps])
    torch.testing.assert_close(right[5:15], expected)
    torch.testing.assert_close(right[15:30], torch.full((15,), math.pi))  # straight joints
    # index MCP x pinky MCP of a hand in the xy plane points along z
    torch.testing.assert_close(right[30:33].abs(), torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(right[33], torch.tensor(4.0))  # mean tip distance 0.2 / palm 0.05
    assert torch.count_nonzero(left) == 0  # missing hand -> zeros


def test_geometry_bent_joint_angle_and_batch_shapes():
    hand = synthetic_hand()
    index_chain = FINGER_CHAINS[1]
    dip, tip = index_chain[3], index_chain[4]
    # bend the index fingertip 90 degrees at the DIP joint, in the plane
    segment = hand[dip] - hand[index_chain[2]]
    hand[tip] = hand[dip] + np.array([-segment[1], segment[0], 0.0])
    landmarks = np.stack([np.stack([hand, hand])] * 3)  # (3, 2, 21, 3)
    present = np.array([[True, True], [True, False], [False, False]])
    features = hand_geometry(landmarks, present)
    assert features.shape == (3, GEOMETRY_FEATURES)
    index_dip_angle = 15 + 3 * 1 + 2  # angles start at 15; finger 1, third joint
    torch.testing.assert_close(features[0, index_dip_angle], torch.tensor(math.pi / 2))
    torch.testing.assert_close(features[0, 34 + index_dip_angle], torch.tensor(math.pi / 2))
    assert torch.count_nonzero(features[1, 34:]) == 0
    assert torch.count_nonzero(features[2]) == 0
    assert torch.isfinite(features).all()


def test_geometry_of_all_zero_hands_is_finite():
    features = hand_geometry(torch.zeros(5, 2, 21, 3), torch.ones(5, 2, dtype=torch.bool))
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_geometry_is_invariant_to_flip_up_to_slot_swap_and_normal_sign(seed):
    landmarks = np.stack([synthetic_hand(np.random.default_rng(seed)), synthetic_hand(np.random.default_rng(seed + 7))])
    present = np.array([True, True])
    original = hand_geometry(landmarks, present).view(2, 34)
    flipped = hand_geometry(*flip_landmarks(landmarks, present)).view(2, 34)
    # distances, angles and openness do not change under mirroring; the hands swap slots
    keep = [*range(30), 33]
    torch.testing.assert_close(flipped[:, keep], original.flip(0)[:, keep])
    # for a mirror M, (Ma) x (Mb) = det(M) M (a x b) = (n_x, -n_y, -n_z)
    torch.testing.assert_close(flipped[:, 30], original.flip(0)[:, 30])
    torch.testing.assert_close(flipped[:, 31:33], -original.flip(0)[:, 31:33])
