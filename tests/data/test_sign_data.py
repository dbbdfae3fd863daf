import numpy as np
import pytest
import torch

from signbridge.data import HandAugment, SignDataModule, balanced_class_weights, stratified_split
from signbridge.data.transforms import rotate_scale_landmarks


def test_stratified_split_is_disjoint_stable_and_stratified():
    labels = np.repeat(np.arange(5), [40, 30, 20, 10, 3])
    train, val, test = stratified_split(labels, (0.8, 0.1, 0.1), seed=7)
    assert len(set(train) | set(val) | set(test)) == len(labels)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert np.bincount(labels[val], minlength=5).tolist() == [4, 3, 2, 1, 1]  # each class, even the tiny one
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = stratified_split(labels, (0.8, 0.1, 0.1), seed=8)
    assert not np.array_equal(val, other[1])
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(labels, (0.8, 0.3), seed=0)


def test_balanced_class_weights():
    weights = balanced_class_weights([0, 0, 0, 1], num_classes=3)
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2, 0.0])


def _dots(size: int, points: list[tuple[float, float]]) -> torch.Tensor:
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    for x, y in points:
        image[:, int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
    return image


def _centroids(image: torch.Tensor) -> list[tuple[float, float]]:
    """Centroids of the left and right bright blobs (split at the middle of their x range)."""
    ys, xs = torch.nonzero(image[0] > 100, as_tuple=True)
    split = (xs.min() + xs.max()) / 2
    blobs = [(xs <= split), (xs > split)]
    return [(float(xs[b].float().mean()), float(ys[b].float().mean())) for b in blobs]


@pytest.mark.parametrize("angle, scale", [(25.0, 1.0), (-40.0, 1.15), (10.0, 0.85)])
def test_rotation_and_zoom_move_landmarks_with_the_pixels(angle, scale):
    size, centre = 129, 64.0
    wrist, tip = (centre - 20, centre), (centre + 20, centre + 5)
    image = _dots(size, [wrist, tip])
    landmarks = torch.zeros(2, 21, 3)
    landmarks[0, 8] = torch.tensor([(tip[0] - wrist[0]) / size, (tip[1] - wrist[1]) / size, 0.01])
    augment = HandAugment(flip_prob=0, max_rotation_degrees=0, zoom=0, contrast=0, brightness=0, landmark_stretch=0)
    from torchvision.transforms.v2 import functional as F

    moved = F.affine(image, angle=angle, translate=[0, 0], scale=scale, shear=[0.0, 0.0])
    moved_landmarks = rotate_scale_landmarks(landmarks, angle, scale)
    (wx, wy), (tx, ty) = sorted(_centroids(moved), key=lambda p: p[0] if abs(angle) < 45 else p[1])
    expected = moved_landmarks[0, 8, :2] * size
    observed = torch.tensor([tx - wx, ty - wy])
    assert torch.allclose(observed, expected, atol=1.5), (observed, expected)
    assert moved_landmarks[0, 8, 2] == pytest.approx(0.01 * scale)
    same_image, same_landmarks, _ = augment(image, landmarks, torch.tensor([True, False]))
    assert torch.equal(same_image, image) and torch.equal(same_landmarks, landmarks)


def test_flip_augmentation_mirrors_pixels_and_swaps_hands():
    torch.manual_seed(0)
    image = _dots(65, [(10, 32), (30, 40)])
    landmarks = torch.randn(2, 21, 3)
    present = torch.tensor([True, False])
    augment = HandAugment(flip_prob=1.0, max_rotation_degrees=0, zoom=0, contrast=0, brightness=0, landmark_stretch=0)
    flipped, flipped_landmarks, flipped_present = augment(image, landmarks, present)
    assert torch.equal(flipped, image.flip(-1))
    assert flipped_present.tolist() == [False, True]
    assert torch.equal(flipped_landmarks[1, :, 0], -landmarks[0, :, 0])


def test_datamodule_batches_and_splits(digits_subset, digits_cache):
    dm = SignDataModule(str(digits_subset), landmarks_file=str(digits_cache), image_size=48,
                        batch_size=8, num_workers=0, extraction_workers=1)
    dm.prepare_data()  # an up-to-date cache is used as it is
    dm.setup("fit")
    assert dm.classes == ["0", "1", "2", "3"] and dm.num_classes == 4
    sizes = {split: len(dm.datasets[split]) for split in ("train", "val", "test")}
    assert sizes == {"train": 40, "val": 4, "test": 4}
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.uint8  # the model normalises
    assert batch["landmarks"].shape == (4, 2, 21, 3) and batch["present"].dtype == torch.bool
    assert batch["label"].tolist() == sorted(batch["label"].tolist())
    assert batch["image"].float().std() > 10  # a photo, not a blank
    again = SignDataModule(str(digits_subset), landmarks_file=str(digits_cache), image_size=48, num_workers=0)
    again.setup("fit")
    assert again.datasets["test"].paths == dm.datasets["test"].paths  # stable across runs
    weights = dm.class_weights()
    assert weights.shape == (4,) and torch.allclose(weights, torch.ones(4))


def test_datamodule_builds_a_missing_cache_and_leaves_out_unreadable_images(digits_subset, tmp_path, caplog):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(digits_subset, root)
    (root / "2" / "broken.jpg").write_bytes(b"not a jpeg")
    dm = SignDataModule(str(root), landmarks_file=str(tmp_path / "lm.npz"), image_size=32, num_workers=0,
                        extraction_workers=1)
    with caplog.at_level("WARNING"):
        dm.prepare_data()
        dm.setup("fit")
    assert "because it does not exist" in caplog.text
    assert "leaving out 1 unreadable images" in caplog.text and "2/broken.jpg" in caplog.text
    assert sum(len(d) for d in dm.datasets.values()) == 48


def test_kfold_test_parts_are_disjoint_cover_the_data_and_leave_train_and_val_apart():
    from signbridge.data.splits import kfold_split, limit_per_class

    labels = np.repeat(np.arange(4), [30, 25, 12, 7])
    tests = []
    for fold in range(5):
        train, val, test = kfold_split(labels, 5, fold, val_fraction=0.1, seed=3)
        assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
        assert len(train) + len(val) + len(test) == len(labels)
        assert set(np.unique(labels[test])) == {0, 1, 2, 3}  # stratified: every class in every fold
        tests.append(test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(labels)))
    with pytest.raises(ValueError, match="fold must be in 0..4"):
        kfold_split(labels, 5, 5, 0.1, 3)
    train = kfold_split(labels, 5, 0, 0.1, 3)[0]
    few = limit_per_class(train, labels, 3, seed=0)
    assert set(few) <= set(train) and np.bincount(labels[few]).tolist() == [3, 3, 3, 3]


