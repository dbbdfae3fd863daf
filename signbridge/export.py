"""Export a trained model to ONNX or TorchScript (``signbridge export``), with its inference contract in the file,
a parity check against PyTorch, and optional int8 quantization.

The exported network takes the tensors of the model's inference contract (``signbridge.inference``; batch size
free) and returns ``logits`` (the network's) and ``probabilities`` (softmax of the logits plus the decision
thresholds fitted on validation, when the checkpoint has them and ``apply_thresholds`` is on: their argmax is the
prediction ``signbridge test`` makes). The contract is in the file's metadata (``inference``), so ``Recognizer``
runs the file exactly as it runs the checkpoint.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .files import atomic_write, check_writable, is_signbridge_export
from .inference import METADATA_KEY, ExportedModel, InferenceModule

Format = Literal["onnx", "torchscript"]


@dataclass
class ExportReport:
    """What ``export_checkpoint`` wrote and how closely the file reproduces the PyTorch model."""

    path: Path
    format: str
    quantized: bool
    size_bytes: int
    max_abs_diff: float
    top1_agreement: float
    checked_batch: int
    lengths: tuple[int, ...] = ()  # the sequence lengths checked (a sequence model's free frame count)

    def format_lines(self) -> str:
        return (f"exported {self.path} ({self.format}{', int8' if self.quantized else ''}, "
                f"{self.size_bytes / 1e6:.2f} MB)\n"
                f"parity with PyTorch on {self.checked_batch} inputs"
                + (f" at {' and '.join(map(str, self.lengths))} frames" if self.lengths else "")
                + f": max |logit difference| {self.max_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.3f}")


def export_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike | None = None,
    format: Format = "onnx",
    quantize: Literal["int8"] | None = None,
    image_size: int | None = None,
    check_batch: int = 16,
    calibration_root: str | None = None,
    landmarks_file: str | None = None,
) -> ExportReport:
    """Export a checkpoint; returns the parity report (exported file against PyTorch, fp32, on ``check_batch`` random
    inputs of the contract). The file's metadata holds the model's inference contract (inputs, preprocessing,
    classes, thresholds) and hyperparameters. int8 ONNX of a model that reads images is calibrated on 64 validation
    samples of its training data (``calibration_root`` / ``landmarks_file`` if it moved)."""
    from .tasks.base import load_model

    checkpoint = Path(checkpoint)
    task = load_model(checkpoint)
    module = InferenceModule(task)
    if image_size:
        module.contract = module.contract.with_image_size(image_size)
    module.contract.check_ready(checkpoint)
    suffix = ".onnx" if format == "onnx" else ".pt"
    output = Path(output) if output else checkpoint.with_name(
        f"{checkpoint.stem}{'.int8' if quantize else ''}{suffix}")
    check_writable(output, "export file", inputs=[checkpoint], own=is_signbridge_export)
    output.parent.mkdir(parents=True, exist_ok=True)
    metadata = export_metadata(task, checkpoint, quantize)
    if format == "onnx":
        calibration = None
        if quantize and module.contract.reads_images:
            calibration = calibration_inputs(task, module.contract.input_names, calibration_root, landmarks_file)
        _export_onnx(module, output, metadata, quantize, calibration)
    else:
        _export_torchscript(module, output, metadata, quantize)
    return check_parity(module, output, check_batch, format, quantize is not None)


def export_metadata(task, checkpoint: Path, quantize: str | None) -> dict[str, Any]:
    """What an exported file says about itself (``inference`` is the contract, completed when it is written)."""
    from . import __version__

    return {"signbridge_version": __version__, "checkpoint": checkpoint.name, "quantized": quantize,
            "hyperparameters": {k: v for k, v in task.hparams.items() if _json_value(v)}}


def check_parity(module: InferenceModule, output: Path, batch: int, format: str, quantized: bool) -> ExportReport:
    """Run the exported file and the PyTorch module on the same random inputs of the contract."""
    exported = ExportedModel(output)
    # a free sequence length is checked at the traced length (example_inputs' 30 frames) and at another one
    free_length = any("frames" in spec.shape for spec in module.contract.inputs)
    lengths = (30, 13) if free_length else (30,)
    diffs, agreements = [], []
    for frames in lengths:
        inputs = module.contract.example_inputs(batch=batch, seed=1, frames=frames)
        with torch.no_grad():
            expected = module(*(inputs[name] for name in module.contract.input_names))
        got = exported(inputs)
        diffs.append(float(np.abs(got[0] - expected[0].numpy()).max()))
        agreements.append(float((got[1].argmax(-1) == expected[1].numpy().argmax(-1)).mean()))  # per sample/step
    return ExportReport(output, format, quantized, output.stat().st_size, max(diffs), min(agreements), batch,
                        lengths if free_length else ())


def _json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _export_onnx(module: InferenceModule, output: Path, metadata: dict, quantize: str | None,
                 calibration: list[dict[str, np.ndarray]] | None) -> None:
    import tempfile

    import onnx

    contract = module.contract
    names = contract.input_names
    example = contract.example_inputs(batch=2)
    free = {spec.name: {axis: str(dim) for axis, dim in enumerate(spec.shape) if isinstance(dim, str)}
            for spec in contract.inputs}
    # a text recognizer's outputs have a free time axis (its width / 4)
    output_axes = {0: "batch", 1: "time"} if "time" in contract.outputs["logits"] else {0: "batch"}
    outputs = ["logits", "probabilities"]
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        # the tracing exporter: the hybrid's choices (its predicting classifier, its active inputs) are buffers read
        # as Python values, which tracing bakes in and torch.export would have to treat as data-dependent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, tuple(example[name] for name in names), str(fp32), input_names=list(names),
                output_names=outputs, dynamo=False, opset_version=17,
                dynamic_axes={**free, **{name: output_axes for name in outputs}},
            )
        final = fp32
        if quantize:
            final = Path(tmp) / "model.int8.onnx"
            _quantize_onnx(fp32, final, calibration)
        model = onnx.load(str(final))
        # an input the prediction does not read is not in the graph (e.g. the image of a hybrid that chose its
        # landmark classifier on validation): the file's contract lists what the file takes
        used = {graph_input.name for graph_input in model.graph.input}
        written = {**metadata, "inference": contract.restricted_to(used).to_dict()}
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(written)})
        with atomic_write(output) as f:
            f.write(model.SerializeToString())


def _quantize_onnx(fp32: Path, output: Path, calibration: list[dict[str, np.ndarray]] | None) -> None:
    """int8 ONNX. With calibration inputs (a model that reads images): static quantization in QDQ format, per-channel
    weights, activation ranges measured on the calibration inputs; onnxruntime then runs int8 convolutions, where
    dynamic quantization's ConvInteger is several times slower than fp32. Without (a landmark MLP): dynamic
    quantization, int8 weights and activations quantized on the fly."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None:
        # not the convolutions (onnxruntime's ConvInteger is slower than fp32): the linear and recurrent layers
        quantize_dynamic(str(fp32), str(output), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "LSTM", "Attention"])
        return
    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    import onnx

    used = {graph_input.name for graph_input in onnx.load(str(prepared), load_external_data=False).graph.input}
    samples = [{k: v for k, v in item.items() if k in used} for item in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(samples)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)


