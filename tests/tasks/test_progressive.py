"""Progressive training of the hybrid: stages, per-stage early stopping, and what checkpoints keep of it."""

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from signbridge.cli import main
from signbridge.data import SignDataModule
from signbridge.errors import InputError
from signbridge.models import HybridSignNetConfig
from signbridge.tasks import HybridSignClassifier
from signbridge.tasks.progressive import ProgressiveTraining, Stage
from tests.conftest import REPO


class _Probe(L.Callback):
    """Records, at every epoch start, what the stage set: learning rate, inputs, trained groups, BatchNorm mode."""

    def __init__(self):
        self.epochs = []

    def on_train_epoch_start(self, trainer, pl_module):
        model = pl_module.model
        bn = next(m for m in model.image.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
        self._bn, self._mean = bn, bn.running_mean.clone()
        self.epochs.append({
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "inputs": model.active_inputs,
            "trained": {name: all(p.requires_grad for m in mods for p in m.parameters())
                        for name, mods in model.parameter_groups().items()},
            "backbone_training": bn.training,
        })

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[-1]["bn_changed"] = not torch.equal(self._bn.running_mean, self._mean)


def _tiny(**options) -> HybridSignNetConfig:
    return HybridSignNetConfig(backbone="test_efficientnet", **options)


def _data(digits_subset, digits_cache) -> SignDataModule:
    return SignDataModule(str(digits_subset), landmarks_file=str(digits_cache), image_size=32, batch_size=8,
                          num_workers=0)


def _trainer(*callbacks, **kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(max_epochs=20, accelerator="cpu", logger=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=list(callbacks), **kwargs)


def test_each_stage_sets_its_learning_rate_groups_and_inputs(digits_subset, digits_cache):
    stages = [Stage("visual", 1, 1e-3, ["image", "head"], "image"),
              Stage("landmark", 1, 2e-3, ["landmarks", "head"], "landmarks"),
              Stage("fusion", 1, 3e-4, ["fusion", "head"]),
              Stage("end_to_end", 1, 5e-5)]
    probe = _Probe()
    model = HybridSignClassifier(4, _tiny(fusion="cross_attention"))
    trainer = _trainer(ProgressiveTraining(stages, patience=None), probe)
    trainer.fit(model, _data(digits_subset, digits_cache))
    seen = probe.epochs
    assert len(seen) == 4  # the run ends with the last stage although max_epochs is 20
    assert [e["lr"] for e in seen] == [1e-3, 2e-3, 3e-4, 5e-5]
    assert [e["inputs"] for e in seen] == ["image", "landmarks", "both", "both"]
    assert seen[0]["trained"] == {"image": True, "landmarks": False, "fusion": False, "head": True}
    assert seen[1]["trained"] == {"image": False, "landmarks": True, "fusion": False, "head": True}
    assert seen[2]["trained"] == {"image": False, "landmarks": False, "fusion": True, "head": True}
    assert all(seen[3]["trained"].values())
    # a frozen backbone keeps its BatchNorm statistics; a trained one updates them
    assert [e["backbone_training"] for e in seen] == [True, False, False, True]
    assert [e["bn_changed"] for e in seen] == [True, False, False, True]
    assert model.model.active_inputs == "both" and all(p.requires_grad for p in model.parameters())


def test_a_stage_ends_early_when_the_monitor_stops_improving(digits_subset, digits_cache):
    # min_delta so large that only the first epoch of a stage counts as an improvement: with patience 2 each stage
    # lasts 3 epochs of its 6
    stages = [Stage("visual", 6, 1e-3, ["image", "head"], "image"), Stage("end_to_end", 6, 1e-4)]
    probe = _Probe()
    trainer = _trainer(ProgressiveTraining(stages, patience=2, min_delta=1e9), probe)
    trainer.fit(HybridSignClassifier(4, _tiny()), _data(digits_subset, digits_cache))
    assert [e["inputs"] for e in probe.epochs] == ["image"] * 3 + ["both"] * 3
    assert [e["lr"] for e in probe.epochs][2:4] == [1e-3, 1e-4]


def test_checkpoints_keep_the_stage_and_its_inputs_and_a_resumed_run_goes_on(tmp_path, digits_subset, digits_cache):
    stages = [Stage("visual", 2, 1e-3, ["image", "head"], "image"), Stage("end_to_end", 2, 1e-4)]
    saver = ModelCheckpoint(tmp_path, filename="{epoch}", save_top_k=-1)
    trainer = _trainer(ProgressiveTraining(stages, patience=None), saver, enable_checkpointing=True)
    trainer.fit(HybridSignClassifier(4, _tiny()), _data(digits_subset, digits_cache))
    # epoch 0 was saved during the image-only stage: evaluated later, it must still read the image alone
    first = HybridSignClassifier.load_from_checkpoint(tmp_path / "epoch=0.ckpt", weights_only=True)
    assert first.model.active_inputs == "image"
    last = HybridSignClassifier.load_from_checkpoint(tmp_path / "epoch=3.ckpt", weights_only=True)
    assert last.model.active_inputs == "both"

    # resuming from the end of the first stage continues with the second stage, not from the beginning
    probe = _Probe()
    resumed = _trainer(ProgressiveTraining(stages, patience=None), probe)
    resumed.fit(HybridSignClassifier(4, _tiny()), _data(digits_subset, digits_cache),
                ckpt_path=tmp_path / "epoch=1.ckpt")
    assert [e["inputs"] for e in probe.epochs] == ["both", "both"]
    assert probe.epochs[0]["lr"] == 1e-4
    with pytest.raises(InputError, match="other progressive-training stages"):
        _trainer(ProgressiveTraining([Stage("other", 4, 1e-3)], patience=None)).fit(
            HybridSignClassifier(4, _tiny()), _data(digits_subset, digits_cache),
            ckpt_path=tmp_path / "epoch=1.ckpt")


def test_refuses_a_second_early_stopping_and_ddp_without_unused_parameter_detection():
    from lightning.pytorch.strategies import DDPStrategy

    model = HybridSignClassifier(3, _tiny())
    with pytest.raises(InputError, match="remove the EarlyStopping callback"):
        ProgressiveTraining().setup(_trainer(EarlyStopping("val_loss")), model, "fit")
    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=DDPStrategy(), logger=False)
    with pytest.raises(InputError, match="ddp_find_unused_parameters_true"):
        ProgressiveTraining().setup(trainer, model, "fit")


def test_the_progressive_config_runs_through_the_cli(tmp_path, digits_subset, digits_cache):
    configs = REPO / "configs"
    cli = main([
        "fit", "--config", str(configs / "sign_digits_hybrid.yaml"), "--config", str(configs / "trainer" / "cpu.yaml"),
        "--config", str(configs / "sign_digits_progressive.yaml"),
        "--data.init_args.root", str(digits_subset), "--data.init_args.landmarks_file", str(digits_cache),
        "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
        "--model.init_args.net.backbone", "test_efficientnet", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "2",
    ])
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, ProgressiveTraining))
    assert callback.patience == 10 and [s.name for s in callback.stages][0] == "visual"
    assert not any(isinstance(c, EarlyStopping) for c in cli.trainer.callbacks)
    assert Path(cli.trainer.checkpoint_callback.best_model_path).exists()
    assert cli.model.model.active_inputs == "image"  # 2 epochs: still in the visual stage
