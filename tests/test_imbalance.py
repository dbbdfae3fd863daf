"""Imbalanced classes: focal loss, per-class training limits, oversampling, the class-balanced sampler (also under
2-process DDP) and per-class decision thresholds fitted on validation."""

import json
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from signbridge.data import LandmarkDataModule
from signbridge.data.splits import limit_per_class, oversample
from signbridge.losses import focal_loss
from signbridge.metrics import fit_logit_biases, macro_f1
from signbridge.tasks import LandmarkClassifier
from tests.conftest import synthetic_hand

COUNTS = (40, 12, 4)  # a long tail: training images of classes a, b, c


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_discounts_easy_samples():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 5) * 3, torch.randint(0, 5, (32,))
    weight = torch.rand(5) + 0.5
    for w in (None, weight):
        for smoothing in (0.0, 0.1):
            expected = F.cross_entropy(logits, labels, weight=w, label_smoothing=smoothing)
            assert torch.allclose(focal_loss(logits, labels, 0.0, w, smoothing), expected, atol=1e-6)
    easy = torch.tensor([[8.0, 0.0]])  # p_true close to 1
    hard = torch.tensor([[0.0, 0.5]])  # p_true below 0.5
    target = torch.tensor([0])
    ratio_easy = focal_loss(easy, target, 2.0) / F.cross_entropy(easy, target)
    ratio_hard = focal_loss(hard, target, 2.0) / F.cross_entropy(hard, target)
    assert ratio_easy < 1e-6 < 0.3 < ratio_hard < 1


def test_per_class_limits_and_oversampling():
    labels = np.repeat([0, 1, 2], [50, 20, 5])
    indices = np.arange(len(labels))
    limited = limit_per_class(indices, labels, [30, 10, 3], seed=0)
    assert Counter(labels[limited].tolist()) == {0: 30, 1: 10, 2: 3}
    grown = oversample(limited, labels, 30, seed=0)
    assert Counter(labels[grown].tolist()) == {0: 30, 1: 30, 2: 30}
    assert set(grown.tolist()) == set(limited.tolist())  # only copies of the training images, nothing new
    copies = Counter(grown[labels[grown] == 2].tolist())
    assert sorted(copies.values()) == [10, 10, 10]  # whole copies first, every image as often as the others


def landmark_dataset(root: Path, counts=(50, 50, 50), spread: float = 0.02) -> Path:
    """A landmark cache of three classes of synthetic hands (no images are read by the landmark modules)."""
    from signbridge.hands.cache import LandmarkCache
    from signbridge.hands.detect import HandDetection

    rng = np.random.default_rng(0)
    rows = []
    for label, count in enumerate(counts):
        name = "abc"[label]
        (root / name).mkdir(parents=True)
        base = synthetic_hand(rng) * (1 + 0.3 * label)
        for i in range(count):
            path = f"{name}/{i}.png"
            (root / path).write_bytes(b"")  # listed, never decoded
            landmarks = np.zeros((2, 21, 3), np.float32)
            landmarks[0] = base + rng.normal(0, spread, base.shape)
            rows.append((path, HandDetection(landmarks, np.array([True, False]), np.ones(2, np.float32)), (64, 64), 0))
    LandmarkCache._from_rows(rows, {"complete": True}).save(root / "landmarks.npz")
    return root / "landmarks.npz"


class CachedLandmarks(LandmarkDataModule):
    """The landmark module on a cache the test wrote: nothing to detect (the files are empty placeholders)."""

    def prepare_data(self) -> None:
        pass


def imbalanced_data(root: Path, **kwargs) -> LandmarkDataModule:
    cache = landmark_dataset(root, counts=(80, 80, 80))
    return CachedLandmarks(str(root), landmarks_file=str(cache), train_per_class=list(COUNTS),
                           val_fraction=0.2, test_fraction=0.2, batch_size=8, num_workers=0, **kwargs)


def drawn_labels(data: LandmarkDataModule) -> Counter:
    data.setup("fit")
    return Counter(label for batch in data.train_dataloader() for label in batch["label"].tolist())


def test_the_balanced_sampler_and_oversampling_even_out_the_training_batches(tmp_path):
    shuffled = drawn_labels(imbalanced_data(tmp_path / "shuffle"))
    assert sum(shuffled.values()) == 56 and shuffled[0] > 3 * shuffled[1] > 9 * shuffled[2] / 1.5
    balanced = drawn_labels(imbalanced_data(tmp_path / "balanced", sampling="balanced"))
    assert sum(balanced.values()) == 56  # one epoch is as long as the training split
    assert all(10 <= balanced[k] <= 28 for k in range(3)), balanced  # about 56 / 3 each, not 40 / 12 / 4
    oversampled = imbalanced_data(tmp_path / "oversample", sampling="oversample")
    oversampled.setup("fit")
    assert Counter(oversampled.datasets["train"].labels) == {0: 40, 1: 40, 2: 40}
    assert Counter(oversampled.datasets["val"].labels) == {0: 16, 1: 16, 2: 16}  # validation untouched


