"""Metrics torchmetrics lacks: a training-time classification metric that never waits for the GPU, and word accuracy."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import CharErrorRate


class StreamingClassificationMetrics(Metric):
    """Accuracy, top-k accuracy and macro F1 from a confusion matrix accumulated on the device.

    torchmetrics' stat-score updates synchronise the host with the GPU (argument validation with ``torch.unique``,
    ``bincount`` and ``one_hot`` range checks). Once per training step that stalls the kernel queue of a
    launch-bound model (benchmarks/RESULTS.md). This metric updates with comparisons and a matmul only; its values
    equal torchmetrics' ``MulticlassAccuracy`` (micro, top-1 and top-k) and ``MulticlassF1Score`` (macro: classes
    absent from both targets and predictions are left out of the mean), which the tests check.

    ``compute()`` returns ``{"acc", "top5", "f1_macro"}`` (the top-k key is ``top5`` whatever k is).
    """

    full_state_update = False
    confusion: torch.Tensor
    top_k_correct: torch.Tensor

    def __init__(self, num_classes: int, top_k: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.top_k = min(top_k, num_classes)
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("top_k_correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        classes = torch.arange(self.num_classes, device=target.device)
        target_onehot = (target.unsqueeze(1) == classes).float()
        predicted_onehot = (logits.argmax(dim=1, keepdim=True) == classes).float()
        # float32 counts are exact below 2**24 per batch
        self.confusion += (target_onehot.T @ predicted_onehot).long()
        top_k = logits.topk(self.top_k, dim=1).indices
        self.top_k_correct += (top_k == target.unsqueeze(1)).any(dim=1).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        return scores_from_counts(self.confusion, self.top_k_correct)


def scores_from_counts(confusion: torch.Tensor, top_k_correct: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"acc", "top5", "f1_macro"}`` of a ``(C, C)`` confusion matrix (rows: targets) and a count of top-k hits;
    counts of disjoint sample sets add up, so their sum scores the union."""
    confusion = confusion.double()
    total = confusion.sum().clamp_min(1)
    correct = confusion.diag()
    support_plus_predicted = confusion.sum(0) + confusion.sum(1)
    seen = support_plus_predicted > 0
    f1 = 2 * correct[seen] / support_plus_predicted[seen]
    return {
        "acc": (correct.sum() / total).float(),
        "top5": (top_k_correct / total).float(),
        "f1_macro": (f1.mean() if seen.any() else confusion.new_zeros(())).float(),
    }