def test_augmentation_without_an_image_moves_only_the_landmarks():
    augment = HandAugment(max_rotation_degrees=20, landmark_stretch=0.1)
    landmarks = torch.zeros(2, 21, 3)
    landmarks[0, 8] = torch.tensor([0.1, -0.3, 0.01])
    image, moved, present = augment(None, landmarks, torch.tensor([True, False]))
    assert image is None and not torch.equal(moved, landmarks) and torch.count_nonzero(moved[1]) == 0


def test_batch_augmentation_of_landmarks_draws_per_sample_and_keeps_missing_hands_empty():
    torch.manual_seed(0)
    landmarks = torch.randn(64, 2, 21, 3)
    landmarks[:, :, 0] = 0  # wrists at the origin
    present = torch.ones(64, 2, dtype=torch.bool)
    present[::2, 1] = False
    landmarks[::2, 1] = 0
    # rotation and zoom alone: each sample turned by its own angle about the wrist, x and y lengths kept
    rotated, kept = HandAugment(max_rotation_degrees=30, zoom=0.0, landmark_stretch=0.0).landmarks_batch(
        landmarks, present)
    assert torch.equal(kept, present) and not rotated[::2, 1].any() and not rotated[:, :, 0].any()
    assert torch.allclose(rotated[..., :2].norm(dim=-1), landmarks[..., :2].norm(dim=-1), atol=1e-5)
    assert torch.equal(rotated[..., 2], landmarks[..., 2])
    turn = torch.atan2(rotated[:, 0, 8, 1], rotated[:, 0, 8, 0]) - torch.atan2(landmarks[:, 0, 8, 1],
                                                                                landmarks[:, 0, 8, 0])
    degrees = torch.rad2deg(torch.remainder(turn + torch.pi, 2 * torch.pi) - torch.pi)
    assert degrees.abs().max() <= 30 + 1e-3 and degrees.std() > 5  # drawn per sample, within the range
    # one sample's turn as the per-sample rotation computes it
    assert torch.allclose(rotated[3], rotate_scale_landmarks(landmarks[3], float(degrees[3]), 1.0), atol=1e-4)
    # a flip of every sample mirrors x and swaps the hands, presence included
    flipped, swapped = HandAugment(flip_prob=1.0, max_rotation_degrees=0, zoom=0.0, landmark_stretch=0.0
                                   ).landmarks_batch(landmarks, present)
    assert torch.equal(swapped, present.flip(-1)) and torch.allclose(flipped[:, 0, :, 0], -landmarks[:, 1, :, 0])


