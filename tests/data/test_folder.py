import pytest
import torch

from signbridge.data import ImageFolderDataModule
from signbridge.models import ATKCNN


def test_image_folder_split_batches_and_unreadable_files(digits_folder, caplog):
    dm = ImageFolderDataModule(str(digits_folder), image_size=40, batch_size=5, num_workers=0)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert "leaving out 1 unreadable images" in caplog.text and "3/broken.jpg" in caplog.text
    assert dm.split_sizes() == {"train": 44, "val": 4}  # 90/10 of 48 readable photos, one per class in val
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 40, 40) and batch["image"].dtype == torch.uint8
    with_test = ImageFolderDataModule(str(digits_folder), image_size=40, test_fraction=0.25, num_workers=0)
    with_test.setup("fit")
    assert with_test.split_sizes() == {"train": 32, "val": 4, "test": 12}


def test_atk_cnn_matches_the_seed_shapes():
    model = ATKCNN(num_classes=7, filters1=32, filters2=64, units=128, dropout=0.3, image_size=300)
    # 300 -> conv 298 -> pool 149 -> conv 147 -> pool 73
    assert model.head[1].in_features == 64 * 73 * 73
    logits = model(torch.randint(0, 256, (2, 3, 300, 300), dtype=torch.uint8))
    assert logits.shape == (2, 7)
    with pytest.raises(ValueError, match="too small"):
        ATKCNN(3, image_size=8)


def test_every_classification_datamodule_has_the_k_fold_split(digits_folder):
    # num_folds/fold are declared once, in ClassificationDataModule, and reach the image-folder module too
    tests = []
    for fold in range(4):
        dm = ImageFolderDataModule(str(digits_folder), image_size=24, num_folds=4, fold=fold, num_workers=0)
        dm.setup("fit")
        parts = {name: set(dataset.paths) for name, dataset in dm.datasets.items()}
        assert set(parts) == {"train", "val", "test"} and len(parts["test"]) == 12
        assert not (parts["test"] & parts["train"]) and not (parts["test"] & parts["val"])
        tests.append(parts["test"])
    assert len(set.union(*tests)) == 48  # the test folds cover every readable photo once
