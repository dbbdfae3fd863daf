"""The recognizer-guided restoration GAN, through the real LightningCLI on real captchas."""

from pathlib import Path

import lightning as L
import pytest
import torch

from signbridge.cli import main
from signbridge.data import TextImageDataModule
from signbridge.errors import InputError
from signbridge.tasks import FrozenRecognizer, RestorationGAN
from tests.conftest import REPO, console

CONFIGS = REPO / "configs"


def gan_args(tmp_path: Path, root: Path, recognizer: Path, *extra: str) -> list[str]:
    return ["--config", str(CONFIGS / "restoration_captcha.yaml"),
            "--config", str(CONFIGS / "restoration_captcha_smoke.yaml"),
            "--data.init_args.root", str(root), "--model.init_args.recognizer_checkpoint", str(recognizer),
            "--model.init_args.generator_channels", "8", "--model.init_args.discriminator_channels", "8",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1",
            *extra]


def tiny_gan(checkpoint: Path, **kwargs) -> RestorationGAN:
    return RestorationGAN(str(checkpoint), generator_channels=8, generator_blocks=1, discriminator_channels=8,
                          **kwargs)


def test_ctc_monitor_has_no_gradient_path(recognizer_checkpoint):
    gan = tiny_gan(recognizer_checkpoint)
    generated = gan.generator(torch.rand(2, 1, 32, 128))
    features = gan.recognizer.features(generated)
    assert features.requires_grad
    monitor = gan.ctc_monitor(features, {"targets": torch.tensor([1, 2, 3, 4, 5, 6]),
                                         "target_lengths": torch.tensor([3, 3])})
    assert monitor.grad_fn is None and not monitor.requires_grad and torch.isfinite(monitor)


class _Snapshot(L.Callback):
    """Recognizer weights before training; generator gradients after the last step."""

    def on_train_start(self, trainer, pl_module):
        self.recognizer = {k: v.clone() for k, v in pl_module.recognizer.state_dict().items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.generator_grad = sum(p.grad.abs().sum() for p in pl_module.generator.parameters() if p.grad is not None)
        self.recognizer_training = pl_module.recognizer.training


def test_training_leaves_the_recognizer_bit_identical(recognizer_checkpoint, captcha_subset):
    gan = tiny_gan(recognizer_checkpoint, warmup_epochs=0, rec_feat_loss_weight=1.0)
    optimised = {id(p) for opt in gan.configure_optimizers() for group in opt.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in gan.recognizer.parameters()}
    snapshot = _Snapshot()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, callbacks=[snapshot], enable_progress_bar=False)
    trainer.fit(gan, datamodule=TextImageDataModule(str(captcha_subset), degrade=True, batch_size=8, num_workers=0))
    after = gan.recognizer.state_dict()
    assert all(torch.equal(after[k], v) for k, v in snapshot.recognizer.items())  # BatchNorm statistics included
    assert not snapshot.recognizer_training
    assert snapshot.generator_grad > 0
    assert {"train_feat_loss", "train_ctc_monitor", "train_d_loss", "train_pixel_loss"} <= set(trainer.callback_metrics)


class _StepGradients(L.Callback):
    """The critic's gradients when each optimizer steps (manual optimization calls on_before_optimizer_step)."""

    def __init__(self):
        self.critic_grads: list[list[torch.Tensor]] = []
        self.generator_had_grad: list[bool] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.critic_grads.append([p.grad.clone() for p in pl_module.discriminator.parameters()])
        self.generator_had_grad.append(any(p.grad is not None for p in pl_module.generator.parameters()))


def test_each_loss_reaches_only_its_own_network(recognizer_checkpoint, captcha_subset):
    """Without toggle_optimizer: the critic's loss gives the generator no gradient, and the generator's adversarial
    term adds nothing to the critic's gradients (the critic is frozen for that forward, then trainable again)."""
    gan = tiny_gan(recognizer_checkpoint, warmup_epochs=0, rec_feat_loss_weight=1.0)
    steps = _StepGradients()
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, callbacks=[steps], enable_progress_bar=False)
    trainer.fit(gan, datamodule=TextImageDataModule(str(captcha_subset), degrade=True, batch_size=8, num_workers=0))
    (critic_at_critic_step, critic_at_generator_step) = steps.critic_grads
    assert steps.generator_had_grad == [False, True]
    assert any(g.abs().sum() > 0 for g in critic_at_critic_step)
    assert all(torch.equal(a, b) for a, b in zip(critic_at_critic_step, critic_at_generator_step))
    assert all(p.requires_grad for p in gan.discriminator.parameters())
    assert trainer.callback_metrics["train_adv_loss"] != 0 and torch.isfinite(trainer.callback_metrics["train_loss"])


