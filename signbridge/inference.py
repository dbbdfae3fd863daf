"""What a trained model reads and what it says: one inference contract per task, saved with the model.

Every signbridge task declares its ``InferenceContract`` (``Task.inference_contract()``): the tensors it reads (name,
dtype, shape with its free dimensions), the preprocessing that must happen before (image size and interpolation,
the hand detector's settings, a text image's height), its classes and decision thresholds, and its outputs. The
contract is saved in every checkpoint (key ``inference``), in ``model.json`` and in the metadata of an exported
file, so that everything that runs a model — ``signbridge export``, ``Recognizer``, the browser app, the benchmarks —
reads the same answer and none of them needs to know the task's class.

``InferenceModule`` runs a task on the contract's tensors and returns ``(logits, probabilities)``, the outputs every
exported file has; ``ExportedModel`` runs such a file (ONNX or TorchScript) with the same interface.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .hands.sequence import FRAME_FEATURES

if TYPE_CHECKING:
    from .hands.detect import HandDetection
    from .tasks.base import Task

METADATA_KEY = "signbridge"  # ONNX metadata_props key / TorchScript extra file (``signbridge.json``)
FORMAT = 1


@dataclass(frozen=True)
class InputSpec:
    """One tensor a model reads: ``shape`` has ints for fixed sizes and names for free dimensions (``batch``)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "description": self.description}


def image_input(size: int | None) -> InputSpec:
    """A classifier's photo: the whole frame resized (not cropped) to a square; the model normalises it."""
    side: int | str = size or "size"
    return InputSpec("image", "uint8", ("batch", 3, side, side),
                     "RGB 0..255, the whole frame resized to a square without cropping (preprocessing.image)")


HAND_INPUTS = (
    InputSpec("landmarks", "float32", ("batch", 2, 21, 3),
              "MediaPipe HandLandmarker normalised image coordinates minus the wrist's (point 0); slot 0 the hand "
              "MediaPipe labels Right, slot 1 Left; zeros for a missing hand"),
    InputSpec("present", "bool", ("batch", 2), "which hand slots hold a detected hand"),
    InputSpec("aspect", "float32", ("batch",), "the frame's width / height"),
)


def sequence_inputs(parts: tuple[str, ...]) -> tuple[InputSpec, ...]:
    """A sequence classifier's landmark sequence (``hands.sequence``): the number of frames is free."""
    from .hands.sequence import PART_SIZES

    points = sum(PART_SIZES[name] for name in parts)
    return (
        InputSpec("points", "float32", ("batch", "frames", points, 3),
                  f"MediaPipe landmarks per frame, the parts {', '.join(parts)} one after another (preprocessing."
                  "sequence); x, y in units of the frame's width and height, z as MediaPipe gives it; zeros where a "
                  "part was not found"),
        InputSpec("present", "bool", ("batch", "frames", len(parts)), "which parts were found in each frame"),
        InputSpec("mask", "bool", ("batch", "frames"), "True for real frames, False for padding"),
    )


def text_image_input(channels: int, height: int) -> InputSpec:
    """A text recognizer's word image (the width is free: ``width / 4`` CTC timesteps)."""
    return InputSpec("text_image", "float32", ("batch", channels, height, "width"),
                     "values 0..1 (1 channel: grayscale), resized to the height keeping the aspect ratio")


CLASSIFIER_OUTPUTS = {"logits": "float32 (batch, classes)",
                      "probabilities": "float32 (batch, classes): softmax of the logits plus the thresholds"}
CTC_OUTPUTS = {"logits": "float32 (batch, time, classes)", "probabilities": "float32 (batch, time, classes)"}
CTC_DECODING = "greedy CTC: argmax per timestep, merge repeats, drop class 0 (blank); class i is classes[i-1]"


