"""Fixtures of the task tests: a small trained recognizer, shared by the recognizer and restoration tests."""

from pathlib import Path

import pytest

from signbridge.cli import main
from tests.conftest import REPO

CONFIGS = REPO / "configs"


def recognizer_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return ["--config", str(CONFIGS / "recognizer_captcha.yaml"),
            "--config", str(CONFIGS / "recognizer_captcha_smoke.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.test_fraction", "0.1",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
            *extra]



@pytest.fixture(scope="session")
def recognizer_checkpoint(tmp_path_factory, captcha_subset) -> Path:
    """A small recognizer trained for 2 short epochs through ``signbridge fit`` (it reads little, which is enough)."""
    tmp_path = tmp_path_factory.mktemp("recognizer")
    cli = main(["fit", *recognizer_args(tmp_path, captcha_subset)])
    return Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
