"""Training throughput of HybridSignNet: Lightning ``Trainer.fit`` against a plain PyTorch loop, in one run.

Both loops train the same nn.Module on the same batches, already on the GPU (so the figure is the training step and
the framework around it, not JPEG decoding): bf16 autocast, channels-last, fused AdamW, gradient clipping at norm 1,
cross-entropy. Timing starts after the warm-up steps (compilation, cuDNN autotuning) and ends after the last step,
both after a CUDA synchronise. The Lightning run has the progress bar of configs/trainer/gpu.yaml (refresh every 20
steps), as a user's run would.

    python benchmarks/train_throughput.py --batch-size 256 --image-size 224 --compile both
    python benchmarks/train_throughput.py --devices 2      # DDP scaling: the Lightning loop on 1 and on 2 GPUs

DDP settings (``--ddp``, one process group per command, so one setting per command; ``--sync-batchnorm`` as
``configs/trainer/ddp.yaml`` has it):

    for ddp in default static_graph bucket_view bucket_100mb bf16_compress all; do
        python benchmarks/train_throughput.py --devices 2 --compile no --ddp $ddp --output ddp.jsonl; done
    python benchmarks/train_throughput.py --devices 2 --compile no --sync-batchnorm --output ddp.jsonl

``--accelerator cpu`` (with a small ``--backbone``, ``--image-size`` and ``--batch-size``) runs the same code on
CPU processes (gloo), to check a setting before GPU time is spent on it; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import time

import lightning as L
import torch
import torch.nn.functional as F
from common import append_rows, synchronize
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from signbridge.models import HybridSignNetConfig
from signbridge.tasks import HybridSignClassifier

# DistributedDataParallel's settings that bear on speed (Lightning's "ddp" is ``default``: 25 MB gradient buckets,
# find_unused_parameters off, every bucket all-reduced in fp32)
DDP_SETTINGS: dict[str, dict] = {
    "default": {},
    "static_graph": {"static_graph": True},  # the graph is the same every step: DDP skips re-tracing which are used
    "bucket_view": {"gradient_as_bucket_view": True},  # gradients live in the buckets: no copy in or out
    "bucket_100mb": {"bucket_cap_mb": 100},  # fewer, larger all-reduces
    "bf16_compress": {"ddp_comm_hook": default_hooks.bf16_compress_hook},  # half the bytes on the wire
}
DDP_SETTINGS["all"] = {k: v for setting in DDP_SETTINGS.values() for k, v in setting.items()}


def make_batches(count: int, batch_size: int, image_size: int, num_classes: int, device: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        present = torch.rand(batch_size, 2, generator=generator) < 0.6
        batches.append({
            "image": torch.randint(0, 256, (batch_size, 3, image_size, image_size), generator=generator,
                                   dtype=torch.uint8),
            "landmarks": torch.randn(batch_size, 2, 21, 3, generator=generator) * 0.1 * present[..., None, None],
            "present": present,
            "label": torch.randint(0, num_classes, (batch_size,), generator=generator),
        })
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


class StepProfile:
    """``torch.profiler`` over the ``count`` steps before the timed window (``--profile-steps``): the GPU time and
    the host time per step, and the kernels by GPU time, written to ``folder/<name>.txt``."""

    def __init__(self, folder: str | None, name: str, count: int):
        self.folder, self.name, self.count, self.profiler = folder, name, count, None

    def step(self, index: int, warmup: int) -> None:
        """Called before each step ``index``: starts ``count`` steps before the warm-up ends, stops at its end."""
        if not self.folder or not self.count:
            return
        if index == warmup - self.count:
            synchronize()
            self.started = time.perf_counter()
            activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()
        elif index == warmup and self.profiler is not None:
            synchronize()
            wall = (time.perf_counter() - self.started) / self.count
            self.profiler.__exit__(None, None, None)
            events = self.profiler.key_averages()
            # kernels only: a user annotation (Optimizer.step) reports the device time of the kernels inside it
            kernels = [e for e in events if not getattr(e, "is_user_annotation", False)]
            gpu = sum(e.self_device_time_total for e in kernels) / 1e3 / self.count
            table = events.table(sort_by="self_device_time_total", row_limit=30)
            os.makedirs(self.folder, exist_ok=True)
            with open(os.path.join(self.folder, f"{self.name}.txt"), "w") as f:
                f.write(f"{self.name}: wall {wall * 1e3:.1f} ms per step (profiled), GPU busy {gpu:.1f} ms per step\n")
                f.write(table)
            print(f"{self.name}: wall {wall * 1e3:.1f} ms/step profiled, GPU kernels {gpu:.1f} ms/step")
            self.profiler = None


def plain_loop(model: torch.nn.Module, batches: list[dict], warmup: int, profile: StepProfile | None = None) -> float:
    """The hand-written loop a researcher would write; returns images per second after the warm-up."""
    model.cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    for step, batch in enumerate(batches):
        if profile is not None:
            profile.step(step, warmup)
        if step == warmup:
            synchronize()
            start = time.perf_counter()
        image = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(image, batch["landmarks"], batch["present"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize()
    return (len(batches) - warmup) * len(batches[0]["label"]) / (time.perf_counter() - start)


class StepTimer(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last training batch (rank 0)."""

    def __init__(self, warmup: int, last: int, sync_debug: bool = False, profile: StepProfile | None = None):
        self.warmup, self.last, self.seconds, self.sync_debug, self.profile = warmup, last, None, sync_debug, profile

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.profile is not None:
            self.profile.step(batch_idx, self.warmup)
        if batch_idx == self.warmup:
            synchronize()
            self.start = time.perf_counter()
            if self.sync_debug:  # warn (with the code location) at every host-device synchronisation
                torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:
            if self.sync_debug:
                torch.cuda.set_sync_debug_mode("default")
            synchronize()
            self.seconds = time.perf_counter() - self.start