def calibration_inputs(task, names: tuple[str, ...], root: str | None = None, landmarks_file: str | None = None,
                       count: int = 64) -> list[dict[str, np.ndarray]]:
    """``count`` validation samples of the data the task was trained on (its datamodule rebuilt from the checkpoint;
    ``root`` / ``landmarks_file`` replace the saved ones), as single-sample input dicts."""
    try:
        data = task.training_datamodule(root=root, landmarks_file=landmarks_file, batch_size=1, num_workers=0,
                                        persistent_workers=False)
    except InputError as error:
        raise InputError(f"int8 export calibrates on the training data, and {error} (--calibration_root DATA, and "
                         "--landmarks_file for a sign dataset)") from None
    data.prepare_data()
    data.setup("fit")
    samples = []
    for batch in data.val_dataloader():
        samples.append({name: batch[name].numpy() for name in names})
        if len(samples) == count:
            break
    return samples


def _export_torchscript(module: InferenceModule, output: Path, metadata: dict, quantize: str | None) -> None:
    import io

    example = module.contract.example_inputs(batch=2)
    traced_module: nn.Module = module
    if quantize:  # dynamic int8 quantization of the linear layers (PyTorch's CPU kernels)
        traced_module = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        traced = torch.jit.trace(traced_module, tuple(example[name] for name in module.contract.input_names),
                                 check_trace=False)
    buffer = io.BytesIO()
    written = {**metadata, "inference": module.contract.to_dict()}
    torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": json.dumps(written)})
    with atomic_write(output) as f:
        f.write(buffer.getvalue())
