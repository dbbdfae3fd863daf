import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from signbridge.metrics import ClassifierTally, StreamingClassificationMetrics, scores_from_counts


@pytest.mark.parametrize("num_classes", [3, 10, 37])
def test_streaming_metrics_equal_torchmetrics(num_classes):
    torch.manual_seed(num_classes)
    ours = StreamingClassificationMetrics(num_classes)
    acc = MulticlassAccuracy(num_classes, average="micro")
    top = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
    f1 = MulticlassF1Score(num_classes, average="macro")
    for _ in range(4):
        logits = torch.randn(50, num_classes)
        target = torch.randint(0, max(1, num_classes - 1), (50,))  # the last class never occurs as a target
        for metric in (ours, acc, top, f1):
            metric.update(logits, target)
    values = ours.compute()
    torch.testing.assert_close(values["acc"], acc.compute())
    torch.testing.assert_close(values["top5"], top.compute())
    torch.testing.assert_close(values["f1_macro"], f1.compute())
    ours.reset()
    assert ours.confusion.sum() == 0


def test_tallies_of_two_sample_sets_add_up_to_the_scores_of_their_union():
    torch.manual_seed(0)
    logits, target = torch.randn(90, 6), torch.randint(0, 6, (90,))
    first, second, union = ClassifierTally(6), ClassifierTally(6), StreamingClassificationMetrics(6)
    first.update(logits[:40], target[:40], torch.tensor(2.5))
    second.update(logits[40:], target[40:], torch.tensor(1.5))
    union.update(logits, target)
    a, b = first.compute(), second.compute()
    assert float(a["loss_sum"] + b["loss_sum"]) == 4.0
    summed = scores_from_counts(a["confusion"] + b["confusion"], a["top_k_correct"] + b["top_k_correct"])
    for name, value in union.compute().items():
        torch.testing.assert_close(summed[name], value)


def test_case_sensitive_and_case_folded_word_accuracy_stay_apart_when_the_first_batch_agrees():
    """torchmetrics merges metrics whose states are equal after the first update (compute groups); the two word
    accuracies have the same states, so a first batch without case errors made them one metric."""
    from signbridge.metrics import text_metrics

    metrics = text_metrics("test_")
    metrics.update(["abc", "x"], ["abc", "y"])  # both: 1 of 2
    metrics.update(["ABC"], ["abc"])  # exact: wrong; folded: right
    scores = metrics.compute()
    assert float(scores["test_word_acc"]) == pytest.approx(1 / 3)
    assert float(scores["test_word_acc_nocase"]) == pytest.approx(2 / 3)