class BatchList(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def lightning_loop(
    task: HybridSignClassifier, batches: list[dict], warmup: int, devices: int, sync_debug: bool = False,
    profile: StepProfile | None = None, ddp: str = "default", sync_batchnorm: bool = False, accelerator: str = "gpu",
) -> float:
    timer = StepTimer(warmup, len(batches) - 1, sync_debug, profile)
    strategy = DDPStrategy(**DDP_SETTINGS[ddp]) if devices > 1 else "auto"
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, precision="bf16-mixed",
        sync_batchnorm=sync_batchnorm,
        max_epochs=1, gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=1, callbacks=[timer, TQDMProgressBar(refresh_rate=20)],  # as gpu.yaml
        use_distributed_sampler=False,
    )
    loader = torch.utils.data.DataLoader(BatchList(batches), batch_size=None, shuffle=False)
    trainer.fit(task, loader, torch.utils.data.DataLoader(BatchList(batches[:1]), batch_size=None))
    if trainer.global_rank != 0:
        return float("nan")
    # the window holds batches warmup .. len - 1, both included (as the plain loop's)
    return trainer.world_size * (len(batches) - warmup) * len(batches[0]["label"]) / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=40, help="timed steps")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--backbone", default="tf_efficientnetv2_s")
    parser.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    parser.add_argument("--devices", type=int, default=1, help=">1: only the Lightning DDP figure on that many GPUs")
    parser.add_argument("--ddp", choices=list(DDP_SETTINGS), default="default", help="DDP's settings (devices > 1)")
    parser.add_argument("--sync-batchnorm", action="store_true", help="SyncBatchNorm, as configs/trainer/ddp.yaml")
    parser.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu",
                        help="cpu: check the code on CPU processes (the figures mean nothing)")
    parser.add_argument("--output", help="append the results as JSON lines to this file")
    parser.add_argument("--sync-debug", action="store_true",
                        help="only report where the Lightning loop synchronises with the GPU in the timed steps")
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="profile this many steps before each loop's timed window (torch.profiler)")
    parser.add_argument("--profile-dir", default="profiles", help="where the profiles' tables go")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    rank = int(os.environ.get("LOCAL_RANK", 0))
    device = f"cuda:{rank}" if args.accelerator == "gpu" else "cpu"
    batches = make_batches(args.warmup + args.steps + 1, args.batch_size, args.image_size, 10, device)

    def task(compiled: bool) -> HybridSignClassifier:
        torch.manual_seed(0)
        return HybridSignClassifier(10, HybridSignNetConfig(backbone=args.backbone), channels_last=True,
                                    compile=compiled)

    if args.sync_debug:
        import warnings

        warnings.simplefilter("default")  # once per code location
        lightning_loop(task(False), batches, args.warmup, args.devices, sync_debug=True)
        return
    rows = []
    for compiled in {"no": [False], "yes": [True], "both": [False, True]}[args.compile]:
        row = {"device": torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu",
               "batch": args.batch_size, "image_size": args.image_size, "compile": compiled, "devices": args.devices,
               "ddp": args.ddp if args.devices > 1 else None, "sync_batchnorm": args.sync_batchnorm}
        if args.devices == 1 and args.accelerator == "gpu":
            model = task(compiled).model
            row["plain_img_s"] = plain_loop(torch.compile(model) if compiled else model, batches, args.warmup,
                                            StepProfile(args.profile_dir, f"plain_compile{compiled}",
                                                        args.profile_steps))
            del model
            torch.cuda.empty_cache()
        row["lightning_img_s"] = lightning_loop(task(compiled), batches, args.warmup, args.devices,
                                                profile=StepProfile(args.profile_dir, f"lightning_compile{compiled}",
                                                                    args.profile_steps),
                                                ddp=args.ddp, sync_batchnorm=args.sync_batchnorm,
                                                accelerator=args.accelerator)
        if "plain_img_s" in row:
            row["ratio"] = row["lightning_img_s"] / row["plain_img_s"]
        rows.append(row)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if rank != 0:
        return
    print(f"\n{'compile':>8}{'devices':>8}{'ddp':>15}{'plain img/s':>13}{'Lightning img/s':>17}{'ratio':>7}")
    for r in rows:
        ddp = f"{r['ddp'] or '-'}{' +syncBN' if r['sync_batchnorm'] else ''}"
        print(f"{str(r['compile']):>8}{r['devices']:>8}{ddp:>15}{r.get('plain_img_s', float('nan')):>13.0f}"
              f"{r['lightning_img_s']:>17.0f}{r.get('ratio', float('nan')):>7.3f}")
    append_rows(args.output, rows)


if __name__ == "__main__":
    main()
