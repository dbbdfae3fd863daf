"""The hybrid classifier through the real LightningCLI (``main([...])``), on real Sign Language Digits photos."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from signbridge.cli import console_main, main, user_error_message
from signbridge.data import SignDataModule
from signbridge.errors import InputError
from signbridge.tasks import HybridSignClassifier, LandmarkClassifier
from signbridge.tasks.base import load_model
from tests.conftest import REPO
from tests.tasks.test_landmark_cli import _args as landmark_args

CONFIGS = REPO / "configs"


def cli_args(tmp_path: Path, root: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--config", str(CONFIGS / "sign_digits_hybrid.yaml"), "--config", str(CONFIGS / "trainer" / "cpu.yaml"),
        "--data.init_args.root", str(root), "--data.init_args.landmarks_file", str(cache),
        "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0",
        "--model.init_args.net.backbone", "test_efficientnet",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
        "--trainer.max_epochs", "2", "--model.init_args.landmark_pretraining.epochs", "2", *extra,
    ]


def test_fit_test_predict_and_reload(tmp_path, digits_subset, digits_cache):
    cli = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache)])
    assert cli.trainer.current_epoch == 2
    assert cli.model.hparams.num_classes == 4  # from the data: the config does not set it
    for name in ("train_loss_epoch", "train_acc", "train_top5", "train_f1_macro", "val_loss", "val_acc",
                 "val_f1_macro"):
        assert name in cli.trainer.callback_metrics, name
    log_dir = Path(cli.trainer.log_dir)
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    last = log_dir / "checkpoints" / "last.ckpt"
    assert best.exists() and last.exists() and "val_loss" in best.name
    for name in ("val_fused_acc", "val_image_acc", "val_landmarks_acc", "val_mean_acc", "val_output",
                 "val_no_hand_output"):
        assert name in cli.trainer.callback_metrics, name
    # the classifier chosen for each kind of photo (with and without a hand) is the best there, so together they are
    # at least as good as any one classifier on all photos
    metrics = cli.trainer.callback_metrics
    assert metrics["val_loss"] <= min(metrics[f"val_{name}_loss"] for name in cli.model.model.outputs()) + 1e-6
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    events.Reload()
    figures = events.Images("val_confusion_matrix")  # drawn at the last epoch (figure_every_n_epochs: 10)
    assert [figure.step for figure in figures] == [cli.trainer.global_step] and figures[0].width > 100

    tested = main(["test", *cli_args(tmp_path, digits_subset, digits_cache), "--ckpt_path", str(best)])
    metrics = tested.trainer.callback_metrics
    assert {"test_loss", "test_acc", "test_top5", "test_f1_macro"} <= set(metrics)
    assert 0.0 <= float(metrics["test_acc"]) <= 1.0

    # the module in memory after fit has the weights of last.ckpt: reloading gives identical predictions
    trained = cli.model.eval()
    reloaded = HybridSignClassifier.load_from_checkpoint(last, weights_only=True).eval()
    assert reloaded.class_names == ["0", "1", "2", "3"]
    assert reloaded.model.output == trained.model.output  # the chosen classifier travels in the checkpoint
    # the architecture: one field set on the command line, the rest from the recipe, saved as plain data
    saved = torch.load(last, weights_only=True)["hyper_parameters"]["net"]
    assert saved["backbone"] == "test_efficientnet" and saved["fusion"] == "concat"
    assert saved["landmarks"] == {"encoder": "mlp", "rotate_hands": False, "use_geometry": False, "dropout": 0.3}
    assert reloaded.model.config == trained.model.config
    batch = next(iter(cli.datamodule.val_dataloader()))
    with torch.no_grad():
        assert torch.equal(trained(batch), reloaded(batch))

    output = tmp_path / "predictions.csv"
    main(["predict", *cli_args(tmp_path, digits_subset, digits_cache), "--ckpt_path", str(last),
          "--data.init_args.predict_root", str(digits_subset / "2"), "--prediction_writer.output", str(output)])
    with open(output) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["path"] for r in rows} == {p.name for p in (digits_subset / "2").iterdir()}
    predict_set = SignDataModule(str(digits_subset), landmarks_file=str(digits_cache),
                                 image_size=32, num_workers=0, predict_root=str(digits_subset / "2"))
    predict_set.prepare_data()
    predict_set.setup("predict")
    images = next(iter(torch.utils.data.DataLoader(predict_set.datasets["predict"], batch_size=12)))
    with torch.no_grad():
        probabilities = reloaded(images).softmax(-1)
    for row, path, p in zip(rows, images["path"], probabilities):
        assert row["path"] == path
        assert row["predicted_class"] == reloaded.class_names[int(p.argmax())]
        assert float(row["probability"]) == pytest.approx(float(p.max()), abs=1e-5)


def test_resume_from_last_checkpoint_continues_the_run(tmp_path, digits_subset, digits_cache):
    first = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1")])
    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    resumed = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "2"),
                    "--ckpt_path", str(last)])
    assert resumed.trainer.current_epoch == 2
    assert resumed.trainer.global_step == 2 * first.trainer.global_step


def test_balanced_class_weights_and_label_smoothing_reach_the_loss(tmp_path, digits_subset, digits_cache):
    cli = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1"),
                "--model.init_args.class_weights", "balanced", "--model.init_args.label_smoothing", "0.1"])
    assert torch.allclose(cli.model.loss_weight, torch.ones(4))
    assert "loss_weight" not in cli.model.state_dict()


def test_ddp_spawn_on_two_cpu_processes(tmp_path, digits_subset, digits_cache):
    # the landmark branch is trained alone in the first process while the second waits for its weights
    cli = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1"),
                "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2",
                "--model.init_args.lr_scale", "{landmarks: 0.0}"])
    assert cli.trainer.world_size == 2
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert best.exists() and (best.parent / "model.json").exists()
    assert "val_acc" in cli.trainer.callback_metrics
    pretrained = load_model(best.parent.parent / "landmark_branch" / "best.ckpt")  # beside checkpoints/
    _assert_same_weights(load_model(best).model.landmarks, pretrained.model)


def _assert_same_weights(module: torch.nn.Module, other: torch.nn.Module) -> None:
    """Equal parameters (a zero learning rate keeps them; BatchNorm statistics still follow the data)."""
    theirs = dict(other.named_parameters())
    for name, value in module.named_parameters():
        assert torch.equal(value, theirs[name]), name


def test_the_landmark_branch_is_trained_alone_first_and_a_zero_lr_scale_keeps_it(tmp_path, digits_subset,
                                                                                  digits_cache):
    cli = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1"),
                "--model.init_args.landmark_pretraining.epochs", "4", "--model.init_args.lr_scale",
                "{landmarks: 0.0}"])
    branch_checkpoint = Path(cli.trainer.log_dir) / "landmark_branch" / "best.ckpt"
    pretrained = load_model(branch_checkpoint)
    saved = torch.load(branch_checkpoint, weights_only=True)
    assert isinstance(pretrained, LandmarkClassifier) and saved["global_step"] > 0
    assert saved["hyper_parameters"]["label_smoothing"] == cli.model.hparams.label_smoothing  # the hybrid's loss
    # the fit started from that network and its zero learning rate left it as it was; the other groups trained
    _assert_same_weights(cli.model.model.landmarks, pretrained.model)
    groups = {group.get("name"): group for group in cli.trainer.optimizers[0].param_groups}
    assert groups["landmarks"]["initial_lr"] == 0.0 and groups["image"]["initial_lr"] == cli.model.hparams.lr
    assert groups["head"]["lr_scale"] == 1.0

    # a resumed fit keeps its checkpoint's branch: nothing is trained alone again
    written = branch_checkpoint.stat().st_mtime_ns
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    resumed = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "2"),
                    "--model.init_args.landmark_pretraining.epochs", "4", "--model.init_args.lr_scale",
                    "{landmarks: 0.0}", "--ckpt_path", str(last)])
    assert resumed.trainer.current_epoch == 2 and branch_checkpoint.stat().st_mtime_ns == written
    _assert_same_weights(resumed.model.model.landmarks, pretrained.model)


def test_the_landmark_branch_starts_from_a_landmark_only_checkpoint(tmp_path, digits_subset, digits_cache):
    landmark_only = main(["fit", *landmark_args(tmp_path / "lm", digits_subset, digits_cache)])
    checkpoint = landmark_only.trainer.checkpoint_callback.best_model_path
    start = ["--model.init_args.landmark_pretraining", "null", "--model.init_args.landmark_checkpoint", checkpoint]
    cli = main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1"), *start,
                "--model.init_args.lr_scale", "{landmarks: 0.0}"])
    _assert_same_weights(cli.model.model.landmarks, load_model(checkpoint).model)
    with pytest.raises(InputError, match="is not this hybrid's net.landmarks"):
        main(["fit", *cli_args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "1"), *start,
              "--model.init_args.net.landmarks.use_geometry", "true"])
    with pytest.raises(InputError, match="not both"):
        HybridSignClassifier(landmark_checkpoint=checkpoint, landmark_pretraining={"epochs": 1})
    with pytest.raises(InputError, match="unknown parameter groups"):
        HybridSignClassifier(lr_scale={"backbone": 0.1})


def test_the_class_count_comes_from_the_data_and_a_wrong_one_stops_before_extraction(tmp_path, digits_subset):
    not_yet = tmp_path / "never_built.npz"
    with pytest.raises(InputError, match="num_classes=7 but the data has 4 classes"):
        main(["fit", *cli_args(tmp_path, digits_subset, not_yet, "--model.init_args.num_classes", "7")])
    assert not not_yet.exists()  # refused before any landmark extraction


def test_missing_root_is_a_clear_error(tmp_path, digits_cache):
    with pytest.raises(ValueError) as info:  # raised while the datamodule is built, before any trainer
        main(["fit", *cli_args(tmp_path, tmp_path / "nowhere", digits_cache)])
    assert user_error_message(info.value) == f"{tmp_path / 'nowhere'}: the data root is not a folder " \
        "(data.init_args.root)"


def test_python_dash_m_and_console_script_help(capsys):
    # a new interpreter through python -m (a command that answers without importing torch: under a second)
    result = subprocess.run([sys.executable, "-m", "signbridge", "landmarks", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "signbridge landmarks" in result.stdout
    # the LightningCLI's help through the console entry point, in this process: its subcommands and the others
    with pytest.raises(SystemExit) as exited:
        console_main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and out.startswith("usage: signbridge")
    assert all(command in out for command in ("fit", "validate", "test", "predict", "signbridge landmarks --help"))
    # a subcommand's help (its parser is the only one a command line builds)
    with pytest.raises(SystemExit) as exited:
        console_main(["test", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "signbridge [options] test" in out and "--ckpt_path" in out


def test_compile_reaches_the_method_the_training_step_calls():
    """``compile: true`` compiles ``forward_branches``, which the training step calls instead of ``forward``
    (``module.compile()`` would leave it eager); the weights keep their names."""
    from signbridge.models import HybridSignNetConfig

    task = HybridSignClassifier(4, HybridSignNetConfig(backbone="test_efficientnet", pretrained=False), compile=True)
    names = set(task.state_dict())
    eager = task.model.forward_branches
    task.configure_model()
    compiled = task.model.forward_branches
    assert getattr(compiled, "_torchdynamo_orig_callable", None) == eager
    task.configure_model()  # once per process: a second call leaves it as it is
    assert task.model.forward_branches is compiled and set(task.state_dict()) == names
