"""Speed of the sequence classifier: training (Lightning against a plain PyTorch loop of the same network on the same
tensors, same augmentation and optimiser, in one run), the latency of one window on the CPU (PyTorch and ONNX
Runtime), and the video path end to end (MediaPipe tracking per frame, and a window's decision after its last
frame) on real sign videos.

    python benchmarks/sequence_throughput.py --root DATA/wlasl40 --videos DATA/videos/abdomen [--epochs 5]
        [--accelerator gpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import adamw_like

REPO = Path(__file__).resolve().parents[1]


def recipe(root: str, cache: str | None, accelerator: str, epochs: int):
    """The default recipe's task and datamodule (``configs/sign_sequences.yaml``), built by LightningCLI."""
    from signbridge.lightning_cli import load_config

    overrides = {"data.init_args.root": root, "trainer.max_epochs": epochs, "trainer.accelerator": accelerator}
    if cache:
        overrides["data.init_args.landmarks_file"] = cache
    return load_config([str(REPO / "configs" / "sign_sequences.yaml")], overrides)


def lightning_epochs(config: dict, epochs: int):
    """Seconds per epoch of ``signbridge fit`` (training and validation, checkpoints, logs), after the first."""
    import lightning as L

    from signbridge.lightning_cli import run, with_overrides

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.starts.append(time.perf_counter())

        def on_train_end(self, trainer, module) -> None:
            self.starts.append(time.perf_counter())

    clock = Clock()
    with tempfile.TemporaryDirectory() as folder:
        config = with_overrides(config, {"trainer.logger.init_args.save_dir": folder,
                                         "trainer.enable_progress_bar": False})
        cli = run("fit", config, callbacks=[clock])
    laps = np.diff(clock.starts)[1:]  # the first epoch includes warm-up
    return float(np.mean(laps)), cli


def plain_epochs(cli, epochs: int, device: str) -> float:
    """Seconds per epoch of a plain loop on the Lightning run's datamodule (the same tensors): the same network,
    augmentation, AdamW (fused when the task's is) and warm-up + cosine schedule, and a validation pass per epoch."""
    from signbridge.models.sequence import SequenceNet, SequenceNetConfig

    data, model_args = cli.datamodule, cli.model.hparams
    torch.manual_seed(0)
    net = SequenceNet(data.num_classes, data.parts, SequenceNetConfig(**model_args["net"])).to(device)
    optimizer = adamw_like(cli.model, net.parameters(), model_args["lr"], model_args["weight_decay"])
    train, val = data.train_dataloader(), data.val_dataloader()
    steps = epochs * len(train)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, model_args["lr"], total_steps=steps + 1)
    starts = []
    for _ in range(epochs):
        starts.append(time.perf_counter())
        net.train()
        for batch in train:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            batch = data.augmenter(batch, data.parts) if data.augmenter is not None else batch
            logits = net(batch["points"], batch["present"], batch["mask"])
            loss = F.cross_entropy(logits, batch["label"], label_smoothing=model_args["label_smoothing"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            for batch in val:
                net(batch["points"].to(device), batch["present"].to(device), batch["mask"].to(device))
    starts.append(time.perf_counter())
    return float(np.mean(np.diff(starts)[1:]))


def window_latency(checkpoint: Path, frames: int, runs: int = 200) -> dict[str, float]:
    """Median ms of one window (batch 1) through PyTorch and through the exported ONNX file."""
    from signbridge.export import export_checkpoint
    from signbridge.inference import ExportedModel, InferenceModule
    from signbridge.tasks.base import load_model

    module = InferenceModule(load_model(checkpoint))
    inputs = module.contract.example_inputs(batch=1, frames=frames)
    exported = ExportedModel(export_checkpoint(checkpoint, checkpoint.with_suffix(".onnx")).path)

    def median_ms(call) -> float:
        for _ in range(10):
            call()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    return {"pytorch": median_ms(lambda: module.probabilities(inputs)),
            "onnxruntime": median_ms(lambda: exported.probabilities(inputs))}


def video_path(checkpoint: Path, videos: Path, window: int) -> dict[str, float]:
    """Per-frame tracking ms (median, 95th percentile) over the real videos, and each window's decision latency
    after its last frame (tracking that frame + the model), with a window every frame (stride 1)."""
    from signbridge.recognize import SequenceRecognizer

    per_frame, latency, frames = [], [], 0
    with SequenceRecognizer(checkpoint, window=window, stride=1) as recognizer:
        for video in sorted(videos.glob("*.mp4")):
            result = recognizer.classify_video(video)
            frames += len(result.points)
            latency += [w.timings_ms["latency"] for w in result.windows]
            per_frame += [w.timings_ms["landmarks"] for w in result.windows]
    total = sum(per_frame) / max(1, len(per_frame))
    return {"frames": frames, "landmarks_ms_mean": total,
            "latency_ms_median": statistics.median(latency), "latency_ms_p95": float(np.percentile(latency, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--videos", help="a folder of sign videos for the video path")
    parser.add_argument("--landmarks_file")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint", help="a trained sequence checkpoint for the latency (default: the fit's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    config = recipe(args.root, args.landmarks_file, args.accelerator, args.epochs)
    lightning, cli = lightning_epochs(config, args.epochs)
    plain = plain_epochs(cli, args.epochs, device)
    print(f"| training ({args.accelerator}, {torch.get_num_threads()} threads) | s / epoch |")
    print("|---|---|")
    print(f"| signbridge fit (Lightning) | {lightning:.2f} |")
    print(f"| plain PyTorch loop | {plain:.2f} |")
    print(f"| plain / Lightning throughput | {plain / lightning:.3f} |")
    print(f"| 100 epochs, Lightning (estimate) | {100 * lightning / 60:.1f} min |")
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        latency = window_latency(checkpoint, 30)
        print(f"\none window of 30 frames, batch 1, CPU {torch.get_num_threads()} threads: "
              f"PyTorch {latency['pytorch']:.2f} ms, ONNX Runtime {latency['onnxruntime']:.2f} ms")
        if args.videos:
            path = video_path(checkpoint, Path(args.videos), 30)
            print(f"video path on {path['frames']} frames of {args.videos}: MediaPipe tracking "
                  f"{path['landmarks_ms_mean']:.1f} ms per frame ({1000 / path['landmarks_ms_mean']:.0f} fps), "
                  f"decision after a window's last frame {path['latency_ms_median']:.1f} ms median, "
                  f"{path['latency_ms_p95']:.1f} ms p95")


if __name__ == "__main__":
    main()
