"""Kill ``signbridge fit``, ``landmarks`` and ``tune`` at random moments, many times, and check what they leave.

Each round starts the command (resuming what the previous round left, as a user would: ``fit --ckpt_path
last.ckpt``, the same ``landmarks`` or ``tune`` command again), waits a random time, then sends SIGKILL or SIGTERM
at random. After every kill it checks:

- every file the command writes is whole: each ``.ckpt`` loads with ``torch.load(weights_only=True)``, each
  ``model.json`` parses, the landmark cache loads, the Optuna study opens; no ``*.tmp`` file is left behind;
- how much work was lost: for ``fit``, the epoch shown by the progress bar at the kill minus the epoch of the
  ``last.ckpt`` left (at most 1 is the goal); for ``landmarks``, the images shown as done minus those in the cache;
- no child process (detector or DataLoader worker) outlives the killed command.

After the last kill the command runs to the end, and the result is checked against what an uninterrupted run
gives (the same landmarks; ``model.json`` with every epoch in its history; the study with all its trials).

    python benchmarks/fault_injection.py --data ../shared/data/sign_digits/Dataset --kills 20

``fit_extraction`` kills ``fit`` of the landmark recipe with SIGKILL while it builds the landmark cache (its detector
workers running); every case also times how long after the kill the command's output pipe stays open (at most
``END_LIMIT_S``: no worker may outlive the command and keep its caller waiting).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}
# fit without early stopping (every run must reach max_epochs), with the best and the last checkpoint
NO_EARLY_STOPPING = """\
trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {monitor: val_acc, mode: max, filename: "best-{epoch:03d}"}
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args: {filename: last, save_top_k: 1, enable_version_counter: false}
"""
SEARCH_SPACE = """\
monitor: val_acc
max_epochs: 4
params:
  model.init_args.lr: {choices: [0.003, 0.001]}
  model.init_args.units: {choices: [32, 64, 128]}
"""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(children - found)
            found |= children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def survivors(pids: set[int], wait: float = 20.0) -> list[int]:
    """The processes of ``pids`` still running after ``wait`` seconds (they are then killed, to clean up)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


# the longest a killed command may take to end: its output closed (every process that holds it gone)
END_LIMIT_S = 30.0
LAST_END_S: list[float] = []  # seconds from each kill to the end of the command's output, in order


def run_and_kill(command: list[str], log: Path, delay: float, signal_name: str) -> tuple[int | None, str, int]:
    """Start ``command``, send the signal after ``delay`` s (unless it ended), return (exit code, its output,
    orphaned processes). A negative exit code is the signal that ended it before it could handle it (start-up).
    The output is a pipe, as a caller that waits for it has (``subprocess.run(capture_output=True)``): the seconds
    from the kill until no process holds it any more go to ``LAST_END_S`` (a worker that outlives the command keeps
    such a caller waiting)."""
    import threading

    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # bars: both
    closed = threading.Event()

    def copy() -> None:
        with open(log, "wb") as out:
            for chunk in iter(lambda: process.stdout.read1(65536), b""):  # type: ignore[union-attr]
                out.write(chunk)
        closed.set()

    threading.Thread(target=copy, daemon=True).start()
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    children = descendants(process.pid)
    killed_at = time.monotonic()
    if process.poll() is None:
        process.send_signal(SIGNALS[signal_name])
    process.wait()
    closed.wait(END_LIMIT_S)
    LAST_END_S.append(time.monotonic() - killed_at if closed.is_set() else float("inf"))
    orphans = len(survivors(children))
    closed.wait(5)
    return process.returncode, log.read_text(errors="replace"), orphans


def corrupt_files(folder: Path) -> list[str]:
    """Files under ``folder`` that do not load, and temporary files left behind."""
    bad = []
    for path in folder.rglob("*"):
        if path.name.endswith(".tmp") or ".tmp" in path.suffixes:
            bad.append(f"{path}: temporary file left")
        elif path.suffix == ".ckpt":
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:
                bad.append(f"{path}: {error}")
        elif path.name == "model.json":
            try:
                json.loads(path.read_text())
            except Exception as error:
                bad.append(f"{path}: {error}")
    return bad


def signbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "signbridge", *args]


def inject_fit(data: Path, work: Path, kills: int, rng: random.Random, max_epochs: int) -> dict:
    extra = work / "no_early_stopping.yaml"
    extra.write_text(NO_EARLY_STOPPING)
    runs = work / "runs"
    base = ["fit", "--config", "configs/atk_cnn.yaml", "--config", "configs/trainer/cpu.yaml", "--config", str(extra),
            "--data.init_args.root", str(data), "--data.init_args.image_size", "32",
            "--model.init_args.image_size", "32", "--trainer.max_epochs", str(max_epochs),
            "--trainer.logger.init_args.save_dir", str(runs)]
    last = runs / "atk_cnn" / "version_0" / "checkpoints" / "last.ckpt"
    result = {"kills": 0, "SIGKILL": 0, "SIGTERM": 0, "corrupt": [], "lost": [], "orphans": 0, "exit_codes": []}
    while result["kills"] < kills:
        resume = ["--ckpt_path", str(last)] if last.exists() else []
        signal_name = rng.choice(list(SIGNALS))
        code, stderr, orphans = run_and_kill(signbridge(*base, *resume), work / "fit.log", rng.uniform(3, 16),
                                             signal_name)
        if code == 0:  # finished before the kill: start a new run
            shutil.rmtree(runs)
            continue
        result["kills"] += 1
        result[signal_name] += 1
        result["orphans"] += orphans
        result["exit_codes"].append(code)
        result["corrupt"] += corrupt_files(runs) if runs.exists() else []
        shown = [int(e) for e in re.findall(r"Epoch (\d+):", stderr)]
        if shown and last.exists():  # it was training: how many epochs would a resume redo?
            saved_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
            result["lost"].append(max(shown) - saved_epoch)
    code = subprocess.run(signbridge(*base, "--ckpt_path", str(last)), cwd=REPO, capture_output=True).returncode
    metadata = json.loads((last.parent / "model.json").read_text())
    best = last.parent / metadata["checkpoint"]
    history = [row["epoch"] for row in metadata["history"]]
    result["final"] = (
        f"exit {code}; model.json: {metadata['epochs']} epochs, history {len(history)} epochs"
        f"{' (contiguous)' if history == list(range(max_epochs)) else ' (GAPS: ' + str(history) + ')'}; "
        f"best {metadata['best']} {'exists' if best.exists() else 'MISSING'}; "
        f"version folders {sorted(p.name for p in (runs / 'atk_cnn').iterdir())}"
    )
    result["ok"] = (code == 0 and history == list(range(max_epochs)) and best.exists()
                    and not result["corrupt"] and max(result["lost"], default=0) <= 1 and not result["orphans"])
    return result


