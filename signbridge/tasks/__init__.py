"""LightningModules: losses, metrics and optimisation around the plain models."""

from .aligned import TextAlignedSequenceClassifier
from .atk import ATKClassifier
from .classification import ClassificationTask
from .continuous import ContinuousSignRecognizer
from .ensemble import EnsembleClassifier
from .hybrid import HybridSignClassifier, LandmarkClassifier
from .recognizer import FrozenRecognizer, TextRecognizer
from .restoration import RestorationGAN
from .sequence import SequenceClassifier

__all__ = [
    "ATKClassifier",
    "ClassificationTask",
    "ContinuousSignRecognizer",
    "EnsembleClassifier",
    "FrozenRecognizer",
    "HybridSignClassifier",
    "LandmarkClassifier",
    "RestorationGAN",
    "SequenceClassifier",
    "TextAlignedSequenceClassifier",
    "TextRecognizer",
]
