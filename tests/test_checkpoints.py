"""``LastCheckpoint``: last.ckpt at an interval of time, and always at the end of a fit; ``BufferedCheckpoint``: the
best checkpoints written at an interval, kept in memory in between."""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from signbridge.errors import InputError
from signbridge.lightning_callbacks import BufferedCheckpoint, LastCheckpoint


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


class ScriptedLoss(BoringModel):
    """A val_loss chosen per epoch: the best epochs are 0, 1, 3 and 5."""

    losses = [5.0, 3.0, 4.0, 2.0, 2.5, 1.0, 1.5]

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.losses[self.current_epoch])


class FolderSeen(L.Callback):
    """The best checkpoints on disk at the start of every epoch, and the best file that last.ckpt names."""

    def __init__(self, folder):
        self.folder, self.files, self.named_by_last = folder, [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.files.append(sorted(p.name for p in self.folder.glob("epoch*.ckpt")))
        last = self.folder / "last.ckpt"
        if last.exists():
            states = torch.load(last, weights_only=True)["callbacks"]
            self.named_by_last.append(next(s["best_model_path"] for key, s in states.items()
                                           if key.startswith("BufferedCheckpoint")))


def buffered_fit(folder, min_interval_s, *extra, epochs=7, ckpt_path=None, **trainer_args):
    L.seed_everything(0)
    best = BufferedCheckpoint(min_interval_s, monitor="val_loss", dirpath=str(folder), filename="epoch{epoch:03d}",
                              auto_insert_metric_name=False)
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder.parent,
                        callbacks=[best, *extra], **trainer_args)
    trainer.fit(ScriptedLoss(), ckpt_path=ckpt_path)
    return trainer, best


def test_buffered_checkpoint_keeps_better_epochs_in_memory_until_its_interval(tmp_path):
    seen = FolderSeen(tmp_path / "hour")
    _, best = buffered_fit(tmp_path / "hour", 3600, seen)
    # the first best is written at once; the better epochs 1 and 3 wait in memory, replaced by the next better one
    assert seen.files == [[], *[["epoch000.ckpt"]] * 6]
    assert sorted(p.name for p in (tmp_path / "hour").glob("*.ckpt")) == ["epoch005.ckpt"]  # at the end
    assert best.best_model_path.endswith("epoch005.ckpt") and float(best.best_model_score) == 1.0
    # what it wrote is what ModelCheckpoint writes at once: epoch 5's state, not the live one at the fit's end
    at_once, plain = buffered_fit(tmp_path / "zero", 0)
    assert plain.best_model_path.endswith("epoch005.ckpt")
    buffered = torch.load(best.best_model_path, weights_only=True)
    written = torch.load(plain.best_model_path, weights_only=True)
    assert buffered["global_step"] == written["global_step"] == 12
    assert buffered["state_dict"].keys() == written["state_dict"].keys()
    assert all(torch.equal(buffered["state_dict"][k], written["state_dict"][k]) for k in written["state_dict"])
    final = at_once.lightning_module.state_dict()
    assert not all(torch.equal(final[k].cpu(), written["state_dict"][k]) for k in final)  # trained on after it


def test_buffered_checkpoint_is_on_disk_whenever_last_ckpt_names_it(tmp_path):
    seen = FolderSeen(tmp_path)
    buffered_fit(tmp_path, 3600, LastCheckpoint(0, dirpath=str(tmp_path)), seen)
    assert len(seen.named_by_last) == 6
    for named, files in zip(seen.named_by_last, seen.files[1:]):
        assert files == [Path(named).name]  # the best last.ckpt records exists, and only it


def test_buffered_checkpoint_writes_what_it_kept_when_the_fit_fails(tmp_path):
    class FailAtEpoch4(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 4:
                raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        buffered_fit(tmp_path, 3600, FailAtEpoch4())
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["epoch003.ckpt"]  # the best before the failure


def test_buffered_checkpoint_refuses_what_it_cannot_do():
    with pytest.raises(InputError, match="min_interval_s must be >= 0"):
        BufferedCheckpoint(-1, monitor="val_loss")
    with pytest.raises(InputError, match="save_last"):
        BufferedCheckpoint(10, monitor="val_loss", save_last=True)


def test_buffered_checkpoint_under_two_process_ddp(tmp_path):
    buffered_fit(tmp_path / "checkpoints", 3600, epochs=5, accelerator="cpu", devices=2, strategy="ddp_spawn")
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")) == ["epoch003.ckpt"]


def test_buffered_checkpoint_continues_from_last_ckpt(tmp_path):
    buffered_fit(tmp_path, 3600, LastCheckpoint(3600, dirpath=str(tmp_path)), epochs=4)
    assert sorted(p.name for p in tmp_path.glob("epoch*.ckpt")) == ["epoch003.ckpt"]
    _, best = buffered_fit(tmp_path, 3600, LastCheckpoint(3600, dirpath=str(tmp_path)),
                           ckpt_path=str(tmp_path / "last.ckpt"))
    # the restored best (epoch 3) is replaced by epoch 5's once that is written, and deleted then
    assert sorted(p.name for p in tmp_path.glob("epoch*.ckpt")) == ["epoch005.ckpt"]
    assert best.best_model_path.endswith("epoch005.ckpt") and float(best.best_model_score) == 1.0
