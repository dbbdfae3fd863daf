"""The sequence classifier through the real LightningCLI on real word-level sign sequences (wlasl40): fit, test,
predict, model.json, export with a free sequence length, recognize on a real video, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from signbridge.cli import console_main, main
from signbridge.data import SequenceDataModule
from tests.conftest import REPO, console_in_new_process, shared_dir, write_sequences

CONFIG = str(REPO / "configs" / "sign_sequences.yaml")
TINY = ["--model.init_args.net.dim", "32", "--model.init_args.net.depth", "1", "--model.init_args.net.kernel_size",
        "5", "--model.init_args.net.num_heads", "2"]


def _args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return ["--config", CONFIG, "--data.init_args.root", str(root), "--data.init_args.batch_size", "8",
            "--data.init_args.val_fraction", "0.2", "--data.init_args.test_fraction", "0.2",
            "--data.init_args.landmarks_file", str(tmp_path / "sequences.npz"),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "2", *TINY, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, wlasl_subset) -> tuple[Path, Path]:
    """A sequence classifier trained for 2 epochs on 4 real signs, two batches per step (``batches_per_step``: each
    batch padded and augmented on its own, one optimizer step each); returns its run folder root and best
    checkpoint."""
    tmp_path = tmp_path_factory.mktemp("sequence_run")
    cli = main(["fit", *_args(tmp_path, wlasl_subset), "--data.init_args.batches_per_step", "2"])
    batches = len(cli.datamodule.datasets["train"]) // 8  # the last incomplete batch is dropped
    assert cli.trainer.global_step == 2 * batches and not cli.model.automatic_optimization
    return tmp_path, Path(cli.trainer.checkpoint_callback.best_model_path)


def test_fit_records_the_layout_and_the_metrics(trained, wlasl_subset):
    tmp_path, best = trained
    metadata = json.loads((best.parent / "model.json").read_text())
    assert metadata["task"].endswith("SequenceClassifier") and len(metadata["classes"]) == 4
    contract = metadata["inference"]
    assert [spec["name"] for spec in contract["inputs"]] == ["points", "present", "mask"]
    assert contract["inputs"][0]["shape"] == ["batch", "frames", 53, 3]
    assert contract["preprocessing"]["sequence"]["parts"] == ["pose", "left_hand", "right_hand"]
    assert contract["preprocessing"]["sequence"]["typical_frames"] == 30
    checkpoint = torch.load(best, weights_only=True, map_location="cpu")
    assert checkpoint["hyper_parameters"]["parts"] == ["pose", "left_hand", "right_hand"]
    history = metadata["history"][-1]
    assert {"val_loss", "val_acc", "val_top5", "val_f1_macro"} <= set(history)


def test_test_and_predict_from_the_checkpoint(trained, wlasl_subset, tmp_path):
    run, best = trained
    tested = main(["test", *_args(run, wlasl_subset), "--ckpt_path", str(best)])
    metrics = tested.trainer.callback_metrics
    assert {"test_acc", "test_top5", "test_f1_macro", "test_recall_min"} <= set(metrics)
    predict_root = tmp_path / "new"
    for name in ("a", "b"):
        (predict_root / name).parent.mkdir(parents=True, exist_ok=True)
        source = next(p for p in sorted(wlasl_subset.iterdir()))
        import shutil

        shutil.copytree(source / ("0" if name == "a" else "1"), predict_root / name)
    output = tmp_path / "predictions.csv"
    main(["predict", *_args(run, wlasl_subset), "--ckpt_path", str(best), "--data.init_args.predict_root",
          str(predict_root), "--trainer.callbacks+=signbridge.lightning_callbacks.PredictionWriter",
          f"--trainer.callbacks.output={output}"])
    rows = list(csv.DictReader(output.open()))
    assert [row["path"] for row in rows] == ["a", "b"]
    assert all(row["predicted_class"] in json.loads((best.parent / "model.json").read_text())["classes"]
               for row in rows)


def test_an_ensemble_of_sequence_models_is_tested_like_one(trained, wlasl_subset):
    run, best = trained
    members = [str(best), str(best.parent / "last.ckpt")]
    tested = main(["test", *_args(run, wlasl_subset), "--model", "signbridge.tasks.EnsembleClassifier",
                   "--model.init_args.checkpoints", json.dumps(members), "--trainer.logger", "false"])
    assert tested.model.input_specs()[0].name == "points"
    assert 0.0 <= float(tested.trainer.callback_metrics["test_acc"]) <= 1.0


def test_export_runs_any_sequence_length_like_pytorch(trained):
    from signbridge.export import export_checkpoint
    from signbridge.inference import ExportedModel, InferenceModule
    from signbridge.tasks.base import load_model

    _, best = trained
    report = export_checkpoint(best, best.with_suffix(".onnx"))
    assert report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0
    assert report.lengths == (30, 13)  # parity checked at two sequence lengths
    exported, module = ExportedModel(report.path), InferenceModule(load_model(best))
    assert exported.contract.input_names == ("points", "present", "mask")
    for frames in (5, 64):
        inputs = exported.contract.example_inputs(batch=3, seed=2, frames=frames)
        with torch.no_grad():
            expected = module(*(inputs[name] for name in module.contract.input_names))[0].numpy()
        np.testing.assert_allclose(exported(inputs)[0], expected, atol=1e-4)


def test_recognize_a_real_video_with_a_sliding_window(trained, tmp_path, hand_model):
    _, best = trained
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[0]
    signing = sorted(video.parent.glob("*.mp4"))[2]  # a clip whose hand is in view from its first frame
    output = tmp_path / "windows.jsonl"
    done = console_in_new_process({
        "windows": ["recognize", str(video), "--model", str(best), "--output", str(output), "--window", "12",
                    "--stride", "6", "--smooth", "2", "--max_frames", "42"],
        "short": ["recognize", str(signing), "--model", str(best), "--max_frames", "6"]}, hand_model)
    windows, short = done["windows"], done["short"]
    assert windows.returncode == 0, windows.stderr[-2000:]
    results = [json.loads(line) for line in output.read_text().splitlines()]
    classes = json.loads((best.parent / "model.json").read_text())["classes"]
    ends = [row["window_end"] for row in results]
    assert ends[0] == 11 and all(b - a == 6 for a, b in zip(ends, ends[1:])) and len(ends) >= 5
    for row in results:
        if row["label"] is not None:
            assert row["label"] in classes and len(row["top5"]) == 4
            assert row["top5"][0][0] == row["label"] and row["model_ms"] > 0
        assert row["landmarks_ms"] > 0 and row["latency_ms"] >= row["model_ms"]
    assert any(row["label"] is not None for row in results)
    # the pose this model reads is not tracked without a pose model: said once, not silently
    assert "read as not found" in windows.stderr
    # a clip shorter than the window (the training length, 30 frames) is classified once, whole
    assert short.returncode == 0, short.stderr[-2000:]
    rows = [json.loads(line) for line in short.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["window_end"] == 5 and rows[0]["label"] in classes


def test_the_data_module_reads_both_layouts_alike(tmp_path):
    for length in (170, 1662):
        root = write_sequences(tmp_path / str(length), length=length, classes=3, per_class=5, frames=10)
        data = SequenceDataModule(str(root), landmarks_file=str(tmp_path / f"{length}.npz"), num_workers=0,
                                  val_fraction=0.2, test_fraction=0.2)
        data.prepare_data()
        data.setup("fit")
        assert data.parts == ("pose", "left_hand", "right_hand")
        batch = next(iter(data.train_dataloader()))
        assert batch["points"].shape[1:] == (10, 53, 3) and batch["mask"].all()
        assert {len(data.datasets[name]) for name in ("train", "val", "test")} == {9, 3}


def test_signer_folds_keep_each_signer_in_one_split(tmp_path):
    root = write_sequences(tmp_path / "data", classes=2, per_class=6, frames=4)
    for folder in sorted(root.glob("*/*")):  # signer k recorded sequences k and k + 3 of each sign
        folder.rename(folder.with_name(f"signer{int(folder.name) % 3}_{folder.name}"))
    tests = []
    for fold in range(3):
        data = SequenceDataModule(str(root), landmarks_file=str(tmp_path / "s.npz"), num_workers=0,
                                  signer_pattern=r"signer(\d+)_", num_folds=3, fold=fold, val_fraction=0.5)
        data.prepare_data()
        data.setup("fit")
        signers = {name: {Path(p).name.split("_")[0] for p in data.datasets[name].paths}
                   for name in ("train", "val", "test")}
        assert len(signers["test"]) == 1 and not (signers["test"] & (signers["train"] | signers["val"]))
        assert not signers["train"] & signers["val"]
        tests.append(signers["test"].pop())
    assert sorted(tests) == ["signer0", "signer1", "signer2"]


def _console(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        console_main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("signbridge: error: ")]
    return info.value.code, lines[-1] if lines else ""


def test_bad_sequence_data_is_one_line(tmp_path, capsys):
    root = write_sequences(tmp_path / "few", classes=2, per_class=1, frames=3)
    code, message = _console(["fit", *_args(tmp_path, root)], capsys)
    assert code == 2 and "the val split is empty" in message and "3 sequences" in message
    odd = write_sequences(tmp_path / "odd", classes=2, per_class=3, frames=3)
    for folder in sorted(odd.glob("*/*")):
        for frame in folder.iterdir():
            np.save(frame, np.zeros(99))
    code, message = _console(["fit", *_args(tmp_path, odd, "--data.init_args.landmarks_file",
                                            str(tmp_path / "odd.npz"))], capsys)
    assert code == 2 and "length 99" in message
    code, message = _console(["fit", *_args(tmp_path, odd, "--data.init_args.select_parts", "[tail]")], capsys)
    assert code == 2 and "unknown landmark parts ['tail']" in message
