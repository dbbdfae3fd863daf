"""CPU threads of console commands: the setting, and the cores other work keeps busy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from signbridge.cli import available_cores, busy_cores, configure_threads
from signbridge.errors import InputError


def test_the_setting_wins_and_a_bad_value_is_one_error(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored afterwards: the choice is written there
    try:
        monkeypatch.setenv("SIGNBRIDGE_THREADS", "1")
        assert configure_threads() == 1 == torch.get_num_threads() and os.environ["OMP_NUM_THREADS"] == "1"
        monkeypatch.setenv("SIGNBRIDGE_THREADS", "two")
        with pytest.raises(InputError, match="SIGNBRIDGE_THREADS must be a whole number"):
            configure_threads()
    finally:
        torch.set_num_threads(before)


def test_never_more_threads_than_free_cores(monkeypatch):
    cores = available_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    monkeypatch.delenv("SIGNBRIDGE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    # one spinning process per core: every core is busy, so a command takes one thread
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        assert busy_cores(window_s=0.5) >= max(1, cores - 1)
        assert configure_threads() == 1 == torch.get_num_threads()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        torch.set_num_threads(before)


def test_the_nvml_check_is_dropped_only_where_nvml_cannot_be_loaded(monkeypatch):
    import ctypes

    from signbridge.tasks.base import drop_failing_nvml_check

    available = torch.cuda.is_available()
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as importing Lightning sets it
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
        loads = True
    except OSError:
        loads = False
    drop_failing_nvml_check()
    kept = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1"
    assert kept == (loads or not torch.backends.cuda.is_built())
    assert torch.cuda.is_available() == available  # the same answer either way
