"""Per-frame latency of sign recognition, stage by stage, and the accuracy of each exported variant.

For each checkpoint, batch 1, on real photos resized to 640 x 480 and JPEG-encoded in memory:
decode (``cv2.imdecode``), landmarks (MediaPipe HandLandmarker, IMAGE mode), preprocess (the model's input
tensors, as ``Recognizer.model_inputs``), model, and total (their sum per frame); median and p95 in milliseconds.
Model formats: PyTorch eager (through the export wrapper, as ``Recognizer`` runs a checkpoint), PyTorch compiled
(``torch.compile``), ONNX fp32 and ONNX int8 (onnxruntime, CPU), each with 1 thread and with all cores. With
``--device cuda`` the model alone is timed on the GPU instead (eager, and ``torch.compile`` in ``--compile-mode``;
both modes replay CUDA graphs), in each ``--precision`` (fp32, or bf16 autocast with channels-last weights).
``--accuracy-root`` adds the test-split accuracy of every format.

    python benchmarks/latency.py --checkpoint LANDMARKS.ckpt --checkpoint HYBRID.ckpt \\
        --photos DATA/0 --frames 50 --accuracy-root DATA --landmarks-file digits.npz
    python benchmarks/latency.py --checkpoint HYBRID.ckpt --device cuda --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from signbridge.export import (  # noqa: E402
    ExportedClassifier,
    example_inputs,
    export_checkpoint,
    image_size_of,
    input_names_of,
    onnx_session,
)
from signbridge.files import read_checkpoint  # noqa: E402
from signbridge.tasks.base import load_task  # noqa: E402


def percentiles(values: list[float]) -> str:
    return f"{np.median(values):7.2f} / {np.percentile(values, 95):7.2f}"


def jpeg_frames(folder: str, count: int) -> list[bytes]:
    import cv2

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    frames = []
    for path in paths:
        image = cv2.resize(cv2.imread(str(path)), (640, 480), interpolation=cv2.INTER_LINEAR)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames


def front_end(frames: list[bytes], image_size: int | None, hand_model: str | None) -> tuple[dict, list[dict]]:
    """Decode, landmark and preprocess every frame; their times and the model inputs of each frame."""
    import cv2

    from signbridge.data.transforms import resize_square
    from signbridge.hands.detect import HandDetector

    times: dict[str, list[float]] = {"decode": [], "landmarks": [], "preprocess": []}
    inputs = []
    with HandDetector(hand_model) as detector:
        detector.detect(np.zeros((480, 640, 3), np.uint8))  # warm-up
        for data in frames:
            t0 = time.perf_counter()
            frame = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            detection = detector.detect(frame)
            t2 = time.perf_counter()
            made = {"landmarks": torch.from_numpy(detection.landmarks)[None],
                    "present": torch.from_numpy(detection.present)[None],
                    "aspect": torch.tensor([frame.shape[1] / frame.shape[0]], dtype=torch.float32)}
            if image_size:
                made["image"] = resize_square(torch.from_numpy(frame).permute(2, 0, 1), image_size)[None]
            t3 = time.perf_counter()
            times["decode"].append((t1 - t0) * 1e3)
            times["landmarks"].append((t2 - t1) * 1e3)
            times["preprocess"].append((t3 - t2) * 1e3)
            inputs.append(made)
    return times, inputs


class Autocast(torch.nn.Module):
    """Runs a module under bf16 autocast on the GPU (inside the compiled graph when compiled)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.module(*inputs)


def model_runners(checkpoint: Path, workdir: Path, formats: list[str], threads: int, device: str,
                  precision: str = "fp32", compile_mode: str = "reduce-overhead",
                  output: str | None = None) -> tuple[dict, tuple[str, ...]]:
    """name -> (run(inputs dict) -> probabilities, file size in bytes or None)."""
    task = load_task(checkpoint)
    if output:  # the compiler drops the branches the chosen classifier does not read: time a fixed one
        task.model.output = output
    names = input_names_of(task)
    wrapper: torch.nn.Module = ExportedClassifier(task, names).eval().to(device)
    if precision == "bf16":
        wrapper = Autocast(wrapper.to(memory_format=torch.channels_last))  # type: ignore[call-overload]
    runners = {}
    torch.set_num_threads(threads)

    def torch_runner(module):
        def run(inputs):
            with torch.inference_mode():
                return module(*(inputs[n].to(device, non_blocking=True) for n in names))[1]
        return run

    suffix = ", bf16" if precision == "bf16" else ""
    if "eager" in formats:
        runners[f"pytorch eager{suffix}"] = (torch_runner(wrapper), checkpoint.stat().st_size)
    if "compiled" in formats:
        mode = compile_mode if device == "cuda" else None
        runners[f"pytorch compiled{f' ({mode})' if mode else ''}{suffix}"] = (
            torch_runner(torch.compile(wrapper, mode=mode, dynamic=False)), None)
    for name, quantize in (("onnx", None), ("onnx-int8", "int8")):
        if name in formats and device == "cpu":
            path = workdir / f"{checkpoint.stem}.{name}.onnx"
            if not path.exists():
                report = export_checkpoint(checkpoint, path, quantize=quantize)
                print(f"  {report.format_lines()}", flush=True)
            session = onnx_session(path, threads)
            used = [i.name for i in session.get_inputs()]

            def run(inputs, session=session, used=used):
                return session.run(["probabilities"], {n: inputs[n].numpy() for n in used})[0]
            runners[f"onnx {'int8' if quantize else 'fp32'}"] = (run, path.stat().st_size)
    return runners, names


