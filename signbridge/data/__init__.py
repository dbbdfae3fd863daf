"""LightningDataModules and their datasets and transforms."""

from .sign import SignDataModule, SignImageDataset
from .splits import balanced_class_weights, stratified_split
from .transforms import HandAugment

__all__ = ["HandAugment", "SignDataModule", "SignImageDataset", "balanced_class_weights", "stratified_split"]
