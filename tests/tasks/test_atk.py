"""The tunable CNN's task: settings it takes from the data."""

import lightning as L
import pytest

from signbridge.data import ImageFolderDataModule
from signbridge.errors import InputError
from signbridge.tasks import ATKClassifier


def _fit(model, root):
    data = ImageFolderDataModule(str(root), image_size=24, batch_size=8, num_workers=0)
    L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_train_batches=2, limit_val_batches=1).fit(model, data)


def test_image_size_and_class_count_come_from_the_data(digits_folder):
    model = ATKClassifier(filters1=8, filters2=8, units=16)
    assert model.model is None  # built once the data is known
    _fit(model, digits_folder)
    assert model.hparams.image_size == 24 and model.hparams.num_classes == 4
    # 24 px -> 22 -> 11 -> 9 -> 4: the dense layer was sized for the data's images
    assert model.model.head[1].in_features == 8 * 4 * 4


def test_an_image_size_that_disagrees_with_the_data_is_a_clear_error(digits_folder):
    with pytest.raises(InputError, match="image_size=32 but the data gives 24"):
        _fit(ATKClassifier(image_size=32, filters1=8, filters2=8, units=16), digits_folder)


def test_the_imbalance_settings_work_for_the_cnn_too(digits_folder, tmp_path):
    from collections import Counter

    data = ImageFolderDataModule(str(digits_folder), image_size=24, batch_size=8, num_workers=0,
                                 test_fraction=0.2, train_per_class=[12, 6, 3, 2], sampling="oversample")
    data.setup("fit")
    counts = Counter(data.datasets["train"].labels)
    assert len(counts) == 4 and len(set(counts.values())) == 1  # every class oversampled to the largest
    assert len(set(data.datasets["train"].paths)) < sum(counts.values())
    model = ATKClassifier(filters1=8, filters2=8, units=16, loss="focal", class_weights="balanced",
                          fit_thresholds=True)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert "val_f1_macro_thresholds" in trainer.callback_metrics
    assert model.logit_bias.shape == (4,)
    tested = trainer.test(model, data)[0]
    assert {"test_f1_macro", "test_recall_min"} <= set(tested)
    assert (tmp_path / "test_per_class.csv").exists()
