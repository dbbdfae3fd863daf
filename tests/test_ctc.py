"""CTC decoding against hand-computed examples, the gloss vocabulary, and the word error rate of a known example."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.text import WordErrorRate

from signbridge.ctc import Vocabulary, beam_search, greedy_paths
from signbridge.errors import InputError
from signbridge.losses import ctc_loss


def test_greedy_merges_repeats_and_drops_blanks():
    # paths: a a _ a b b _  -> a a b ; the second sequence is 3 steps long: b _ b -> b b
    best = torch.tensor([[1, 1, 0, 1, 2, 2, 0], [2, 0, 2, 1, 1, 1, 1]])
    logits = torch.nn.functional.one_hot(best, 3).float()
    assert greedy_paths(logits) == [[1, 1, 2], [2, 2, 1]]
    assert greedy_paths(logits, torch.tensor([7, 3])) == [[1, 1, 2], [2, 2]]


def test_beam_search_finds_the_label_the_best_path_misses():
    # two steps, P(blank) = 0.6, P(a) = 0.4 each: the best path is "blank blank" (0.36), so greedy says nothing, but
    # "a" has three alignments (a_, _a, aa) with 0.24 + 0.24 + 0.16 = 0.64 > 0.36
    log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_paths(log_probs[None]) == [[]]
    assert beam_search(log_probs, beam_width=4) == [1]
    # "a a" needs a blank between: with P(a) high at steps 1 and 3 and the blank at 2
    log_probs = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]).log()
    assert beam_search(log_probs) == [1, 1]
    # the beam's total probability of a prefix equals the CTC loss's: P("a") = exp(-loss)
    two = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    loss = ctc_loss(two.log()[None], torch.tensor([[1]]), torch.tensor([1]))
    assert math.exp(-loss.item() * 1) == pytest.approx(0.64, abs=1e-5)
    with pytest.raises(InputError, match="beam_width"):
        beam_search(log_probs, beam_width=0)


def test_ctc_loss_masks_padded_steps():
    logits = torch.randn(2, 6, 4)
    targets, lengths = torch.tensor([[1, 2], [3, 0]]), torch.tensor([2, 1])
    full = ctc_loss(logits, targets, lengths)
    padded = ctc_loss(torch.cat([logits, torch.randn(2, 3, 4)], 1), targets, lengths, torch.tensor([6, 6]))
    torch.testing.assert_close(full, padded)


def test_a_gloss_vocabulary():
    vocabulary = Vocabulary.from_sentences([["JOHN", "WRITE", "HOMEWORK"], ["IX-1P", "WRITE"]])
    assert vocabulary.tokens == ["HOMEWORK", "IX-1P", "JOHN", "WRITE"] and vocabulary.num_classes == 5
    assert vocabulary.decode(vocabulary.encode(["JOHN", "WRITE"])) == ["JOHN", "WRITE"]
    with pytest.raises(InputError, match="outside the vocabulary: MARY"):
        vocabulary.encode(["MARY", "WRITE"])
    with pytest.raises(InputError, match="repeats JOHN"):
        Vocabulary(["JOHN", "JOHN"])


def test_word_error_rate_of_a_known_example():
    # one substitution (sat -> sit) and one insertion (down) against 3 reference words: 2 / 3
    wer = WordErrorRate()
    assert wer(["the cat sit down"], ["the cat sat"]).item() == pytest.approx(2 / 3)
    wer = WordErrorRate()
    wer.update(["JOHN WRITE HOMEWORK"], ["JOHN WRITE HOMEWORK"])
    wer.update(["JOHN"], ["MARY BUY"])  # one substitution, one deletion: 2 errors
    assert wer.compute().item() == pytest.approx(2 / 5)