def mean_loss(counts: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean per-sample loss of a ``ClassifierTally``'s counts (0 for no samples)."""
    return (counts["loss_sum"] / counts["confusion"].sum().clamp_min(1)).float()


class ClassifierTally(StreamingClassificationMetrics):
    """The counts behind accuracy, top-k accuracy and macro F1, and the summed loss, of one classifier on one set of
    samples. ``compute()`` returns the counts summed over processes (``confusion``, ``top_k_correct``, ``loss_sum``;
    ``scores_from_counts`` scores them), so tallies of disjoint sets (e.g. photos with and without a detected hand,
    each judged by another classifier) can be added up before scoring."""

    loss_sum: torch.Tensor

    def __init__(self, num_classes: int, top_k: int = 5, **kwargs):
        super().__init__(num_classes, top_k, **kwargs)
        self.add_state("loss_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor | None = None) -> None:
        """Add a batch: its logits, targets and the sum of its samples' losses."""
        super().update(logits, target)
        if loss_sum is not None:
            self.loss_sum += loss_sum.detach().double()

    def compute(self) -> dict[str, torch.Tensor]:  # the counts, not scores
        return {"confusion": self.confusion.clone(), "top_k_correct": self.top_k_correct.clone(),
                "loss_sum": self.loss_sum.clone()}


class WordAccuracy(Metric):
    """Share of predicted strings equal to their target (exact match; ``case_sensitive=False``: equal once both are
    lower-cased, as scene-text benchmarks such as IIIT5K are usually scored), summed over processes."""

    full_state_update = False
    higher_is_better = True
    correct: torch.Tensor
    total: torch.Tensor

    def __init__(self, case_sensitive: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.case_sensitive = case_sensitive
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: list[str], targets: list[str]) -> None:
        if not self.case_sensitive:
            predictions, targets = [p.lower() for p in predictions], [t.lower() for t in targets]
        self.correct += sum(p == t for p, t in zip(predictions, targets, strict=True))
        self.total += len(targets)

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp_min(1)


def text_metrics(prefix: str) -> MetricCollection:
    """``{prefix}word_acc`` (exact), ``{prefix}word_acc_nocase`` (case-folded) and ``{prefix}cer`` (character error
    rate) of decoded strings."""
    # no compute groups: the two word accuracies have the same states, and torchmetrics would merge them (and report
    # the first's value for both) whenever they happened to agree on the first batch
    return MetricCollection({"word_acc": WordAccuracy(), "word_acc_nocase": WordAccuracy(case_sensitive=False),
                             "cer": CharErrorRate()}, prefix=prefix, compute_groups=False)


def macro_f1(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Macro F1 of ``(..., N)`` predictions against ``(N,)`` targets, one value per leading index; classes absent
    from both targets and predictions are left out of the mean (as in ``StreamingClassificationMetrics``)."""
    classes = torch.arange(num_classes, device=target.device)
    predicted_onehot = (predicted[..., None] == classes).float()  # (..., N, C)
    target_onehot = (target[:, None] == classes).float()  # (N, C)
    true_positives = (predicted_onehot * target_onehot).sum(-2)
    support_plus_predicted = predicted_onehot.sum(-2) + target_onehot.sum(0)
    f1 = 2 * true_positives / support_plus_predicted.clamp_min(1)
    seen = (support_plus_predicted > 0).float()
    return (f1 * seen).sum(-1) / seen.sum(-1).clamp_min(1)


def fit_logit_biases(logits: torch.Tensor, target: torch.Tensor, rounds: int = 3, steps: int = 81) -> torch.Tensor:
    """Per-class biases added to the logits before the argmax, chosen to maximise macro F1 on ``(logits, target)``
    (validation): coordinate ascent, one class at a time over a grid spanning the logits' range, ``rounds`` times.

    A bias moves a class's decision threshold: a rare class that the model under-predicts gets a positive one. A
    change is kept only if it raises macro F1, so the result is never worse than no biases on this data.
    """
    logits, target = logits.float(), target.long()
    num_classes = logits.shape[1]
    span = float(logits.max() - logits.min()) or 1.0
    grid = torch.linspace(-span, span, steps, device=logits.device)
    bias = torch.zeros(num_classes, device=logits.device)
    best = macro_f1((logits + bias).argmax(1), target, num_classes)
    for _ in range(rounds):
        improved = False
        for k in range(num_classes):
            candidates = bias.repeat(steps, 1)
            candidates[:, k] = grid
            scores = macro_f1((logits[None] + candidates[:, None]).argmax(-1), target, num_classes)
            # the best score; among equal ones the smallest change of threshold
            top = scores.max()
            choice = int(torch.where(scores >= top - 1e-9, grid.abs(), torch.inf).argmin())
            if top > best + 1e-9:
                bias, best, improved = candidates[choice], top, True
        if not improved:
            break
    return bias


def per_class_scores(confusion: torch.Tensor, class_names: list[str] | None = None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class from a ``(true, predicted)`` confusion matrix, one dict per
    class (a class never predicted has precision 0; one without samples has recall 0)."""
    confusion = confusion.double().cpu()
    correct, support, predicted = confusion.diag(), confusion.sum(1), confusion.sum(0)
    precision = correct / predicted.clamp_min(1)
    recall = correct / support.clamp_min(1)
    f1 = 2 * correct / (support + predicted).clamp_min(1)
    names = class_names or [str(k) for k in range(len(confusion))]
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(names, precision, recall, f1, support)]


def format_per_class(rows: list[dict[str, Any]]) -> str:
    """``per_class_scores`` as an aligned text table."""
    width = max([len("class")] + [len(str(row["class"])) for row in rows])
    lines = [f"{'class':<{width}}  precision  recall      f1  support"]
    lines += [f"{row['class']:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  "
              f"{row['support']:7d}" for row in rows]
    return "\n".join(lines)


def zero_shot_scores(logits: torch.Tensor, labels: torch.Tensor, seen_count: int, seen_penalty: float = 0.0
                     ) -> dict[str, torch.Tensor]:
    """The zero-shot scores of a test over seen and unseen classes, as the field reports them.

    ``logits (N, C)`` score the seen classes (columns ``0..seen_count-1``) then the unseen ones; ``labels`` index
    the same columns.

    - ``unseen_acc`` / ``unseen_top5``: the unseen samples among the unseen names only (zero-shot, ZSL);
    - ``seen_acc``: the seen samples among the seen names only (what a plain classifier of those classes does);
    - ``gzsl_seen_acc`` / ``gzsl_unseen_acc``: every sample among all the names (generalised zero-shot), with
      ``seen_penalty`` subtracted from the seen classes' logits first (calibrated stacking: a model trained on the
      seen classes favours them), and ``gzsl_h``, their harmonic mean.
    """
    labels = labels.long()
    seen = labels < seen_count
    scores: dict[str, torch.Tensor] = {}
    unseen_logits, unseen_labels = logits[~seen][:, seen_count:], labels[~seen] - seen_count
    if len(unseen_labels):
        top = unseen_logits.topk(min(5, unseen_logits.shape[1]), dim=1).indices
        scores["unseen_acc"] = (top[:, 0] == unseen_labels).float().mean()
        scores["unseen_top5"] = (top == unseen_labels[:, None]).any(1).float().mean()
    if seen.any():
        scores["seen_acc"] = (logits[seen][:, :seen_count].argmax(1) == labels[seen]).float().mean()
    calibrated = logits.clone()
    calibrated[:, :seen_count] -= seen_penalty
    correct = (calibrated.argmax(1) == labels).float()
    if seen.any() and (~seen).any():
        s, u = correct[seen].mean(), correct[~seen].mean()
        scores.update(gzsl_seen_acc=s, gzsl_unseen_acc=u, gzsl_h=2 * s * u / (s + u).clamp_min(1e-12))
    return scores
