"""Text-aligned sign classifiers: signs scored by similarity to their class names' embeddings (CLIP-style), so a
trained model also names signs it never saw from their names (``docs/signs_and_words.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import CatMetric

from ..errors import InputError
from ..inference import InferenceContract
from ..metrics import ClassifierTally, zero_shot_scores
from ..models.sequence import (
    SequenceNet,
    SequenceNetConfig,
    TextAlignedSequenceNet,
    landmark_descriptor,
    landmark_descriptor_size,
)
from ..models.text import ClassNameEncoder, TextMapping, TextSideConfig, WordVectors, build_text_encoder
from .classification import check_data_settings
from .sequence import SequenceClassifier

AlignmentLoss = Literal["class_names", "infonce"]


def read_class_list(path: str | Path) -> list[str]:
    """The class names of a file: one name per line, or every word of a word-vector file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: class list not found")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and len(lines[-1].split()) > 2:  # "word v1 v2 ...": a word-vector file
        return list(WordVectors(path).words)
    if not lines:
        raise InputError(f"{path}: the class list is empty")
    return lines


def infonce_loss(logits_per_sign: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The symmetric contrastive (CLIP) loss of a batch: each sign against the batch's names (``logits (B, B)``:
    sign i against the name of sample j); samples of one class are each other's positives."""
    positive = (labels[:, None] == labels[None]).float()
    target = positive / positive.sum(1, keepdim=True)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / target.shape[1]
    return 0.5 * (F.cross_entropy(logits_per_sign, target) + F.cross_entropy(logits_per_sign.T, target.T))


