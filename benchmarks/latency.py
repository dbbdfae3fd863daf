"""Per-frame latency of sign recognition, stage by stage, and the accuracy of each exported variant.

For each checkpoint, batch 1, on real photos resized to 640 x 480 and JPEG-encoded in memory:
decode (``cv2.imdecode``), landmarks (MediaPipe HandLandmarker, IMAGE mode), preprocess (the model's input
tensors, as ``Recognizer`` makes them: ``InferenceContract.frame_inputs``), model, and total (their sum per
frame); median and p95 in milliseconds.
Model formats: PyTorch eager (``InferenceModule``, as ``Recognizer`` runs a checkpoint), PyTorch compiled
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
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from signbridge import load_model
from signbridge.export import export_checkpoint
from signbridge.inference import ExportedModel, InferenceContract, InferenceModule


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


def front_end(frames: list[bytes], contract: InferenceContract, hand_model: str | None) -> tuple[dict, list[dict]]:
    """Decode, landmark and preprocess every frame; their times and the model inputs of each frame."""
    import cv2

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
            made = contract.frame_inputs(frame, detection)
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
                  output: str | None = None) -> dict:
    """name -> (run(inputs dict) -> probabilities, file size in bytes or None)."""
    task = load_model(checkpoint)
    if output:  # the compiler drops the branches the chosen classifier does not read: time a fixed one
        task.model.output = output
    module: torch.nn.Module = InferenceModule(task).to(device)
    names = task.inference_contract().input_names
    if precision == "bf16":
        module = Autocast(module.to(memory_format=torch.channels_last))  # type: ignore[call-overload]
    runners = {}
    torch.set_num_threads(threads)

    def torch_runner(module):
        def run(inputs):
            with torch.inference_mode():
                return module(*(inputs[n].to(device, non_blocking=True) for n in names))[1]
        return run

    suffix = ", bf16" if precision == "bf16" else ""
    if "eager" in formats:
        runners[f"pytorch eager{suffix}"] = (torch_runner(module), checkpoint.stat().st_size)
    if "compiled" in formats:
        mode = compile_mode if device == "cuda" else None
        runners[f"pytorch compiled{f' ({mode})' if mode else ''}{suffix}"] = (
            torch_runner(torch.compile(module, mode=mode, dynamic=False)), None)
    for name, quantize in (("onnx", None), ("onnx-int8", "int8")):
        if name in formats and device == "cpu":
            path = workdir / f"{checkpoint.stem}.{name}.onnx"
            if not path.exists():
                report = export_checkpoint(checkpoint, path, quantize=quantize)
                print(f"  {report.format_lines()}", flush=True)
            runners[f"onnx {'int8' if quantize else 'fp32'}"] = (ExportedModel(path, threads).probabilities,
                                                                 path.stat().st_size)
    return runners


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


def accuracy(run, checkpoint: Path, args) -> float:
    """Test-split accuracy at batch 1 (the checkpoint's own data settings and split; ``--accuracy-root`` and
    ``--landmarks-file`` say where the data is now)."""
    data = load_model(checkpoint).training_datamodule(root=args.accuracy_root, landmarks_file=args.landmarks_file,
                                                      batch_size=1, num_workers=0, persistent_workers=False)
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


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def model_only_rows(checkpoint: Path, label: str, contract: InferenceContract, args, workdir: Path) -> list[str]:
    """The model alone on random inputs of its contract: every thread count (CPU) or precision (GPU)."""
    cores = os.cpu_count() or 1
    inputs = [contract.example_inputs(batch=1, seed=i) for i in range(200)]
    settings = ([("all", p) for p in args.precision] if args.device == "cuda"
                else [(t, "fp32") for t in args.threads])
    rows = []
    for threads, precision in settings:
        count = cores if threads == "all" else int(threads)
        runners = model_runners(checkpoint, workdir, args.formats, count, args.device, precision,
                                args.compile_mode, args.output)
        for name, (run, file_size) in runners.items():
            times = time_model(run, inputs, args.device, warmup=30)
            acc = f"{accuracy(run, checkpoint, args):.4f}" if args.accuracy_root else "–"
            size_text = f"{file_size / 1e6:.1f}" if file_size else "–"
            where = torch.cuda.get_device_name() if args.device == "cuda" else count
            rows.append(f"| {label} | {name} | {where} | {percentiles(times)} | model only | {size_text} | {acc} |")
            print(rows[-1], flush=True)
    return rows


def pipeline_rows(checkpoint: Path, label: str, contract: InferenceContract, args, workdir: Path) -> list[str]:
    """The whole CPU pipeline on real photos: decode, landmarks, preprocess and model, per frame."""
    cores = os.cpu_count() or 1
    stage_times, inputs = front_end(jpeg_frames(args.photos, args.frames), contract, args.hand_model)
    front = {stage: np.array(values) for stage, values in stage_times.items()}
    hands = sum(bool(item["present"].any()) for item in inputs if "present" in item)
    print(f"{label}: {len(inputs)} frames, {hands} with a hand; decode {percentiles(stage_times['decode'])}, "
          f"landmarks {percentiles(stage_times['landmarks'])}, preprocess "
          f"{percentiles(stage_times['preprocess'])} ms (median / p95)", flush=True)
    rows = []
    for threads in args.threads:
        count = cores if threads == "all" else int(threads)
        runners = model_runners(checkpoint, workdir, args.formats, count, "cpu", output=args.output)
        for name, (run, file_size) in runners.items():
            model_times = np.array(time_model(run, inputs, "cpu"))
            total = front["decode"] + front["landmarks"] + front["preprocess"] + model_times
            acc = f"{accuracy(run, checkpoint, args):.4f}" if args.accuracy_root else "–"
            size_text = f"{file_size / 1e6:.1f}" if file_size else "–"
            rows.append(f"| {label} | {name} | {count} | {percentiles(list(model_times))} | "
                        f"{percentiles(list(total))} | {size_text} | {acc} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="latency_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""), flush=True)
    rows = []
    for checkpoint in map(Path, args.checkpoint):
        contract = load_model(checkpoint).inference_contract()
        label = f"{contract.task.rsplit('.', 1)[-1]} ({checkpoint.name})"
        if args.device == "cuda" or not args.photos:
            rows += model_only_rows(checkpoint, label, contract, args, workdir)
        else:
            rows += pipeline_rows(checkpoint, label, contract, args, workdir)
    print("\n| model | format | threads | model ms (median / p95) | total ms (median / p95) | file MB | test acc |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