def test_augmentation_is_one_argument_from_python_a_config_or_a_checkpoint(tmp_path):
    from dataclasses import asdict

    from signbridge.lightning_cli import fit_config
    from tests.conftest import REPO

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert SignDataModule(str(tmp_path)).augmenter == HandAugment()  # on by default, measured defaults
    assert SignDataModule(str(tmp_path), augment=None).augmenter is None
    chosen = SignDataModule(str(tmp_path), augment=HandAugment(zoom=0.3))
    assert chosen.augmenter == HandAugment(zoom=0.3) and chosen.hparams.augment["zoom"] == 0.3  # saved as a dict
    rebuilt = SignDataModule(**{**chosen.hparams, "root": str(tmp_path)})  # as load_from_checkpoint does
    assert rebuilt.augmenter == chosen.augmenter
    # a config sets one field and keeps the others' defaults; null turns augmentation off
    recipe = ["--config", str(REPO / "configs" / "sign_landmarks.yaml"), "--data.init_args.root", str(tmp_path)]
    one_field = fit_config([*recipe, "--data.init_args.augment.landmark_jitter", "0.05"])
    assert one_field["data"]["init_args"]["augment"] == {**asdict(HandAugment()), "landmark_jitter": 0.05}
    assert fit_config([*recipe, "--data.init_args.augment", "null"])["data"]["init_args"]["augment"] is None


def test_landmark_batches_are_indexed_whole_and_moved_without_walking_their_paths(tmp_path):
    """The landmark loader's batches (one tensor index per batch) equal the per-sample collation, and the
    datamodule's device transfer moves their tensors and keeps their paths."""
    import numpy as np
    import torch
    from torch.utils.data import default_collate

    from signbridge.data.sign import SignImageDataset, collate_batched

    count = 10
    dataset = SignImageDataset(tmp_path, [f"{i}.jpg" for i in range(count)], list(range(count)),
                               np.random.default_rng(0).random((count, 2, 21, 3)), np.ones((count, 2), bool),
                               np.full((count, 2), 64), image_size=None)
    indices = [3, 1, 7]
    whole = collate_batched(dataset.__getitems__(indices))
    expected = default_collate([dataset[i] for i in indices])
    assert whole.keys() == expected.keys() and whole["path"] == expected["path"] == ["3.jpg", "1.jpg", "7.jpg"]
    for key in ("landmarks", "present", "aspect", "label"):
        assert torch.equal(whole[key], expected[key]) and whole[key].dtype == expected[key].dtype
    from signbridge.data import LandmarkDataModule

    moved = LandmarkDataModule(str(tmp_path)).transfer_batch_to_device(
        {**whole, "nested": {"x": torch.ones(2)}}, torch.device("cpu"), 0)
    assert moved["path"] is whole["path"] and torch.equal(moved["nested"]["x"], torch.ones(2))


