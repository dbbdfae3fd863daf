"""Shared fixtures. Tests that need ../shared find it through ``shared_dir()`` and skip with the reason if absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import forked
from tests.forked import REPO

SHARED = Path(os.environ.get("SIGNBRIDGE_SHARED", REPO.parent / "shared"))
HAND_MODEL = SHARED / "models" / "hand_landmarker.task"


def shared_dir(*parts: str) -> Path:
    """A path inside ../shared (or $SIGNBRIDGE_SHARED); skips the test with a clear reason when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the checkout; set SIGNBRIDGE_SHARED to move it)")
    return path


def console(capsys, *args: str) -> subprocess.CompletedProcess:
    """``signbridge ARGS`` through the console entry point in this process (what a shell gets: the exit code,
    stdout and stderr), without the seconds of a new interpreter's imports."""
    from signbridge.cli import console_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        console_main([str(arg) for arg in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), exited.value.code, out.out, out.err)


def console_in_new_process(runs: dict[str, list[str]], hand_model: Path | None = None,
                           timeout: float = 300) -> dict[str, subprocess.CompletedProcess]:
    """Several ``signbridge`` commands, one after the other, in one new process (``tests.forked``), each through the
    console entry point: its exit code, stdout and stderr, split by command. For commands that must not run in the
    test's own process (MediaPipe must not start in a process that has trained, see ``HandDetector``); one process
    for all of them starts MediaPipe once."""
    script = ("import sys\nfrom signbridge.cli import console_main\n"
              "for name, args in " + repr(list(runs.items())) + ":\n"
              "    for stream in (sys.stdout, sys.stderr):\n"
              "        print(f'== {name}', file=stream, flush=True)\n"
              "    try:\n"
              "        console_main(args)\n"
              "    except SystemExit as exited:\n"
              "        print(f'== exit {exited.code}', flush=True)\n")
    env = {} if hand_model is None else {"SIGNBRIDGE_HAND_LANDMARKER": str(hand_model)}
    done = forked.run(code=script, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]

    def sections(text: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in text.splitlines(keepends=True):
            if line.startswith("== ") and line[3:].strip() in runs:
                found[line[3:].strip()] = []
            elif found:
                found[list(found)[-1]].append(line)
        return found

    out, err = sections(done.stdout), sections(done.stderr)
    results = {}
    for name, args in runs.items():
        *lines, last = out[name]
        assert last.startswith("== exit "), f"{name}: {err[name][-20:]}"
        code = last.split()[-1]
        results[name] = subprocess.CompletedProcess(args, 0 if code == "None" else int(code), "".join(lines),
                                                    "".join(err[name]))
    return results


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    """Keep caches out of the user's home, and point the landmarker at the verified offline copy."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    if HAND_MODEL.exists():
        os.environ["SIGNBRIDGE_HAND_LANDMARKER"] = str(HAND_MODEL)
    # pytest -n 2 (xdist) runs two tests at a time: one thread each, so they never fight for the cores
    threads = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
    torch.set_num_threads(threads)
    os.environ.setdefault("SIGNBRIDGE_THREADS", str(threads))  # the console commands the tests start


@pytest.fixture(autouse=True)
def _restore_global_state():
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="session")
def hand_model() -> Path:
    return shared_dir("models", "hand_landmarker.task")


def copy_digits(root: Path, classes: tuple[str, ...] = ("0", "1", "2", "3"), per_class: int = 12) -> Path:
    """Copy the first photos of some Sign Language Digits classes to ``root`` (tests may then add files)."""
    source = shared_dir("data", "sign_digits", "Dataset")
    for name in classes:
        (root / name).mkdir(parents=True)
        for image in sorted((source / name).glob("*.JPG"))[:per_class]:
            shutil.copy(image, root / name / image.name)
    return root


@pytest.fixture(scope="session")
def digits_subset(tmp_path_factory) -> Path:
    """A real subset of Sign Language Digits: 4 classes x 12 photos."""
    return copy_digits(tmp_path_factory.mktemp("digits") / "Dataset")


@pytest.fixture(scope="session")
def digits_cache(digits_subset, hand_model, tmp_path_factory) -> Path:
    """The landmark cache of ``digits_subset``, built once with the real detector."""
    from signbridge.hands.cache import extract_landmarks

    output = tmp_path_factory.mktemp("digits_cache") / "landmarks.npz"
    # in a worker process: MediaPipe must not start in a process that has trained (see HandDetector)
    extract_landmarks(digits_subset, output, model_path=hand_model, workers=1, progress=False)
    return output


def synthetic_hand(rng: np.random.Generator | None = None) -> np.ndarray:
    """A plausible right hand in the (21, 3) wrist-relative layout: five straight fingers fanned in the xy plane."""
    from signbridge.hands.layout import FINGER_CHAINS

    points = np.zeros((21, 3), np.float32)
    for finger, chain in enumerate(FINGER_CHAINS):
        angle = np.deg2rad(-60 + 30 * finger)
        direction = np.array([np.sin(angle), -np.cos(angle), 0.0])
        for k, index in enumerate(chain[1:], start=1):
            points[index] = 0.05 * k * direction
    if rng is not None:
        points += rng.normal(scale=0.002, size=points.shape).astype(np.float32)
        points[0] = 0
    return points


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """A real image folder for the CNN: 4 classes x 12 Sign Language Digits photos, plus one corrupt file."""
    root = copy_digits(tmp_path_factory.mktemp("folder") / "digits")
    (root / "3" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def captcha_subset(tmp_path_factory) -> Path:
    """64 real captchas (``<text>.png``), the first in sorted order."""
    source = shared_dir("data", "captcha", "images")
    root = tmp_path_factory.mktemp("captcha") / "images"
    root.mkdir()
    for image in sorted(source.glob("*.png"))[:64]:
        shutil.copy(image, root / image.name)
    return root


def write_sequences(root: Path, length: int = 170, classes: int = 3, per_class: int = 6, frames: int = 12,
                    seed: int = 0, dtype=np.float64) -> Path:
    """Write a tiny folder-per-class dataset of per-frame ``.npy`` vectors (``root/<sign>/<seq>/<frame>.npy``) in the
    layout of ``length`` (126, 170, 258 or 1662): a pose standing still and a right hand whose wrist moves along a
    line whose direction is the class; the left hand appears in the second half of class 1's sequences."""
    from signbridge.hands.sequence import VECTOR_LAYOUTS

    layout = VECTOR_LAYOUTS[length]
    rng = np.random.default_rng(seed)
    for label in range(classes):
        angle = 2 * np.pi * label / classes
        for sequence in range(per_class):
            folder = root / f"sign{label}" / str(sequence)
            folder.mkdir(parents=True)
            for frame in range(frames):
                vector = np.zeros(length)
                t = frame / max(1, frames - 1)
                wrist = np.array([0.5 + 0.2 * t * np.cos(angle), 0.5 + 0.2 * t * np.sin(angle), 0.0])
                hand = synthetic_hand(rng) + wrist
                for part, (offset, count, width, _) in layout.parts.items():
                    if part == "right_hand":
                        vector[offset:offset + 63] = hand.reshape(-1)
                    elif part == "left_hand" and label == 1 and t > 0.5:
                        vector[offset:offset + 63] = (hand * [-1, 1, 1] + [1, 0, 0]).reshape(-1)
                    elif part in ("pose", "face"):
                        values = rng.uniform(0.3, 0.7, size=(count, width))
                        vector[offset:offset + count * width] = values.reshape(-1)
                np.save(folder / f"{frame}.npy", vector.astype(dtype))
    return root


def copy_wlasl(root: Path, classes: int = 4, per_class: int = 10) -> Path:
    """The first sequences of the first classes of the real ``wlasl40`` landmark sequences."""
    source = shared_dir("data", "sign_sequences", "wlasl40")
    for name in sorted(path.name for path in source.iterdir())[:classes]:
        for sequence in range(per_class):
            shutil.copytree(source / name / str(sequence), root / name / str(sequence))
    return root


@pytest.fixture(scope="session")
def wlasl_subset(tmp_path_factory) -> Path:
    """Real word-level sign sequences: 4 wlasl40 signs x 10 sequences of 30 frames (170 values per frame)."""
    return copy_wlasl(tmp_path_factory.mktemp("wlasl") / "wlasl")
