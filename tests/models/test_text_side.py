"""The text side of text-aligned models: word-vector files and their errors, the character encoder, a pretrained
text model (a tiny one built here), and the zero-shot scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from signbridge.data.splits import held_out_classes
from signbridge.errors import InputError
from signbridge.metrics import zero_shot_scores
from signbridge.models.text import (
    CharacterEncoder,
    PretrainedTextEncoder,
    TextSideConfig,
    WordVectors,
    build_text_encoder,
)
from tests.conftest import shared_dir


def write_vectors(path: Path, rows: dict[str, list[float]], header: bool = False) -> Path:
    lines = [f"{len(rows)} {len(next(iter(rows.values())))}"] if header else []
    lines += [" ".join([word, *map(str, values)]) for word, values in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_vectors_file_names_multi_word_names_and_header(tmp_path):
    path = write_vectors(tmp_path / "v.txt", {"thank": [1, 0, 0], "you": [0, 1, 0], "a_lot": [0, 0, 2],
                                               "Mother": [3, 3, 3]}, header=True)
    vectors = WordVectors(path)
    assert vectors.dim == 3 and vectors.words == ["thank", "you", "a_lot", "Mother"]
    np.testing.assert_allclose(vectors.vector("thank_you"), [0.5, 0.5, 0])  # the mean of its words
    np.testing.assert_allclose(vectors.vector("thank you"), [0.5, 0.5, 0])
    np.testing.assert_allclose(vectors.vector("a lot"), [0, 0, 2])  # a phrase the file has whole
    np.testing.assert_allclose(vectors.vector("Mother"), [3, 3, 3])
    assert "thank_you" in vectors and "thank_me" not in vectors
    with pytest.raises(InputError, match=r"no vector for the word 'me' of the class name 'thank_me'"):
        vectors.embed(["thank", "thank_me"])
    encoder = build_text_encoder(TextSideConfig(vectors=str(path), center=True))
    embedded = encoder(["thank", "you"])
    np.testing.assert_allclose(embedded.numpy(), np.array([[1, 0, 0], [0, 1, 0]]) - vectors.mean, atol=1e-6)


@pytest.mark.parametrize("text, problem", [
    ("cat 1 2 3\ndog 1 2\n", r"line 2: 'dog' has 2 values, the file's vectors have 3"),
    ("cat 1 2 3\ndog 1 x 3\n", r"line 2: 'dog' is followed by something that is not a number"),
    ("", "no word vectors in the file"),
    ("cat 1 nan 3\n", "NaN or infinite"),
])
def test_a_broken_vectors_file_is_one_error_naming_the_file_and_line(tmp_path, text, problem):
    path = tmp_path / "broken.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as error:
        WordVectors(path)
    assert str(path) in str(error.value)


def test_a_binary_or_missing_vectors_file_is_a_clear_error(tmp_path):
    binary = tmp_path / "vectors.bin"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 100)
    with pytest.raises(InputError, match="not a text file of word vectors"):
        WordVectors(binary)
    with pytest.raises(InputError, match="word-vector file not found"):
        WordVectors(tmp_path / "absent.txt")
    with pytest.raises(InputError, match="needs a word-vector file"):
        build_text_encoder(TextSideConfig(encoder="vectors"))


def test_the_real_gloss_vectors_have_every_wlasl40_sign():
    vectors = WordVectors(shared_dir("data", "sign_sequences", "wlasl_gloss_vectors.txt"))
    signs = sorted(p.name for p in shared_dir("data", "sign_sequences", "wlasl40").iterdir())
    embedded = vectors.embed(signs)
    assert embedded.shape == (40, 300) and len(vectors.words) == 2000
    unit = embedded / np.linalg.norm(embedded, axis=1, keepdims=True)
    mother, woman, pizza = (unit[signs.index(name)] for name in ("mother", "woman", "pizza"))
    assert mother @ woman > mother @ pizza  # semantic: mother is nearer woman than pizza


def test_the_character_encoder_embeds_any_name_and_learns():
    encoder = CharacterEncoder(dim=16)
    embedded = encoder(["go", "walk", "thank_you", "go"])
    assert embedded.shape == (4, 16) and torch.isfinite(embedded).all()
    torch.testing.assert_close(embedded[0], embedded[3])
    embedded.sum().backward()
    assert encoder.embed.weight.grad is not None and encoder.embed.weight.grad.abs().sum() > 0


def test_a_pretrained_text_model_from_a_local_folder(tmp_path):
    import transformers
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "mother", "father", "pizza", "thank", "you"]
    tokenizer = transformers.BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    folder = tmp_path / "tiny-text-model"
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    encoder = build_text_encoder(TextSideConfig(encoder="pretrained", model=str(folder)))
    assert isinstance(encoder, PretrainedTextEncoder) and encoder.dim == 16
    embedded = encoder(["mother", "thank_you", "mother", "pizza"])
    assert embedded.shape == (4, 16) and torch.isfinite(embedded).all()
    torch.testing.assert_close(embedded[0], embedded[2])
    assert not torch.allclose(embedded[0], embedded[3])
    with pytest.raises(InputError, match="cannot load the text model"):
        PretrainedTextEncoder(str(tmp_path / "no-such-model"))(["mother"])


def test_zero_shot_scores_by_hand():
    # 2 seen classes (columns 0, 1) and 2 unseen (2, 3)
    logits = torch.tensor([
        [0.9, 0.1, 0.5, 0.0],  # seen 0: right among the seen and among all
        [0.9, 0.3, 0.0, 0.0],  # seen 1: wrong (0 wins)
        [0.6, 0.0, 0.5, 0.1],  # unseen 2: right among the unseen; among all, seen 0 wins (0.6 > 0.5)
        [0.0, 0.0, 0.2, 0.4],  # unseen 3: right
    ])
    labels = torch.tensor([0, 1, 2, 3])
    scores = zero_shot_scores(logits, labels, seen_count=2)
    assert scores["seen_acc"] == 0.5 and scores["unseen_acc"] == 1.0 and scores["unseen_top5"] == 1.0
    assert scores["gzsl_seen_acc"] == 0.5 and scores["gzsl_unseen_acc"] == 0.5
    assert scores["gzsl_h"] == pytest.approx(0.5)
    calibrated = zero_shot_scores(logits, labels, seen_count=2, seen_penalty=0.2)  # 0.6 - 0.2 < 0.5
    assert calibrated["gzsl_unseen_acc"] == 1.0 and calibrated["gzsl_seen_acc"] == 0.5
    assert calibrated["gzsl_h"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_held_out_classes_are_seeded_and_checked():
    classes = [f"c{i}" for i in range(40)]
    first, again, other = (held_out_classes(classes, 10, seed) for seed in (0, 0, 1))
    assert first == again and first != other and len(first) == 10 and first == sorted(first, key=classes.index)
    assert held_out_classes(classes, ["c3", "c1"], 0) == ["c1", "c3"]
    with pytest.raises(InputError, match="does not have"):
        held_out_classes(classes, ["c1", "dog"], 0)
    with pytest.raises(InputError, match="keep at least 2"):
        held_out_classes(classes, 39, 0)