def test_batches_per_step_yields_the_same_batches_as_lists(tmp_path):
    """With ``batches_per_step`` a training loader yields lists of batches that are, in order, the batches the loader
    yields without it (same seed): the last incomplete batch still dropped, a short last list, the tensors of each
    batch moved; a datamodule that reads files for its batches refuses it."""
    import numpy as np
    import torch

    from signbridge.data import LandmarkDataModule
    from signbridge.data.base import BatchList
    from signbridge.data.sign import SignImageDataset
    from signbridge.errors import InputError

    count = 23  # batches of 4: five whole ones and three samples dropped
    dataset = SignImageDataset(tmp_path, [f"{i}.jpg" for i in range(count)], list(range(count)),
                               np.random.default_rng(0).random((count, 2, 21, 3)), np.ones((count, 2), bool),
                               np.full((count, 2), 64), image_size=None)

    def epoch(per_step: int) -> list:
        data = LandmarkDataModule(str(tmp_path), batch_size=4, batches_per_step=per_step, augment=None)
        data.datasets["train"] = dataset
        torch.manual_seed(0)
        return list(data.train_dataloader())

    single, lists = epoch(1), epoch(2)
    assert [len(item) for item in lists] == [2, 2, 1]
    flat = [batch for item in lists for batch in item]
    assert len(flat) == len(single) == 5
    for ours, theirs in zip(flat, single):
        assert ours["path"] == theirs["path"] and torch.equal(ours["landmarks"], theirs["landmarks"])
    # a list of samples (no __getitems__) is cut, then each batch collated
    samples = BatchList(4, drop_last=False, collate_fn=None)([{"label": torch.tensor(i)} for i in range(6)])
    assert [batch["label"].tolist() for batch in samples] == [[0, 1, 2, 3], [4, 5]]
    assert BatchList(4, True, None).batches_in(23) == 5 and BatchList(4, False, None).batches_in(23) == 6

    data = LandmarkDataModule(str(tmp_path), batch_size=4, batches_per_step=2)
    moved = data.transfer_batch_to_device(lists[0], torch.device("cpu"), 0)
    assert isinstance(moved, list) and moved[1]["path"] is lists[0][1]["path"]
    with pytest.raises(InputError, match="batches_per_step=2: SignDataModule reads files"):
        SignDataModule(str(tmp_path), batches_per_step=2)


def test_eval_batch_size_batches_evaluation_only(tmp_path):
    """``eval_batch_size`` sizes the validation, test and predict batches; training keeps ``batch_size``."""
    import numpy as np

    from signbridge.data import LandmarkDataModule
    from signbridge.data.sign import SignImageDataset
    from signbridge.errors import InputError

    count = 23
    dataset = SignImageDataset(tmp_path, [f"{i}.jpg" for i in range(count)], list(range(count)),
                               np.random.default_rng(0).random((count, 2, 21, 3)), np.ones((count, 2), bool),
                               np.full((count, 2), 64), image_size=None)
    for eval_batch_size, evaluated in ((None, [4] * 5 + [3]), (10, [10, 10, 3])):
        data = LandmarkDataModule(str(tmp_path), batch_size=4, eval_batch_size=eval_batch_size, augment=None)
        data.datasets.update(train=dataset, val=dataset, test=dataset)
        assert [len(batch["label"]) for batch in data.train_dataloader()] == [4] * 5
        for loader in (data.val_dataloader(), data.test_dataloader()):
            assert [len(batch["label"]) for batch in loader] == evaluated
    with pytest.raises(InputError, match="eval_batch_size"):
        LandmarkDataModule(str(tmp_path), eval_batch_size=0)
