"""Text-aligned sequence classifiers through the real LightningCLI: zero-shot on a tiny synthetic task whose class
names' vectors encode the sign (and the random-vector control that cannot), embeddings saved in the checkpoint,
prediction over other class names, and export with the embeddings."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from signbridge.cli import main
from signbridge.errors import InputError
from signbridge.inference import ExportedModel, InferenceModule
from signbridge.tasks.aligned import read_class_list
from signbridge.tasks.base import load_model
from tests.conftest import REPO, write_sequences

CONFIG = str(REPO / "configs" / "sign_sequences_text.yaml")
CLASSES = 12
TINY = ["--model.init_args.net.dim", "32", "--model.init_args.net.depth", "1", "--model.init_args.net.kernel_size",
        "5", "--model.init_args.net.num_heads", "2", "--model.init_args.net.dropout", "0.0",
        "--model.init_args.net.head_dropout", "0.0"]


def direction_vectors(path: Path, random: bool = False) -> Path:
    """Vectors of the synthetic signs: sign k moves its wrist in direction 2 pi k / 12, and its vector says so
    (cos, sin and their doubles), or, for the control, random vectors that say nothing."""
    rng = np.random.default_rng(7)
    lines = []
    for k in range(CLASSES):
        angle = 2 * math.pi * k / CLASSES
        values = rng.standard_normal(4) if random else [math.cos(angle), math.sin(angle), math.cos(2 * angle),
                                                        math.sin(2 * angle)]
        lines.append(" ".join([f"sign{k}", *(f"{v:.5f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(tmp_path: Path, root: Path, vectors: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--data.init_args.root", str(root), "--data.init_args.batch_size", "16",
            "--data.init_args.val_fraction", "0.2", "--data.init_args.test_fraction", "0.2",
            "--data.init_args.landmarks_file", str(tmp_path / "sequences.npz"), "--data.init_args.augment", "null",
            "--model.init_args.text.vectors", str(vectors), "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "30",
            "--model.init_args.warmup_epochs", "2", "--model.init_args.lr", "0.003", *TINY, *extra]


@pytest.fixture(scope="module")
def directions(tmp_path_factory) -> Path:
    return write_sequences(tmp_path_factory.mktemp("directions") / "signs", length=126, classes=CLASSES, per_class=6,
                           frames=10)


def _zero_shot(tmp_path: Path, root: Path, vectors: Path) -> tuple[dict[str, float], Path]:
    args = _args(tmp_path, root, vectors, "--data.init_args.unseen_classes", "3", "--data.init_args.unseen_seed",
                 "1")
    cli = main(["fit", *args])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    tested = main(["test", *args, "--ckpt_path", str(best)])
    return {name: float(value) for name, value in tested.trainer.callback_metrics.items()}, best


@pytest.fixture(scope="module")
def zero_shot_runs(tmp_path_factory, directions):
    tmp_path = tmp_path_factory.mktemp("zero_shot")
    meaningful = _zero_shot(tmp_path / "words", directions, direction_vectors(tmp_path / "words.txt"))
    control = _zero_shot(tmp_path / "random", directions, direction_vectors(tmp_path / "random.txt", random=True))
    return meaningful, control, tmp_path


def test_unseen_signs_are_named_from_their_vectors_and_random_vectors_cannot(zero_shot_runs):
    (words, _), (random, _), _ = zero_shot_runs
    assert {"test_unseen_acc", "test_unseen_top5", "test_seen_acc", "test_gzsl_seen_acc", "test_gzsl_unseen_acc",
            "test_gzsl_h", "test_acc"} <= set(words)
    # 3 unseen signs: chance is 1/3; the vectors that encode the movement name them, random vectors cannot
    assert words["test_unseen_acc"] >= 0.8, words
    assert random["test_unseen_acc"] <= words["test_unseen_acc"] - 0.3, (words, random)
    # both learn the seen classes (9: chance 0.11; 4-d random vectors separate them less well)
    assert words["test_seen_acc"] >= 0.8 and random["test_seen_acc"] >= 0.4, (words, random)


def test_the_checkpoint_keeps_its_classes_embeddings(zero_shot_runs, tmp_path):
    (_, best), _, run = zero_shot_runs
    checkpoint = torch.load(best, weights_only=True, map_location="cpu")
    names = checkpoint["class_names"]
    assert len(names) == CLASSES - 3 and checkpoint["state_dict"]["class_embeddings"].shape == (CLASSES - 3, 4)
    # moved to a machine without the vectors file: it still predicts its own classes
    moved = tmp_path / "moved.ckpt"
    checkpoint["hyper_parameters"]["text"]["vectors"] = str(tmp_path / "gone.txt")
    torch.save(checkpoint, moved)
    task = load_model(moved)
    batch = InferenceModule(task).contract.example_inputs(batch=3, frames=10)
    assert task.predict(batch).probabilities.shape == (3, CLASSES - 3)
    assert task.inference_contract().classes == names
    task.use_classes(["sign0", "sign6"])  # new names need their vectors
    with pytest.raises(InputError, match="word-vector file not found"):
        task.predict(batch)


def test_predict_and_test_over_other_class_names(zero_shot_runs, directions, tmp_path):
    (_, best), _, run = zero_shot_runs
    vectors = run / "words.txt"
    task = load_model(best)
    task.use_classes(["sign0", "sign3", "sign7"])
    batch = InferenceModule(task).contract.example_inputs(batch=2, frames=10)
    prediction = task.predict(batch)
    assert prediction.probabilities.shape == (2, 3) and set(prediction.labels) <= {"sign0", "sign3", "sign7"}
    # the CLI: predict over a typed list; test on a folder of other signs (all 12, 3 of them never trained on)
    output = tmp_path / "predictions.csv"
    args = _args(run / "words", directions, vectors)
    main(["predict", *args, "--ckpt_path", str(best), "--model.init_args.classes", "[sign1, sign2]",
          "--trainer.callbacks+=signbridge.lightning_callbacks.PredictionWriter",
          f"--trainer.callbacks.output={output}"])
    rows = list(csv.DictReader(output.open()))
    assert rows and {row["predicted_class"] for row in rows} <= {"sign1", "sign2"}
    # a folder of only the signs it never saw, every sequence tested: named from their vectors
    trained = set(torch.load(best, weights_only=True, map_location="cpu")["class_names"])
    others = tmp_path / "other_signs"
    for folder in directions.iterdir():
        if folder.name not in trained:
            shutil.copytree(folder, others / folder.name)
    other_args = _args(tmp_path, others, vectors)
    tested = main(["test", *other_args, "--ckpt_path", str(best), "--data.init_args.test_fraction", "1"])
    assert tested.model.class_names == tested.datamodule.classes and len(tested.model.class_names) == 3
    assert len(tested.datamodule.datasets["test"]) == 3 * 6
    assert float(tested.trainer.callback_metrics["test_acc"]) >= 0.8  # chance: 1/3
    with pytest.raises(InputError, match="there is no train split"):
        main(["fit", *other_args, "--data.init_args.test_fraction", "1"])


def test_export_carries_the_class_embeddings(zero_shot_runs, tmp_path):
    from signbridge.export import export_checkpoint

    (_, best), _, _ = zero_shot_runs
    report = export_checkpoint(best, tmp_path / "aligned.onnx")
    exported = ExportedModel(tmp_path / "aligned.onnx")
    task = load_model(best)
    assert exported.contract.classes == task.inference_contract().classes
    assert exported.contract.preprocessing["text"]["embedding_dim"] == 4
    inputs = exported.contract.example_inputs(batch=2, frames=13)
    np.testing.assert_allclose(exported.probabilities(inputs), InferenceModule(task).probabilities(inputs), atol=1e-4)
    assert report is not None


def test_a_class_list_file(tmp_path):
    (tmp_path / "names.txt").write_text("go\nthank you\n\n")
    assert read_class_list(tmp_path / "names.txt") == ["go", "thank you"]
    assert read_class_list(direction_vectors(tmp_path / "v.txt"))[:2] == ["sign0", "sign1"]
    with pytest.raises(InputError, match="class list not found"):
        read_class_list(tmp_path / "absent.txt")


def test_a_zero_shot_split_keeps_the_unseen_classes_out_of_training(tmp_path):
    from signbridge.data import SequenceDataModule
    from signbridge.tasks import SequenceClassifier

    root = write_sequences(tmp_path / "signs", length=126, classes=6, per_class=5, frames=4)
    data = SequenceDataModule(str(root), landmarks_file=str(tmp_path / "cache.npz"), unseen_classes=2, unseen_seed=3,
                              val_fraction=0.2, test_fraction=0.2)
    data.prepare_data()
    data.setup("fit")
    assert len(data.unseen_classes) == 2 and data.test_classes == data.classes + data.unseen_classes
    assert not set(data.unseen_classes) & set(data.classes)
    seen = len(data.classes)
    assert max(data.datasets["train"].labels) < seen and max(data.datasets["val"].labels) < seen
    test = data.datasets["test"].labels
    assert test.count(seen) == 5 and test.count(seen + 1) == 5 and any(label < seen for label in test)
    unseen_paths = {p for p, label in zip(data.datasets["test"].paths, test) if label >= seen}
    assert {p.split("/")[0] for p in unseen_paths} == set(data.unseen_classes)
    # the same draw again; a plain classifier scores only the classes it can name
    again = SequenceDataModule(str(root), landmarks_file=str(tmp_path / "cache.npz"), unseen_classes=2, unseen_seed=3)
    assert again.unseen_classes == data.unseen_classes
    plain = SequenceClassifier(num_classes=seen, parts=list(data.parts))
    batch = {"label": torch.tensor([0, seen, 1]), "points": torch.zeros(3, 2), "path": ["a", "b", "c"]}
    kept = plain.named_classes_only(batch)
    assert kept["label"].tolist() == [0, 1] and kept["path"] == ["a", "c"] and kept["points"].shape == (2, 2)


def test_a_trainable_character_encoder_learns_with_the_sign_model():
    from signbridge.tasks import TextAlignedSequenceClassifier

    task = TextAlignedSequenceClassifier(num_classes=3, parts=["left_hand", "right_hand"], embedding_dim=16,
                                         text={"encoder": "characters", "dim": 16},
                                         net={"dim": 32, "depth": 1, "kernel_size": 5, "num_heads": 2})
    task.class_names = task.training_names = ["go", "walk", "mother"]
    batch = InferenceModule(task).contract.example_inputs(batch=4, frames=6)
    task.train()
    loss, logits = task.model_step({**batch, "label": torch.tensor([0, 1, 2, 0])})
    assert logits.shape == (4, 3) and torch.isfinite(loss)
    loss.backward()
    assert task.text.embed.weight.grad is not None and task.text.embed.weight.grad.abs().sum() > 0
    # in eval it embeds names it never saw, from their characters alone
    task.eval()
    task.use_classes(["thank_you", "go"])
    assert task.predict(batch).probabilities.shape == (4, 2)