class _LabelCounter(L.LightningModule):
    """Records the labels each process trains on."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.layer = torch.nn.Linear(1, 1)
        self.labels: list[int] = []

    def training_step(self, batch, batch_idx):
        self.labels += batch["label"].tolist()
        return self.layer(batch["landmarks"].float().mean((1, 2, 3))[:, None]).sum()

    def on_train_end(self):
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.labels))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_the_balanced_sampler_under_two_process_ddp(tmp_path):
    data = imbalanced_data(tmp_path / "data", sampling="balanced")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(_LabelCounter(str(tmp_path)), data)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3 * 24  # each process draws its half: 28 -> 3 batches of 8 per epoch
    counts = Counter(ranks[0] + ranks[1])
    assert all(counts[k] >= 30 for k in range(3)), counts  # about 48 each of 144, where shuffling gives 103 / 31 / 10
    assert ranks[0] != ranks[1]


def test_fitted_thresholds_raise_macro_f1_on_the_data_they_were_fitted_on():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (400,))
    logits = torch.randn(400, 4) + 2 * F.one_hot(labels, 4)
    logits[:, 3] -= 2.5  # a class the model under-predicts
    before = macro_f1(logits.argmax(1), labels, 4)
    bias = fit_logit_biases(logits, labels)
    after = macro_f1((logits + bias).argmax(1), labels, 4)
    assert after > before + 0.1
    assert bias[3] == bias.max()  # the under-predicted class gets the largest boost
    assert torch.equal(fit_logit_biases(F.one_hot(labels, 4).float() * 5, labels), torch.zeros(4))  # nothing to fix


def test_thresholds_round_trip_through_the_checkpoint_and_decide_test_and_predict(tmp_path):
    data = imbalanced_data(tmp_path / "data")
    task = LandmarkClassifier(fit_thresholds=True, lr=3e-3)
    trainer = L.Trainer(accelerator="cpu", max_epochs=4, default_root_dir=tmp_path, enable_progress_bar=False,
                        logger=False)
    trainer.fit(task, data)
    assert "val_f1_macro_thresholds" in trainer.callback_metrics
    path = tmp_path / "thresholds.ckpt"
    task.logit_bias.copy_(torch.tensor([0.0, 0.0, 50.0]))  # a bias that forces class c, to see it applied
    trainer.save_checkpoint(path)
    reloaded = LandmarkClassifier.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(reloaded.logit_bias, torch.tensor([0.0, 0.0, 50.0]))
    predictions = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).predict(
        reloaded, data.test_dataloader())
    assert {int(p) for batch in predictions for p in batch["predicted"]} == {2}
    ignored = LandmarkClassifier.load_from_checkpoint(path, weights_only=True, apply_thresholds=False)
    predictions = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).predict(
        ignored, data.test_dataloader())
    assert len({int(p) for batch in predictions for p in batch["predicted"]}) > 1
    tested = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path).test(
        reloaded, data)
    assert tested[0]["test_acc"] == pytest.approx(1 / 3, abs=0.01)  # every test sample called c
    assert (tmp_path / "test_per_class.csv").exists()  # in the trainer's folder, not the working directory


def test_thresholds_through_the_cli_model_json_and_the_switch_that_ignores_them(tmp_path, digits_subset, digits_cache):
    import csv

    from signbridge.cli import main
    from tests.tasks.test_landmark_cli import _args

    args = _args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "20")
    cli = main(["fit", *args, "--model.init_args.fit_thresholds", "true"])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    saved = torch.load(best, weights_only=True)
    metadata = json.loads((best.parent / "model.json").read_text())
    biases = saved["state_dict"]["logit_bias"]
    assert metadata["thresholds"] in (None, dict(zip("0123", (round(float(b), 6) for b in biases))))
    saved["state_dict"]["logit_bias"] = torch.tensor([0.0, 0.0, 50.0, 0.0])  # forces class 2, to see it applied
    forced = tmp_path / "forced.ckpt"
    torch.save(saved, forced)

    def predicted(*extra: str) -> set[str]:
        output = tmp_path / "predictions.csv"
        main(["predict", *args, "--ckpt_path", str(forced), "--prediction_writer.output", str(output), *extra])
        return {row["predicted_class"] for row in csv.DictReader(output.open())}

    assert predicted() == {"2"}
    # the checkpoint's saved settings replace the config's, but not what the command line says
    assert len(predicted("--model.init_args.apply_thresholds", "false")) > 1
    tested = main(["test", *args, "--ckpt_path", str(forced)])
    assert float(tested.trainer.callback_metrics["test_recall_min"]) == 0.0