def inject_landmarks(data: Path, work: Path, kills: int, rng: random.Random) -> dict:
    from signbridge.hands.cache import LandmarkCache

    cache = work / "landmarks.npz"
    command = signbridge("landmarks", str(data), "--output", str(cache), "--workers", "2", "--checkpoint_every", "64")
    result = {"kills": 0, "SIGKILL": 0, "SIGTERM": 0, "corrupt": [], "lost": [], "orphans": 0, "exit_codes": []}
    while result["kills"] < kills:
        before = len(LandmarkCache.load(cache)) if cache.exists() else 0
        signal_name = rng.choice(list(SIGNALS))
        code, stderr, orphans = run_and_kill(command, work / "landmarks.log", rng.uniform(1, 14), signal_name)
        if code == 0:  # the cache was completed before the kill: start over
            cache.unlink()
            continue
        result["kills"] += 1
        result[signal_name] += 1
        result["orphans"] += orphans
        result["exit_codes"].append(code)
        try:
            after = len(LandmarkCache.load(cache)) if cache.exists() else 0
        except Exception as error:
            result["corrupt"].append(f"{cache}: {error}")
            continue
        result["corrupt"] += [str(p) for p in work.glob("*.tmp")]
        shown = [int(n) for n in re.findall(r"hand landmarks:\s+\d+%\|[^|]*\|\s*(\d+)/\d+", stderr)]
        if shown:
            result["lost"].append(max(0, max(shown) - (after - before)))
    subprocess.run(command, cwd=REPO, capture_output=True, check=True)
    resumed = LandmarkCache.load(cache)
    clean = work / "uninterrupted.npz"
    subprocess.run(command[:-6] + ["--output", str(clean), "--workers", "2"], cwd=REPO, capture_output=True,
                   check=True)
    reference = LandmarkCache.load(clean)
    order = np.argsort(resumed.paths)
    reference_order = np.argsort(reference.paths)
    same_paths = np.array_equal(resumed.paths[order], reference.paths[reference_order])
    same = same_paths and np.allclose(resumed.landmarks[order], reference.landmarks[reference_order], atol=1e-6)
    result["final"] = (f"{len(resumed)} images, complete={resumed.meta['complete']}; landmarks "
                       f"{'identical to' if same else 'DIFFERENT from'} an uninterrupted run")
    result["ok"] = (same and resumed.meta["complete"] and not result["corrupt"] and not result["orphans"]
                    and max(result["lost"], default=0) <= 64 + 2 * 4)  # a checkpoint interval + chunks in flight
    return result


