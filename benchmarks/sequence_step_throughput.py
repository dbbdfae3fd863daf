"""Training-step throughput of the sequence classifier and the text-aligned sequence classifier on a GPU: Lightning
``Trainer.fit`` against a plain PyTorch loop of the same network, in one run; and the batch-1 latency of one window,
eager against a CUDA graph.

Both loops train the same nn.Modules on the same batches, already on the GPU, shaped as wlasl40's (pose + both
hands, 64 frames, 40 classes): the recipe's batch augmentation (``SequenceAugment``, on the device), bf16 autocast,
fused AdamW, the warm-up + cosine schedule stepped every batch, cross-entropy with label smoothing; the text-aligned
one adds the class-name similarity loss with a trainable character encoder of the names. Timing runs from the start
of batch ``warmup`` to the end of the last batch, after a CUDA synchronise, so validation, checkpoints and the
epoch's logs are outside the window (``sequence_throughput.py`` times whole epochs). The Lightning run has the
progress bar of ``configs/trainer/gpu.yaml`` (refresh every 20 steps).

    python benchmarks/sequence_step_throughput.py --batch-size 64 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from common import StepClock, StepTimer, append_rows, print_step_comparisons, step_comparison, synchronize
from lightning.pytorch.callbacks import TQDMProgressBar
from train_throughput import BatchList

from signbridge.data.transforms import SequenceAugment
from signbridge.hands.sequence import PART_SIZES
from signbridge.models.sequence import SequenceNetConfig
from signbridge.models.text import TextSideConfig
from signbridge.tasks import SequenceClassifier, TextAlignedSequenceClassifier

PARTS = ("pose", "left_hand", "right_hand")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # a CPU run only checks the script
# the recipe's augmentation (configs/sign_sequences.yaml)
RECIPE_AUGMENT = SequenceAugment(mirror=0.0, affine=0.75, resample=0.75, time_mask=0.3, part_dropout=0.05,
                                 point_dropout=0.05)


def make_batches(count: int, batch_size: int, frames: int, num_classes: int, device: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    points = sum(PART_SIZES[p] for p in PARTS)
    batches = []
    for _ in range(count):
        lengths = torch.randint(frames // 2, frames + 1, (batch_size,), generator=generator)
        mask = torch.arange(frames)[None] < lengths[:, None]
        present = (torch.rand(batch_size, frames, len(PARTS), generator=generator) < 0.8) & mask[..., None]
        batches.append({
            "points": torch.rand(batch_size, frames, points, 3, generator=generator) * mask[..., None, None],
            "present": present, "mask": mask,
            "label": torch.randint(0, num_classes, (batch_size,), generator=generator),
        })
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


class TensorSequences(L.LightningDataModule):
    """Batches already on the GPU, augmented after the transfer as ``SequenceDataModule`` does."""

    def __init__(self, batches: list[dict], classes: list[str], augment: SequenceAugment | None):
        super().__init__()
        self.batches, self.classes, self.parts, self.augment = batches, classes, PARTS, augment

    def train_dataloader(self):
        return torch.utils.data.DataLoader(BatchList(self.batches), batch_size=None, shuffle=False)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(BatchList(self.batches[:1]), batch_size=None)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        training = self.trainer is not None and self.trainer.training
        return self.augment(batch, self.parts) if training and self.augment is not None else batch


def build_task(kind: str, num_classes: int) -> SequenceClassifier:
    torch.manual_seed(0)
    settings = dict(num_classes=num_classes, parts=list(PARTS), net=SequenceNetConfig(), lr=1e-3, weight_decay=0.05,
                    label_smoothing=0.1, lr_schedule="cosine", warmup_epochs=0.1)
    if kind == "text_aligned":
        return TextAlignedSequenceClassifier(text=TextSideConfig(encoder="characters", dim=256), embedding_dim=256,
                                             **settings)
    return SequenceClassifier(**settings)


def plain_loop(kind: str, batches: list[dict], warmup: int, classes: list[str], augment: SequenceAugment | None
               ) -> StepClock:
    """The loop a researcher would write around the same modules, timed after the warm-up."""
    task = build_task(kind, len(classes)).to(DEVICE).train()  # only for its nn.Modules: nothing of the task runs
    net = task.model
    modules = torch.nn.ModuleList([net, task.text]) if kind == "text_aligned" else net
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-3, weight_decay=0.05, fused=DEVICE == "cuda")
    total, warm = len(batches), max(1, round(0.1 * len(batches)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (step - warm) / (total - warm))).item())

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    clock = StepClock(synchronize)
    for step, batch in enumerate(batches):
        clock.mark(step, warmup)
        batch = augment(batch, PARTS) if augment is not None else batch
        labels = batch["label"]
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            if kind == "text_aligned":
                features = net.sign.features(batch["points"], batch["present"], batch["mask"])
                logits = net.align(features, task.text(classes))
                plain = net.sign.head(net.sign.head_dropout(features))
                loss = (F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
                        + 0.5 * F.cross_entropy(plain.float(), labels, label_smoothing=0.1))
            else:
                logits = net(batch["points"], batch["present"], batch["mask"])
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
    clock.stop()
    return clock


def lightning_loop(kind: str, batches: list[dict], warmup: int, classes: list[str], augment: SequenceAugment | None
                   ) -> StepClock:
    timer = StepTimer(warmup, len(batches) - 1, synchronize)
    trainer = L.Trainer(
        accelerator="gpu" if DEVICE == "cuda" else "cpu", devices=1, precision="bf16-mixed", max_epochs=1,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=1,
        callbacks=[timer, TQDMProgressBar(refresh_rate=20)],
    )
    trainer.fit(build_task(kind, len(classes)), datamodule=TensorSequences(batches, classes, augment))
    return timer.clock


def window_latency(kind: str, frames: int, classes: list[str], runs: int = 300) -> dict[str, float]:
    """Median ms of one window (batch 1, fp32, eval): eager, and replayed as a captured CUDA graph."""
    task = build_task(kind, len(classes)).to(DEVICE).eval()
    net = task.model
    batch = make_batches(1, 1, frames, len(classes), DEVICE)[0]
    with torch.no_grad():
        embeddings = task.text(classes) if kind == "text_aligned" else None

        def call() -> torch.Tensor:
            if embeddings is None:
                return net(batch["points"], batch["present"], batch["mask"])
            return net(batch["points"], batch["present"], batch["mask"], embeddings)

        def median_ms(step) -> float:
            for _ in range(20):
                step()
            synchronize()
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                step()
                synchronize()
                times.append((time.perf_counter() - start) * 1e3)
            return statistics.median(times)

        eager = median_ms(call)
        if DEVICE != "cuda":
            return {"eager_ms": eager, "cuda_graph_ms": float("nan")}
        side = torch.cuda.Stream()  # warm-up on a side stream before the capture, as torch.cuda.graphs asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                expected = call()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = call()
        graph.replay()
        synchronize()
        if not torch.allclose(captured, expected, atol=1e-4):
            raise RuntimeError("the CUDA graph's logits differ from eager")
        return {"eager_ms": eager, "cuda_graph_ms": median_ms(graph.replay)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300, help="timed steps")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="plain and Lightning runs, interleaved")
    parser.add_argument("--no-augment", action="store_true", help="both loops without the batch augmentation")
    parser.add_argument("--kinds", nargs="+", default=["sequence", "text_aligned"])
    parser.add_argument("--output", help="append the results as JSON lines to this file")
    args = parser.parse_args()
    augment = None if args.no_augment else RECIPE_AUGMENT
    classes = [f"sign{i:02d}" for i in range(args.classes)]
    rows = []
    for kind in args.kinds:
        for batch_size in args.batch_size:
            batches = make_batches(args.warmup + args.steps, batch_size, args.frames, args.classes, DEVICE)
            plain, lightning = [], []
            for _ in range(args.repeats):
                plain.append(plain_loop(kind, batches, args.warmup, classes, augment))
                lightning.append(lightning_loop(kind, batches, args.warmup, classes, augment))
            rows.append({"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "kind": kind,
                         "batch": batch_size, "augment": not args.no_augment,
                         **step_comparison(plain, lightning, batch_size)})
            del batches
            torch.cuda.empty_cache()
        rows[-1].update(window_latency(kind, 30, classes))
    print_step_comparisons(rows, label="kind")
    for r in rows:
        if "eager_ms" in r:
            print(f"{r['kind']}: one window of 30 frames, batch 1: eager {r['eager_ms']:.2f} ms, "
                  f"CUDA graph {r['cuda_graph_ms']:.2f} ms")
    append_rows(args.output, rows)


if __name__ == "__main__":
    main()