@dataclass
class InferenceContract:
    """What a trained model reads and says (see the module's docstring).

    Attributes:
        task: the task's class path, for information: nothing that reads a contract dispatches on it.
        inputs: the tensors, in the order an exported file takes them.
        preprocessing: per input group, what must be done before: ``image`` (``size``, ``interpolation``), ``hands``
            (the hand detector's settings), ``text_image`` (``height``, ``channels``).
        classes: the class names (a text recognizer: its characters).
        thresholds: per-class logit biases added before the softmax (fitted on validation); None: plain softmax.
        outputs: the outputs and their shapes.
        decoding: how the outputs become a prediction (``argmax``, or greedy CTC for a recognizer).
    """

    task: str
    inputs: tuple[InputSpec, ...]
    preprocessing: dict[str, dict[str, Any]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    thresholds: list[float] | None = None
    outputs: dict[str, str] = field(default_factory=lambda: dict(CLASSIFIER_OUTPUTS))
    decoding: str = "argmax"

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def reads_images(self) -> bool:
        return "image" in self.input_names

    @property
    def reads_hands(self) -> bool:
        return "landmarks" in self.input_names

    @property
    def reads_sequences(self) -> bool:
        return "points" in self.input_names

    @property
    def reads_sentences(self) -> bool:
        """A continuous (CTC) sign recognizer of per-frame ``features``."""
        return "features" in self.input_names

    @property
    def tracks_sentences(self) -> bool:
        """A continuous recognizer whose per-frame features are tracked landmarks (``preprocessing.sequence``
        ``frame_features``), so that a video can be read into them."""
        return self.reads_sentences and self.preprocessing.get("sequence", {}).get("frame_features") == FRAME_FEATURES

    @property
    def image_size(self) -> int | None:
        return self.preprocessing.get("image", {}).get("size")

    @property
    def interpolation(self) -> str:
        return self.preprocessing.get("image", {}).get("interpolation", "bicubic")

    def with_image_size(self, size: int) -> InferenceContract:
        """The contract with the image side set (for a model whose training data did not record it)."""
        image = {**self.preprocessing.get("image", {}), "size": size}
        inputs = tuple(image_input(size) if spec.name == "image" else spec for spec in self.inputs)
        return replace(self, inputs=inputs, preprocessing={**self.preprocessing, "image": image})

    def restricted_to(self, names: set[str]) -> InferenceContract:
        """The contract with only the inputs in ``names`` (an exported graph drops the inputs it never reads)."""
        return replace(self, inputs=tuple(spec for spec in self.inputs if spec.name in names))

    def to_dict(self) -> dict[str, Any]:
        """The contract as plain JSON data (what checkpoints, ``model.json`` and exported files hold)."""
        data = asdict(self)
        data["inputs"] = [spec.to_dict() for spec in self.inputs]
        return {"format": FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceContract:
        """The contract of ``to_dict``'s data."""
        inputs = tuple(InputSpec(i["name"], i["dtype"], tuple(i["shape"]), i.get("description", ""))
                       for i in data["inputs"])
        return cls(data["task"], inputs, dict(data.get("preprocessing") or {}), list(data.get("classes") or []),
                   data.get("thresholds"), dict(data.get("outputs") or CLASSIFIER_OUTPUTS),
                   data.get("decoding", "argmax"))

    def check_ready(self, where: str | os.PathLike) -> None:
        """An ``InputError`` naming ``where`` when an input cannot be made: an image of an unknown size."""
        if self.reads_images and not self.image_size:
            raise InputError(f"{where}: the image size the model was trained at is not recorded in it (pass the "
                             "image size explicitly)")

    def example_inputs(self, batch: int = 2, seed: int = 0, width: int = 128, frames: int = 30
                       ) -> dict[str, torch.Tensor]:
        """Random tensors of every input (a plausible range for each), for tracing and parity checks; a batch of
        sequences has ``frames`` frames, the last sample's final third padding."""
        generator = torch.Generator().manual_seed(seed)
        made: dict[str, torch.Tensor] = {}
        free = {"batch": batch, "width": width, "frames": frames}
        for spec in self.inputs:
            shape = [free.get(dim, dim) if isinstance(dim, str) else dim for dim in spec.shape]
            if not all(isinstance(dim, int) for dim in shape):
                raise InputError(f"the size of input '{spec.name}' is unknown: {spec.shape} (pass the image size)")
            sizes = [int(dim) for dim in shape]
            if spec.dtype == "uint8":
                made[spec.name] = torch.randint(0, 256, sizes, dtype=torch.uint8, generator=generator)
            elif spec.name == "present" and len(sizes) == 2:  # a photo's two hand slots
                made[spec.name] = torch.tensor([[True, False], [True, True]] * batch)[:batch]
            elif spec.dtype == "bool" and spec.name == "mask":
                made[spec.name] = torch.ones(sizes, dtype=torch.bool)
                if batch > 1 and sizes[1] > 2:
                    made[spec.name][-1, sizes[1] - sizes[1] // 3:] = False
            elif spec.dtype == "bool":
                made[spec.name] = torch.rand(sizes, generator=generator) < 0.8
            elif spec.name == "aspect":
                made[spec.name] = torch.full(sizes, 4 / 3)
            elif spec.name == "landmarks":
                made[spec.name] = torch.randn(sizes, generator=generator) * 0.1
            else:
                made[spec.name] = torch.rand(sizes, generator=generator)
        return made

    def frame_inputs(self, frame: np.ndarray, detection: HandDetection | None = None) -> dict[str, torch.Tensor]:
        """The batch of one ``(H, W, 3)`` uint8 RGB frame and its hand detection, prepared as in training."""
        from .data.transforms import resize_square

        height, width = frame.shape[:2]
        inputs: dict[str, torch.Tensor] = {}
        if self.reads_hands:
            if detection is None:
                raise InputError("this model reads hand landmarks: detect the hands of the frame first")
            inputs.update(landmarks=torch.from_numpy(detection.landmarks)[None],
                          present=torch.from_numpy(detection.present)[None],
                          aspect=torch.tensor([width / max(height, 1)], dtype=torch.float32))
        if self.reads_images:
            image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
            inputs["image"] = resize_square(image, int(self.image_size or 0), self.interpolation)[None]
        return inputs


@dataclass
class Prediction:
    """``task.predict(batch)``: the predicted class of each sample with the thresholds applied (``labels`` by name,
    ``indices``), its probability, and every class's ``probabilities`` ``(B, C)``."""

    labels: list[str]
    indices: torch.Tensor
    probability: torch.Tensor
    probabilities: torch.Tensor


class InferenceModule(nn.Module):
    """A task run on the tensors of its contract, in the contract's order: returns ``(logits, probabilities)``
    (``Task.infer``). It is what ``signbridge export`` traces, and how ``Recognizer`` runs a checkpoint."""

    task: Task

    def __init__(self, task: Task, contract: InferenceContract | None = None):
        super().__init__()
        # the task's network is this module's only child: tracing (export) then walks plain modules, not the
        # LightningModule, whose trainer properties refuse to be read outside a trainer
        self.network = task.model
        object.__setattr__(self, "task", task)
        self.contract = contract or task.inference_contract()
        task.eval()
        self.eval()  # dropout off and batch statistics frozen, whatever mode the task was in

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.infer(dict(zip(self.contract.input_names, inputs)))

    def probabilities(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """The probabilities of a batch of named inputs, as a NumPy array."""
        with torch.inference_mode():
            return self(*(inputs[name] for name in self.contract.input_names))[1].numpy()


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with all graph optimisations (``threads``: intra-op threads, default all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def read_exported_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The signbridge metadata of an exported ``.onnx`` or TorchScript file (its ``inference`` key is the
    contract)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if METADATA_KEY not in props:
            raise InputError(f"{path}: an ONNX file without signbridge metadata (not written by signbridge export)")
        metadata = json.loads(props[METADATA_KEY])
    else:
        extra = {f"{METADATA_KEY}.json": ""}
        try:
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as error:
            raise InputError(f"{path}: not a TorchScript file ({str(error).splitlines()[0]})") from error
        if not extra[f"{METADATA_KEY}.json"]:
            raise InputError(f"{path}: a TorchScript file without signbridge metadata (not written by signbridge "
                             "export)")
        metadata = json.loads(extra[f"{METADATA_KEY}.json"])
    if "inference" not in metadata:
        raise InputError(f"{path}: exported by an older signbridge without an inference contract: export the "
                         "checkpoint again")
    return metadata


class ExportedModel:
    """A file of ``signbridge export`` (ONNX through onnxruntime on the CPU, or TorchScript) with its contract;
    called on named inputs it returns ``(logits, probabilities)`` as NumPy arrays."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.metadata = read_exported_metadata(self.path)
        self.contract = InferenceContract.from_dict(self.metadata["inference"])
        self.session = onnx_session(self.path, threads) if self.path.suffix == ".onnx" else None
        if self.session is None:
            if threads:
                torch.set_num_threads(threads)
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()

    def __call__(self, inputs: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        names = self.contract.input_names
        if self.session is not None:
            logits, probabilities = self.session.run(["logits", "probabilities"],
                                                     {name: inputs[name].numpy() for name in names})
            return logits, probabilities
        with torch.inference_mode():
            logits, probabilities = self.module(*(inputs[name] for name in names))
        return logits.numpy(), probabilities.numpy()

    def probabilities(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """The probabilities of a batch of named inputs, as a NumPy array."""
        return self(inputs)[1]


def read_contract(path: str | os.PathLike) -> InferenceContract:
    """The inference contract of a checkpoint or an exported file, without building the model (a checkpoint is
    memory-mapped, not read)."""
    from .files import read_checkpoint

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    if path.suffix in (".onnx", ".pt"):
        return InferenceContract.from_dict(read_exported_metadata(path)["inference"])
    saved = read_checkpoint(path).get("inference")
    if saved:
        return InferenceContract.from_dict(saved)
    from .tasks.base import load_model

    return load_model(path).inference_contract()


def load_predictor(path: str | os.PathLike, threads: int | None = None) -> InferenceModule | ExportedModel:
    """A checkpoint (``.ckpt``, run by PyTorch) or an exported file (``.onnx``, ``.pt``), each with ``contract`` and
    ``probabilities(inputs)``; an ``InputError`` naming a missing file."""
    from .tasks.base import load_model

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    if path.suffix in (".onnx", ".pt"):
        return ExportedModel(path, threads)
    if threads:
        torch.set_num_threads(threads)
    return InferenceModule(load_model(path)).eval()
