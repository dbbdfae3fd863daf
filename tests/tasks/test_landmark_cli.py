"""The landmark-only classifier through the real LightningCLI, on the landmarks of real Sign Language Digits photos."""

import json
from pathlib import Path

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from signbridge.cli import main
from signbridge.data import LandmarkDataModule, SignDataModule
from signbridge.errors import InputError
from signbridge.tasks import LandmarkClassifier
from tests.conftest import REPO


def _args(tmp_path: Path, root: Path, cache: Path, *extra: str) -> list[str]:
    return ["--config", str(REPO / "configs" / "sign_landmarks.yaml"), "--data.init_args.root", str(root),
            "--data.init_args.landmarks_file", str(cache), "--data.init_args.batch_size", "8",
            "--data.init_args.val_fraction", "0.25", "--data.init_args.test_fraction", "0.25",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "3", *extra]


def test_fit_and_test_without_reading_an_image(tmp_path, digits_subset, digits_cache, monkeypatch):
    import signbridge.data.sign as sign

    def no_images(path):
        raise AssertionError(f"landmark-only training decoded {path}")

    monkeypatch.setattr(sign, "read_image_rgb", no_images)
    cli = main(["fit", *_args(tmp_path, digits_subset, digits_cache)])
    assert cli.model.hparams.num_classes == 4
    assert {"train_loss_epoch", "val_loss", "val_acc", "val_f1_macro"} <= set(cli.trainer.callback_metrics)
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    metadata = json.loads((best.parent / "model.json").read_text())
    assert metadata["classes"] == ["0", "1", "2", "3"] and metadata["monitor"] == "val_loss"
    assert metadata["task"].endswith("LandmarkClassifier")

    tested = main(["test", *_args(tmp_path, digits_subset, digits_cache), "--ckpt_path", str(best)])
    assert 0.0 <= float(tested.trainer.callback_metrics["test_acc"]) <= 1.0
    reloaded = LandmarkClassifier.load_from_checkpoint(best, weights_only=True).eval()
    batch = next(iter(tested.datamodule.test_dataloader()))
    assert "image" not in batch
    with torch.no_grad():
        assert reloaded(batch).shape == (len(batch["label"]), 4)

    # the logged test scores are torchmetrics' scores of the checkpoint's predictions on the whole test split
    with torch.no_grad():
        batches = list(tested.datamodule.test_dataloader())
        logits = torch.cat([reloaded(b) for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    logged = tested.trainer.callback_metrics
    expected = {
        "test_acc": MulticlassAccuracy(4, average="micro")(logits, labels),
        "test_top5": MulticlassAccuracy(4, top_k=4, average="micro")(logits, labels),
        "test_f1_macro": MulticlassF1Score(4, average="macro")(logits, labels),
        "test_loss": torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1),
    }
    for name, value in expected.items():
        assert torch.isclose(logged[name].float(), value.float(), atol=1e-5), (name, logged[name], value)


def test_landmark_and_image_datamodules_split_alike(digits_subset, digits_cache):
    kwargs = {"landmarks_file": str(digits_cache), "num_folds": 3, "fold": 1, "num_workers": 0}
    landmarks = LandmarkDataModule(str(digits_subset), **kwargs)
    images = SignDataModule(str(digits_subset), image_size=32, **kwargs)
    for data in (landmarks, images):
        data.prepare_data()
        data.setup("fit")
        data.setup("test")
    for split in ("train", "val", "test"):
        assert landmarks.datasets[split].paths == images.datasets[split].paths, split


def test_resume_from_last_continues_in_the_same_run_folder(tmp_path, digits_subset, digits_cache):
    first = main(["fit", *_args(tmp_path, digits_subset, digits_cache), "--trainer.max_epochs", "2"])
    run = Path(first.trainer.log_dir)
    last = run / "checkpoints" / "last.ckpt"
    resumed = main(["fit", *_args(tmp_path, digits_subset, digits_cache), "--trainer.max_epochs", "4",
                    "--ckpt_path", str(last)])
    assert Path(resumed.trainer.log_dir) == run and sorted(p.name for p in run.parent.iterdir()) == [run.name]
    # the recipe's batches_per_step: the optimizer steps are counted on from the checkpoint
    assert resumed.trainer.global_step == 2 * first.trainer.global_step > 0
    metadata = json.loads((run / "checkpoints" / "model.json").read_text())
    assert metadata["epochs"] == 4 and [row["epoch"] for row in metadata["history"]] == [0, 1, 2, 3]
    best = resumed.trainer.checkpoint_callback
    assert Path(best.best_model_path).parent == run / "checkpoints" and Path(best.best_model_path).exists()
    assert metadata["checkpoint"] == Path(best.best_model_path).name
    assert metadata["best"]["val_loss"] == min(row["val_loss"] for row in metadata["history"])


def test_several_batches_per_step_take_the_optimizer_steps_of_one_batch_per_step(tmp_path, digits_subset,
                                                                                   digits_cache):
    """The recipe's ``batches_per_step`` (32: an epoch of 3 batches in one Lightning step), and 2 (a list of 2, then
    of 1), take the optimizer steps and the per-step cosine schedule of one batch per step; an epoch-wise plateau
    schedule is stepped once per epoch; accumulating gradients is refused."""
    def fit(name: str, *extra: str):
        return main(["fit", *_args(tmp_path / name, digits_subset, digits_cache, *extra)])

    runs = {per_step: fit(str(per_step), "--data.init_args.batches_per_step", str(per_step)) for per_step in (1, 32)}
    runs[2] = fit("plateau", "--data.init_args.batches_per_step", "2", "--model.init_args.lr_schedule", "plateau")
    for per_step, cli in runs.items():
        trainer = cli.trainer
        assert cli.model.automatic_optimization == (per_step == 1), per_step
        assert trainer.global_step == 3 * 3, per_step  # 24 training photos, batches of 8, 3 epochs
        assert torch.isfinite(trainer.callback_metrics["train_loss_epoch"]), per_step
    schedules = {per_step: cli.trainer.lr_scheduler_configs[0].scheduler for per_step, cli in runs.items()}
    assert schedules[1].last_epoch == schedules[32].last_epoch == 9  # stepped after every optimizer step
    assert schedules[32].get_last_lr() == pytest.approx(schedules[1].get_last_lr())
    assert schedules[2].last_epoch == 3  # ReduceLROnPlateau: once per epoch, on val_loss
    with pytest.raises(InputError, match="cannot accumulate gradients"):
        fit("accumulate", "--trainer.accumulate_grad_batches", "2")
