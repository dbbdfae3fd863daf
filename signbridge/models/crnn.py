"""CRNN text recognizer: convolution blocks, a bidirectional LSTM over the columns, a per-timestep classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError

# height and width pooling of each conv block: the width keeps a quarter of its columns (the CTC timesteps)
_POOLS = ((2, 2), (2, 2), (2, 1), (2, 1))


def _conv_block(in_channels: int, out_channels: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(pool),
    )


class CRNN(nn.Module):
    """Convolutional recurrent network for CTC text recognition (Shi et al., 2015).

    Four conv blocks (two 3x3 conv + BatchNorm + ReLU, then max-pooling) reduce a ``(C, height, W)`` image to
    ``W / 4`` columns; each column is projected and read by a bidirectional LSTM; a linear layer gives the class
    logits of every column (class 0 is the CTC blank).

    Feature layers, by name: ``block1`` ... ``block4`` (after each conv block; ``block4`` is the last, the
    default "sweet spot" of a recognition feature loss) and ``rnn`` (the LSTM output, ``(B, T, 2*hidden)``).

    With ``shortcut_head`` a second classifier, a 1-D convolution over the columns of ``block4``, gives per-column
    logits of its own (``forward_with_shortcut``). Trained with an auxiliary CTC loss it hands the conv blocks a
    short gradient path to the characters, which gets CTC off its all-blank plateau from any seed (the "CTC
    shortcut" of Retsinas et al., 2022). Inference (``forward``) does not use it.

    Args:
        num_classes: output classes including the blank.
        in_channels: image channels.
        height: input height; a multiple of 16.
        channels: output channels of the four conv blocks.
        hidden_size: LSTM size per direction.
        num_layers: LSTM layers.
        dropout: dropout before the LSTM and between its layers.
        shortcut_head: add the auxiliary column classifier.
    """

    conv_layers = ("block1", "block2", "block3", "block4")
    feature_layers = (*conv_layers, "rnn")

    def __init__(self, num_classes: int, in_channels: int = 1, height: int = 32,
                 channels: Sequence[int] = (64, 128, 256, 256), hidden_size: int = 256, num_layers: int = 2,
                 dropout: float = 0.25, shortcut_head: bool = False):
        super().__init__()
        if height % 16:
            raise InputError(f"CRNN height must be a multiple of 16, got {height}")
        if len(channels) != len(_POOLS):
            raise InputError(f"CRNN needs {len(_POOLS)} block channels, got {list(channels)}")
        self.num_classes, self.in_channels, self.height = num_classes, in_channels, height
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleDict({
            name: _conv_block(widths[i], widths[i + 1], pool)
            for i, (name, pool) in enumerate(zip(self.conv_layers, _POOLS))
        })
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1] * (height // 16), hidden_size))
        self.rnn = nn.LSTM(hidden_size, hidden_size, num_layers=num_layers, bidirectional=True, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * hidden_size, num_classes)
        self.shortcut = nn.Conv1d(channels[-1] * (height // 16), num_classes, 3, padding=1) if shortcut_head else None

    def timesteps(self, width: int) -> int:
        """CTC timesteps of an image ``width`` pixels wide."""
        return width // 4

    def _check_layer(self, layer: str) -> None:
        if layer not in self.feature_layers:
            raise InputError(f"unknown CRNN feature layer {layer!r}; choose one of {', '.join(self.feature_layers)}")

    def forward_features(self, x: torch.Tensor, layer: str = "block4") -> torch.Tensor:
        """The feature map after ``layer`` (computing nothing beyond it)."""
        self._check_layer(layer)
        for name, block in self.blocks.items():
            x = block(x)
            if name == layer:
                return x
        return self._sequence(x)

    def forward_head(self, features: torch.Tensor, layer: str = "block4") -> torch.Tensor:
        """Logits ``(B, T, num_classes)`` from the features of ``layer`` (what ``forward_features`` returned)."""
        self._check_layer(layer)
        x = features
        if layer != "rnn":
            for name in self.conv_layers[self.conv_layers.index(layer) + 1:]:
                x = self.blocks[name](x)
            x = self._sequence(x)
        return self.classifier(x)

    def forward_with_features(self, x: torch.Tensor, layer: str = "block4") -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, features of layer)`` in one pass."""
        features = self.forward_features(x, layer)
        return self.forward_head(features, layer), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-timestep logits ``(B, T, num_classes)``."""
        return self.forward_head(self.forward_features(x, "rnn"), "rnn")

    def forward_with_shortcut(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, shortcut logits)``, both ``(B, T, num_classes)``; needs ``shortcut_head``."""
        if self.shortcut is None:
            raise InputError("this CRNN has no shortcut head (shortcut_head=False)")
        features = self.forward_features(x, "block4")
        b, c, h, w = features.shape
        shortcut = self.shortcut(features.reshape(b, c * h, w)).transpose(1, 2)
        return self.forward_head(features, "block4"), shortcut

    def _sequence(self, conv_features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = conv_features.shape
        columns = self.project(conv_features.permute(0, 3, 1, 2).reshape(b, w, c * h))
        if not self.training and columns.requires_grad and columns.is_cuda:
            # cuDNN's LSTM backward exists only in training mode; a frozen recognizer in eval mode that passes
            # gradients to its input (a CTC loss on generated images) runs the native kernels instead
            with torch.backends.cudnn.flags(enabled=False):
                return self.rnn(columns)[0]
        return self.rnn(columns)[0]
