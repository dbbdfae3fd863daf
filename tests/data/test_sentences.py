"""Continuous signing data: the real RWTH-BOSTON-104 sentences with their glosses and segments, its errors, and
sentences stitched from isolated signs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from signbridge.data.sentences import read_boston104, stitch_sentences
from signbridge.errors import InputError
from tests.conftest import shared_dir


def test_the_real_boston104_sentences_as_the_database_splits_them():
    train, test = read_boston104(shared_dir("data", "sign_sequences", "rwth_boston104"))
    assert len(train) == 161 and len(test) == 40
    assert sum(len(s.glosses) for s in train) == 710 and sum(len(s.glosses) for s in test) == 178
    first = next(s for s in train if s.name == "1")
    assert first.glosses == ["JOHN", "WRITE", "HOMEWORK"] and first.signer == "woman-1"
    assert first.segments == [(8, 17), (22, 50), (51, 77)] and first.features.shape[1] == 6
    assert first.segment(0).shape == (10, 6)
    video98 = next(s for s in train + test if s.name == "98")  # the first line of hands_condensed.csv
    assert video98.features[0].tolist() == [149, 181, 170, 175, 161, 62]
    assert {s.signer for s in train + test} == {"woman-1", "woman-2", "man-1"}
    assert all(len(s.segments) == len(s.glosses) and s.segments[-1][1] < len(s.features) for s in train + test)


def test_a_broken_boston104_folder_is_one_error_naming_the_file(tmp_path):
    source = shared_dir("data", "sign_sequences", "rwth_boston104")
    root = tmp_path / "boston"
    shutil.copytree(source, root)
    (root / "test_words.csv").write_text("video,speaker,word,startframe\n2,woman-1,JOHN,7\n")
    with pytest.raises(InputError, match=r"test_words.csv: no column endframe"):
        read_boston104(root)
    (root / "test_words.csv").write_text("video,speaker,word,startframe,endframe\n2,woman-1,JOHN,7,x\n")
    with pytest.raises(InputError, match=r"test_words.csv, line 2: endframe is 'x'"):
        read_boston104(root)
    (root / "test_words.csv").write_text("video,speaker,word,startframe,endframe\n9999,woman-1,JOHN,7,9\n")
    with pytest.raises(InputError, match=r"video 9999 has no frames"):
        read_boston104(root)
    (root / "hands_condensed.csv").unlink()
    with pytest.raises(InputError, match="hands_condensed.csv: not found"):
        read_boston104(root)


def test_sentences_stitched_from_isolated_signs_are_seeded_and_segmented():
    signs = [np.full((3 + i, 2), i, dtype=np.float32) for i in range(4)]
    sentences = stitch_sentences(signs, [0, 1, 2, 1], ["go", "walk", "mother"], count=5, min_signs=2, max_signs=3,
                                 gap_frames=1, seed=3)
    again = stitch_sentences(signs, [0, 1, 2, 1], ["go", "walk", "mother"], count=5, min_signs=2, max_signs=3,
                             gap_frames=1, seed=3)
    assert [s.glosses for s in sentences] == [s.glosses for s in again]
    for sentence in sentences:
        assert 2 <= len(sentence.glosses) <= 3 and len(sentence.segments) == len(sentence.glosses)
        for gloss, (start, end) in zip(sentence.glosses, sentence.segments):
            value = sentence.features[start, 0]
            assert (sentence.features[start:end + 1] == value).all()  # one whole sign per segment
            assert {"go": [0], "walk": [1, 3], "mother": [2]}[gloss].count(int(value)) == 1
        assert len(sentence.features) == sentence.segments[-1][1] + 2  # the pause after the last sign
    with pytest.raises(InputError, match="min_signs"):
        stitch_sentences(signs, [0, 1, 2, 1], ["a", "b", "c"], count=1, min_signs=3, max_signs=2)


def test_a_folder_of_isolated_signs_becomes_stitched_sentences_with_disjoint_splits(tmp_path):
    from signbridge.data.sentences import SentenceDataModule
    from tests.conftest import write_sequences

    root = write_sequences(tmp_path / "signs", classes=3, per_class=10, frames=6)
    data = SentenceDataModule(str(root), val_fraction=0.2, test_fraction=0.2, sentences=20, min_signs=2, max_signs=3,
                              landmarks_file=str(tmp_path / "signs.npz"))
    data.setup("fit")
    assert list(data.vocabulary.tokens) == ["sign0", "sign1", "sign2"]
    train, val, test = (data.datasets[split].sentences for split in ("train", "val", "test"))
    assert len(train) == 20 and len(val) == len(test) == round(20 * 6 / 18)  # in proportion to 18 / 6 / 6 signs
    for sentence in train + test:
        assert 2 <= len(sentence.glosses) <= 3 and len(sentence.segments) == len(sentence.glosses)
        assert sentence.segments[-1][1] == len(sentence.features) - 1
    # a frame: 170 values' 56 landmarks x 3, then each part's presence; no sequence is in two splits
    assert data.feature_size == train[0].features.shape[1] > 3
    def signs_of(sentences):
        return {s.features[a:b + 1].tobytes() for s in sentences for a, b in s.segments}
    assert not signs_of(train) & signs_of(test) and not signs_of(train) & signs_of(val)
    batch = next(iter(data.train_dataloader()))
    assert batch["features"].shape[-1] == data.feature_size and len(batch["segment_label"]) >= 2 * 16
    data.setup("predict")
    assert len(data.datasets["predict"]) == len(test)
