"""The CTC text recognizer (and the frozen recognizer that guides restoration), through the real LightningCLI on
real captchas."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from signbridge.cli import main
from signbridge.data import TextImageDataModule
from signbridge.errors import InputError
from signbridge.losses import ctc_loss
from signbridge.tasks import FrozenRecognizer, TextRecognizer
from tests.tasks.conftest import recognizer_args


def test_recognizer_fit_test_predict(recognizer_checkpoint, captcha_subset, tmp_path):
    assert recognizer_checkpoint.exists()
    cli = main(["test", *recognizer_args(tmp_path, captcha_subset), "--ckpt_path", str(recognizer_checkpoint)])
    metrics = cli.trainer.callback_metrics
    assert {"test_loss", "test_word_acc", "test_cer"} <= set(metrics)
    assert 0 <= metrics["test_word_acc"] <= 1 and metrics["test_cer"] >= 0
    output = tmp_path / "texts.csv"
    main(["predict", *recognizer_args(tmp_path, captcha_subset), "--ckpt_path", str(recognizer_checkpoint),
          "--prediction_writer.output", str(output)])
    lines = output.read_text().splitlines()
    assert lines[0] == "path,text" and len(lines) == 1 + 6


def test_recognizer_rejects_data_it_cannot_read(captcha_subset):
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False)
    data = TextImageDataModule(str(captcha_subset), num_workers=0)
    with pytest.raises(InputError, match="characters the recognizer does not know"):
        trainer.fit(TextRecognizer("234567", channels=(4, 4, 4, 4), hidden_size=4), datamodule=data)
    with pytest.raises(InputError, match="give only 4 CTC timesteps"):
        trainer.fit(TextRecognizer("2345678bcdefgmnpwxy", channels=(4, 4, 4, 4), hidden_size=4),
                    datamodule=TextImageDataModule(str(captcha_subset), width=16, num_workers=0))


def test_ctc_loss_runs_in_float32_under_autocast():
    logits = torch.randn(2, 16, 5, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ctc_loss(logits, torch.tensor([1, 2, 3, 4, 4]), torch.tensor([3, 2]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_frozen_recognizer_is_frozen_but_passes_gradients(recognizer_checkpoint):
    frozen = FrozenRecognizer.from_checkpoint(recognizer_checkpoint)
    frozen.train()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())
    images = torch.rand(2, 1, 32, 128, requires_grad=True)
    logits, features = frozen(images)
    assert logits.shape[:2] == (2, 32) and features.shape == frozen.features(images).shape
    features.square().mean().backward()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())
    # identical images give a feature loss of exactly zero
    same = images.detach()
    assert F.mse_loss(frozen.features(same), frozen.features(same.clone())) == 0
    with pytest.raises(InputError, match="not a TextRecognizer checkpoint"):
        path = recognizer_checkpoint.with_name("other.ckpt")
        torch.save({"state_dict": {}}, path)
        FrozenRecognizer.from_checkpoint(path)


def test_the_recognizer_exports_with_its_charset_and_a_free_width(recognizer_checkpoint, tmp_path):
    from signbridge.export import export_checkpoint
    from signbridge.inference import ExportedModel, read_exported_metadata
    from signbridge.recognize import Recognizer

    model = TextRecognizer.load_from_checkpoint(recognizer_checkpoint, weights_only=True).eval()
    for format, name in (("onnx", "text.onnx"), ("torchscript", "text.pt")):
        report = export_checkpoint(recognizer_checkpoint, tmp_path / name, format=format)
        assert report.max_abs_diff < 1e-3 and report.top1_agreement == 1.0, report
        contract = ExportedModel(report.path).contract
        assert "".join(contract.classes) == model.charset.chars
        assert contract.preprocessing["text_image"]["height"] == model.model.height
        # a wider image than the one it was traced with: more timesteps, the same greedy decoding as PyTorch
        image = torch.rand(3, model.model.in_channels, model.model.height, 200)
        logits, _ = ExportedModel(report.path)({"text_image": image})
        with torch.no_grad():
            expected = model(image)
        assert logits.shape == tuple(expected.shape)
        assert model.charset.decode_greedy(torch.from_numpy(logits)) == model.charset.decode_greedy(expected)
    int8 = export_checkpoint(recognizer_checkpoint, tmp_path / "text.int8.onnx", quantize="int8")
    assert read_exported_metadata(int8.path)["quantized"] == "int8"
    assert int8.size_bytes < (tmp_path / "text.onnx").stat().st_size  # the LSTM and linear weights in 8 bits
    with pytest.raises(InputError, match="a text recognizer"):
        Recognizer(tmp_path / "text.onnx")


def test_real_scene_text_with_its_own_test_split_scored_with_and_without_case(tmp_path):
    """IIIT5K's real word crops: training and validation from a train labels file, the test split from the
    dataset's test file, a charset of both files' labels (upper and lower case), and the word accuracy reported
    case-sensitive and case-folded."""
    from signbridge.metrics import WordAccuracy
    from tests.conftest import shared_dir

    exact, folded = WordAccuracy(), WordAccuracy(case_sensitive=False)
    for metric in (exact, folded):
        metric.update(["HOUSE", "cat", "Dog"], ["house", "Cat", "Dog"])
    assert float(exact.compute()) == pytest.approx(1 / 3) and float(folded.compute()) == 1.0

    root = shared_dir("data", "scene_text_iiit5k")
    for name, count in (("train", 48), ("test", 16)):  # the first lines of each file, with their real paths
        lines = (root / f"{name}.tsv").read_text(encoding="utf-8").splitlines()[:count]
        (tmp_path / f"{name}.tsv").write_text("\n".join(f"{root / path}\t{text}" for path, text in
                                                       (line.split("\t") for line in lines)) + "\n")
    data = TextImageDataModule(str(root), labels_file=str(tmp_path / "train.tsv"),
                               test_labels_file=str(tmp_path / "test.tsv"), val_fraction=0.25, num_workers=0,
                               batch_size=8)
    data.setup("fit")
    assert {name: len(data.datasets[name]) for name in ("train", "val", "test")} == {"train": 36, "val": 12,
                                                                                     "test": 16}
    assert data.datasets["test"].paths[0].endswith(lines[0].split("\t")[0].rsplit("/", 1)[-1])
    chars = data.charset.chars
    assert any(c.isupper() for c in chars) and any(c.islower() for c in chars)
    with pytest.raises(InputError, match="test_fraction must be 0"):
        TextImageDataModule(str(root), test_labels_file=str(tmp_path / "test.tsv"), test_fraction=0.1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    task = TextRecognizer(chars, channels=(8, 8, 16, 16), hidden_size=16)
    trainer.fit(task, datamodule=data)
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    assert metrics["test_word_acc_nocase"] >= metrics["test_word_acc"] >= 0
