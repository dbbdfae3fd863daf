"""Synthetic word images: fonts found and checked, words of the charset, seeded images, and the data modules that
train on them (mixed into real words, or alone through ``signbridge fit``)."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from signbridge.charset import Charset
from signbridge.cli import main
from signbridge.data import (
    SyntheticWordDataset,
    SyntheticWords,
    TextImageDataModule,
    WordImageGenerator,
    find_fonts,
)
from signbridge.data.synthetic_text import covers, font_folders
from signbridge.errors import InputError

ALNUM = Charset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@pytest.fixture(scope="module")
def fonts() -> list[str]:
    return find_fonts()


def matplotlib_font(name: str) -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


def test_installed_fonts_are_found_and_symbol_fonts_are_not_used(fonts, tmp_path):
    # matplotlib (a dependency) ships the DejaVu family, so every installation has fonts
    assert any(Path(folder).is_dir() for folder in font_folders()) and fonts
    assert all(Path(f).suffix.lower() in (".ttf", ".otf") for f in fonts)
    assert covers(matplotlib_font("DejaVuSans.ttf"), ALNUM.chars)
    # a STIX size variant maps letters to the box it draws for a missing glyph
    assert not covers(matplotlib_font("STIXSizOneSymReg.ttf"), ALNUM.chars)
    generator = WordImageGenerator(ALNUM, [matplotlib_font("DejaVuSans.ttf"), matplotlib_font("STIXSizOneSymReg.ttf")])
    assert generator.fonts == [matplotlib_font("DejaVuSans.ttf")]
    with pytest.raises(InputError, match="none of the 1 fonts draws every character"):
        WordImageGenerator(ALNUM, [matplotlib_font("STIXSizOneSymReg.ttf")])
    with pytest.raises(InputError, match="font file or folder not found"):
        find_fonts([str(tmp_path / "nothing")])
    (tmp_path / "notes.txt").write_text("not a font")
    with pytest.raises(InputError, match="notes.txt: not a font file"):
        find_fonts([str(tmp_path / "notes.txt")])
    with pytest.raises(InputError, match=r"no \.ttf or \.otf fonts in"):
        find_fonts([str(tmp_path)])
    (tmp_path / "broken.ttf").write_bytes(b"\0" * 64)
    with pytest.raises(InputError, match="broken.ttf: cannot read the font"):
        WordImageGenerator(ALNUM, find_fonts([str(tmp_path / "broken.ttf")]))


def test_words_use_the_charset_in_the_case_patterns_of_real_text(fonts):
    generator = WordImageGenerator(ALNUM, fonts, min_length=2, max_length=9)
    rng = np.random.default_rng(0)
    words = [generator.word(rng) for _ in range(400)]
    assert all(2 <= len(w) <= 9 and not ALNUM.unknown(w) for w in words)
    assert {"lower", "upper", "capital"} <= {
        "lower" if w.islower() else "upper" if w.isupper() else "capital" if w[0].isupper() and w[1:].islower()
        else "other" for w in words if w.isalpha()}
    assert len(set(words)) > 350  # random strings, not a handful of words
    captcha = WordImageGenerator(Charset("2345678bcdefgmnpwxy"), fonts)  # no capitals: other patterns
    assert all(not Charset("2345678bcdefgmnpwxy").unknown(captcha.word(rng)) for _ in range(100))
    lexicon = WordImageGenerator(ALNUM, fonts, max_length=5, lexicon=["street", "Shop", "42"])
    assert {lexicon.word(rng) for _ in range(50)} == {"Shop", "42"}  # "street" is longer than 5
    with pytest.raises(InputError, match="outside the charset"):
        WordImageGenerator(ALNUM, fonts, lexicon=["café"])


def test_a_word_image_is_a_function_of_its_seed_and_shows_the_text(fonts):
    generator = WordImageGenerator(ALNUM, fonts)
    text, image = generator.sample(np.random.default_rng([3, 7]))
    again_text, again = generator.sample(np.random.default_rng([3, 7]))
    assert text == again_text and np.array_equal(image, again)
    other_text, other = generator.sample(np.random.default_rng([3, 8]))
    assert (other_text, other.shape) != (text, image.shape) or not np.array_equal(image, other)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[1] > image.shape[0] * len(text) * 0.25  # wide enough for its letters
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(float)
    assert gray.max() - gray.min() > 60  # text stands out from its background


def test_the_dataset_fixes_validation_words_and_draws_new_training_words(fonts):
    generator = WordImageGenerator(ALNUM, fonts)
    fixed = SyntheticWordDataset(generator, 8, height=32, width=160, fixed=True, seed=5)
    first, second = fixed[3], fixed[3]
    assert first["text"] == second["text"] and torch.equal(first["clean"], second["clean"])
    assert first["clean"].shape == (1, 32, 160) and 0 <= first["clean"].min() and first["clean"].max() <= 1
    assert ALNUM.decode(first["target"].tolist()) == first["text"] and first["path"] == "synthetic/3"
    torch.manual_seed(0)
    drawn = SyntheticWordDataset(generator, 8, height=32, width=160, grayscale=False)
    texts = [drawn[0]["text"] for _ in range(6)]
    assert len(set(texts)) > 1 and drawn[0]["clean"].shape == (3, 32, 160)


def write_words(root: Path, words: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for word in words:
        image = np.full((32, 128, 3), 255, np.uint8)
        cv2.putText(image, word, (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        cv2.imwrite(str(root / f"{word}.png"), image)


def test_synthetic_words_join_the_real_training_words_only(tmp_path):
    words = ["cab", "bad", "dab", "add", "bead", "face", "cafe", "deaf", "fade", "bed"]
    write_words(tmp_path / "words", words)
    data = TextImageDataModule(str(tmp_path / "words"), val_fraction=0.2, num_workers=0,
                               synthetic=SyntheticWords(count=12, max_length=6))
    data.setup("fit")
    assert len(data.datasets["train"]) == 8 + 12 and len(data.datasets["val"]) == 2
    synthetic = [data.datasets["train"][i] for i in range(8, 20)]
    assert all(item["path"].startswith("synthetic/") and not data.charset.unknown(item["text"]) for item in synthetic)
    assert data.max_text_length == 6  # the longest a synthetic word may be, beyond the real 4
    rebuilt = TextImageDataModule(str(tmp_path / "words"), synthetic={"count": 3})  # as from a checkpoint
    assert rebuilt.synthetic == SyntheticWords(count=3)
    with pytest.raises(InputError, match="synthetic.max_length must be"):
        SyntheticWords(min_length=4, max_length=2)


def test_labels_outside_the_charset_are_skipped_when_asked(tmp_path, caplog):
    write_words(tmp_path / "words", ["cab", "bad", "dab", "add", "Bead", "fa-ce"])
    data = TextImageDataModule(str(tmp_path / "words"), charset="abcdef", skip_unknown=True, val_fraction=0.2,
                               num_workers=0)
    data.setup("fit")
    assert sorted(data.datasets["train"].texts + data.datasets["val"].texts) == ["add", "bad", "cab", "dab"]
    assert "2 of 6 labels have characters outside the character set" in caplog.text
    with pytest.raises(InputError, match="no label uses only the characters"):
        TextImageDataModule(str(tmp_path / "words"), charset="xyz", skip_unknown=True).setup("fit")
    with pytest.raises(InputError, match="outside the character set"):
        TextImageDataModule(str(tmp_path / "words"), charset="abcdef").setup("fit")


def test_a_recognizer_trains_on_synthetic_words_alone_through_the_cli(tmp_path):
    cli = main(["fit", "--model", "TextRecognizer", "--model.charset", "0123456789", "--model.channels",
                "[8, 8, 16, 16]", "--model.hidden_size", "16", "--model.shortcut_weight", "0.1",
                "--data", "SyntheticTextDataModule", "--data.charset", "0123456789", "--data.synthetic.count", "32",
                "--data.synthetic.max_length", "6", "--data.val_count", "16", "--data.batch_size", "8",
                "--data.num_workers", "0", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
                "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                "--trainer.default_root_dir", str(tmp_path)])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 4 and {"val_loss", "val_word_acc", "train_shortcut_loss"} <= set(metrics)
    assert torch.isfinite(metrics["val_loss"]) and torch.isfinite(metrics["train_shortcut_loss"])
    contract = cli.model.inference_contract()
    assert contract.preprocessing["text_image"] == {"height": 32, "channels": 1}