def inject_fit_extraction(data: Path, work: Path, kills: int, rng: random.Random) -> dict:
    """``signbridge fit`` of the landmark recipe killed with SIGKILL while it extracts the landmark cache (its
    detector workers running), then run again until the cache is complete and the fit ends."""
    from signbridge.hands.cache import LandmarkCache

    cache = work / "fit_landmarks.npz"
    command = signbridge("fit", "--config", "configs/sign_landmarks.yaml", "--data.init_args.root", str(data),
                         "--data.init_args.landmarks_file", str(cache), "--data.init_args.extraction_workers", "2",
                         "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(work / "runs"))
    result = {"kills": 0, "SIGKILL": 0, "SIGTERM": 0, "corrupt": [], "lost": [], "orphans": 0, "exit_codes": []}
    while result["kills"] < kills:
        code, stderr, orphans = run_and_kill(command, work / "fit_extraction.log", rng.uniform(2, 12), "SIGKILL")
        if code == 0:  # the cache and the fit were done before the kill: start over
            cache.unlink(missing_ok=True)
            shutil.rmtree(work / "runs", ignore_errors=True)
            continue
        result["kills"] += 1
        result["SIGKILL"] += 1
        result["orphans"] += orphans
        result["exit_codes"].append(code)
        try:
            LandmarkCache.load(cache) if cache.exists() else None
        except Exception as error:
            result["corrupt"].append(f"{cache}: {error}")
        result["corrupt"] += [str(p) for p in work.glob("*.tmp")]
    code = subprocess.run(command, cwd=REPO, capture_output=True, timeout=900).returncode
    resumed = LandmarkCache.load(cache)
    result["final"] = f"exit {code}; cache of {len(resumed)} images, complete={resumed.meta['complete']}"
    result["ok"] = code == 0 and resumed.meta["complete"] and not result["corrupt"] and not result["orphans"]
    return result


def inject_tune(data: Path, work: Path, kills: int, rng: random.Random, trials: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = work / "space.yaml"
    space.write_text(SEARCH_SPACE)
    extra = work / "no_early_stopping.yaml"
    extra.write_text(NO_EARLY_STOPPING)
    run_dir = work / "tune"
    command = signbridge(
        "tune", "--config", "configs/atk_cnn.yaml", "--config", "configs/trainer/cpu.yaml", "--config", str(extra),
        "--search_space", str(space), "--run_dir", str(run_dir), "--trials", str(trials), "--pruner", "none",
        "--heartbeat", "2", "--data.init_args.root", str(data), "--data.init_args.image_size", "32",
        "--model.init_args.image_size", "32")
    result = {"kills": 0, "SIGKILL": 0, "SIGTERM": 0, "corrupt": [], "lost": [], "orphans": 0, "exit_codes": []}
    while result["kills"] < kills:
        signal_name = rng.choice(list(SIGNALS))
        code, stderr, orphans = run_and_kill(command, work / "tune.log", rng.uniform(3, 25), signal_name)
        if code == 0:  # the study was complete before the kill: start a new one
            shutil.rmtree(run_dir)
            continue
        result["kills"] += 1
        result[signal_name] += 1
        result["orphans"] += orphans
        result["exit_codes"].append(code)
        result["corrupt"] += corrupt_files(run_dir) if run_dir.exists() else []
        if (run_dir / "study.db").exists():
            try:
                optuna.load_study(study_name="tune", storage=f"sqlite:///{run_dir / 'study.db'}")
            except Exception as error:
                result["corrupt"].append(f"study.db: {error}")
    time.sleep(5)  # past the heartbeat's grace period, so a killed trial counts as stale
    code = subprocess.run(command, cwd=REPO, capture_output=True).returncode
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{run_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    retries = [t for t in study.trials if "failed_trial" in t.system_attrs]
    continued = [t for t in retries if t.state.name == "COMPLETE"
                 and t.user_attrs.get("run_dir") == study.trials[t.system_attrs["failed_trial"]].user_attrs.get(
                     "run_dir")]
    finished = states.count("COMPLETE") + states.count("PRUNED")
    result["final"] = (f"exit {code}; trials {dict((s, states.count(s)) for s in sorted(set(states)))}; "
                       f"{len(retries)} retries of stopped trials, {len(continued)} completed in the stopped "
                       f"trial's run folder")
    result["ok"] = code == 0 and finished == trials and not result["corrupt"] and not result["orphans"] \
        and "RUNNING" not in states
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a folder-per-class image dataset")
    parser.add_argument("--work", type=Path, default=Path("fault_injection_runs"), help="scratch folder (emptied)")
    parser.add_argument("--kills", type=int, default=20, help="kills per command")
    parser.add_argument("--commands", nargs="+", default=["landmarks", "fit_extraction", "fit", "tune"])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    results = {}
    for name in args.commands:
        work = args.work / name
        work.mkdir(parents=True)
        started = time.perf_counter()
        LAST_END_S.clear()
        if name == "fit_extraction":
            results[name] = inject_fit_extraction(args.data.resolve(), work.resolve(), args.kills, rng)
        elif name == "fit":
            results[name] = inject_fit(args.data.resolve(), work.resolve(), args.kills, rng, args.max_epochs)
        elif name == "landmarks":
            results[name] = inject_landmarks(args.data.resolve(), work.resolve(), args.kills, rng)
        else:
            results[name] = inject_tune(args.data.resolve(), work.resolve(), args.kills, rng, args.trials)
        results[name]["seconds"] = round(time.perf_counter() - started)
        ends = list(LAST_END_S)
        results[name]["end_s"] = (round(max(ends), 2), round(float(np.median(ends)), 2)) if ends else None
        results[name]["ok"] = results[name]["ok"] and bool(ends) and max(ends) <= END_LIMIT_S
        print(name, json.dumps(results[name]), flush=True)
    print("\n| command | kills (SIGKILL / SIGTERM) | corrupt files | lost per kill (max, mean) | orphaned processes "
          "| kill to end of output, s (max, median) | exit codes | after the last kill | seconds | passed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        lost = f"{max(r['lost'])}, {np.mean(r['lost']):.2f} ({len(r['lost'])} measured)" if r["lost"] else "-"
        codes = ", ".join(f"{c}×{r['exit_codes'].count(c)}" for c in sorted(set(r["exit_codes"])))
        print(f"| {name} | {r['kills']} ({r['SIGKILL']} / {r['SIGTERM']}) | {len(r['corrupt'])} | {lost} "
              f"| {r['orphans']} | {r['end_s']} | {codes} | {r['final']} | {r['seconds']} | "
              f"{'yes' if r['ok'] else 'NO'} |")
    for name, r in results.items():
        for problem in r["corrupt"]:
            print(f"{name}: {problem}")
    sys.exit(0 if all(r["ok"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
