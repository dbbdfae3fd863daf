"""``signbridge export``: the three classifiers to ONNX and TorchScript (fp32 and int8), checked against PyTorch,
with their class names and input contract in the file. Tiny models trained for one epoch through the real CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from signbridge.cli import main
from signbridge.errors import InputError
from signbridge.export import export_checkpoint
from signbridge.inference import ExportedModel, InferenceContract, read_exported_metadata
from signbridge.tasks.base import load_model
from tests.tasks.test_hybrid import cli_args as hybrid_args
from tests.tasks.test_landmark_cli import _args as landmark_args
from tests.test_bad_input import atk_args


def best_checkpoint(cli) -> Path:
    return Path(cli.trainer.checkpoint_callback.best_model_path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, digits_subset, digits_cache, digits_folder) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("export")
    return {
        "landmarks": best_checkpoint(main(["fit", *landmark_args(tmp / "lm", digits_subset, digits_cache),
                                           "--trainer.max_epochs", "1"])),
        "hybrid": best_checkpoint(main(["fit", *hybrid_args(tmp / "hy", digits_subset, digits_cache),
                                        "--trainer.max_epochs", "1", "--model.init_args.select_output", "false"])),
        "cnn": best_checkpoint(main(["fit", *atk_args(digits_folder, tmp / "cnn")])),
    }


@pytest.mark.parametrize("kind", ["landmarks", "hybrid", "cnn"])
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_reproduces_the_pytorch_model_and_carries_its_metadata(checkpoints, kind, format, tmp_path):
    report = export_checkpoint(checkpoints[kind], tmp_path / f"model.{'onnx' if format == 'onnx' else 'pt'}",
                               format=format)
    assert report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0, report
    contract = InferenceContract.from_dict(read_exported_metadata(report.path)["inference"])
    assert contract.classes == ["0", "1", "2", "3"]
    expected_inputs = {"landmarks": ["landmarks", "present", "aspect"], "cnn": ["image"],
                       "hybrid": ["image", "landmarks", "present", "aspect"]}[kind]
    assert list(contract.input_names) == expected_inputs
    assert contract.image_size == {"landmarks": None, "hybrid": 32, "cnn": 16}[kind]
    # the batch size is free: 5 inputs through a file traced with 2
    task = load_model(checkpoints[kind])
    inputs = contract.example_inputs(batch=5, seed=3)
    logits, probabilities = ExportedModel(report.path)(inputs)
    assert logits.shape == (5, 4) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        reference = task.model(*(inputs[name] for name in expected_inputs))
    assert np.abs(logits - reference.float().numpy()).max() < 1e-4


@pytest.mark.parametrize("kind", ["landmarks", "cnn", "hybrid"])
def test_int8_export_is_smaller_and_agrees_on_most_inputs(checkpoints, kind, tmp_path, capsys):
    """Landmark MLP: dynamic quantization; models that read images: static, calibrated on their training data."""
    fp32 = export_checkpoint(checkpoints[kind], tmp_path / "fp32.onnx")
    assert main(["export", str(checkpoints[kind]), "--quantize", "int8", "--output", str(tmp_path / "int8.onnx")]) \
        == 0
    printed = capsys.readouterr().out
    assert "int8" in printed and "top-1 agreement" in printed
    assert (tmp_path / "int8.onnx").stat().st_size < 0.5 * fp32.size_bytes  # weights stored in 8 bits, not 32
    assert read_exported_metadata(tmp_path / "int8.onnx")["quantized"] == "int8"


def test_thresholds_are_part_of_the_exported_probabilities(checkpoints, tmp_path):
    saved = torch.load(checkpoints["landmarks"], weights_only=True)
    saved["state_dict"]["logit_bias"] = torch.tensor([0.0, 0.0, 50.0, 0.0])
    forced = tmp_path / "forced.ckpt"
    torch.save(saved, forced)
    report = export_checkpoint(forced, tmp_path / "forced.onnx")
    exported = ExportedModel(report.path)
    logits, probabilities = exported(exported.contract.example_inputs(batch=6))
    assert (probabilities.argmax(1) == 2).all() and not (logits.argmax(1) == 2).all()
    assert exported.contract.thresholds == [0.0, 0.0, 50.0, 0.0]


def test_export_refuses_what_it_cannot_export(tmp_path, checkpoints):
    with pytest.raises(InputError, match="checkpoint not found"):
        export_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(InputError, match="calibrates on the training data, and .*gone is not there"):
        export_checkpoint(checkpoints["cnn"], tmp_path / "int8.onnx", quantize="int8",
                          calibration_root=str(tmp_path / "gone"))
    (tmp_path / "plain.onnx").write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017  (onnx's own parse error for an empty file)
        read_exported_metadata(tmp_path / "plain.onnx")
