"""Recognizer-guided restoration of text images: a GAN whose generator also answers to a frozen CTC recognizer."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..errors import InputError
from ..losses import AdversarialLoss, ctc_loss, discriminator_loss, generator_adversarial_loss
from ..metrics import WordAccuracy, text_metrics
from ..models.restoration import PatchDiscriminator, RestorationGenerator
from .base import Task
from .recognizer import FrozenRecognizer, check_text_data

# the training loss terms logged as epoch means (train_adv_loss and train_d_loss once the critic trains)
TRAIN_TERMS = ("train_loss", "train_pixel_loss", "train_feat_loss", "train_adv_loss", "train_d_loss",
               "train_ctc_monitor")


class RestorationGAN(Task):
    """Restore degraded text images (same size, or x2/x4 super-resolution) for a recognizer that stays frozen.

    Generator loss, after ``warmup_epochs`` of pixel loss alone::

        pixel_loss_weight * L1(generated, clean)
        + adversarial_loss_weight * adversarial(D(generated))
        + rec_feat_loss_weight * MSE(R.features(generated), R.features(clean))
        + ctc_loss_weight(epoch) * CTC(R.logits(generated), text)          # off by default

    ``R`` is a frozen ``TextRecognizer`` (``FrozenRecognizer``); its features come from ``feature_layer``. The CTC
    loss of the generated images is always logged as ``train_ctc_monitor``, computed without a gradient path.
    Training the generator on it directly (``ctc_loss_weight > 0``, ramped up over ``ctc_anneal_epochs``) is the
    reference project's failed baseline, kept so it can be measured.

    Manual optimisation: per batch one critic step, then one generator step (``trainer.global_step`` counts both).
    Logged per evaluation stage: ``_loss`` (L1), ``_psnr``, ``_ssim``, ``_word_acc`` and ``_cer`` of the recognizer
    on the generated images; the same for the degraded input (``_input_*``), and the recognizer's word accuracy on
    the clean images (``_clean_word_acc``). Validation also sends a grid of (degraded, generated, clean) images to
    TensorBoard.

    Args:
        recognizer_checkpoint: a ``TextRecognizer`` checkpoint, read when a fresh model is built. Its weights and
            hyperparameters are kept in this model's checkpoints, which therefore test, predict and resume without it.
        recognizer: the recognizer's hyperparameters (filled in from ``recognizer_checkpoint`` and saved; when given,
            the recognizer is built from them and its weights come from this model's checkpoint).
        feature_layer: recognizer layer of the feature loss (``block1``-``block4``, ``rnn``).
        scale: 1 restores at the input size; 2 or 4 upscales low-resolution inputs (``data.init_args.keep_low_res``).
        generator_channels: generator trunk width.
        generator_blocks: generator residual blocks.
        discriminator_channels: first critic layer width.
        discriminator_layers: stride-2 critic layers.
        adversarial_loss: ``hinge``, ``lsgan`` or ``bce``.
        pixel_loss_weight: weight of the L1 pixel loss.
        adversarial_loss_weight: weight of the generator's adversarial loss; 0 trains without a critic.
        rec_feat_loss_weight: weight of the recognizer feature loss.
        ctc_loss_weight: weight of a CTC loss on generated images once fully ramped up; 0 (default) only monitors it.
        ctc_anneal_epochs: epochs after the warm-up over which the CTC weight rises linearly to ``ctc_loss_weight``.
        warmup_epochs: epochs of pixel loss only, before the adversarial, feature and CTC terms start.
        lr_generator: generator Adam learning rate.
        lr_discriminator: critic Adam learning rate.
        betas: Adam betas of both optimisers.
        gradient_clip_val: clip each network's gradient norm to this (None: no clipping).
        num_logged_images: samples in the TensorBoard image grid.
        channels_last: run the convolutions in channels-last memory format (faster on GPUs).
        compile: ``torch.compile`` the generator and the critic.
    """

    compiled_modules = ("generator", "discriminator")

    def __init__(
        self,
        recognizer_checkpoint: str | None = None,
        recognizer: dict[str, Any] | None = None,
        feature_layer: str = "block4",
        scale: Literal[1, 2, 4] = 1,
        generator_channels: int = 64,
        generator_blocks: int = 8,
        discriminator_channels: int = 64,
        discriminator_layers: int = 3,
        adversarial_loss: AdversarialLoss = "hinge",
        pixel_loss_weight: float = 1.0,
        adversarial_loss_weight: float = 0.01,
        rec_feat_loss_weight: float = 1.0,
        ctc_loss_weight: float = 0.0,
        ctc_anneal_epochs: int = 0,
        warmup_epochs: int = 5,
        lr_generator: float = 2e-4,
        lr_discriminator: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        gradient_clip_val: float | None = 1.0,
        num_logged_images: int = 8,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        if recognizer is not None:  # a checkpoint of this model is being loaded: it holds the weights
            self.recognizer = FrozenRecognizer.from_hparams(recognizer, feature_layer)
        elif recognizer_checkpoint is not None:
            self.recognizer = FrozenRecognizer.from_checkpoint(recognizer_checkpoint, feature_layer)
            self.hparams.recognizer = self.recognizer.hparams
        else:
            raise InputError("RestorationGAN needs a trained recognizer: set model.init_args.recognizer_checkpoint")
        channels = self.recognizer.model.in_channels
        self.generator = RestorationGenerator(channels, generator_channels, generator_blocks, scale)
        self.discriminator = PatchDiscriminator(channels, discriminator_channels, discriminator_layers)
        self.use_channels_last(self)
        images = MetricCollection({"psnr": PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3)),
                                   "ssim": StructuralSimilarityIndexMeasure(data_range=1.0)})
        for stage in ("val", "test"):
            for source in ("", "input_"):  # generated images, and the degraded inputs they improve on
                setattr(self, f"{stage}_{source}image_metrics", images.clone(prefix=f"{stage}_{source}"))
                setattr(self, f"{stage}_{source}text_metrics", text_metrics(f"{stage}_{source}"))
            setattr(self, f"{stage}_clean_word_acc", WordAccuracy())
        # each training loss term's mean over the epoch, logged once at its end: a self.log per term and step cost
        # more than the rest of the step's Python (no NaN check: it would wait for the GPU every step)
        self.train_means = nn.ModuleDict({name: MeanMetric(nan_strategy="disable") for name in TRAIN_TERMS})
        self._logged_samples: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        datamodule = self.datamodule
        check_text_data(datamodule, self.recognizer.charset, self.recognizer.model)
        if datamodule is not None and hasattr(datamodule, "degradation"):
            degradation = datamodule.degradation
            if degradation is None:
                raise InputError("restoration needs degraded inputs: set data.init_args.degrade: true")
            data_scale = degradation.scales[0] if degradation.keep_low_res else 1
            if data_scale != self.hparams.scale:
                raise InputError(f"the generator upscales x{self.hparams.scale} but the data's degraded images are "
                                 f"x{data_scale} smaller (model.init_args.scale / data.init_args.keep_low_res)")

    def forward(self, degraded: torch.Tensor) -> torch.Tensor:
        """Restored images (not clamped: the losses see the raw output)."""
        return self.generator(degraded)

    # -- training -----------------------------------------------------------------------------------------------

    def adversarial_active(self) -> bool:
        h = self.hparams
        return h.adversarial_loss_weight > 0 and self.current_epoch >= h.warmup_epochs

    def current_ctc_weight(self) -> float:
        """The CTC loss weight of this epoch: 0 in the warm-up, then a linear ramp to ``ctc_loss_weight``."""
        h = self.hparams
        epochs_after_warmup = self.current_epoch - h.warmup_epochs
        if h.ctc_loss_weight <= 0 or epochs_after_warmup < 0:
            return 0.0
        return h.ctc_loss_weight * min(1.0, (epochs_after_warmup + 1) / max(1, h.ctc_anneal_epochs))

    def ctc_monitor(self, generated_features: torch.Tensor, batch: dict) -> torch.Tensor:
        """CTC loss of the generated images, cut off from the generator's graph (a monitor, never a loss)."""
        with torch.no_grad():
            logits = self.recognizer.logits_from_features(generated_features.detach())
            return ctc_loss(logits, batch["targets"], batch["target_lengths"])

    def _clip(self, optimizer) -> None:
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.gradient_clip_val,
                                gradient_clip_algorithm="norm")

    def training_step(self, batch: dict, batch_idx: int) -> None:
        h = self.hparams
        opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]  # two optimizers: a list
        degraded, clean = batch["degraded"], batch["clean"]
        generated = self.generator(degraded)
        warm = self.current_epoch < h.warmup_epochs
        adversarial = self.adversarial_active()
        terms: dict[str, torch.Tensor] = {}

        # No toggle_optimizer: it walks every parameter of the module twice per optimizer and step. The critic's
        # loss sees the generated images detached, so the generator gets no gradient from it; the generator's loss
        # sees the critic with its parameters frozen for that forward; the recognizer is frozen for good.
        if adversarial:
            d_loss = discriminator_loss(self.discriminator(clean), self.discriminator(generated.detach()),
                                        h.adversarial_loss)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            self._clip(opt_d)
            opt_d.step()
            terms["train_d_loss"] = d_loss.detach()

        pixel = F.l1_loss(generated.float(), clean.float())
        g_loss = h.pixel_loss_weight * pixel
        if adversarial:
            self.discriminator.requires_grad_(False)
            try:
                adv = generator_adversarial_loss(self.discriminator(generated), h.adversarial_loss)
            finally:
                self.discriminator.requires_grad_(True)
            g_loss = g_loss + h.adversarial_loss_weight * adv
            terms["train_adv_loss"] = adv.detach()
        feature_weight = 0.0 if warm else h.rec_feat_loss_weight
        ctc_weight = self.current_ctc_weight()
        # the recognizer sees the generated image with a gradient path only when a term needs one
        with torch.set_grad_enabled(feature_weight > 0 or ctc_weight > 0):
            generated_features = self.recognizer.features(generated)
        with torch.no_grad():
            clean_features = self.recognizer.features(clean)
        feature_loss = F.mse_loss(generated_features.float(), clean_features.float())
        if feature_weight > 0:
            g_loss = g_loss + feature_weight * feature_loss
        if ctc_weight > 0:
            ctc = ctc_loss(self.recognizer.logits_from_features(generated_features), batch["targets"],
                           batch["target_lengths"])
            g_loss = g_loss + ctc_weight * ctc
            terms["train_ctc_monitor"] = ctc.detach()
        else:
            terms["train_ctc_monitor"] = self.ctc_monitor(generated_features, batch)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        self._clip(opt_g)
        opt_g.step()

        terms.update(train_loss=g_loss.detach(), train_pixel_loss=pixel.detach(), train_feat_loss=feature_loss.detach())
        weight = torch.full_like(pixel.detach(), len(clean))
        for name, value in terms.items():
            self.train_mean(name).update(value, weight)
        if self.logger_writes_this_step():  # the generator's loss
            self.log("train_loss_step", g_loss.detach(), on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=len(clean))

    def train_mean(self, name: str) -> MeanMetric:
        """The running mean of one training loss term over the epoch."""
        return self.train_means[name]  # type: ignore[return-value]  # a ModuleDict item

    def on_train_epoch_end(self) -> None:
        for name in TRAIN_TERMS:
            mean = self.train_mean(name)
            if mean.update_count:
                # summed over processes by torchmetrics; train_loss is the generator's loss
                self.log(name, mean.compute(), on_step=False, on_epoch=True, prog_bar=name == "train_loss")
                mean.reset()
        self.log("train_ctc_weight", self.current_ctc_weight(), on_step=False, on_epoch=True)

    # -- evaluation ---------------------------------------------------------------------------------------------

    def input_at_full_size(self, degraded: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The degraded input at the clean image's size (bicubic), the baseline every restoration must beat."""
        if degraded.shape[-2:] == like.shape[-2:]:
            return degraded
        return F.interpolate(degraded, size=like.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)

    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        degraded, clean, texts = batch["degraded"], batch["clean"], batch["text"]
        generated = self.generator(degraded)
        restored = generated.float().clamp(0, 1)
        baseline = self.input_at_full_size(degraded, clean)
        size = len(texts)
        for images, source in ((restored, ""), (baseline, "input_")):
            image_metrics = getattr(self, f"{stage}_{source}image_metrics")
            reading_metrics = getattr(self, f"{stage}_{source}text_metrics")
            image_metrics.update(images, clean)
            reading_metrics.update(self.recognizer.read(images), texts)
            self.log_dict(image_metrics, batch_size=size, prog_bar=not source)
            self.log_dict(reading_metrics, batch_size=size, prog_bar=not source)
        clean_word_acc = getattr(self, f"{stage}_clean_word_acc")
        clean_word_acc.update(self.recognizer.read(clean), texts)
        self.log(f"{stage}_clean_word_acc", clean_word_acc, batch_size=size)
        self.log(f"{stage}_loss", F.l1_loss(generated.float(), clean), batch_size=size, sync_dist=True)
        if batch_idx == 0 and stage == "val":
            n = self.hparams.num_logged_images
            self._logged_samples = torch.stack([baseline[:n], restored[:n], clean[:n]], dim=1).flatten(0, 1).cpu()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        samples, self._logged_samples = self._logged_samples, None
        experiment: Any = getattr(self.logger, "experiment", None)
        if samples is None or self.trainer.sanity_checking or self.global_rank != 0 or not hasattr(
            experiment, "add_image"
        ):
            return
        from torchvision.utils import make_grid

        # one row per sample: degraded (at full size), generated, clean
        experiment.add_image("val_samples", make_grid(samples, nrow=3, padding=2, pad_value=0.5),
                             global_step=self.global_step)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        restored = self.generator(batch["degraded"]).float().clamp(0, 1)
        return {"path": batch["path"], "text": self.recognizer.read(restored),
                "input_text": self.recognizer.read(self.input_at_full_size(batch["degraded"], batch["clean"]))}

    def configure_optimizers(self):
        h = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=h.lr_generator, betas=tuple(h.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=h.lr_discriminator, betas=tuple(h.betas))
        return [opt_g, opt_d]
