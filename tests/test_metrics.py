import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from signbridge.metrics import StreamingClassificationMetrics


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
