"""The inference contract: saved in checkpoints and model.json, read once by ``load_model``, followed by export and
``Recognizer`` (a hybrid trained with a non-default interpolation), ``task.predict`` with thresholds, and a nested
model setting given on the command line with ``--ckpt_path``. Tiny models trained through the real CLI."""

import json
from pathlib import Path

import pytest
import torch

import signbridge as sb
from signbridge.cli import main
from signbridge.data.transforms import resize_square
from signbridge.errors import InputError
from signbridge.inference import ExportedModel, InferenceContract
from tests import forked
from tests.conftest import REPO, shared_dir
from tests.tasks.test_hybrid import cli_args as hybrid_args


@pytest.fixture(scope="module")
def nearest_hybrid(tmp_path_factory, digits_subset, digits_cache) -> Path:
    """A hybrid whose photos were resized with nearest-neighbour interpolation in training (bicubic is the default),
    and whose landmark branch differs from the recipe's (geometric features: other layer sizes)."""
    tmp = tmp_path_factory.mktemp("contract")
    cli = main(["fit", *hybrid_args(tmp, digits_subset, digits_cache), "--trainer.max_epochs", "1",
                "--data.init_args.interpolation", "nearest", "--model.init_args.select_output", "false",
                "--model.init_args.net.landmarks.use_geometry", "true"])
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def test_the_checkpoint_and_model_json_carry_the_contract(nearest_hybrid):
    saved = torch.load(nearest_hybrid, weights_only=True)
    contract = InferenceContract.from_dict(saved["inference"])
    assert contract.input_names == ("image", "landmarks", "present", "aspect")
    assert contract.preprocessing["image"] == {"size": 32, "interpolation": "nearest"}
    assert contract.preprocessing["hands"]["min_hand_detection_confidence"] == 0.5
    assert contract.classes == ["0", "1", "2", "3"]
    assert dict(zip(contract.input_names, (s.dtype for s in contract.inputs)))["image"] == "uint8"
    metadata = json.loads((nearest_hybrid.parent / "model.json").read_text())
    assert metadata["inference"] == saved["inference"]


def test_load_model_reads_the_checkpoint_once_and_predicts_with_thresholds(nearest_hybrid, monkeypatch):
    reads = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    model = sb.load_model(nearest_hybrid)
    assert reads == [nearest_hybrid] and not model.training
    monkeypatch.undo()
    batch = model.inference_contract().example_inputs(batch=5, seed=2)
    plain = model.predict(batch)
    assert len(plain.labels) == 5 and set(plain.labels) <= {"0", "1", "2", "3"}
    assert torch.allclose(plain.probabilities.sum(1), torch.ones(5), atol=1e-5)
    model.logit_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 60.0]))  # a threshold that decides every sample
    forced = model.predict(batch)
    assert forced.labels == ["3"] * 5 and model.inference_contract().thresholds == [0.0, 0.0, 0.0, 60.0]
    with pytest.raises(InputError, match="no image"):
        model.predict({k: v for k, v in batch.items() if k != "image"})


