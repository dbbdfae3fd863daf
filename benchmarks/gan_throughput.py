"""Training throughput of the RestorationGAN step: Lightning ``Trainer.fit`` against a plain PyTorch loop, in one run.

Both run the same step on the same batches, already on the GPU: generator forward; one critic update (hinge loss);
one generator update with L1 + adversarial + recognizer-feature loss through the frozen CRNN, plus the CTC monitor
without a gradient; bf16 autocast (CTC in float32), Adam, gradient clipping at norm 1 for both networks. The frozen
recognizer has random weights (the step costs the same). Timing starts after the warm-up steps; the loops run
``--repeats`` times, interleaved, and the table gives the ratio of the median steps (``common.StepClock``) and each
run's ratio of throughputs.

    python benchmarks/gan_throughput.py --batch-size 32 --steps 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from common import StepClock, StepTimer, append_rows, print_step_comparisons, step_comparison
from lightning.pytorch.callbacks import TQDMProgressBar

from signbridge.losses import ctc_loss, discriminator_loss, generator_adversarial_loss
from signbridge.tasks import RestorationGAN, TextRecognizer

CHARSET = "2345678bcdefgmnpwxy"


def make_batches(count: int, batch_size: int, height: int, width: int, device: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        clean = torch.rand(batch_size, 1, height, width, generator=generator)
        batches.append({
            "clean": clean, "degraded": (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1),
            "targets": torch.randint(1, len(CHARSET) + 1, (batch_size * 5,), generator=generator),
            "target_lengths": torch.full((batch_size,), 5),
        })
    return [{k: v.to(device) for k, v in b.items()} for b in batches]


def plain_loop(task: RestorationGAN, batches: list[dict], warmup: int) -> StepClock:
    """The hand-written loop a researcher would write, timed after the warm-up."""
    task.cuda()
    generator, critic, recognizer = task.generator.train(), task.discriminator.train(), task.recognizer
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.999))
    clock = StepClock(torch.cuda.synchronize)
    for step, batch in enumerate(batches):
        clock.mark(step, warmup)
        clean = batch["clean"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            generated = generator(batch["degraded"])
            d_loss = discriminator_loss(critic(clean), critic(generated.detach()), "hinge")
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
        opt_d.step()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            critic.requires_grad_(False)
            adv = generator_adversarial_loss(critic(generated), "hinge")
            critic.requires_grad_(True)
            generated_features = recognizer.features(generated)
            with torch.no_grad():
                clean_features = recognizer.features(clean)
                monitor = ctc_loss(recognizer.logits_from_features(generated_features.detach()), batch["targets"],
                                   batch["target_lengths"])
            loss = (F.l1_loss(generated.float(), clean) + 0.01 * adv
                    + F.mse_loss(generated_features.float(), clean_features.float()))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
        opt_g.step()
        del monitor
    clock.stop()
    return clock


def lightning_loop(task: RestorationGAN, batches: list[dict], warmup: int) -> StepClock:
    timer = StepTimer(warmup, len(batches) - 1, torch.cuda.synchronize)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision="bf16-mixed", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer, TQDMProgressBar(refresh_rate=20)],
    )
    trainer.fit(task, torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False))
    return timer.clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed steps")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="plain and Lightning runs, interleaved")
    parser.add_argument("--output", help="append the result as a JSON line to this file")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    batches = make_batches(args.warmup + args.steps + 1, args.batch_size, args.height, args.width, "cuda")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp, "recognizer.ckpt")
        recognizer = TextRecognizer(CHARSET, height=args.height)
        torch.save({"hyper_parameters": dict(recognizer.hparams), "state_dict": recognizer.state_dict()}, checkpoint)

        def task() -> RestorationGAN:
            torch.manual_seed(0)
            return RestorationGAN(str(checkpoint), warmup_epochs=0)

        row = {"device": torch.cuda.get_device_name(), "batch": args.batch_size, "size": f"{args.height}x{args.width}"}
        plain, lightning = [], []
        for _ in range(args.repeats):  # interleaved: the host's speed drifts between runs
            plain.append(plain_loop(task(), batches, args.warmup))
            torch.cuda.empty_cache()
            lightning.append(lightning_loop(task(), batches, args.warmup))
            torch.cuda.empty_cache()
    row.update(step_comparison(plain, lightning, args.batch_size))
    print_step_comparisons([row])
    append_rows(args.output, [row])

if __name__ == "__main__":
    main()