def time_model(run, inputs: list[dict], device: str, warmup: int = 10) -> list[float]:
    for item in inputs[:warmup]:
        run(item)
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for item in inputs:
        t0 = time.perf_counter()
        out = run(item)
        if device == "cuda":
            out.float().cpu()  # the result on the host: what a caller waits for
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def accuracy(run, checkpoint: Path, names: tuple[str, ...], args, image_size: int | None) -> float:
    """Test-split accuracy at batch 1 (the split of the checkpoint's data settings)."""
    from signbridge.data import LandmarkDataModule, SignDataModule

    hparams = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
    settings = {k: hparams[k] for k in ("val_fraction", "test_fraction", "split_seed") if k in hparams}
    if "image" in names:
        data = SignDataModule(args.accuracy_root, landmarks_file=args.landmarks_file, image_size=image_size,
                              batch_size=1, num_workers=0, **settings)
    else:
        data = LandmarkDataModule(args.accuracy_root, landmarks_file=args.landmarks_file, batch_size=1,
                                  num_workers=0, **settings)
    data.prepare_data()
    data.setup("test")
    correct = total = 0
    for batch in data.test_dataloader():
        probabilities = run(batch)
        predicted = int(np.asarray(probabilities.float().cpu() if torch.is_tensor(probabilities)
                                   else probabilities).argmax())
        correct += predicted == int(batch["label"][0])
        total += 1
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--photos", help="a folder of photos: frames for the whole CPU pipeline (without it: the "
                        "model alone, on random inputs)")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--formats", nargs="+", default=["eager", "compiled", "onnx", "onnx-int8"])
    parser.add_argument("--threads", nargs="+", default=["1", "all"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32"],
                        help="GPU only: bf16 runs the model under autocast with channels-last weights")
    parser.add_argument("--output", choices=["fused", "image", "landmarks", "mean"], default=None,
                        help="hybrid only: predict with this classifier instead of the one chosen in training "
                        "(fused and mean run both branches)")
    parser.add_argument("--compile-mode", choices=["reduce-overhead", "max-autotune"], default="reduce-overhead",
                        help="GPU only: torch.compile mode (both replay CUDA graphs; max-autotune also searches "
                        "kernels, which takes minutes)")
    parser.add_argument("--hand-model", default=None)
    parser.add_argument("--accuracy-root", default=None, help="dataset root: add test-split accuracy per format")
    parser.add_argument("--landmarks-file", default=None)
    parser.add_argument("--workdir", default=None, help="where the exported files go (default: a temp folder)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="latency_"))
    workdir.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    print(f"torch {torch.__version__}, {cores} CPU cores"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""), flush=True)
    rows = []
    for checkpoint in map(Path, args.checkpoint):
        task = load_task(checkpoint)
        names = input_names_of(task)
        size = image_size_of(read_checkpoint(checkpoint), task) if "image" in names else None
        label = f"{type(task).__name__} ({checkpoint.name})"
        if args.device == "cuda" or not args.photos:  # the model alone, on random inputs of its contract
            inputs = [dict(zip(names, example_inputs(names, size, batch=1, seed=i))) for i in range(200)]
            settings = ([("all", p) for p in args.precision] if args.device == "cuda"
                        else [(t, "fp32") for t in args.threads])
            for threads, precision in settings:
                count = cores if threads == "all" else int(threads)
                runners, _ = model_runners(checkpoint, workdir, args.formats, count, args.device, precision,
                                           args.compile_mode, args.output)
                for name, (run, file_size) in runners.items():
                    times = time_model(run, inputs, args.device, warmup=30)
                    acc = f"{accuracy(run, checkpoint, names, args, size):.4f}" if args.accuracy_root else "–"
                    size_text = f"{file_size / 1e6:.1f}" if file_size else "–"
                    where = torch.cuda.get_device_name() if args.device == "cuda" else count
                    rows.append(f"| {label} | {name} | {where} | {percentiles(times)} | model only | {size_text} | "
                                f"{acc} |")
                    print(rows[-1], flush=True)
            continue
        stage_times, inputs = front_end(jpeg_frames(args.photos, args.frames), size, args.hand_model)
        front = {stage: np.array(values) for stage, values in stage_times.items()}
        hands = sum(bool(item["present"].any()) for item in inputs)
        print(f"{label}: {len(inputs)} frames, {hands} with a hand; decode {percentiles(stage_times['decode'])}, "
              f"landmarks {percentiles(stage_times['landmarks'])}, preprocess "
              f"{percentiles(stage_times['preprocess'])} ms (median / p95)", flush=True)
        for threads in args.threads:
            count = cores if threads == "all" else int(threads)
            runners, names = model_runners(checkpoint, workdir, args.formats, count, "cpu", output=args.output)
            for name, (run, file_size) in runners.items():
                model_times = np.array(time_model(run, inputs, "cpu"))
                total = front["decode"] + front["landmarks"] + front["preprocess"] + model_times
                acc = f"{accuracy(run, checkpoint, names, args, size):.4f}" if args.accuracy_root else "–"
                size_text = f"{file_size / 1e6:.1f}" if file_size else "–"
                rows.append(f"| {label} | {name} | {count} | {percentiles(list(model_times))} | "
                            f"{percentiles(list(total))} | {size_text} | {acc} |")
                print(rows[-1], flush=True)
    print("\n| model | format | threads | model ms (median / p95) | total ms (median / p95) | file MB | test acc |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
