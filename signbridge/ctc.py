"""CTC decoding shared by the text recognizer (characters) and continuous sign recognition (glosses): class 0 is the
blank, greedy (best path) and prefix beam search decoding, and a vocabulary of tokens (glosses) with the charset's
conventions."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import torch

from .errors import InputError


def greedy_paths(logits: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[int]]:
    """Best-path decoding of ``(B, T, classes)`` scores: the argmax per step, repeats merged, blanks (0) dropped;
    ``lengths``: each sequence's real steps (default: all ``T``)."""
    best = logits.argmax(dim=-1)
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    if lengths is not None:
        keep &= torch.arange(best.shape[1], device=best.device)[None] < lengths.to(best.device)[:, None]
    return [row[mask].tolist() for row, mask in zip(best.cpu(), keep.cpu())]


def gloss_sentence(glosses: Sequence[str], words: dict[str, str]) -> str:
    """Decoded glosses as a sentence in words: each gloss by its ``words`` (a gloss-to-words mapping), or as it is."""
    return " ".join(words.get(gloss, gloss) for gloss in glosses)


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high = max(a, b)
    return high + math.log1p(math.exp(-abs(a - b)))


def beam_search(log_probs: torch.Tensor, beam_width: int = 8) -> list[int]:
    """CTC prefix beam search of one sequence's ``(T, classes)`` log-probabilities: the label sequence whose
    alignments (all of them, summed) are most probable among those the beam keeps; blank is 0. ``beam_width`` 1 is
    close to greedy decoding, larger widths find what the best path misses (a label spread over several steps)."""
    if beam_width < 1:
        raise InputError(f"beam_width must be at least 1, got {beam_width}")
    steps = log_probs.detach().float().cpu().tolist()
    # prefix -> (log P(prefix, ending in blank), log P(prefix, ending in its last label))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for row in steps:
        following: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (blank, label) in beams.items():
            total = _log_add(blank, label)
            entry = following[prefix]
            entry[0] = _log_add(entry[0], total + row[0])  # a blank keeps the prefix
            if prefix:  # the last label repeated without a blank between: the same prefix
                entry[1] = _log_add(entry[1], label + row[prefix[-1]])
            for token in range(1, len(row)):
                extended = following[(*prefix, token)]
                # a repeat of the last label extends the prefix only after a blank
                source = blank if prefix and prefix[-1] == token else total
                extended[1] = _log_add(extended[1], source + row[token])
        ranked = sorted(following.items(), key=lambda item: _log_add(*item[1]), reverse=True)
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam_width]}
    return list(max(beams.items(), key=lambda item: _log_add(*item[1]))[0])


class Vocabulary:
    """The tokens (glosses, words) a CTC model emits: class 0 is the blank, token ``i`` of ``tokens`` is class
    ``i + 1`` (as ``charset.Charset`` numbers characters).

    Args:
        tokens: the tokens, each once; their order fixes the class indices.
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = [str(token) for token in tokens]
        if not tokens:
            raise InputError("the vocabulary is empty")
        repeated = sorted({token for token in tokens if tokens.count(token) > 1})
        if repeated:
            raise InputError(f"the vocabulary repeats {', '.join(repeated)}")
        self.tokens = tokens
        self._index = {token: i + 1 for i, token in enumerate(tokens)}

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[str]]) -> Vocabulary:
        """The sorted set of tokens of ``sentences``."""
        return cls(sorted({token for sentence in sentences for token in sentence}))

    def __contains__(self, token: str) -> bool:
        return token in self._index

    @property
    def num_classes(self) -> int:
        """Tokens plus the blank."""
        return len(self.tokens) + 1

    def encode(self, sentence: Sequence[str]) -> list[int]:
        unknown = [token for token in sentence if token not in self._index]
        if unknown:
            raise InputError(f"{' '.join(sentence)!r} has tokens outside the vocabulary: {', '.join(unknown)}")
        return [self._index[token] for token in sentence]

    def decode(self, indices: Sequence[int]) -> list[str]:
        return [self.tokens[i - 1] for i in indices if 0 < i <= len(self.tokens)]
