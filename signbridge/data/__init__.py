"""LightningDataModules and their datasets and transforms."""

from .base import SplitDataModule
from .folder import ClassificationDataModule, ImageFolderDataModule, ImageFolderDataset
from .sign import LandmarkDataModule, SignDataModule, SignImageDataset
from .splits import balanced_class_weights, stratified_split
from .text import Charset, Degradation, TextImageDataModule, TextImageDataset
from .transforms import HandAugment

__all__ = [
    "Charset", "ClassificationDataModule", "Degradation", "HandAugment", "ImageFolderDataModule", "ImageFolderDataset",
    "LandmarkDataModule", "SignDataModule",
    "SignImageDataset", "SplitDataModule", "TextImageDataModule", "TextImageDataset", "balanced_class_weights",
    "stratified_split",
]
