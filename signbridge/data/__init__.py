"""LightningDataModules and their datasets and transforms."""

from .base import SplitDataModule
from .folder import ClassificationDataModule, ImageFolderDataModule, ImageFolderDataset
from .sentences import SentenceDataModule
from .sequences import SequenceDataModule, SequenceDataset, collate_sequences
from .sign import LandmarkDataModule, SignDataModule, SignImageDataset
from .splits import balanced_class_weights, stratified_split
from .text import Charset, Degradation, TextImageDataModule, TextImageDataset
from .transforms import HandAugment, SequenceAugment

__all__ = [
    "Charset", "ClassificationDataModule", "Degradation", "HandAugment", "ImageFolderDataModule",
    "ImageFolderDataset", "LandmarkDataModule", "SentenceDataModule", "SequenceAugment", "SequenceDataModule",
    "SequenceDataset", "SignDataModule", "SignImageDataset", "SplitDataModule", "TextImageDataModule",
    "TextImageDataset", "balanced_class_weights", "collate_sequences", "stratified_split",
]
