"""The hybrid is not worse than its better branch when the other branch carries no information."""

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from signbridge.models import HybridSignNetConfig
from signbridge.tasks import HybridSignClassifier
from tests.conftest import synthetic_hand

CLASSES = 4


def _synthetic(n: int, informative: str, seed: int) -> list[dict]:
    """Class k: a hand with finger k bent towards the palm, and an image of brightness k; one of them is noise."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        label = i % CLASSES
        hand = synthetic_hand(rng)
        if informative == "landmarks":
            tip = 4 * (label + 1)
            hand[tip - 1:tip + 1] *= 0.3
        else:  # the landmarks of a random class: no information
            tip = 4 * (int(rng.integers(CLASSES)) + 1)
            hand[tip - 1:tip + 1] *= 0.3
        level = 40 + 50 * label if informative == "image" else int(rng.integers(40, 200))
        image = (torch.full((3, 16, 16), float(level)) + 12 * torch.randn(3, 16, 16)).clamp(0, 255).to(torch.uint8)
        landmarks = torch.zeros(2, 21, 3)
        landmarks[0] = torch.from_numpy(hand)
        items.append({"image": image, "landmarks": landmarks, "present": torch.tensor([True, False]),
                      "aspect": torch.tensor(1.0), "label": label})
    return items


class _Synthetic(L.LightningDataModule):
    classes = [str(k) for k in range(CLASSES)]

    def __init__(self, informative: str):
        super().__init__()
        self.splits = {name: _synthetic(n, informative, seed) for name, n, seed in
                       (("train", 160, 0), ("val", 80, 1), ("test", 200, 2))}

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=32, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=80)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=200)


@pytest.mark.parametrize("informative, noise", [("landmarks", "image"), ("image", "landmarks")])
def test_fusion_is_not_worse_than_the_informative_branch(informative, noise):
    torch.manual_seed(0)
    data = _Synthetic(informative)
    model = HybridSignClassifier(net=HybridSignNetConfig(backbone="test_efficientnet"), lr=3e-3)
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    assert model.hparams.num_classes == CLASSES  # taken from the data
    batch = next(iter(data.test_dataloader()))
    model.eval()
    with torch.no_grad():
        outputs = model.forward_outputs(batch)
    accuracy = {name: (logits.argmax(-1) == batch["label"]).float().mean().item() for name, logits in outputs.items()}
    assert accuracy[informative] > 0.9, accuracy  # the task is learnable from this branch
    assert accuracy[noise] < 0.6, accuracy  # and not from the other one
    # the chosen prediction is as good as the informative branch (within one test sample of 200)
    assert accuracy["logits"] >= accuracy[informative] - 0.005, (model.model.output, accuracy)
    assert model.model.output != noise


class _HalfWithoutHands(_Synthetic):
    """The landmarks tell the class and the image is noise, except in every other sample: no hand was detected there
    (zero landmarks) and the image tells the class."""

    def __init__(self):
        L.LightningDataModule.__init__(self)
        self.splits = {}
        for name, n, seed in (("train", 240, 0), ("val", 120, 1), ("test", 200, 2)):
            with_hands, from_images = _synthetic(n, "landmarks", seed), _synthetic(n, "image", seed + 10)
            self.splits[name] = [a if i % 2 else {**b, "landmarks": torch.zeros(2, 21, 3),
                                                  "present": torch.tensor([False, False])}
                                 for i, (a, b) in enumerate(zip(with_hands, from_images))]


def test_photos_without_a_hand_get_the_classifier_that_reads_them():
    torch.manual_seed(0)
    data = _HalfWithoutHands()
    model = HybridSignClassifier(net=HybridSignNetConfig(backbone="test_efficientnet"), lr=3e-3)
    trainer = L.Trainer(max_epochs=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    batch = next(iter(data.test_dataloader()))
    model.eval()
    with torch.no_grad():
        predicted = model(batch).argmax(-1)
    has_hand = batch["present"].any(-1)
    correct = predicted == batch["label"]
    assert model.model.no_hand_output != "landmarks"  # it cannot tell a class without a hand
    # chance is 0.25; the image branch learns from only the half of the photos whose image is informative
    assert correct[has_hand].float().mean() > 0.9 and correct[~has_hand].float().mean() > 0.75, \
        (model.model.output, model.model.no_hand_output)