def fit_prototype_regression(values: torch.Tensor, labels: torch.Tensor, names: torch.Tensor, ridge: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The training signs' mean ``(F,)`` and the ridge map ``(D, F)`` from a class name's embedding (``names``:
    ``(C, D)``, one per label) to its prototype: the class's mean of the signs' ``values (N, F)``, centred on their
    mean and scaled to unit length."""
    mean = values.mean(0)
    signs = F.normalize(values - mean, dim=-1)
    n = len(names)
    prototypes = torch.zeros(n, values.shape[1], device=values.device).index_add_(0, labels, signs)
    prototypes /= torch.bincount(labels, minlength=n).clamp_min(1)[:, None]
    # the dual form of ridge regression: names (C, D) with C << D
    gram = names @ names.T + ridge * torch.eye(n, device=values.device)
    return mean, names.T @ torch.linalg.solve(gram, prototypes)


def prototype_similarity(values: torch.Tensor, mean: torch.Tensor, names: torch.Tensor, name_map: torch.Tensor
                         ) -> torch.Tensor:
    """The cosine similarity ``(B, C)`` of the signs' centred ``values (B, F)`` to the prototypes that the
    fitted ``name_map`` predicts from the names' embeddings ``(C, D)``."""
    signs = F.normalize(values.float() - mean, dim=-1)
    return signs @ F.normalize(names.float() @ name_map, dim=-1).T


def standardised_like(scores: torch.Tensor, reference: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``scores (B, C)`` moved, for each sign, to the mean and spread of ``reference`` over the selected
    ``columns (C,)``: two scorers of the same names are then averaged on one scale."""
    weight = columns.to(scores.dtype)
    count = weight.sum().clamp_min(1)

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (x * weight).sum(-1, keepdim=True) / count
        return mean, (((x - mean) ** 2 * weight).sum(-1, keepdim=True) / count).sqrt().clamp_min(1e-6)

    (mean, spread), (target_mean, target_spread) = moments(scores), moments(reference)
    return target_mean + target_spread * (scores - mean) / spread


class TextAlignedSequenceClassifier(SequenceClassifier):
    """A sequence classifier aligned with text: ``SequenceNet``'s sign embedding is projected into the space of the
    class names' embeddings (``text``: a word-vector file, a trainable character encoder, or a pretrained text
    model), and a sign's class is the name it is most similar to.

    The loss is ``alignment_weight`` x the alignment loss (``class_names``: cross-entropy over the similarity to
    every training class name; ``infonce``: CLIP's symmetric contrastive loss within the batch) plus ``ce_weight``
    x plain cross-entropy of the network's own classifier over the training classes. The training classes'
    embeddings are saved in the checkpoint (``class_embeddings``), so the model predicts its classes without the
    text source; other names (``classes``, ``classes_file``, a test folder of other signs, a zero-shot split's
    unseen classes) are embedded by the text source when they are first scored.

    A test on a datamodule with ``unseen_classes`` also logs the zero-shot scores (``metrics.zero_shot_scores``):
    ``test_unseen_acc``, ``test_unseen_top5``, ``test_seen_acc``, ``test_gzsl_seen_acc``, ``test_gzsl_unseen_acc``,
    ``test_gzsl_h``.

    Args:
        num_classes: the training classes (default: the datamodule's).
        parts: the landmark parts (default: the datamodule's).
        net: the sign network's architecture.
        text: where the class names' embeddings come from (``TextSideConfig``).
        embedding_dim: the text space's size (default: the text source's).
        mapping: ``sign_to_text`` (CLIP: the sign embedding is projected into the text space) or ``text_to_sign``
            (the names' embeddings are projected into the sign space: each name predicts its sign's prototype).
        alignment: ``class_names`` or ``infonce``.
        alignment_weight: the alignment loss's weight.
        ce_weight: the plain classifier's cross-entropy weight (0: alignment only).
        temperature: the similarity's initial temperature.
        learn_temperature: learn the temperature.
        classes: the names ``predict`` scores (default: the training classes).
        classes_file: the same from a file: one name per line, or a word-vector file (all its words).
        new_names: how names the model was not trained on are scored: ``prototypes`` (default: a ridge regression
            from the training names' embeddings to their signs' mean embeddings, fitted in closed form after every
            training epoch, predicts each new name's sign prototype; measured better on unseen signs than the
            trained alignment, which specialises in the training classes) or ``alignment`` (the trained alignment,
            as for the training names).
        prototype_ridge: the regression's ridge penalty.
        landmark_prototypes: with ``prototypes``, a second regression predicts each new name's prototype of the
            landmarks' descriptor (``landmark_descriptor``: where the sign is made and how much it moves), and a
            new name's score is the mean of the two (the descriptor's standardised to the embedding's spread over
            the new names): measured 2 points better on unseen signs over 8 zero-shot splits of wlasl40.
        seen_penalty: generalised zero-shot calibration: subtracted from the seen classes' cosine similarity in
            the ``test_gzsl_*`` scores (0: none).
        **kwargs: see ``SequenceClassifier`` and ``ClassificationTask``.
    """

    data_setting_names = ("num_classes", "parts", "embedding_dim")
    model: TextAlignedSequenceNet
    text: ClassNameEncoder
    class_embeddings: torch.Tensor
    sign_mean: torch.Tensor
    name_to_prototype: torch.Tensor
    landmark_mean: torch.Tensor
    name_to_landmarks: torch.Tensor

    def __init__(self, num_classes: int | None = None, parts: list[str] | None = None,
                 net: SequenceNetConfig = SequenceNetConfig(), text: TextSideConfig = TextSideConfig(),
                 embedding_dim: int | None = None, mapping: TextMapping = "sign_to_text",
                 alignment: AlignmentLoss = "class_names",
                 alignment_weight: float = 1.0, ce_weight: float = 0.5, temperature: float = 0.07,
                 learn_temperature: bool = True, classes: list[str] | None = None, classes_file: str | None = None,
                 new_names: Literal["prototypes", "alignment"] = "prototypes", prototype_ridge: float = 1.0,
                 landmark_prototypes: bool = True, seen_penalty: float = 0.0, **kwargs):
        if alignment_weight < 0 or ce_weight < 0 or alignment_weight + ce_weight == 0:
            raise InputError(f"alignment_weight={alignment_weight} and ce_weight={ce_weight}: both must be >= 0 and "
                             "one of them > 0")
        if not prototype_ridge > 0:
            raise InputError(f"prototype_ridge must be > 0, got {prototype_ridge}")
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        super().__init__(num_classes=num_classes, parts=parts, net=net, **kwargs)
        self.text = build_text_encoder(TextSideConfig(**self.hparams.text))
        self.training_names: list[str] | None = None  # the classes it was trained on (their embeddings are saved)
        self._name_cache: tuple[tuple[str, ...], torch.Tensor] | None = None
        self._stage: str | None = None

    # -- building -------------------------------------------------------------------------------------------------
    def data_settings(self, datamodule) -> dict[str, Any]:
        settings = super().data_settings(datamodule)
        if self.hparams.get("embedding_dim") is None:
            settings["embedding_dim"] = int(self.text.dim)
        return settings

    def build_model(self) -> nn.Module:
        h = self.hparams
        # the training classes' name embeddings: filled at fit, saved with the weights
        self.register_buffer("class_embeddings", torch.zeros(h.num_classes, h.embedding_dim))
        net = TextAlignedSequenceNet(h.num_classes, tuple(h.parts), h.embedding_dim, SequenceNetConfig(**h.net),
                                     h.mapping, h.temperature, h.learn_temperature)
        # the new names' scorer (fit_prototype_map): the training signs' mean embedding and the ridge map from a
        # name's embedding to its sign's prototype; all zeros until fitted
        self.register_buffer("sign_mean", torch.zeros(net.sign.width))
        self.register_buffer("name_to_prototype", torch.zeros(h.embedding_dim, net.sign.width))
        descriptor = landmark_descriptor_size(h.parts)  # the same for the landmarks' descriptor
        self.register_buffer("landmark_mean", torch.zeros(descriptor))
        self.register_buffer("name_to_landmarks", torch.zeros(h.embedding_dim, descriptor))
        return net

    @property
    def sequence_net(self) -> SequenceNet:
        return self.model.sign

    def check_data(self, datamodule) -> dict[str, Any]:
        if self._stage == "fit":
            return super().check_data(datamodule)
        # a trained model scores any class names: only the other data settings must agree
        settings = self.data_settings(datamodule)
        check_data_settings(self.hparams, settings)
        return settings

    def setup(self, stage: str) -> None:
        self._stage = stage
        super().setup(stage)
        datamodule: Any = self.datamodule
        if stage == "fit":
            self.training_names = list(self.class_names or [])
            if not self.text.trainable:
                self.class_embeddings.copy_(self.text(self.training_names).to(self.class_embeddings))
        elif stage == "test" and getattr(datamodule, "unseen_classes", None):
            self.class_names = list(datamodule.test_classes)
        elif stage == "predict" and self.requested_classes():
            self.class_names = self.requested_classes()
        if stage in ("validate", "test") and self.class_names and len(self.class_names) != self.hparams.num_classes:
            self.build_eval_metrics("val" if stage == "validate" else "test", len(self.class_names))
        self._name_cache = None

    def requested_classes(self) -> list[str] | None:
        """The names ``predict`` scores when they were given (``classes`` or ``classes_file``)."""
        h = self.hparams
        if h.get("classes"):
            return [str(name) for name in h.classes]
        return read_class_list(h.classes_file) if h.get("classes_file") else None

    def build_eval_metrics(self, stage: str, n: int) -> None:
        """A stage's metrics over ``n`` names (a test of other classes than the training ones)."""
        setattr(self, f"{stage}_tally", ClassifierTally(n).to(self.device))

    def use_classes(self, names: list[str]) -> None:
        """Score these class names from now on (``predict``, ``infer``, export); their embeddings come from the
        saved training embeddings or the text source."""
        if not names:
            raise InputError("the class list is empty")
        self.class_names = [str(name) for name in names]
        self._name_cache = None

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def check_checkpoint_classes(self, saved: list[str] | None) -> None:
        pass  # any class names can be scored

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["class_names"] = self.training_names
        if self.text.trainable and self.training_names:  # the embeddings as the encoder gives them now
            with torch.no_grad():
                checkpoint["state_dict"]["class_embeddings"] = self.text(self.training_names).detach().cpu()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        current = self.class_names
        state = checkpoint.get("state_dict", {})
        for name in ("landmark_mean", "name_to_landmarks"):  # saved before the landmark scorer: not fitted
            if name not in state and "sign_mean" in state:
                state[name] = torch.zeros_like(getattr(self, name))
        super().on_load_checkpoint(checkpoint)
        self.training_names = list(checkpoint.get("class_names") or [])
        # names chosen for this test or predict stay; otherwise the model scores its training classes
        self.class_names = current or self.training_names
        self._name_cache = None

    # -- scoring --------------------------------------------------------------------------------------------------
    def name_embeddings(self) -> torch.Tensor:
        """The ``(C, D)`` embeddings of the names the model scores now (``class_names``): the saved training ones,
        or the text source's (with gradients when it trains)."""
        names = list(self.class_names or self.training_names or [])
        if not names:
            raise InputError("the model has no class names to score: give classes")
        if self.text.trainable and self.training:
            return self.text(names)
        if names == self.training_names and not self.text.trainable:
            return self.class_embeddings
        key = tuple(names)
        if self._name_cache is None or self._name_cache[0] != key:
            with torch.no_grad():
                embedded = self.text(names).to(self.class_embeddings)
            if embedded.shape[1] != self.hparams.embedding_dim:
                raise InputError(f"the text source gives {embedded.shape[1]}-d embeddings but the model was trained "
                                 f"on {self.hparams.embedding_dim}-d ones: use the text source it was trained with")
            self._name_cache = (key, embedded)
        return self._name_cache[1]

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._name_cache = None

    def forward(self, batch: dict) -> torch.Tensor:
        names = list(self.class_names or self.training_names or [])
        trained = set(self.training_names or names)
        new = [name not in trained for name in names]
        if not any(new) or self.hparams.get("new_names") == "alignment" or not self.name_to_prototype.any():
            return self.model(batch["points"], batch["present"], batch["mask"], self.name_embeddings())
        features = self.sequence_net.features(batch["points"], batch["present"], batch["mask"])
        embeddings = self.name_embeddings()
        aligned = self.model.align(features, embeddings)
        is_new = torch.tensor(new, device=features.device)
        predicted = prototype_similarity(features, self.sign_mean, embeddings, self.name_to_prototype)
        if self.hparams.get("landmark_prototypes", True) and self.name_to_landmarks.any():
            descriptor = landmark_descriptor(batch["points"].float(), batch["present"], batch["mask"],
                                             self.hparams.parts)
            by_landmarks = prototype_similarity(descriptor, self.landmark_mean, embeddings, self.name_to_landmarks)
            predicted = 0.5 * (predicted + standardised_like(by_landmarks, predicted, is_new))
        return torch.where(is_new, self.model.align.scale * predicted, aligned.float())

    @torch.no_grad()
    def fit_prototype_map(self) -> None:
        """Fit the new names' scorers on the training split (not augmented, in eval mode): the signs' embeddings
        (and landmark descriptors), centred on their mean and scaled to unit length, are averaged per class (each
        training class's prototype), and a ridge regression (``prototype_ridge``) maps the training names'
        embeddings to their prototypes."""
        datamodule: Any = self.datamodule
        if datamodule is None or self.hparams.get("new_names") == "alignment":
            return
        was_training = self.training
        self.eval()
        features, descriptors, labels = [], [], []
        for batch in datamodule.train_dataloader():
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            features.append(self.sequence_net.features(batch["points"], batch["present"], batch["mask"]).float())
            descriptors.append(landmark_descriptor(batch["points"].float(), batch["present"], batch["mask"],
                                                   self.hparams.parts))
            labels.append(batch["label"])
        self.train(was_training)
        y = torch.cat(labels)
        names = (self.text(self.training_names).to(y.device) if self.text.trainable else self.class_embeddings)
        scorers: list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]] = [
            (features, self.sign_mean, self.name_to_prototype),
            (descriptors, self.landmark_mean, self.name_to_landmarks)]
        for values, mean, mapping in scorers:
            fitted_mean, fitted_map = fit_prototype_regression(torch.cat(values), y, names.float(),
                                                               self.hparams.prototype_ridge)
            mean.copy_(fitted_mean)
            mapping.copy_(fitted_map)

    def on_validation_epoch_start(self) -> None:
        self._name_cache = None
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.fit_prototype_map()

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        h, labels = self.hparams, batch["label"]
        features = self.sequence_net.features(batch["points"], batch["present"], batch["mask"])
        embeddings = self.name_embeddings()
        logits = self.model.align(features, embeddings)
        loss = features.new_zeros(())
        if h.alignment_weight:
            if h.alignment == "infonce":
                pairwise = self.model.align(features, embeddings[labels])
                loss = loss + h.alignment_weight * infonce_loss(pairwise.float(), labels, h.label_smoothing)
            else:
                loss = loss + h.alignment_weight * self.classification_loss(logits, labels)
        if h.ce_weight:
            net = self.sequence_net
            loss = loss + h.ce_weight * self.classification_loss(net.head(net.head_dropout(features)), labels)
        return loss, logits

    def decision_logits(self, logits: torch.Tensor) -> torch.Tensor:
        # the fitted thresholds belong to the training classes
        if self.class_names == self.training_names or self.training_names is None:
            return super().decision_logits(logits)
        return logits

    def named_classes_only(self, batch: dict) -> dict:
        return batch  # it names the unseen classes too

    def inference_contract(self) -> InferenceContract:
        contract = super().inference_contract()
        text = dict(self.hparams.text)
        # the logits are scaled cosine similarities to the class names' embeddings; decoded by argmax as any class
        contract.preprocessing["text"] = {"encoder": text.get("encoder"), "embedding_dim": self.hparams.embedding_dim,
                                          "trained_classes": list(self.training_names or []),
                                          "new_names": self.hparams.get("new_names", "prototypes")}
        return contract

    # -- zero-shot test -------------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.zero_shot_logits, self.zero_shot_labels = CatMetric().to(self.device), CatMetric().to(self.device)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        if getattr(self.datamodule, "unseen_classes", None):
            with torch.no_grad():
                logits = self(batch)
            # cosine similarity: the seen-class penalty is in its units
            self.zero_shot_logits.update(logits.float() / self.model.align.scale)
            self.zero_shot_labels.update(batch["label"].float())

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        datamodule: Any = self.datamodule
        if getattr(datamodule, "unseen_classes", None) and self.zero_shot_labels.update_count:
            scores = zero_shot_scores(self.zero_shot_logits.compute(), self.zero_shot_labels.compute(),
                                      len(datamodule.classes), self.hparams.seen_penalty)
            self.log_dict({f"test_{name}": value for name, value in scores.items()})
