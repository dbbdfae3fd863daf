"""The text side of text-aligned sign models (``docs/signs_and_words.md``): class names to embeddings, behind one
interface (``ClassNameEncoder``), from three sources:

- ``vectors``: a word-vector file in the word2vec / GloVe text format (``word v1 ... vD`` per line, an optional
  ``count dim`` header); a name of several words (``thank_you``, ``thank you``) is the mean of its words' vectors;
- ``characters``: a small trainable encoder of the name's characters, which embeds any name but learns meaning only
  from the training classes;
- ``pretrained``: a Hugging Face text model (a sentence-transformers model such as
  ``sentence-transformers/all-MiniLM-L6-v2``, or a folder holding one), frozen, mean-pooled over the tokens.

Every encoder is a plain ``nn.Module``: ``encoder(names)`` is a float ``(len(names), dim)`` tensor.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

TextEncoderKind = Literal["vectors", "characters", "pretrained"]
WORD_SEPARATORS = re.compile(r"[_\s]+")


@dataclass(frozen=True)
class TextSideConfig:
    """Where a text-aligned model's class-name embeddings come from (``build_text_encoder``).

    Attributes:
        encoder: ``vectors`` (a word-vector file), ``characters`` (trainable, from the names' characters) or
            ``pretrained`` (a Hugging Face text model).
        vectors: the word-vector file (``encoder: vectors``). A trained model keeps its classes' embeddings, so it
            needs the file only for names it was not trained on.
        model: the text model's name on the Hugging Face hub or its folder (``encoder: pretrained``).
        dim: the character encoder's width.
        center: subtract the vector file's mean vector before use (word vectors share a common direction: the 40
            glosses of wlasl40 have a mean cosine of 0.32, 0.02 after centring). Off by default: on wlasl40's
            zero-shot splits it did not help (``benchmarks/RESULTS.md``, "Signs and words").
    """

    encoder: TextEncoderKind = "vectors"
    vectors: str | None = None
    model: str | None = None
    dim: int = 256
    center: bool = False


class WordVectors:
    """The vectors of a word2vec / GloVe text file, looked up by name (``embed``).

    Args:
        path: the file: one ``word v1 ... vD`` line per word, optionally a first line ``count dim``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.words, self.vectors = _read_vectors(str(self.path.resolve()), *_file_stamp(self.path))
        self.index = {word: i for i, word in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def mean(self) -> np.ndarray:
        return self.vectors.mean(0)

    def __contains__(self, name: str) -> bool:
        try:
            self.vector(name)
        except InputError:
            return False
        return True

    def vector(self, name: str) -> np.ndarray:
        """The vector of a name: the name itself, or lower-cased, or the mean of its words (split at ``_`` and
        white space); an ``InputError`` naming a word without a vector."""
        for key in (name, name.lower(), name.replace(" ", "_"), name.lower().replace(" ", "_")):
            if key in self.index:
                return self.vectors[self.index[key]]
        words = [word for word in WORD_SEPARATORS.split(name.strip()) if word]
        if not words:
            raise InputError(f"an empty class name has no vector in {self.path}")
        missing = [word for word in words if word not in self.index and word.lower() not in self.index]
        if missing:
            raise InputError(f"{self.path}: no vector for the word '{missing[0]}' of the class name '{name}'"
                             + (f" (nor for {', '.join(missing[1:])})" if len(missing) > 1 else "")
                             + ": add it to the file or rename the class")
        rows = [self.index[word] if word in self.index else self.index[word.lower()] for word in words]
        return self.vectors[rows].mean(0)

    def embed(self, names: list[str]) -> np.ndarray:
        """``(len(names), dim)`` float32 vectors of ``names``."""
        return np.stack([self.vector(name) for name in names]).astype(np.float32)


def _file_stamp(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise InputError(f"{path}: word-vector file not found")
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@lru_cache(maxsize=4)
def _read_vectors(path: str, size: int, mtime: int) -> tuple[list[str], np.ndarray]:
    """The words and vectors of a file (cached while the file is unchanged: a test run may embed several lists)."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f, 1):
                fields = line.rstrip("\n").rstrip().split(" ")
                if not fields or fields == [""]:
                    continue
                if number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
                    dim = int(fields[1])  # the word2vec header: count dim
                    continue
                try:
                    values = np.array(fields[1:], dtype=np.float32)
                except ValueError:
                    raise InputError(f"{path}, line {number}: '{fields[0]}' is followed by something that is not "
                                     "a number (expected 'word v1 ... vD', the word2vec/GloVe text format)") from None
                dim = dim or len(values)
                if len(values) != dim or not dim:
                    raise InputError(f"{path}, line {number}: '{fields[0]}' has {len(values)} values, the file's "
                                     f"vectors have {dim}")
                words.append(fields[0])
                rows.append(values)
        except UnicodeDecodeError as error:
            raise InputError(f"{path}: not a text file of word vectors ({error.reason} at byte {error.start})"
                             ) from None
    if not rows:
        raise InputError(f"{path}: no word vectors in the file")
    vectors = np.stack(rows)
    if not np.isfinite(vectors).all():
        raise InputError(f"{path}: the vectors hold NaN or infinite values")
    return words, vectors


class ClassNameEncoder(nn.Module):
    """Class names -> ``(N, dim)`` float embeddings. ``trainable``: whether its weights learn with the sign model
    (then the embeddings are recomputed every step, and saved with the model's weights)."""

    dim: int
    trainable: bool = False

    def forward(self, names: list[str]) -> torch.Tensor:
        raise NotImplementedError


class VectorsEncoder(ClassNameEncoder):
    """Embeddings from a word-vector file, read on first use (a trained model needs it only for new names)."""

    def __init__(self, path: str, center: bool = False):
        super().__init__()
        self.path, self.center = path, center
        self._vectors: WordVectors | None = None

    @property
    def vectors(self) -> WordVectors:
        if self._vectors is None:
            self._vectors = WordVectors(self.path)
        return self._vectors

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.vectors.dim

    def forward(self, names: list[str]) -> torch.Tensor:
        embedded = self.vectors.embed(names)
        if self.center:
            embedded = embedded - self.vectors.mean
        return torch.from_numpy(embedded.astype(np.float32))


class CharacterEncoder(ClassNameEncoder):
    """A trainable encoder of a name's UTF-8 bytes: byte embeddings, two convolutions over the name, mean-pooled."""

    trainable = True

    def __init__(self, dim: int = 256, max_length: int = 48):
        super().__init__()
        self.dim, self.max_length = dim, max_length
        self.embed = nn.Embedding(257, dim, padding_idx=0)  # byte b is b + 1; 0 pads
        self.convs = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv1d(dim, dim, 3, padding=1))
        self.out = nn.Linear(dim, dim)

    def tokens(self, names: list[str]) -> torch.Tensor:
        encoded = [list(name.lower().encode("utf-8"))[: self.max_length] or [32] for name in names]
        tokens = torch.zeros(len(names), max(map(len, encoded)), dtype=torch.long)
        for row, data in enumerate(encoded):
            tokens[row, : len(data)] = torch.tensor(data) + 1
        return tokens.to(self.embed.weight.device)

    def forward(self, names: list[str]) -> torch.Tensor:
        tokens = self.tokens(names)
        mask = (tokens > 0).unsqueeze(-1).float()
        x = self.embed(tokens)
        x = x + self.convs(x.transpose(1, 2)).transpose(1, 2)
        return self.out((x * mask).sum(1) / mask.sum(1))


class PretrainedTextEncoder(ClassNameEncoder):
    """A frozen Hugging Face text model (``transformers``), mean-pooled over the name's tokens, as
    sentence-transformers models are. Loaded on first use, from the hub or from a folder (``save_pretrained``)."""

    def __init__(self, model: str):
        super().__init__()
        self.model_name = model
        self._loaded: tuple | None = None

    def _load(self) -> tuple:
        if self._loaded is None:
            try:
                from transformers import AutoModel, AutoTokenizer
            except ImportError:
                raise InputError("text encoder 'pretrained' needs the transformers package: pip install "
                                 "'signbridge[text]'") from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_name)
                network = AutoModel.from_pretrained(self.model_name).eval().requires_grad_(False)
            except (OSError, ValueError) as error:
                raise InputError(f"cannot load the text model '{self.model_name}': {str(error).splitlines()[0]}"
                                 ) from None
            self._loaded = (tokenizer, network)
        return self._loaded

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._load()[1].config.hidden_size)

    def forward(self, names: list[str]) -> torch.Tensor:
        tokenizer, network = self._load()
        words = [WORD_SEPARATORS.sub(" ", name).strip() for name in names]
        batch = tokenizer(words, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = network(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp_min(1)).float()


TextMapping = Literal["sign_to_text", "text_to_sign"]


class TextAlignedHead(nn.Module):
    """Signs scored against class-name embeddings by cosine similarity times a learnable scale (CLIP's inverse
    temperature, at most 100), in one of two spaces:

    - ``sign_to_text`` (CLIP): the sign features are projected into the text space;
    - ``text_to_sign``: the names' embeddings are projected into the sign features' space (as "deep embedding"
      zero-shot models do: a name then predicts its sign's prototype, which resists the hubness of high-dimensional
      text spaces).

    Args:
        width: the sign features' size.
        embedding_dim: the text space's size.
        mapping: ``sign_to_text`` or ``text_to_sign``.
        temperature: the initial temperature (CLIP: 0.07).
        learn_temperature: learn it with the model (otherwise it stays fixed).
    """

    def __init__(self, width: int, embedding_dim: int, mapping: TextMapping = "sign_to_text",
                 temperature: float = 0.07, learn_temperature: bool = True):
        super().__init__()
        self.mapping = mapping
        if mapping == "sign_to_text":
            self.projection = nn.Linear(width, embedding_dim)
        elif mapping == "text_to_sign":
            self.projection = nn.Linear(embedding_dim, width, bias=False)
        else:
            raise InputError(f"unknown text mapping '{mapping}' (sign_to_text, text_to_sign)")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)), requires_grad=learn_temperature)

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The unit-length sign embeddings ``(B, ...)`` in the shared space."""
        return normalized(self.projection(features) if self.mapping == "sign_to_text" else features)

    def embed_names(self, class_embeddings: torch.Tensor) -> torch.Tensor:
        """The unit-length class-name embeddings ``(C, ...)`` in the shared space."""
        return normalized(self.projection(class_embeddings) if self.mapping == "text_to_sign" else class_embeddings)

    def forward(self, features: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)``: scaled cosine similarity of each sign to each class name's embedding ``(C, D)``."""
        return self.scale * self.embed(features) @ self.embed_names(class_embeddings).T


def build_text_encoder(config: TextSideConfig) -> ClassNameEncoder:
    """The ``ClassNameEncoder`` of a ``TextSideConfig``; an ``InputError`` for a missing setting."""
    if config.encoder == "vectors":
        if not config.vectors:
            raise InputError("text encoder 'vectors' needs a word-vector file: set text.vectors (word2vec/GloVe text "
                             "format)")
        return VectorsEncoder(config.vectors, config.center)
    if config.encoder == "characters":
        return CharacterEncoder(config.dim)
    if config.encoder == "pretrained":
        if not config.model:
            raise InputError("text encoder 'pretrained' needs text.model: a Hugging Face model name or folder")
        return PretrainedTextEncoder(config.model)
    raise InputError(f"unknown text encoder '{config.encoder}' (vectors, characters, pretrained)")


def normalized(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (cosine similarity is then a dot product)."""
    return F.normalize(x.float(), dim=-1)
