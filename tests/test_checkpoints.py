"""``LastCheckpoint``: last.ckpt at an interval of time, and always at the end of a fit."""

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from signbridge.errors import InputError
from signbridge.lightning_callbacks import LastCheckpoint


class LastEpochSeen(L.Callback):
    """The epoch stored in last.ckpt at the start of every epoch."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(torch.load(self.path, weights_only=True)["epoch"] if self.path.exists() else None)


@pytest.mark.parametrize("min_interval_s, stored", [(0, [None, 0, 1, 2]), (3600, [None, 0, 0, 0])])
def test_last_checkpoint_saves_at_its_interval_and_at_the_end(tmp_path, min_interval_s, stored):
    last = tmp_path / "checkpoints" / "last.ckpt"
    seen = LastEpochSeen(last)
    trainer = L.Trainer(max_epochs=4, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[seen, LastCheckpoint(min_interval_s, dirpath=str(tmp_path / "checkpoints"))])
    trainer.fit(BoringModel())
    assert seen.seen == stored  # the first epoch's end always saves; an hour's interval none after it
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == trainer.global_step == 8  # the end of the fit, whatever the interval
    # it continues from there
    resumed = L.Trainer(max_epochs=5, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[LastCheckpoint(min_interval_s, dirpath=str(tmp_path / "checkpoints"))])
    resumed.fit(BoringModel(), ckpt_path=str(last))
    assert resumed.global_step == 10 and torch.load(last, weights_only=True)["global_step"] == 10


def test_last_checkpoint_refuses_a_negative_interval():
    with pytest.raises(InputError, match="min_interval_s must be >= 0"):
        LastCheckpoint(-1)


def test_last_checkpoint_under_two_process_ddp(tmp_path):
    # every process takes rank 0's decision (a save waits for all of them: diverging clocks would hang the fit)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=3, limit_train_batches=2,
                        limit_val_batches=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path,
                        callbacks=[LastCheckpoint(3600, dirpath=str(tmp_path / "checkpoints"))])
    trainer.fit(BoringModel())
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6  # the end of the fit: 3 epochs of 2 batches per process
