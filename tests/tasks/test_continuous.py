"""Continuous signing to glosses: CTC with the segments' classification, through the real LightningCLI on the real
RWTH-BOSTON-104 sentences, and learning to transcribe sentences stitched from synthetic signs."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from signbridge.cli import main
from signbridge.ctc import Vocabulary
from signbridge.data.sentences import SentenceDataset, collate_sentences, stitch_sentences
from signbridge.errors import InputError
from signbridge.tasks import ContinuousSignRecognizer
from tests.conftest import REPO, console_in_new_process, shared_dir

CONFIG = str(REPO / "configs" / "sign_sentences.yaml")
TINY = ["--model.init_args.net.dim", "32", "--model.init_args.net.depth", "1", "--model.init_args.net.num_heads",
        "2", "--model.init_args.net.kernel_size", "5"]


@pytest.fixture(scope="module")
def boston104_run(tmp_path_factory):
    """A 2-epoch fit and a beam-search test on the real RWTH-BOSTON-104 sentences: its CLI args and best checkpoint."""
    tmp_path = tmp_path_factory.mktemp("boston104")
    root = shared_dir("data", "sign_sequences", "rwth_boston104")
    args = ["--config", CONFIG, "--data.init_args.root", str(root), "--trainer.max_epochs", "2",
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false", *TINY]
    cli = main(["fit", *args])
    best = cli.trainer.checkpoint_callback.best_model_path
    tested = main(["test", *args, "--ckpt_path", best, "--model.init_args.beam_width", "3"])
    return args, best, tested.trainer.callback_metrics


def test_fit_and_test_on_the_real_boston104_sentences(boston104_run):
    args, best, metrics = boston104_run
    checkpoint = torch.load(best, weights_only=True, map_location="cpu")
    assert len(checkpoint["hyper_parameters"]["vocabulary"]) == 112 and checkpoint["hyper_parameters"]["features"] == 6
    assert checkpoint["inference"]["classes"] == checkpoint["hyper_parameters"]["vocabulary"]
    assert {"test_loss", "test_wer", "test_segment_wer"} <= set(metrics)
    assert float(metrics["test_wer"]) >= 0 and 0 <= float(metrics["test_segment_wer"]) <= 1


def test_predict_writes_glosses_and_their_words_and_the_model_exports(boston104_run, tmp_path):
    from signbridge.export import export_checkpoint
    from signbridge.inference import ExportedModel

    args, best, _ = boston104_run
    vocabulary = torch.load(best, weights_only=True, map_location="cpu")["hyper_parameters"]["vocabulary"]
    words = tmp_path / "gloss_words.txt"
    words.write_text("# gloss, then its words\n" + "".join(f"{g}\t{g.lower()}-word\n" for g in vocabulary))
    output = tmp_path / "sentences.csv"
    main(["predict", *args, "--ckpt_path", best, "--model.init_args.gloss_words", str(words),
          "--trainer.callbacks+=signbridge.lightning_callbacks.PredictionWriter",
          f"--trainer.callbacks.output={output}"])
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 40 and set(rows[0]) == {"path", "glosses", "sentence"}  # the 40 test sentences
    for row in rows:
        assert row["sentence"].split() == [f"{g.lower()}-word" for g in row["glosses"].split()]
    broken = tmp_path / "broken.txt"
    broken.write_text("JOHN\n")
    with pytest.raises(InputError, match="broken.txt:1: expected 'GLOSS words'"):
        ContinuousSignRecognizer(gloss_words=str(broken))
    # export: the CTC logits with the gloss vocabulary as the classes, and a free number of frames
    report = export_checkpoint(best, tmp_path / "sentences.onnx", format="onnx")
    assert report.max_abs_diff < 1e-3 and report.top1_agreement == 1.0, report
    exported = ExportedModel(report.path)
    assert exported.contract.classes == vocabulary
    task = ContinuousSignRecognizer.load_from_checkpoint(best, weights_only=True).eval()
    features, mask = torch.randn(2, 37, 6), torch.ones(2, 37, dtype=torch.bool)
    logits, _ = exported({"features": features, "mask": mask})
    with torch.no_grad():
        expected = task(features, mask)
    assert logits.shape == tuple(expected.shape) and np.allclose(logits, expected.numpy(), atol=1e-3)


class StitchedSentences(L.LightningDataModule):
    """Sentences of 2-3 synthetic signs: sign k moves one tracked point along direction k for 6 frames."""

    def __init__(self):
        super().__init__()
        signs, labels = [], []
        for label in range(4):
            angle = np.pi / 2 * label
            for copy in range(5):
                t = np.linspace(0, 1, 6)[:, None]
                signs.append(np.hstack([np.cos(angle) * t, np.sin(angle) * t]) + 0.02 * copy)
                labels.append(label)
        names = ["GO", "COME", "UP", "DOWN"]
        self.vocabulary = Vocabulary(names)
        self.feature_size = 2
        self.train = stitch_sentences(signs, labels, names, count=48, min_signs=2, max_signs=3, seed=0)
        self.test = stitch_sentences(signs, labels, names, count=24, min_signs=2, max_signs=3, seed=1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(SentenceDataset(self.train, self.vocabulary), batch_size=16, shuffle=True,
                                           collate_fn=collate_sentences)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(SentenceDataset(self.test, self.vocabulary), batch_size=24,
                                           collate_fn=collate_sentences)

    test_dataloader = val_dataloader


def test_ctc_learns_to_transcribe_stitched_sentences():
    torch.manual_seed(0)
    task = ContinuousSignRecognizer(net={"dim": 32, "depth": 1, "num_heads": 2, "kernel_size": 5, "dropout": 0.0,
                                         "head_dropout": 0.0}, sign_weight=1.0, lr=3e-3, warmup_epochs=2)
    trainer = L.Trainer(max_epochs=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    data = StitchedSentences()
    trainer.fit(task, data)
    metrics = trainer.test(task, data, verbose=False)[0]
    assert metrics["test_wer"] <= 0.2, metrics  # the glosses of whole sentences, without their segmentation
    assert metrics["test_segment_wer"] <= 0.1, metrics


def test_bad_settings_are_one_line_errors():
    with pytest.raises(InputError, match="beam_width"):
        ContinuousSignRecognizer(beam_width=0)
    with pytest.raises(InputError, match="ctc_weight"):
        ContinuousSignRecognizer(ctc_weight=0)


@pytest.fixture(scope="module")
def stitched_run(tmp_path_factory, wlasl_subset):
    """A 2-epoch fit on sentences stitched from 4 real wlasl40 signs (tracked landmarks): its best checkpoint and its
    ONNX export."""
    from signbridge.export import export_checkpoint

    tmp_path = tmp_path_factory.mktemp("stitched")
    cli = main(["fit", "--config", CONFIG, "--data.init_args.root", str(wlasl_subset), "--data.init_args.sentences",
                "24", "--data.init_args.test_fraction", "0.2", "--data.init_args.val_fraction", "0.2",
                "--data.init_args.landmarks_file", str(tmp_path / "sequences.npz"), "--trainer.max_epochs", "2",
                "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
                *TINY])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    return best, export_checkpoint(best, tmp_path / "sentences.onnx", format="onnx").path


def test_a_model_of_stitched_landmark_sentences_reads_a_real_video(stitched_run, tmp_path, hand_model):
    # in a process of its own: MediaPipe must not start in a process that has trained (see HandDetector)
    import json

    import cv2

    best, onnx = stitched_run
    contract = json.loads((best.parent / "model.json").read_text())["inference"]
    sequence = contract["preprocessing"]["sequence"]
    assert sequence["parts"] == ["pose", "left_hand", "right_hand"] and sequence["frame_features"] == "points+present"
    assert 60 <= sequence["sentence_frames"] <= 150  # 2 to 5 signs of 30 frames
    assert contract["inputs"][0]["shape"] == ["batch", "frames", 53 * 3 + 3]
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[2]
    capture, frames = cv2.VideoCapture(str(video)), 0
    while capture.read()[0]:  # the frames that decode (the container's count can be one more)
        frames += 1
    capture.release()
    runs = {"whole": [str(best)], "onnx": [str(onnx)],  # a video file: its glosses decoded at once
            "windows": [str(best), "--window", "12", "--stride", "6", "--max_frames", "36"]}  # as a camera is read
    done = console_in_new_process({name: ["recognize", str(video), "--model", *args] for name, args in runs.items()},
                                  hand_model)
    for name, run in done.items():
        assert run.returncode == 0, f"{name}: {run.stderr[-2000:]}"
    rows = {name: [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
            for name, run in done.items()}
    whole, windows = rows["whole"], rows["windows"]
    assert len(whole) == 1 and whole[0]["frames"] == frames and whole[0]["window_end"] == frames - 1
    vocabulary = set(contract["classes"])
    assert set(whole[0]["glosses"].split()) <= vocabulary and whole[0]["label"] == whole[0]["sentence"]
    assert whole[0]["landmarks_ms"] > 0 and whole[0]["model_ms"] > 0

    def untimed(found: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if not k.endswith("_ms")} for row in found]

    assert untimed(rows["onnx"]) == untimed(whole)  # the export reads the video into the same glosses
    assert [row["window_end"] for row in windows] == [11, 17, 23, 29, 35]
    assert all(row["frames"] == 12 and set(row["glosses"].split()) <= vocabulary for row in windows)


def test_a_model_of_pixel_tracks_refuses_a_video_in_one_line(boston104_run, capsys):
    from tests.conftest import console

    _, best, _ = boston104_run
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[0]
    done = console(capsys, "recognize", video, "--model", best)
    assert done.returncode == 2 and "rwth_boston104" in done.stderr and "MediaPipe tracking" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
