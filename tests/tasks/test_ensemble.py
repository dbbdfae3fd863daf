"""EnsembleClassifier: N checkpoints of a classifier as one, through the real LightningCLI on real digits landmarks."""

import csv
import json
from pathlib import Path

import pytest
import torch

from signbridge.cli import main
from signbridge.errors import InputError
from signbridge.tasks import EnsembleClassifier, LandmarkClassifier
from signbridge.tasks.ensemble import fit_member_weights
from tests.tasks.test_landmark_cli import _args


@pytest.fixture(scope="module")
def landmark_checkpoints(tmp_path_factory, digits_subset, digits_cache) -> list[Path]:
    """Two landmark classifiers of the digits subset, trained with different seeds."""
    tmp_path = tmp_path_factory.mktemp("members")
    checkpoints = []
    for seed in (0, 1):
        cli = main(["fit", *_args(tmp_path / f"seed{seed}", digits_subset, digits_cache), "--seed_everything",
                    str(seed)])
        checkpoints.append(Path(cli.trainer.checkpoint_callback.best_model_path))
    return checkpoints


def ensemble_args(checkpoints: list[Path], **init_args) -> list[str]:
    spec = {"class_path": "EnsembleClassifier", "init_args": {"checkpoints": [str(c) for c in checkpoints],
                                                             **init_args}}
    return ["--model", json.dumps(spec)]


def test_an_ensemble_of_identical_checkpoints_equals_the_single_model(tmp_path, digits_subset, digits_cache,
                                                                      landmark_checkpoints):
    checkpoint = landmark_checkpoints[0]
    single = main(["test", *_args(tmp_path, digits_subset, digits_cache), "--ckpt_path", str(checkpoint)])
    for weights in ("mean", "fitted"):
        ensemble = main(["test", *_args(tmp_path, digits_subset, digits_cache),
                         *ensemble_args([checkpoint, checkpoint, checkpoint], weights=weights)])
        assert isinstance(ensemble.model, EnsembleClassifier)
        for key in ("test_acc", "test_f1_macro", "test_recall_min"):
            assert float(ensemble.trainer.callback_metrics[key]) == pytest.approx(
                float(single.trainer.callback_metrics[key]), abs=1e-6), (weights, key)
    member = LandmarkClassifier.load_from_checkpoint(checkpoint, weights_only=True).eval()
    batch = next(iter(single.datamodule.test_dataloader()))
    with torch.no_grad():
        combined = EnsembleClassifier([str(checkpoint)] * 2).eval()(batch)
        assert torch.allclose(combined, member(batch).log_softmax(-1), atol=1e-5)


def test_an_ensemble_of_different_seeds_tests_predicts_and_fits_its_weights(tmp_path, digits_subset, digits_cache,
                                                                            landmark_checkpoints):
    tested = main(["test", *_args(tmp_path, digits_subset, digits_cache),
                   *ensemble_args(landmark_checkpoints, weights="fitted", fit_thresholds=True)])
    weights = tested.model.member_weight
    assert weights.shape == (2,) and float(weights.sum()) == pytest.approx(1.0) and bool((weights >= 0).all())
    table = Path(tested.trainer.log_dir) / "test_per_class.csv"
    rows = list(csv.DictReader(table.open()))
    assert [row["class"] for row in rows] == ["0", "1", "2", "3"]
    worst = min(float(row["recall"]) for row in rows)
    assert float(tested.trainer.callback_metrics["test_recall_min"]) == pytest.approx(worst)
    # predict needs no --ckpt_path: the ensemble is built from its members' checkpoints
    output = tmp_path / "predictions.csv"
    main(["predict", *_args(tmp_path, digits_subset, digits_cache), *ensemble_args(landmark_checkpoints),
          "--prediction_writer.output", str(output), "--models_dir", str(tmp_path / "no_models")])
    predicted = list(csv.DictReader(output.open()))
    assert predicted and {row["predicted_class"] for row in predicted} <= {"0", "1", "2", "3"}
    with pytest.raises(InputError, match="not trained"):
        main(["fit", *_args(tmp_path, digits_subset, digits_cache), *ensemble_args(landmark_checkpoints)])


def test_fitted_member_weights_prefer_the_member_that_is_right():
    labels = torch.arange(4).repeat(25)
    right = torch.nn.functional.one_hot(labels, 4).float().mul(4).log_softmax(-1)
    wrong = torch.nn.functional.one_hot((labels + 1) % 4, 4).float().mul(4).log_softmax(-1)
    weights = fit_member_weights(torch.stack([wrong, right]), labels)
    assert weights[1] > 0.9 and float(weights.sum()) == pytest.approx(1.0)


def test_a_checkpoint_that_is_not_a_classifier_is_refused(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        EnsembleClassifier([str(tmp_path / "empty.ckpt")])
    with pytest.raises(InputError, match="at least one"):
        EnsembleClassifier([])
