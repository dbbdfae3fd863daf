"""LightningDataModules and their datasets and transforms."""

from .base import SplitDataModule
from .folder import ClassificationDataModule, ImageFolderDataModule, ImageFolderDataset
from .sentences import SentenceDataModule
from .sequences import SequenceDataModule, SequenceDataset, collate_sequences
from .sign import LandmarkDataModule, SignDataModule, SignImageDataset
from .splits import balanced_class_weights, stratified_split
from .synthetic_text import SyntheticTextDataModule, SyntheticWordDataset, WordImageGenerator, find_fonts
from .text import Charset, Degradation, SyntheticWords, TextImageDataModule, TextImageDataset
from .transforms import HandAugment, SequenceAugment

__all__ = [
    "Charset", "ClassificationDataModule", "Degradation", "HandAugment", "ImageFolderDataModule",
    "ImageFolderDataset", "LandmarkDataModule", "SentenceDataModule", "SequenceAugment", "SequenceDataModule",
    "SequenceDataset", "SignDataModule", "SignImageDataset", "SplitDataModule", "SyntheticTextDataModule",
    "SyntheticWordDataset", "SyntheticWords", "TextImageDataModule", "TextImageDataset", "WordImageGenerator",
    "balanced_class_weights", "collate_sequences", "find_fonts", "stratified_split",
]
