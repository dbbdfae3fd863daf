"""A fit stopped by SIGTERM (what ``timeout`` and Slurm send) saves where it stopped and continues from there.

Extraction stopped by SIGTERM or ``kill -9`` is tested in ``tests/hands/test_cache.py``; random kills of every
command, many times over, are ``benchmarks/fault_injection.py``.
"""

import json
import signal
import time

import torch

from signbridge.cli import main
from tests import forked
from tests.conftest import REPO

ATK = str(REPO / "configs" / "atk_cnn.yaml")


# the best and the last checkpoint, no early stopping: the fit must still be running when it is stopped
CHECKPOINTS_ONLY = """\
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {monitor: val_acc, mode: max}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: last, save_top_k: 1, enable_version_counter: false}
"""


def _fit_args(root, save_dir, epochs: int) -> list[str]:
    callbacks = save_dir / "callbacks.yaml"
    callbacks.write_text(CHECKPOINTS_ONLY)
    return ["fit", "--config", ATK, "--config", str(REPO / "configs" / "trainer" / "cpu.yaml"),
            "--config", str(callbacks),
            "--data.init_args.root", str(root), "--data.init_args.image_size", "24",
            "--model.init_args.image_size", "24", "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "4", "--trainer.max_epochs", str(epochs),
            "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.enable_progress_bar", "false"]


def test_sigterm_during_fit_saves_last_and_the_run_continues_from_it(tmp_path, digits_folder):
    process = forked.start(*_fit_args(digits_folder, tmp_path, 500))
    run = tmp_path / "atk_cnn" / "version_0" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not (run / "last.ckpt").exists():
        time.sleep(0.05)
    time.sleep(1.0)  # into a later epoch
    assert process.poll() is None, "the fit ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "signbridge: stopped by SIGTERM"
    assert f"continue with --ckpt_path {run / 'last.ckpt'}" in stderr
    saved = torch.load(run / "last.ckpt", map_location="cpu", weights_only=True)
    stopped_at = saved["epoch"]
    assert 0 < stopped_at < 500 and saved["global_step"] > 0

    cli = main([*_fit_args(digits_folder, tmp_path, stopped_at + 2), "--ckpt_path", str(run / "last.ckpt")])
    assert cli.trainer.current_epoch == stopped_at + 2 and cli.trainer.global_step > saved["global_step"]
    assert sorted(p.name for p in (tmp_path / "atk_cnn").iterdir()) == ["version_0"]  # the same run folder
    metadata = json.loads((run / "model.json").read_text())
    assert [row["epoch"] for row in metadata["history"]] == list(range(cli.trainer.current_epoch))