def test_export_and_recognizer_resize_as_the_model_was_trained(nearest_hybrid, tmp_path):
    report = sb.export_checkpoint(nearest_hybrid, tmp_path / "nearest.onnx")
    exported = ExportedModel(report.path)
    assert exported.contract.interpolation == "nearest" and exported.contract.image_size == 32
    frame = torch.randint(0, 256, (120, 160, 3), dtype=torch.uint8).numpy()
    made = exported.contract.frame_inputs(frame, _no_hands())
    nearest = resize_square(torch.from_numpy(frame).permute(2, 0, 1), 32, "nearest")
    bicubic = resize_square(torch.from_numpy(frame).permute(2, 0, 1), 32, "bicubic")
    assert torch.equal(made["image"][0], nearest) and not torch.equal(made["image"][0], bicubic)
    assert made["aspect"].item() == pytest.approx(160 / 120)
    # the Recognizer reads the same contract from the checkpoint and from the exported file (own process: MediaPipe
    # must not start in one that has trained, see HandDetector)
    probe = ("import sys; from signbridge import Recognizer\n"
             "for path in sys.argv[1:]:\n"
             "    with Recognizer(path) as r: print(r.contract.interpolation, r.contract.image_size, len(r.classes))")
    env_model = shared_dir("models", "hand_landmarker.task")
    done = forked.run(nearest_hybrid, report.path, code=probe, environ={
        "SIGNBRIDGE_HAND_LANDMARKER": str(env_model), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["nearest 32 4", "nearest 32 4"]


def _no_hands():
    from signbridge.hands.detect import HandDetection

    return HandDetection()  # a frame without a detected hand


def test_a_nested_model_setting_on_the_command_line_wins_over_the_checkpoint(nearest_hybrid, digits_subset,
                                                                            digits_cache, tmp_path):
    saved = torch.load(nearest_hybrid, weights_only=True)["hyper_parameters"]["net"]
    assert saved["landmarks"]["dropout"] != 0.05 and saved["landmarks"]["use_geometry"]  # the recipe's: false
    cli = main(["test", *hybrid_args(tmp_path, digits_subset, digits_cache), "--data.init_args.interpolation",
                "nearest", "--ckpt_path", str(nearest_hybrid), "--model.init_args.net.landmarks.dropout", "0.05"])
    net = cli.model.hparams.net
    assert net["landmarks"]["dropout"] == 0.05  # two levels down, typed on the command line
    assert {k: v for k, v in net.items() if k != "landmarks"} == {k: v for k, v in saved.items() if k != "landmarks"}
    assert {k: v for k, v in net["landmarks"].items() if k != "dropout"} == \
        {k: v for k, v in saved["landmarks"].items() if k != "dropout"}  # the rest of the saved net is kept


def test_a_plain_trainer_with_sb_callbacks_writes_what_the_cli_writes(tmp_path, digits_subset, digits_cache):
    import lightning as L

    data = sb.LandmarkDataModule(str(digits_subset), landmarks_file=str(digits_cache), batch_size=8, num_workers=0,
                                 pin_memory=False)
    trainer = L.Trainer(max_epochs=2, callbacks=sb.callbacks("val_loss"), default_root_dir=tmp_path,
                        enable_progress_bar=False, logger=L.pytorch.loggers.CSVLogger(tmp_path))
    trainer.fit(sb.LandmarkClassifier(), data)
    checkpoints = Path(trainer.log_dir) / "checkpoints"
    assert (checkpoints / "last.ckpt").exists() and (checkpoints / "model.json").exists()
    best = json.loads((checkpoints / "model.json").read_text())["checkpoint"]
    assert sb.load_model(checkpoints / best).inference_contract().input_names == ("landmarks", "present", "aspect")


def test_the_readme_from_python_block_runs(tmp_path, digits_subset, digits_cache, monkeypatch):
    readme = (REPO / "README.md").read_text()
    block = readme.split("## From Python", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    code = (block.replace("PATH/TO/sign_digits/Dataset", str(digits_subset))
            .replace("max_epochs=120", "max_epochs=1, enable_progress_bar=False, default_root_dir=TMP")
            .replace("photo.jpg", str(shared_dir("data", "hand_photos") / "mps_pose_test_image.jpg")))
    monkeypatch.chdir(tmp_path)
    # the landmarks and images of the tiny dataset, a tiny backbone: the same calls, in seconds
    setup = (f"TMP = {str(tmp_path)!r}\nimport signbridge.data.sign as _sign\n"
             f"_sign.default_cache_path = lambda root: __import__('pathlib').Path({str(digits_cache)!r})\n")
    code = code.replace('image_size=224)', 'image_size=32, batch_size=8, num_workers=0)')
    code = code.replace('fusion="concat",', 'fusion="concat", backbone="test_efficientnet",')
    script = tmp_path / "readme.py"
    script.write_text(setup + code)
    done = forked.run(code=script.read_text(), cwd=tmp_path, timeout=600, environ={
        "SIGNBRIDGE_HAND_LANDMARKER": str(shared_dir("models", "hand_landmarker.task")), "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("command", ["landmarks", "tune", "cv", "ensemble", "export", "recognize", "ui", "models",
                                     "fit", "test"])
def test_every_command_has_a_help(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert f"signbridge {command}" in capsys.readouterr().out or command in ("fit", "test")


def test_the_landmark_recipe_is_one_command_from_python(tmp_path, digits_subset, digits_cache):
    cli = sb.fit([REPO / "configs" / "sign_landmarks.yaml"], {
        "data.init_args.root": str(digits_subset), "data.init_args.landmarks_file": str(digits_cache),
        "trainer.max_epochs": 1, "trainer.logger.init_args.save_dir": str(tmp_path),
        "trainer.enable_progress_bar": False,
    })
    assert cli.trainer.current_epoch == 1 and cli.model.class_names == ["0", "1", "2", "3"]


def test_the_api_page_is_generated_from_the_code():
    # the generator's own page() in this process (its --check compares the same text)
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_api", REPO / "docs" / "generate_api.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (REPO / "docs" / "api.md").read_text() == generator.page(), "docs/api.md is out of date: run " \
        "python docs/generate_api.py"
