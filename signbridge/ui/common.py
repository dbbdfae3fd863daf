"""Settings and helpers shared by the pages of the browser app (``signbridge ui``)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..hands.video import VIDEO_SUFFIXES
from ..imageio import IMAGE_EXTENSIONS, decode_image_rgb

MODELS_DIR_VARIABLE = "SIGNBRIDGE_UI_MODELS_DIR"
CONFIGS_DIR_VARIABLE = "SIGNBRIDGE_UI_CONFIGS_DIR"
PHOTO_TYPES = sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)  # what the uploader accepts
VIDEO_TYPES = sorted(suffix.lstrip(".") for suffix in VIDEO_SUFFIXES)


@dataclass(frozen=True)
class Settings:
    """Where the app reads and writes: the models folder (runs, studies, jobs) and the configs it offers."""

    models_dir: Path
    configs_dir: Path


def settings() -> Settings:
    """The folders given to ``signbridge ui`` (passed to the app through environment variables)."""
    return Settings(Path(os.environ.get(MODELS_DIR_VARIABLE, "runs")),
                    Path(os.environ.get(CONFIGS_DIR_VARIABLE, "configs")))


def evaluation_step(config: str, checkpoint: str, run: str) -> dict[str, Any]:
    """``signbridge test`` of a trained model with the config it was trained with; its scores go into the model's
    ``model.json`` and ``test_per_class.csv`` into its run folder (no new log folder)."""
    from .jobs import make_step

    return make_step("test", [config], {"ckpt_path": checkpoint, "trainer.logger": False,
                                        "trainer.default_root_dir": run})


def decode_photo(name: str, data: bytes) -> np.ndarray:
    """An uploaded photo as an ``(H, W, 3)`` uint8 RGB array; an ``InputError`` naming it if it is not an image."""
    image = decode_image_rgb(data)
    if image is None:
        raise InputError(f"{name}: not a readable image")
    return image


class SharedRecognizer:
    """A ``Recognizer`` (photos), ``SequenceRecognizer`` (videos, for a sequence model) or ``SentenceRecognizer``
    (videos of continuous signing, for a continuous recognizer) shared by the app's
    sessions: MediaPipe's detector is not safe to call from two threads at once, so calls take turns."""

    def __init__(self, model: Path):
        from ..inference import read_contract
        from ..recognize import Recognizer, SentenceRecognizer, SequenceRecognizer

        contract = read_contract(model)
        self.reads_sentences = contract.reads_sentences
        self.reads_videos = contract.reads_sequences or self.reads_sentences
        self.recognizer: Recognizer | SequenceRecognizer = (
            SentenceRecognizer(model) if self.reads_sentences else SequenceRecognizer(model) if self.reads_videos
            else Recognizer(model))
        self.lock = threading.Lock()

    def predict(self, frame: np.ndarray):
        with self.lock:
            return self.recognizer.predict(frame)  # type: ignore[union-attr]

    def close(self) -> None:
        """Close MediaPipe's detector now. Left to the garbage collector, its close can come in the middle of a
        later training in the same process, where MediaPipe has hung in it (waiting for its own dispatcher)."""
        with self.lock:
            self.recognizer.close()

    @property
    def scores_any_names(self) -> bool:
        """A text-aligned sequence model: it scores class names the user types."""
        return self.reads_videos and "text" in self.recognizer.contract.preprocessing

    def classify_video(self, name: str, data: bytes, classes: list[str] | None = None):
        """An uploaded video's ``VideoRecognition`` (over ``classes`` for a text-aligned model; None: its trained
        classes); an ``InputError`` naming it when it cannot be decoded."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(name).name
            path.write_bytes(data)
            with self.lock:
                try:
                    if self.scores_any_names:
                        self.recognizer.use_classes(classes)  # type: ignore[union-attr]
                    return self.recognizer.classify_video(path)  # type: ignore[union-attr]
                except InputError as error:
                    raise InputError(str(error).replace(str(path), name)) from None
