"""LightningModules: losses, metrics and optimisation around the plain models."""

from .atk import ATKClassifier
from .classification import ClassificationTask
from .hybrid import HybridSignClassifier, LandmarkClassifier
from .recognizer import FrozenRecognizer, TextRecognizer
from .restoration import RestorationGAN

__all__ = ["ATKClassifier", "ClassificationTask", "FrozenRecognizer", "HybridSignClassifier", "LandmarkClassifier",
           "RestorationGAN",
           "TextRecognizer"]
