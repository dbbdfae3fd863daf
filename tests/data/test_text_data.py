"""Text images: labels from stems or a TSV, the character set and its errors, resizing, deterministic degradations."""

import cv2
import numpy as np
import pytest
import torch

from signbridge.data.text import Charset, Degradation, TextImageDataModule, collate_text_batch, fit_to_height
from signbridge.errors import InputError


def write_image(path, width=100, height=25, value=200):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    cv2.putText(image, "ab", (5, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    cv2.imwrite(str(path), image)


def test_captchas_labelled_by_stem_with_a_seeded_split(captcha_subset):
    dm = TextImageDataModule(str(captcha_subset), val_fraction=0.1, test_fraction=0.1, num_workers=0)
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes["train"] + sizes["val"] + sizes["test"] == 64 and sizes["val"] == sizes["test"] == 6
    item = dm.datasets["val"][0]
    assert item["text"] == item["path"].removesuffix(".png") and len(item["text"]) == 5
    assert item["clean"].shape == (1, 32, 128) and item["clean"].dtype == torch.float32
    assert 0 <= item["clean"].min() and item["clean"].max() <= 1
    assert dm.charset.decode(item["target"].tolist()) == item["text"]
    again = TextImageDataModule(str(captcha_subset), val_fraction=0.1, test_fraction=0.1, num_workers=0)
    again.setup("fit")
    assert again.datasets["val"].paths == dm.datasets["val"].paths
    assert set(dm.charset.chars) <= set("2345678bcdefgmnpwxy")


def test_degradation_is_deterministic_per_sample_and_seed(captcha_subset):
    def degraded(seed, split="train"):
        dm = TextImageDataModule(str(captcha_subset), degrade=True, degradation_seed=seed, num_workers=0)
        dm.setup("fit")
        return dm.datasets[split]

    first, second, other = degraded(0), degraded(0), degraded(1)
    for i in range(4):
        assert torch.equal(first[i]["degraded"], second[i]["degraded"])
        assert torch.equal(first[i]["degraded"], first[i]["degraded"])  # the same in every epoch
    assert any(not torch.equal(first[i]["degraded"], other[i]["degraded"]) for i in range(4))
    assert (first[0]["degraded"] - first[0]["clean"]).abs().mean() > 0.01
    batch = collate_text_batch([first[i] for i in range(3)])
    assert batch["degraded"].shape == batch["clean"].shape == (3, 1, 32, 128)
    assert batch["target_lengths"].tolist() == [5, 5, 5] and batch["targets"].shape == (15,)


def test_kept_low_resolution_and_its_checks(captcha_subset):
    dm = TextImageDataModule(str(captcha_subset), degrade=True, scales=(4,), keep_low_res=True, num_workers=0)
    dm.setup("fit")
    assert dm.datasets["train"][0]["degraded"].shape == (1, 8, 32)
    with pytest.raises(ValueError, match="one scale"):
        Degradation(scales=(2, 4), keep_low_res=True)


def test_fit_to_height_keeps_aspect_and_pads():
    image = np.zeros((20, 50), np.uint8)
    out = fit_to_height(image, 32, 128)
    assert out.shape == (32, 128)
    assert (out[:, :80] == 0).all() and (out[:, 80:] == 255).all()
    assert fit_to_height(np.zeros((10, 500), np.uint8), 32, 128).shape == (32, 128)  # too wide: shrunk


def test_unknown_characters_name_the_file(captcha_subset, tmp_path):
    dm = TextImageDataModule(str(captcha_subset), charset="2345678bcdefg", num_workers=0)
    with pytest.raises(InputError, match=r"\.png: label '.*' has characters outside the character set"):
        dm.setup("fit")
    with pytest.raises(InputError, match="repeats"):
        Charset("abca")
    with pytest.raises(InputError, match="outside the character set 'ab': 'c'"):
        Charset("ab").encode("abc")


def test_labels_file_and_its_errors(tmp_path):
    write_image(tmp_path / "img" / "one.png")
    write_image(tmp_path / "img" / "two.jpg", width=60)
    (tmp_path / "labels.tsv").write_text("path\ttext\nimg/one.png\thello world\nimg/two.jpg\tab\n")
    dm = TextImageDataModule(str(tmp_path), labels_file="labels.tsv", val_fraction=0.5, num_workers=0)
    dm.setup("fit")
    assert sorted(dm.datasets["train"].texts + dm.datasets["val"].texts) == ["ab", "hello world"]
    assert dm.charset.chars == " abdehlorw"

    (tmp_path / "bad.tsv").write_text("img/one.png\n")
    with pytest.raises(InputError, match=r"bad.tsv:1: expected 'path<TAB>text'"):
        TextImageDataModule(str(tmp_path), labels_file="bad.tsv").setup("fit")
    (tmp_path / "empty_label.tsv").write_text("img/one.png\t\n")
    with pytest.raises(InputError, match="one.png: empty label"):
        TextImageDataModule(str(tmp_path), labels_file="empty_label.tsv").setup("fit")
    (tmp_path / "missing.tsv").write_text("img/three.png\tabc\n")
    with pytest.raises(FileNotFoundError, match="three.png"):
        TextImageDataModule(str(tmp_path), labels_file="missing.tsv", num_workers=0).setup("fit")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "broken.tsv").write_text("img/broken.png\tab\n")
    with pytest.raises(InputError, match="broken.png: not a decodable image"):
        TextImageDataModule(str(tmp_path), labels_file="broken.tsv", num_workers=0).setup("fit")


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    charset = Charset("ab")
    steps = [0, 1, 1, 0, 1, 2, 2, 0, 0]  # blank a a blank a b b blank blank -> "aab"
    logits = torch.nn.functional.one_hot(torch.tensor([steps]), 3).float()
    assert charset.decode_greedy(logits) == ["aab"]
