"""The character set of a CTC text recognizer, shared by the text data (encoding labels) and the recognizer tasks
(decoding predictions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .ctc import Vocabulary, greedy_paths
from .errors import InputError


class Charset(Vocabulary):
    """The characters a CTC recognizer can emit: a ``ctc.Vocabulary`` of single characters. Class 0 is the CTC
    blank; character ``i`` of ``chars`` is class ``i + 1``.

    Args:
        chars: the characters, each once; their order fixes the class indices.
    """

    def __init__(self, chars: str):
        if not chars:
            raise InputError("the character set is empty")
        repeated = sorted({c for c in chars if chars.count(c) > 1})
        if repeated:
            raise InputError(f"the character set {chars!r} repeats {''.join(repeated)!r}")
        super().__init__(list(chars))
        self.chars = chars

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> Charset:
        """The sorted set of characters that occur in ``texts``."""
        return cls("".join(sorted(set("".join(texts)))))

    def unknown(self, text: Sequence[str]) -> str:
        """The characters of ``text`` that are not in the set, each once, in order of appearance."""
        return "".join(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: Sequence[str]) -> list[int]:
        unknown = self.unknown(text)
        if unknown:
            raise InputError(f"{text!r} has characters outside the character set {self.chars!r}: {unknown!r}")
        return super().encode(text)

    def decode(self, indices: Sequence[int]) -> str:  # type: ignore[override]
        return "".join(super().decode(indices))

    def decode_greedy(self, logits: torch.Tensor) -> list[str]:
        """Best-path CTC decoding of ``(B, T, classes)`` logits: argmax per step, merge repeats, drop blanks."""
        return [self.decode(path) for path in greedy_paths(logits)]

    def __eq__(self, other) -> bool:
        return isinstance(other, Charset) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"Charset({self.chars!r})"
