"""LightningDataModules and their datasets and transforms."""

from .folder import ClassificationDataModule, ImageFolderDataModule, ImageFolderDataset
from .sign import SignDataModule, SignImageDataset
from .splits import balanced_class_weights, stratified_split
from .transforms import HandAugment

__all__ = [
    "ClassificationDataModule", "HandAugment", "ImageFolderDataModule", "ImageFolderDataset", "SignDataModule",
    "SignImageDataset", "balanced_class_weights", "stratified_split",
]
