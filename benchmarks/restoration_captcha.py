"""The recognizer and the four restoration variants, with one seed and one budget (the captchas by default;
``--recognizer-config configs/recognizer_iiit5k.yaml --restoration-config configs/restoration_iiit5k.yaml`` for
IIIT 5K-word).

1. ``TextRecognizer`` (configs/recognizer_captcha.yaml) on the clean images; its test word accuracy.
2. ``RestorationGAN`` (configs/restoration_captcha.yaml) guided by that recognizer, for the same number of epochs in
   each variant: (a) pixel only, (b) pixel + adversarial, (c) pixel + adversarial + recognizer features,
   (d) pixel + adversarial + CTC (the reference project's baseline). Each is tested with its last checkpoint, so every
   variant
   has exactly the same budget; the degraded inputs are identical in every run.

Writes ``RUN_DIR/results.json`` and prints a table.

    python benchmarks/restoration_captcha.py --data ../shared/data/captcha/images --run-dir runs/bench_restoration \
        --config configs/trainer/gpu.yaml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from signbridge.lightning_cli import run_cli

VARIANTS = {
    "a": ("pixel only", ["--model.init_args.adversarial_loss_weight", "0",
                         "--model.init_args.rec_feat_loss_weight", "0"]),
    "b": ("pixel + adversarial", ["--model.init_args.rec_feat_loss_weight", "0"]),
    "c": ("pixel + adversarial + feature", []),
    "d": ("pixel + adversarial + CTC", ["--model.init_args.rec_feat_loss_weight", "0"]),
}
REPORTED = ("word_acc", "word_acc_nocase", "cer", "psnr", "ssim")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def logger_args(kind: str, run_dir: Path, name: str) -> list[str]:
    logger = {"tensorboard": "TensorBoardLogger", "csv": "CSVLogger"}[kind]
    return ["--trainer.logger", f"lightning.pytorch.loggers.{logger}", "--trainer.logger.init_args.save_dir",
            str(run_dir), "--trainer.logger.init_args.name", name]


def fit_and_test(configs: list[str], args: list[str], ckpt: str) -> dict:
    """Fit, then test the ``best`` or ``last`` checkpoint; returns the test metrics and the fit's wall time."""
    start = time.perf_counter()
    cli = run_cli(["fit", *configs, *args])
    seconds = time.perf_counter() - start
    trainer = cli.trainer
    path = trainer.checkpoint_callback.best_model_path if ckpt == "best" else str(
        Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")
    tested = run_cli(["test", *configs, *args, "--ckpt_path", path])
    metrics = {k: float(v) for k, v in tested.trainer.callback_metrics.items()}
    callback = trainer.checkpoint_callback
    score = callback.best_model_score
    best = {f"best_{callback.monitor}": float(score)} if score is not None else {}
    return {"checkpoint": path, "fit_seconds": seconds, "epochs": trainer.current_epoch, **best, **metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data root (the captchas' ROOT/<text>.png, or IIIT5K's folder)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--config", action="append", default=[], help="extra config, e.g. configs/trainer/gpu.yaml")
    parser.add_argument("--recognizer", help="use this recognizer checkpoint instead of training one")
    parser.add_argument("--recognizer-config", default=str(CONFIGS / "recognizer_captcha.yaml"))
    parser.add_argument("--restoration-config", default=str(CONFIGS / "restoration_captcha.yaml"))
    parser.add_argument("--variants", default="abcd")
    parser.add_argument("--gan-epochs", type=int, default=40)
    parser.add_argument("--ctc-weight", type=float, default=0.1, help="variant d: CTC weight after the ramp")
    parser.add_argument("--ctc-anneal-epochs", type=int, default=10, help="variant d: epochs of the ramp")
    parser.add_argument("--logger", choices=["tensorboard", "csv"], default="tensorboard")
    parser.add_argument("--trainer-arg", action="append", default=[], help="extra fit argument (repeatable)")
    parser.add_argument("--results", default="results.json", help="results file in the run folder")
    parser.add_argument("--table", nargs="+", metavar="RESULTS", help="only print the table of these results files")
    args = parser.parse_args()
    if args.table:
        results = {}
        for file in args.table:
            results.update(json.loads(Path(file).read_text()))
        print_table(results)
        return
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results_file = run_dir / args.results
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    extra = [c for config in args.config for c in ("--config", config)]
    data = ["--data.init_args.root", args.data, *args.trainer_arg]

    recognizer = args.recognizer
    if recognizer is None:
        results["recognizer"] = fit_and_test(
            ["--config", args.recognizer_config, *extra],
            [*data, *logger_args(args.logger, run_dir, "recognizer")], ckpt="best")
        recognizer = results["recognizer"]["checkpoint"]
        results_file.write_text(json.dumps(results, indent=1))
    for variant in args.variants:
        name, variant_args = VARIANTS[variant]
        if variant == "d":
            variant_args = [*variant_args, "--model.init_args.ctc_loss_weight", str(args.ctc_weight),
                            "--model.init_args.ctc_anneal_epochs", str(args.ctc_anneal_epochs)]
        results[f"gan_{variant}"] = {"name": name, **fit_and_test(
            ["--config", args.restoration_config, *extra],
            [*data, *variant_args, "--model.init_args.recognizer_checkpoint", recognizer,
             "--trainer.max_epochs", str(args.gan_epochs), *logger_args(args.logger, run_dir, f"gan_{variant}")],
            ckpt="last")}
        results_file.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict) -> None:
    print(f"\n{'images':<36}{'word acc':>9}{'nocase':>8}{'CER':>8}{'PSNR':>8}{'SSIM':>8}{'fit s':>8}")
    if "recognizer" in results:
        r = results["recognizer"]
        print(f"{'clean (recognizer test split)':<36}{r['test_word_acc']:>9.4f}{r['test_word_acc_nocase']:>8.4f}"
              f"{r['test_cer']:>8.4f}{'':>8}{'':>8}{r['fit_seconds']:>8.0f}")
    gans = [v for k, v in results.items() if k.startswith("gan_")]
    widths = (9, 8, 8, 8, 8)
    if gans:
        g = gans[0]
        print(f"{'degraded input':<36}" + "".join(f"{g['test_input_' + k]:>{w}.4f}" for k, w in zip(REPORTED, widths)))
    for key in sorted(k for k in results if k.startswith("gan_")):
        g = results[key]
        print(f"{key[-1] + ') ' + g['name']:<36}"
              + "".join(f"{g['test_' + k]:>{w}.4f}" for k, w in zip(REPORTED, widths)) + f"{g['fit_seconds']:>8.0f}")


if __name__ == "__main__":
    main()
