"""Export a trained classifier to ONNX or TorchScript (``signbridge export``), with its class names and input
contract in the file, a parity check against PyTorch, and optional int8 quantization.

The exported network takes the batch tensors of ``docs/contracts.md`` (batch size free) and returns ``logits`` (the
network's) and ``probabilities`` (softmax of the logits plus the decision thresholds fitted on validation, when the
checkpoint has them and ``apply_thresholds`` is on: their argmax is the prediction ``signbridge test`` makes).
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
from .files import atomic_write, check_writable

Format = Literal["onnx", "torchscript"]
METADATA_KEY = "signbridge"  # ONNX metadata_props key / TorchScript extra file (``signbridge.json``)
INPUT_CONTRACT = {
    "image": "uint8 (B, 3, S, S) RGB, the whole frame resized to S x S without cropping; the model normalises it",
    "landmarks": "float32 (B, 2, 21, 3): MediaPipe HandLandmarker normalised image coordinates minus the wrist's "
                 "(point 0); slot 0 the hand MediaPipe labels Right, slot 1 Left; zeros for a missing hand",
    "present": "bool (B, 2): which hand slots hold a detected hand",
    "aspect": "float32 (B,): the frame's width / height",
    "text_image": "float32 (B, C, H, W) with values 0..1 (C = 1: grayscale), H the recognizer's height, W free "
                  "(W / 4 CTC timesteps)",
}


class ExportedRecognizer(nn.Module):
    """A text recognizer's CRNN with the outputs ``logits`` and ``probabilities`` ``(B, T, classes)``."""

    def __init__(self, task):
        super().__init__()
        self.network = task.model

    def forward(self, text_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(text_image).float()
        return logits, logits.softmax(-1)


class ExportedClassifier(nn.Module):
    """A classifier task's network with tensor inputs (``input_names``) and the outputs ``logits`` and
    ``probabilities`` (with the fitted decision thresholds)."""

    def __init__(self, task, input_names: tuple[str, ...]):
        super().__init__()
        self.network = task.model
        self.input_names = input_names
        apply = bool(task.hparams.get("apply_thresholds", True))
        bias = task.logit_bias.detach().clone() if apply else torch.zeros_like(task.logit_bias)
        self.logit_bias: torch.Tensor
        self.register_buffer("logit_bias", bias.float())

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        named = dict(zip(self.input_names, inputs))
        if "landmarks" in named and "image" in named:
            logits = self.network(named["image"], named["landmarks"], named["present"], named["aspect"])
        elif "landmarks" in named:
            logits = self.network(named["landmarks"], named["present"], named["aspect"])
        else:
            logits = self.network(named["image"])
        logits = logits.float()
        return logits, (logits + self.logit_bias).softmax(-1)


def input_names_of(task) -> tuple[str, ...]:
    """The batch tensors a classifier task reads."""
    from .tasks import ATKClassifier, HybridSignClassifier, LandmarkClassifier, TextRecognizer

    if isinstance(task, TextRecognizer):
        return ("text_image",)
    if isinstance(task, LandmarkClassifier):
        return ("landmarks", "present", "aspect")
    if isinstance(task, HybridSignClassifier):
        inputs = task.model.inputs
        return {"both": ("image", "landmarks", "present", "aspect"), "image": ("image",),
                "landmarks": ("landmarks", "present", "aspect")}[inputs]
    if isinstance(task, ATKClassifier):
        return ("image",)
    raise InputError(f"export supports HybridSignClassifier, LandmarkClassifier, ATKClassifier and TextRecognizer, "
                     f"not {type(task).__name__}")


def example_inputs(input_names: tuple[str, ...], image_size: int | tuple[int, int] | None, batch: int = 2,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random tensors of the input contract (a plausible range for each), for tracing and the parity check."""
    generator = torch.Generator().manual_seed(seed)
    if input_names == ("text_image",):  # image_size: (channels, height) of the recognizer
        channels, height = image_size if isinstance(image_size, tuple) else (1, 32)
        return (torch.rand(batch, channels, height, 128, generator=generator),)
    made = {}
    if "image" in input_names:
        if not isinstance(image_size, int) or not image_size:
            raise InputError("the image size is unknown: pass --image-size (the data module's image_size)")
        made["image"] = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8,
                                      generator=generator)
    made["landmarks"] = torch.randn(batch, 2, 21, 3, generator=generator) * 0.1
    made["present"] = torch.tensor([[True, False], [True, True]] * batch)[:batch]
    made["aspect"] = torch.full((batch,), 4 / 3)
    return tuple(made[name] for name in input_names)


def image_size_of(checkpoint: dict[str, Any], task) -> int | None:
    """The image side the model was trained at: the task's own setting, else the data module's saved one."""
    return task.hparams.get("image_size") or (checkpoint.get("datamodule_hyper_parameters") or {}).get("image_size")


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

    def format_lines(self) -> str:
        return (f"exported {self.path} ({self.format}{', int8' if self.quantized else ''}, "
                f"{self.size_bytes / 1e6:.2f} MB)\n"
                f"parity with PyTorch on {self.checked_batch} inputs: max |logit difference| {self.max_abs_diff:.3g}, "
                f"top-1 agreement {self.top1_agreement:.3f}")


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
    """Export a classifier checkpoint; returns the parity report (exported file against PyTorch, fp32, on
    ``check_batch`` random inputs of the contract). The file's metadata holds the class names, the input contract,
    the image size and the task's hyperparameters. int8 ONNX of a model that reads images is calibrated on 64
    validation samples of its training data (``calibration_root`` / ``landmarks_file`` if it moved)."""
    from . import __version__
    from .files import read_checkpoint
    from .tasks import TextRecognizer
    from .tasks.base import load_task

    checkpoint = Path(checkpoint)
    saved = read_checkpoint(checkpoint)
    task = load_task(checkpoint)
    names = input_names_of(task)
    text = isinstance(task, TextRecognizer)
    size: int | tuple[int, int] | None = (image_size or image_size_of(saved, task)) if "image" in names else None
    if isinstance(task, TextRecognizer):
        size = (task.model.in_channels, task.model.height)
    suffix = ".onnx" if format == "onnx" else ".pt"
    output = Path(output) if output else checkpoint.with_name(
        f"{checkpoint.stem}{'.int8' if quantize else ''}{suffix}")
    check_writable(output, "export file")
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapper: nn.Module = ExportedRecognizer(task).eval() if text else ExportedClassifier(task, names).eval()
    metadata: dict[str, Any] = {
        "signbridge_version": __version__, "task": type(task).__name__, "inputs": {n: INPUT_CONTRACT[n] for n in names},
        "quantized": quantize,
        "hyperparameters": {k: v for k, v in task.hparams.items() if _json_value(v)},
        "checkpoint": checkpoint.name,
    }
    if isinstance(task, TextRecognizer) and isinstance(size, tuple):
        metadata.update(charset=task.charset.chars, channels=size[0], height=size[1], outputs={
            "logits": "float32 (B, T, classes)", "probabilities": "float32 (B, T, classes)"},
            decoding="greedy CTC: argmax per timestep, merge repeats, drop class 0 (blank); class i is charset[i-1]")
    else:
        metadata.update(classes=task.class_names, image_size=size, outputs={
            "logits": "float32 (B, C)", "probabilities": "float32 (B, C): softmax with the thresholds"},
            thresholds_applied=isinstance(wrapper, ExportedClassifier) and bool(wrapper.logit_bias.any()))
    inputs = example_inputs(names, size, batch=2)
    if format == "onnx":
        calibration = None
        if quantize and "image" in names:
            calibration = calibration_inputs(saved, names, calibration_root, landmarks_file)
        _export_onnx(wrapper, inputs, names, output, metadata, quantize, calibration,
                     variable_axes={"text_image": {0: "batch", 3: "width"}, "logits": {0: "batch", 1: "time"},
                                    "probabilities": {0: "batch", 1: "time"}} if text else {})
    else:
        _export_torchscript(wrapper, inputs, output, metadata, quantize)
    checked = example_inputs(names, size, batch=check_batch, seed=1)
    with torch.no_grad():
        expected = wrapper(*checked)
    got = run_exported(output, checked, names)
    diff = float(np.abs(got[0] - expected[0].numpy()).max())
    agreement = float((got[1].argmax(-1) == expected[1].numpy().argmax(-1)).mean())  # per sample or timestep
    return ExportReport(output, format, quantize is not None, output.stat().st_size, diff, agreement, check_batch)


def _json_value(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _export_onnx(wrapper: nn.Module, inputs: tuple[torch.Tensor, ...], names: tuple[str, ...], output: Path,
                 metadata: dict, quantize: str | None, calibration: list[dict[str, np.ndarray]] | None,
                 variable_axes: dict[str, dict[int, str]]) -> None:
    import tempfile

    import onnx

    outputs = ["logits", "probabilities"]
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        # the tracing exporter: the hybrid's choices (its predicting classifier, its active inputs) are buffers read
        # as Python values, which tracing bakes in and torch.export would have to treat as data-dependent
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, inputs, str(fp32), input_names=list(names), output_names=outputs, dynamo=False,
                dynamic_axes={name: variable_axes.get(name, {0: "batch"}) for name in [*names, *outputs]},
                opset_version=17,
            )
        final = fp32
        if quantize:
            final = Path(tmp) / "model.int8.onnx"
            _quantize_onnx(fp32, final, calibration)
        model = onnx.load(str(final))
        # an input the prediction does not read is not in the graph (e.g. the image of a hybrid that chose its
        # landmark classifier on validation)
        used = {graph_input.name for graph_input in model.graph.input}
        metadata = {**metadata, "inputs": {name: text for name, text in metadata["inputs"].items() if name in used}}
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
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


def calibration_inputs(saved: dict[str, Any], names: tuple[str, ...], root: str | None = None,
                       landmarks_file: str | None = None, count: int = 64) -> list[dict[str, np.ndarray]]:
    """``count`` validation samples of the data the checkpoint was trained on (its data module rebuilt from the
    checkpoint; ``root`` / ``landmarks_file`` replace the saved ones), as single-sample input dicts."""
    import importlib

    settings = dict(saved.get("datamodule_hyper_parameters") or {})
    class_path = settings.pop("_class_path", None)
    settings.pop("_instantiator", None)
    if not class_path:
        raise InputError("int8 export of a model that reads images calibrates on its data, but the checkpoint does "
                         "not record its data module: use a checkpoint of signbridge fit")
    settings.update({k: v for k, v in (("root", root), ("landmarks_file", landmarks_file)) if v})
    if not Path(str(settings.get("root"))).is_dir():
        raise InputError(f"int8 export calibrates on the training data, and {settings.get('root')} is not there: "
                         "pass --calibration-root DATA (and --landmarks-file for a sign dataset)")
    module_name, _, class_name = class_path.rpartition(".")
    data_class = getattr(importlib.import_module(module_name), class_name)
    settings.update(batch_size=1, num_workers=0, persistent_workers=False)
    data = data_class(**settings)
    data.prepare_data()
    data.setup("fit")
    samples = []
    for batch in data.val_dataloader():
        samples.append({name: batch[name].numpy() for name in names})
        if len(samples) == count:
            break
    return samples


def _export_torchscript(wrapper: nn.Module, inputs: tuple[torch.Tensor, ...], output: Path, metadata: dict,
                        quantize: str | None) -> None:
    import io

    if quantize:  # dynamic int8 quantization of the linear layers (PyTorch's CPU kernels)
        wrapper = torch.ao.quantization.quantize_dynamic(wrapper, {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, inputs, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})
    with atomic_write(output) as f:
        f.write(buffer.getvalue())


def read_exported_metadata(path: str | os.PathLike) -> dict:
    """The signbridge metadata of an exported ``.onnx`` or TorchScript file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if METADATA_KEY not in props:
            raise InputError(f"{path}: an ONNX file without signbridge metadata (not written by signbridge export)")
        return json.loads(props[METADATA_KEY])
    extra = {f"{METADATA_KEY}.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[f"{METADATA_KEY}.json"]:
        raise InputError(f"{path}: a TorchScript file without signbridge metadata (not written by signbridge export)")
    return json.loads(extra[f"{METADATA_KEY}.json"])


def run_exported(path: str | os.PathLike, inputs: tuple[torch.Tensor, ...], names: tuple[str, ...],
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, probabilities)`` of an exported file on ``inputs`` (onnxruntime on the CPU, or TorchScript)."""
    path = Path(path)
    if path.suffix == ".onnx":
        session = onnx_session(path, threads)
        used = {graph_input.name for graph_input in session.get_inputs()}
        feed = {name: tensor.numpy() for name, tensor in zip(names, inputs) if name in used}
        outputs = session.run(["logits", "probabilities"], feed)
        return outputs[0], outputs[1]
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        logits, probabilities = module(*inputs)
    return logits.numpy(), probabilities.numpy()


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations (``threads``: intra-op threads, default all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