def test_the_step_loss_is_written_at_every_logger_interval_across_epochs(recognizer_checkpoint, captcha_subset,
                                                                         tmp_path):
    """train_loss_step is logged on the steps Lightning writes (every 2nd of 6, over two epochs of 3 batches), not
    on steps counted within an epoch, whose values Lightning would drop."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    gan = tiny_gan(recognizer_checkpoint, warmup_epochs=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, limit_train_batches=3, limit_val_batches=0,
                        logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=2,
                        enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(gan, datamodule=TextImageDataModule(str(captcha_subset), degrade=True, batch_size=4, num_workers=0))
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(bool(row["train_loss_step"]) for row in rows) == 3
    assert sum(bool(row["train_loss"]) for row in rows) == 2  # the epoch means


def test_gan_fit_test_and_resume_through_the_cli(recognizer_checkpoint, captcha_subset, tmp_path):
    # a copy of the recognizer, deleted after the first fit: the GAN's checkpoints must not need it any more
    import shutil

    source = recognizer_checkpoint
    recognizer_checkpoint = tmp_path / "recognizer.ckpt"
    shutil.copy(source, recognizer_checkpoint)
    cli = main(["fit", *gan_args(tmp_path, captcha_subset, recognizer_checkpoint, "--trainer.max_epochs", "2")])
    metrics = cli.trainer.callback_metrics
    for name in ("train_ctc_monitor", "train_pixel_loss", "train_adv_loss", "val_psnr", "val_ssim",
                 "val_word_acc", "val_cer", "val_input_psnr", "val_clean_word_acc"):
        assert name in metrics, name
    assert metrics["train_ctc_weight"] == 0  # monitored, not trained on
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(cli.trainer.log_dir, size_guidance={"images": 0})
    events.Reload()
    samples = events.Images("val_samples")  # (degraded, generated, clean) per row, after every validation
    assert len(samples) == 2 and samples[-1].width > samples[-1].height
    last = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert len(checkpoint["optimizer_states"]) == 2 and checkpoint["epoch"] == 1
    assert any(k.startswith("recognizer.") for k in checkpoint["state_dict"])
    steps = cli.trainer.global_step
    recognizer_checkpoint.unlink()

    resumed = main(["fit", *gan_args(tmp_path, captcha_subset, recognizer_checkpoint, "--trainer.max_epochs", "3"),
                    "--ckpt_path", str(last)])
    # 2 batches per epoch; the warm-up epoch steps the generator only, later epochs both networks
    assert steps == 2 + 2 * 2
    assert resumed.trainer.current_epoch == 3 and resumed.trainer.global_step == steps + 2 * 2
    generator_state = resumed.trainer.optimizers[0].state
    assert generator_state and all(s["step"] == 3 * 2 for s in generator_state.values())  # Adam state resumed

    tested = main(["test", *gan_args(tmp_path, captcha_subset, recognizer_checkpoint), "--ckpt_path", str(last)])
    assert {"test_psnr", "test_ssim", "test_word_acc", "test_input_word_acc"} <= set(tested.trainer.callback_metrics)
    loaded = RestorationGAN.load_from_checkpoint(last, weights_only=True)
    trained = FrozenRecognizer.from_checkpoint(source).model.state_dict()
    assert all(torch.equal(loaded.recognizer.model.state_dict()[k], v) for k, v in trained.items())


def test_ctc_loss_weight_is_annealed_in(recognizer_checkpoint, captcha_subset, tmp_path):
    cli = main(["fit", *gan_args(tmp_path, captcha_subset, recognizer_checkpoint, "--trainer.max_epochs", "2",
                                 "--model.init_args.warmup_epochs", "0", "--model.init_args.ctc_loss_weight", "0.5",
                                 "--model.init_args.ctc_anneal_epochs", "4")])
    assert cli.trainer.callback_metrics["train_ctc_weight"] == pytest.approx(0.25)  # epoch 1 of a 4-epoch ramp


def test_restoration_checks_its_data(recognizer_checkpoint, captcha_subset):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False)
    with pytest.raises(InputError, match="degrade: true"):
        trainer.fit(tiny_gan(recognizer_checkpoint), datamodule=TextImageDataModule(str(captcha_subset), num_workers=0))
    with pytest.raises(InputError, match="upscales x1 but the data's degraded images are x2 smaller"):
        trainer.fit(tiny_gan(recognizer_checkpoint), datamodule=TextImageDataModule(
            str(captcha_subset), degrade=True, scales=(2,), keep_low_res=True, num_workers=0))


def test_gan_ddp_spawn_on_two_cpu_processes(recognizer_checkpoint, captcha_subset, tmp_path):
    cli = main(["fit", *gan_args(tmp_path, captcha_subset, recognizer_checkpoint, "--trainer.max_epochs", "2",
                                 "--trainer.strategy", "ddp_spawn_find_unused_parameters_true",
                                 "--trainer.devices", "2")])
    assert cli.trainer.world_size == 2
    assert (Path(cli.trainer.checkpoint_callback.best_model_path).parent / "last.ckpt").exists()
    assert "val_word_acc" in cli.trainer.callback_metrics


def test_missing_recognizer_checkpoint_is_one_line_from_the_shell(captcha_subset, tmp_path, capsys):
    result = console(capsys, "fit", *gan_args(tmp_path, captcha_subset, tmp_path / "missing.ckpt"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"signbridge: error: recognizer checkpoint not found: {tmp_path / 'missing.ckpt'}")


def test_a_fresh_gan_without_a_recognizer_is_a_clear_error():
    with pytest.raises(InputError, match="needs a trained recognizer"):
        RestorationGAN()
