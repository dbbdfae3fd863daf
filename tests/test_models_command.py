"""Saved models: metadata beside the checkpoint, the models folder, and predict with the active model."""

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from signbridge.cli import main
from signbridge.lightning_callbacks import PredictionWriter
from signbridge.metadata import activate_model, active_model, find_models, models_table, read_metadata
from signbridge.tasks import ATKClassifier
from tests.conftest import REPO, console

ATK = str(REPO / "configs" / "atk_cnn.yaml")


def atk_args(root: Path, runs: Path, *extra: str) -> list[str]:
    # the model's num_classes and image_size are taken from the data
    return ["--config", ATK, "--data.init_args.root", str(root), "--data.init_args.image_size", "24",
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false", *extra]


def test_fit_writes_metadata_and_predict_uses_the_active_model(tmp_path, digits_folder):
    runs = tmp_path / "runs"
    cli = main(["fit", *atk_args(digits_folder, runs, "--trainer.max_epochs", "3")])
    checkpoint = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert not any(isinstance(c, PredictionWriter) for c in cli.trainer.callbacks)  # predict's only
    metadata = read_metadata(checkpoint.parent / "model.json")
    assert metadata["checkpoint"] == checkpoint.name and metadata["classes"] == ["0", "1", "2", "3"]
    assert metadata["task"] == "signbridge.tasks.atk.ATKClassifier" and metadata["monitor"] == "val_acc"
    assert metadata["best"]["val_acc"] == pytest.approx(float(cli.trainer.checkpoint_callback.best_model_score))
    assert [row["epoch"] for row in metadata["history"]] == [0, 1, 2]
    best_epoch = metadata["best"]["epoch"]
    assert metadata["history"][best_epoch]["val_acc"] == metadata["best"]["val_acc"]
    assert all(row["val_acc"] < metadata["best"]["val_acc"] for row in metadata["history"][:best_epoch])
    assert all("val_acc" in row and "train_loss_epoch" in row for row in metadata["history"])
    assert metadata["history"][-1]["val_acc"] == pytest.approx(metadata["final"]["val_acc"])
    assert metadata["hyperparameters"]["filters1"] == 32 and metadata["epochs"] == 3
    assert metadata["data"]["split_sizes"] == {"train": 44, "val": 4}
    assert metadata["data"]["root"] == str(digits_folder)
    assert {"torch", "lightning", "python", "signbridge"} <= set(metadata["versions"]) and metadata["created"]
    saved = yaml.safe_load((checkpoint.parent / metadata["config"]).read_text())  # the config the fit ran
    assert saved["trainer"]["max_epochs"] == 3 and saved["data"]["init_args"]["root"] == str(digits_folder)
    assert saved["model"]["class_path"].endswith(".ATKClassifier")
    assert saved["model"]["init_args"]["filters1"] == 32 and saved["data"]["init_args"]["image_size"] == 24

    second = main(["fit", *atk_args(digits_folder, runs, "--trainer.max_epochs", "1", "--model.init_args.units", "32")])
    assert len(find_models(runs)) == 2
    assert active_model(runs) is None
    with pytest.raises(Exception, match="models activate"):
        main(["predict", *atk_args(digits_folder, runs), "--models_dir", str(runs),
              "--data.init_args.predict_root", str(digits_folder / "1")])
    activate_model(runs, "2")
    assert "*" in models_table(runs).splitlines()[3]
    small = tmp_path / "small.csv"  # units=32 is not the config's size: predict builds the model from the checkpoint
    main(["predict", *atk_args(digits_folder, runs), "--models_dir", str(runs),
          "--data.init_args.predict_root", str(digits_folder / "1"), "--prediction_writer.output", str(small)])
    assert len(small.read_text().splitlines()) == 13
    activate_model(runs, "1")
    assert active_model(runs) == checkpoint.parent / "model.json"
    assert "*" in models_table(runs).splitlines()[2]

    output = tmp_path / "predictions.csv"
    predicted = main(["predict", *atk_args(digits_folder, runs), "--models_dir", str(runs),
                      "--data.init_args.predict_root", str(digits_folder / "1"), "--prediction_writer.output",
                      str(output)])
    assert [c.output for c in predicted.trainer.callbacks if isinstance(c, PredictionWriter)] == [str(output)]
    with open(output) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    model = ATKClassifier.load_from_checkpoint(checkpoint, weights_only=True).eval()
    from signbridge.data import ImageFolderDataModule

    data = ImageFolderDataModule(str(digits_folder), image_size=24, num_workers=0,
                                 predict_root=str(digits_folder / "1"))
    data.setup("predict")
    batch = next(iter(torch.utils.data.DataLoader(data.datasets["predict"], batch_size=12)))
    with torch.no_grad():
        probabilities = model(batch).softmax(-1)
    for row, p in zip(rows, probabilities):
        assert row["predicted_class"] == model.class_names[int(p.argmax())]
        assert float(row["probability"]) == pytest.approx(float(p.max()), abs=1e-5)
    assert second.trainer.checkpoint_callback.best_model_path != str(checkpoint)


def test_models_command_line(tmp_path, digits_folder, capsys):
    runs = tmp_path / "runs"
    main(["fit", *atk_args(digits_folder, runs, "--trainer.max_epochs", "1")])

    def run(*args):
        return console(capsys, "models", *args)

    listed = run("list", str(runs))
    assert listed.returncode == 0 and "atk_cnn/version_0" in listed.stdout and "ATKClassifier" in listed.stdout
    shown = run("show", str(runs), "1")
    assert json.loads(shown.stdout)["classes"] == ["0", "1", "2", "3"]
    activated = run("activate", str(runs), "atk_cnn/version_0/checkpoints")
    assert activated.returncode == 0 and "active model" in activated.stdout
    missing = run("show", str(runs), "7")
    assert missing.returncode == 2 and "no model number 7" in missing.stderr and "Traceback" not in missing.stderr
